"""The database URL from Secrets Manager or SSM (moto): fetched once, cached across warm
calls, fetched again after its max age; boto3 loaded only then; no secret in any log."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import boto3
import pytest
from moto import mock_aws

from shared import db, secrets
from shared.template import REPO_ROOT


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield


@pytest.fixture
def fetches(monkeypatch):
    """How many times Powertools really asked AWS (cache misses)."""
    from aws_lambda_powertools.utilities.parameters import SecretsProvider, SSMProvider

    counted = {"secrets": 0, "ssm": 0}
    for kind, provider in (("secrets", SecretsProvider), ("ssm", SSMProvider)):
        real = provider._get

        def spy(self, *args, _real=real, _kind=kind, **kwargs):
            counted[_kind] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(provider, "_get", spy)
    return counted


@pytest.fixture
def url_from(monkeypatch, database_url):
    """Moves DATABASE_URL into the named variable (its value set by the test) and back."""

    def move(variable: str, value: str) -> None:
        monkeypatch.delenv("DATABASE_URL")
        monkeypatch.setenv(variable, value)
        db.reset()

    yield move
    monkeypatch.undo()
    db.reset()


def test_the_url_comes_from_secrets_manager_once_and_is_cached(api, alice, aws, fetches, url_from, database_url):
    arn = boto3.client("secretsmanager").create_secret(Name="todo/database-url", SecretString=database_url)["ARN"]
    url_from("DATABASE_URL_SECRET_ARN", arn)
    for _ in range(3):
        assert api.get("/health", user=None).status == 200
    assert api.post("/api/me/tasks", user=alice, json={"title": "via a secret"}).status == 201
    assert fetches["secrets"] == 1


def test_the_url_comes_from_an_ssm_secure_string(api, aws, fetches, url_from, database_url):
    boto3.client("ssm").put_parameter(Name="/todo/database-url", Value=database_url, Type="SecureString")
    url_from("DATABASE_URL_PARAMETER", "/todo/database-url")
    assert api.get("/health", user=None).status == 200
    assert api.get("/health", user=None).status == 200
    assert fetches["ssm"] == 1


def test_a_rotated_secret_is_picked_up_after_its_max_age(api, aws, fetches, url_from, database_url, monkeypatch):
    client = boto3.client("secretsmanager")
    arn = client.create_secret(Name="todo/rotating", SecretString="postgresql://postgres@127.0.0.1:9/gone")["ARN"]
    monkeypatch.setattr(secrets, "SECRET_MAX_AGE_SECONDS", 1)
    monkeypatch.setenv("DB_CONNECT_TIMEOUT", "1")
    url_from("DATABASE_URL_SECRET_ARN", arn)
    assert api.get("/health", user=None).status == 503  # the old value points nowhere
    client.put_secret_value(SecretId=arn, SecretString=database_url)  # rotated
    assert api.get("/health", user=None).status == 503  # still cached
    time.sleep(1.1)
    assert api.get("/health", user=None).status == 200  # fetched again after max age
    assert fetches["secrets"] == 2


def test_boto3_is_imported_only_when_a_secret_must_be_fetched(database_url):
    """(Powertools imports the bare `botocore` package, 0.5 ms, to tag its user agent; the
    SDK itself, boto3 and botocore's sessions and clients, stays unloaded.)"""
    probe = (
        "import json, sys\n"
        "from shared.template import functions\n"
        "from shared.local.apigw import build_http_event\n"
        "from shared.local.lambda_context import FakeLambdaContext\n"
        "handler = functions()['Health'].load_handler()\n"
        "r = handler(build_http_event(method='GET', path='/health', route_path='/health'), FakeLambdaContext('Health'))\n"
        "print(json.dumps([r['statusCode'], 'boto3' in sys.modules, 'botocore.session' in sys.modules]), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, env={"PATH": "", "DATABASE_URL": database_url}, capture_output=True, text=True
    )
    assert json.loads(result.stderr.strip().splitlines()[-1]) == [200, False, False], result.stderr


def test_no_token_password_or_connection_string_reaches_the_logs(api, alice, monkeypatch, capsys, caplog, database_url):
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2VjcmV0LXNpZ25hdHVyZQ"
    password = "pa55-w0rd-never-logged"
    leaky_url = f"postgresql://app:{password}@127.0.0.1:9/todo"
    headers = {"authorization": f"Bearer {token}", "idempotency-key": "k-1"}
    # A full cycle that works, then one that fails on the database.
    api.post("/api/me/tasks", user=alice, json={"title": "t"}, headers=headers)
    api.get("/api/me/tasks", user=alice, headers=headers)
    monkeypatch.setenv("DATABASE_URL", leaky_url)
    monkeypatch.setenv("DB_CONNECT_TIMEOUT", "1")
    db.reset()
    try:
        assert api.post("/api/me/tasks", user=alice, json={"title": "t"}, headers=headers).status == 503
        assert api.get("/health", user=None, headers=headers).status == 503
    finally:
        monkeypatch.undo()
        db.reset()
    captured = capsys.readouterr()
    output = captured.out + captured.err + caplog.text
    assert "request" in output  # the logs were captured at all
    for secret in (token, password, leaky_url, database_url, "Bearer "):
        assert secret not in output, secret
