"""The deployed shape: what CloudFormation would create from template.yaml, without AWS.

aws-sam-translator turns template.yaml into plain CloudFormation offline (a managed-policy
map instead of asking IAM for it; `s3://` artifacts where `sam package` would put them), and
moto creates that stack. moto 5 has no SAM transform: a raw SAM template "creates" nothing.

What is checked where:
- moto's resources: the Lambda functions (runtime, handler, role, environment), the IAM
  roles and their inline policies, the layer, the EventBridge rule and its target, each
  function's resource policy (who may invoke it);
- the translated template, for what moto (5.2.5) does not create or drops on the way:
  `AWS::ApiGatewayV2::*` (the HTTP API: routes, integrations, JWT authorizer, the API
  scope of the invoke permissions), a function's `Layers` and a role's
  `ManagedPolicyArns` (moto's CloudFormation ignores both properties), and
  `AWS::Lambda::Alias` (AutoPublishAlias: every trigger invokes a function's `live` alias
  of a published version). moto cannot create an alias: it is given the stack with each
  alias replaced by its function (`without_aliases`), and the aliases are checked here.

Every expected set (functions, routes, public routes, schedules) is derived from
template.yaml through shared.template, so a function or route added there is checked here
without editing this file.
"""

from __future__ import annotations

import ast
import copy
import io
import json
import re
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws
from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader
from samtranslator.translator.transform import transform

from shared.settings import Settings
from shared.template import Function, functions, load_template

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
PARTITION = "aws"
STACK = "todo-api"
BUCKET = "todo-api-artifacts"
RUNTIME = "python3.13"
BASIC_EXECUTION = f"arn:{PARTITION}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
SECRET_ARN = f"arn:{PARTITION}:secretsmanager:{REGION}:{ACCOUNT}:secret:todo-api/database-url-AbCdEf"
PARAMETER_NAME = "todo-api-database-url"
HIERARCHICAL_PARAMETER_NAME = "/todo-api/database-url"
DATABASE_URL = "postgresql://app:pw@ep-test-123.us-east-1.aws.neon.tech/todo?sslmode=require"

# Not the parameters' defaults: a value that arrives proves the wiring, not a default.
COMMON_PARAMETERS = {
    "JwtIssuer": "https://issuer.example.test/",
    "JwtAudience": "todo-api-clients",
    "CleanupSchedule": "rate(6 hours)",
    "ReminderSchedule": "rate(5 minutes)",
    "ReminderMaxLateHours": "6",
    "PublishChangesSchedule": "rate(2 minutes)",
    "ChangesRetentionDays": "14",
    "TrashRetentionDays": "7",
    "IdempotencyTtlHours": "48",
    "LogLevel": "WARNING",
    "MaxTasksPerUser": "2500",
    "MaxCategoriesPerUser": "40",
    "ThrottleRate": "25",
    "ThrottleBurst": "50",
}
# One stack per way of giving the functions the database URL (template.yaml's conditions),
# each also with one of the SnapStart x Architecture pairs: every value of both is deployed.
SETUPS: dict[str, dict[str, str]] = {
    "url": {"DatabaseUrl": DATABASE_URL, "SnapStart": "None", "Architecture": "arm64"},
    "secret": {"DatabaseUrlSecretArn": SECRET_ARN, "SnapStart": "PublishedVersions", "Architecture": "x86_64"},
    "parameter": {"DatabaseUrlParameter": PARAMETER_NAME, "SnapStart": "PublishedVersions", "Architecture": "arm64"},
    "parameter-path": {"DatabaseUrlParameter": HIERARCHICAL_PARAMETER_NAME, "SnapStart": "None", "Architecture": "x86_64"},
}
# The one variable that tells a function where its database URL is, per setup.
DATABASE_VARIABLE = {
    "url": ("DATABASE_URL", DATABASE_URL),
    "secret": ("DATABASE_URL_SECRET_ARN", SECRET_ARN),
    "parameter": ("DATABASE_URL_PARAMETER", PARAMETER_NAME),
}
DATABASE_VARIABLES = {name for name, _ in DATABASE_VARIABLE.values()}
PSEUDO_PARAMETERS = {
    "AWS::Partition": PARTITION,
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": STACK,
}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace", "x-amazon-apigateway-any-method"}

# -- translation: SAM -> CloudFormation, offline ----------------------------------------


class OfflineManagedPolicies(ManagedPolicyLoader):
    """The managed-policy name -> ARN map without IAM's ListPolicies (which needs AWS).

    sam-translator consults it only for policies named in a function's `Policies`; the
    basic execution role it adds by ARN itself."""

    def __init__(self) -> None:
        super().__init__(iam_client=None)  # type: ignore[arg-type]

    def load(self) -> dict[str, str]:
        return {"AWSLambdaBasicExecutionRole": BASIC_EXECUTION}


def packaged_template() -> dict[str, Any]:
    """template.yaml as `sam package` hands it over: local code folders become S3 objects."""
    template = copy.deepcopy(load_template())
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str):
                props[key] = f"s3://{BUCKET}/{logical_id}.zip"
    return template


_NO_VALUE = object()


def resolve_conditions(template: dict[str, Any], parameters: dict[str, str]) -> dict[str, Any]:
    """`Fn::If` resolved and `AWS::NoValue` removed, as CloudFormation does before creating.

    moto 5.2.5 cannot take them in an IAM role's `Policies`: `Fn::If` -> `AWS::NoValue`
    leaves a None in the list and its Role.create_from_cloudformation_json fails
    (TypeError: 'NoneType' object is not subscriptable, moto/iam/models.py). Every other
    intrinsic is left to moto."""
    values = {name: spec.get("Default") for name, spec in template.get("Parameters", {}).items()}
    values.update(parameters)
    conditions = template.get("Conditions", {})
    decided: dict[str, bool] = {}

    def evaluate(node: Any) -> Any:
        if isinstance(node, dict) and len(node) == 1:
            ((function, args),) = node.items()
            if function == "Ref":
                return values[args]
            if function == "Condition":
                return condition(args)
            if function == "Fn::Equals":
                return str(evaluate(args[0])) == str(evaluate(args[1]))
            if function == "Fn::Not":
                return not evaluate(args[0])
            if function == "Fn::And":
                return all(evaluate(arg) for arg in args)
            if function == "Fn::Or":
                return any(evaluate(arg) for arg in args)
            if function == "Fn::Split":
                return str(evaluate(args[1])).split(args[0])
            if function == "Fn::Select":
                return evaluate(args[1])[int(args[0])]
        if isinstance(node, (str, int, float, bool)):
            return node
        raise AssertionError(f"a condition this resolver does not know: {node!r}")

    def condition(name: str) -> bool:
        if name not in decided:
            decided[name] = bool(evaluate(conditions[name]))
        return decided[name]

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"Fn::If"}:
                name, when_true, when_false = node["Fn::If"]
                return walk(when_true if condition(name) else when_false)
            if node == {"Ref": "AWS::NoValue"}:
                return _NO_VALUE
            return {key: item for key, item in ((k, walk(v)) for k, v in node.items()) if item is not _NO_VALUE}
        if isinstance(node, list):
            return [item for item in (walk(v) for v in node) if item is not _NO_VALUE]
        return node

    return walk(template)


def render(node: Any, parameters: dict[str, str]) -> Any:
    """Refs to parameters and pseudo parameters and `Fn::Sub` rendered to text; a Ref or
    GetAtt of a resource becomes `<LogicalId>` / `<LogicalId.Attribute>`, so a test can
    see exactly which resource a value points at."""

    def name(ref: str) -> str:
        if ref in parameters:
            return str(parameters[ref])
        if ref in PSEUDO_PARAMETERS:
            return PSEUDO_PARAMETERS[ref]
        return f"<{ref}>"

    if isinstance(node, list):
        return [render(item, parameters) for item in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Ref"}:
        return name(node["Ref"])
    if set(node) == {"Fn::GetAtt"}:
        target = node["Fn::GetAtt"]
        return f"<{'.'.join(target) if isinstance(target, list) else target}>"
    if set(node) == {"Fn::Sub"}:
        args = node["Fn::Sub"]
        text, variables = (args, {}) if isinstance(args, str) else (args[0], args[1])
        rendered = {key: render(value, parameters) for key, value in variables.items()}
        return re.sub(r"\$\{([^}]+)\}", lambda m: str(rendered[m[1]]) if m[1] in rendered else name(m[1]), text)
    return {key: render(value, parameters) for key, value in node.items()}


def without_aliases(template: dict[str, Any]) -> dict[str, Any]:
    """The stack with each `AWS::Lambda::Alias` replaced by its function, for moto (5.2.5),
    whose CloudFormation cannot create one and then fails on every reference to it."""
    aliases = {
        logical_id: resource["Properties"]["FunctionName"]["Ref"]
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Alias"
    }

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"Ref"} and node["Ref"] in aliases:
                return {"Fn::GetAtt": [aliases[node["Ref"]], "Arn"]}
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        if isinstance(node, str):
            return re.sub(r"\$\{([A-Za-z0-9]+)\}", lambda m: f"${{{aliases[m[1]]}.Arn}}" if m[1] in aliases else m[0], node)
        return node

    resources = {lid: walk(resource) for lid, resource in template["Resources"].items() if lid not in aliases}
    return {**template, "Resources": resources}


# -- deployment into moto ----------------------------------------------------------------


@dataclass
class Deployment:
    setup: str
    parameters: dict[str, str]
    template: dict[str, Any]  # translated, as the CloudFormation service would hold it
    physical_ids: dict[str, str]  # logical id -> physical id, from the stack
    function_count: int  # every Lambda function in the (mock) account
    configurations: dict[str, dict[str, Any]]  # function logical id -> its configuration
    roles: dict[str, dict[str, Any]]  # function logical id -> role, inline and attached policies
    invoke_statements: dict[str, list[dict[str, Any]]]  # function logical id -> resource policy statements
    rules: list[dict[str, Any]]  # EventBridge rules, each with its "Targets"
    event_buses: list[dict[str, Any]]  # list_event_buses (the default bus included)
    layers: list[dict[str, Any]]  # list_layers, each with its "Versions"

    def resources_of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {lid: res for lid, res in self.template["Resources"].items() if res["Type"] == resource_type}

    def function_arn(self, logical_id: str) -> str:
        return self.configurations[logical_id]["FunctionArn"]


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return None\n")
    return buffer.getvalue()


def _deploy(setup: str) -> Deployment:
    parameters = {**COMMON_PARAMETERS, **SETUPS[setup]}
    with pytest.MonkeyPatch.context() as env:
        for variable in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            env.delenv(variable, raising=False)
        for variable, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,  # sam-translator reads its region from boto3
        }.items():
            env.setenv(variable, value)
        translated = transform(packaged_template(), parameters, OfflineManagedPolicies())

        with mock_aws(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*not supported by moto's CloudFormation.*")
            s3 = boto3.client("s3", region_name=REGION)
            s3.create_bucket(Bucket=BUCKET)
            for resource in translated["Resources"].values():
                code = resource["Properties"].get("Code") or resource["Properties"].get("Content")
                if resource["Type"] in ("AWS::Lambda::Function", "AWS::Lambda::LayerVersion") and code:
                    assert code["S3Bucket"] == BUCKET, code
                    s3.put_object(Bucket=BUCKET, Key=code["S3Key"], Body=_zip())

            cloudformation = boto3.client("cloudformation", region_name=REGION)
            cloudformation.create_stack(
                StackName=STACK,
                TemplateBody=json.dumps(without_aliases(resolve_conditions(translated, parameters))),
                Parameters=[{"ParameterKey": key, "ParameterValue": value} for key, value in parameters.items()],
                Capabilities=["CAPABILITY_IAM"],
            )
            stack = cloudformation.describe_stacks(StackName=STACK)["Stacks"][0]
            assert stack["StackStatus"] == "CREATE_COMPLETE", stack
            physical_ids = {
                summary["LogicalResourceId"]: summary["PhysicalResourceId"]
                for summary in cloudformation.list_stack_resources(StackName=STACK)["StackResourceSummaries"]
                if summary["LogicalResourceId"]
            }

            lambda_ = boto3.client("lambda", region_name=REGION)
            iam = boto3.client("iam", region_name=REGION)
            events = boto3.client("events", region_name=REGION)
            configurations, roles, invoke_statements = {}, {}, {}
            for logical_id in functions():
                if logical_id not in physical_ids:
                    continue  # reported by the test on functions
                configuration = lambda_.get_function_configuration(FunctionName=physical_ids[logical_id])
                configurations[logical_id] = configuration
                role_name = configuration["Role"].rsplit("/", 1)[1]
                roles[logical_id] = {
                    "role": iam.get_role(RoleName=role_name)["Role"],
                    "inline": {
                        name: iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]
                        for name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]
                    },
                    "attached": [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]],
                }
                try:
                    policy = json.loads(lambda_.get_policy(FunctionName=physical_ids[logical_id])["Policy"])
                except lambda_.exceptions.ResourceNotFoundException:
                    policy = {"Statement": []}
                invoke_statements[logical_id] = policy["Statement"]
            rules = [
                {**rule, "Targets": events.list_targets_by_rule(Rule=rule["Name"])["Targets"]}
                for rule in events.list_rules()["Rules"]
            ]
            event_buses = events.list_event_buses()["EventBuses"]
            layers = [
                {**layer, "Versions": lambda_.list_layer_versions(LayerName=layer["LayerName"])["LayerVersions"]}
                for layer in lambda_.list_layers()["Layers"]
            ]
            function_count = len(lambda_.list_functions()["Functions"])

    return Deployment(
        setup=setup,
        parameters=parameters,
        template=translated,
        physical_ids=physical_ids,
        function_count=function_count,
        configurations=configurations,
        roles=roles,
        invoke_statements=invoke_statements,
        rules=rules,
        event_buses=event_buses,
        layers=layers,
    )


@pytest.fixture(scope="module")
def deployed() -> Callable[[str], Deployment]:
    """deployed(setup): the stack of that setup, translated and created once per module."""
    cache: dict[str, Deployment] = {}

    def get(setup: str) -> Deployment:
        if setup not in cache:
            cache[setup] = _deploy(setup)
        return cache[setup]

    return get


def _statements(document: dict[str, Any] | str) -> list[dict[str, Any]]:
    if isinstance(document, str):
        # moto's CloudFormation stores an inline policy given as an object with str(): a
        # Python literal, not JSON, comes back from GetRolePolicy.
        document = json.loads(document) if document.lstrip().startswith('{"') else ast.literal_eval(document)
    statements = document["Statement"]
    return [statements] if isinstance(statements, dict) else list(statements)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _execute_api_path(method: str, path: str) -> str:
    """The method/resource part of an execute-api ARN: path parameters become `*`."""
    return f"{method}{re.sub(r'{[^}]+}', '*', path)}"


def _http_api(deployment: Deployment) -> tuple[str, dict[str, Any]]:
    serverless_apis = [lid for lid, r in load_template()["Resources"].items() if r["Type"] == "AWS::Serverless::HttpApi"]
    apis = deployment.resources_of_type("AWS::ApiGatewayV2::Api")
    assert list(apis) == serverless_apis and len(apis) == 1, (list(apis), serverless_apis)
    logical_id = serverless_apis[0]
    return logical_id, apis[logical_id]["Properties"]


SETUP_IDS = ["url", "secret", "parameter"]
ALIAS = load_template()["Globals"]["Function"]["AutoPublishAlias"]  # "live"
BUS_NAME = f"{STACK}-events"
BUS_ARN = f"arn:{PARTITION}:events:{REGION}:{ACCOUNT}:event-bus/{BUS_NAME}"


def publishers() -> set[str]:
    """The functions the template tells where the bus is: those that publish."""
    resources = load_template()["Resources"]
    return {
        logical_id
        for logical_id in functions()
        if "EVENT_BUS_NAME" in ((resources[logical_id]["Properties"].get("Environment") or {}).get("Variables") or {})
    }

def database_readers() -> set[str]:
    """The functions the template lets read the database URL's secret or parameter (all but
    those that never touch the database: ProtectedResource)."""
    resources = load_template()["Resources"]
    return {
        logical_id
        for logical_id in functions()
        if "DatabaseUrlSecretArn" in json.dumps(resources[logical_id]["Properties"].get("Policies") or [])
    }


# -- functions --------------------------------------------------------------------------


@pytest.mark.parametrize("setup", SETUP_IDS)
def test_every_function_of_the_template_is_created_with_its_runtime_handler_and_own_role(deployed, setup):
    deployment = deployed(setup)
    expected = functions()
    translated = deployment.resources_of_type("AWS::Lambda::Function")
    assert set(translated) == set(expected)
    assert set(deployment.configurations) == set(expected), "a function of template.yaml was not created"
    assert deployment.function_count == len(expected)
    for logical_id, function in expected.items():
        configuration = deployment.configurations[logical_id]
        assert configuration["Runtime"] == RUNTIME, logical_id
        assert configuration["Handler"] == function.handler == "app.handler", logical_id
        assert configuration["State"] == "Active", logical_id
    roles = [configuration["Role"] for configuration in deployment.configurations.values()]
    assert len(set(roles)) == len(roles), "functions share a role: each should hold only what it needs"


@pytest.mark.parametrize("setup", SETUP_IDS)
def test_each_function_gets_the_configuration_the_contract_needs(deployed, setup):
    deployment = deployed(setup)
    database_variable, database_value = DATABASE_VARIABLE[setup]
    read_by_settings = {name.upper() for name in Settings.model_fields}
    for logical_id, configuration in deployment.configurations.items():
        variables = {key: str(value) for key, value in configuration["Environment"]["Variables"].items()}
        # Exactly one source of the database URL, the one this stack was given.
        assert variables.get(database_variable) == database_value, (logical_id, variables)
        assert not (DATABASE_VARIABLES - {database_variable}) & set(variables), (logical_id, variables)
        assert variables["TRASH_RETENTION_DAYS"] == COMMON_PARAMETERS["TrashRetentionDays"], logical_id
        assert variables["IDEMPOTENCY_TTL_HOURS"] == COMMON_PARAMETERS["IdempotencyTtlHours"], logical_id
        assert variables["LOG_LEVEL"] == COMMON_PARAMETERS["LogLevel"], logical_id
        assert variables["MAX_TASKS_PER_USER"] == COMMON_PARAMETERS["MaxTasksPerUser"], logical_id
        assert variables["MAX_CATEGORIES_PER_USER"] == COMMON_PARAMETERS["MaxCategoriesPerUser"], logical_id
        assert variables["POWERTOOLS_SERVICE_NAME"] == "todo-api", logical_id
        assert variables.get("POWERTOOLS_METRICS_NAMESPACE"), logical_id
        # Every other variable is one the functions' settings read (a typo would be ignored).
        unread = {key for key in variables if not key.startswith("POWERTOOLS_") and key != "LOG_LEVEL"} - read_by_settings
        assert not unread, f"{logical_id} sets variables that shared/settings.py never reads: {sorted(unread)}"


def test_the_shared_layer_exists_and_every_function_uses_it(deployed):
    deployment = deployed("url")
    serverless_layers = [lid for lid, r in load_template()["Resources"].items() if r["Type"] == "AWS::Serverless::LayerVersion"]
    layers = deployment.resources_of_type("AWS::Lambda::LayerVersion")
    assert len(layers) == len(serverless_layers) == 1, (list(layers), serverless_layers)
    (layer_id,) = layers
    assert layer_id.startswith(serverless_layers[0])  # SAM adds a content hash to the logical id

    # moto created it (its name is "<stack>-<logical id>-<suffix>"), for the functions' runtime.
    assert len(deployment.layers) == 1, deployment.layers
    (layer,) = deployment.layers
    assert layer["LayerName"].startswith(f"{STACK}-{layer_id}")
    assert [version["Version"] for version in layer["Versions"]] == [1]
    assert RUNTIME in layer["LatestMatchingVersion"]["CompatibleRuntimes"]

    # moto's CloudFormation drops a function's `Layers`: read the attachment in the template.
    for logical_id, function in deployment.resources_of_type("AWS::Lambda::Function").items():
        assert function["Properties"].get("Layers") == [{"Ref": layer_id}], logical_id


# -- IAM --------------------------------------------------------------------------------


def _grants(role: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(effect, action, resource) for every inline statement of a role, as moto holds it."""
    return [
        (statement["Effect"], action, resource)
        for document in role["inline"].values()
        for statement in _statements(document)
        for action in _as_list(statement["Action"])
        for resource in _as_list(statement["Resource"])
    ]


@pytest.mark.parametrize("setup", SETUP_IDS)
def test_each_role_holds_only_what_its_function_needs(deployed, setup):
    deployment = deployed(setup)
    translated_roles = deployment.resources_of_type("AWS::IAM::Role")
    translated_functions = deployment.resources_of_type("AWS::Lambda::Function")
    parameter_arn = f"arn:{PARTITION}:ssm:{REGION}:{ACCOUNT}:parameter/{PARAMETER_NAME}"
    # Every function reads the database but the MCP metadata document, which holds none.
    assert set(functions()) - database_readers() == {"ProtectedResource"}
    for logical_id, role in deployment.roles.items():
        trust = _statements(role["role"]["AssumeRolePolicyDocument"])
        assert [(s["Effect"], _as_list(s["Action"]), s["Principal"]) for s in trust] == [
            ("Allow", ["sts:AssumeRole"], {"Service": ["lambda.amazonaws.com"]})
        ], logical_id

        # Managed policies: the basic execution role (CloudWatch Logs) and nothing else.
        # moto ignores ManagedPolicyArns, so the translated role is read; moto may hold less.
        role_id = translated_functions[logical_id]["Properties"]["Role"]["Fn::GetAtt"][0]
        assert deployment.physical_ids[role_id] == role["role"]["RoleName"], logical_id
        managed = translated_roles[role_id]["Properties"].get("ManagedPolicyArns")
        assert managed == [BASIC_EXECUTION], (logical_id, managed)
        assert set(role["attached"]) <= {BASIC_EXECUTION}, (logical_id, role["attached"])

        grants = _grants(role)
        assert all(effect == "Allow" for effect, _, _ in grants), (logical_id, grants)
        # A publisher may put events on the API's bus, and on nothing else; no other function may.
        publishing = ("Allow", "events:PutEvents", BUS_ARN)
        if logical_id in publishers():
            assert publishing in grants, (logical_id, grants)
            grants = [grant for grant in grants if grant != publishing]
        assert not [grant for grant in grants if grant[1].startswith("events:")], (logical_id, grants)
        if setup == "url" or logical_id not in database_readers():
            assert grants == [], (logical_id, role["inline"])
        elif setup == "secret":
            assert grants == [("Allow", "secretsmanager:GetSecretValue", SECRET_ARN)], (logical_id, grants)
        else:
            # Reads that one parameter: GetParameter on its ARN; no other service, no other parameter.
            assert ("Allow", "ssm:GetParameter", parameter_arn) in grants, (logical_id, grants)
            assert all(action.startswith("ssm:") for _, action, _ in grants), (logical_id, grants)
            assert {resource for _, _, resource in grants} - {"*"} == {parameter_arn}, (logical_id, grants)
            assert {action for _, action, _ in grants} <= {
                "ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath", "ssm:DescribeParameters",
            }, (logical_id, grants)


@pytest.mark.parametrize(
    "setup",
    ["url", "secret", "parameter", "parameter-path"],
)
def test_no_role_grants_a_wildcard(deployed, setup):
    deployment = deployed(setup)
    for logical_id, role in deployment.roles.items():
        broad = [(action, resource) for _, action, resource in _grants(role) if "*" in action or "*" in resource]
        assert not broad, f"{logical_id}'s role grants {broad}"


def test_a_hierarchical_parameter_name_is_readable(deployed):
    deployment = deployed("parameter-path")
    expected = f"arn:{PARTITION}:ssm:{REGION}:{ACCOUNT}:parameter{HIERARCHICAL_PARAMETER_NAME}"
    for logical_id, role in deployment.roles.items():
        variables = deployment.configurations[logical_id]["Environment"]["Variables"]
        assert variables["DATABASE_URL_PARAMETER"] == HIERARCHICAL_PARAMETER_NAME
        if logical_id in database_readers():
            assert ("Allow", "ssm:GetParameter", expected) in _grants(role), (logical_id, _grants(role))


# -- triggers: the schedule and the HTTP API -------------------------------------------------


def _schedule_expression(function: Function, event_id: str, parameters: dict[str, str]) -> tuple[str, str]:
    """(expression, state) the template asks for a function's Schedule event."""
    props = load_template()["Resources"][function.logical_id]["Properties"]["Events"][event_id]["Properties"]
    enabled = props.get("Enabled", True)
    return render(props["Schedule"], parameters), "ENABLED" if enabled in (True, "true", "True") else "DISABLED"


def test_the_schedule_invokes_its_function_with_the_parameters_expression(deployed):
    deployment = deployed("url")
    scheduled = {lid: f for lid, f in functions().items() if f.schedules}
    assert scheduled, "template.yaml has no scheduled function (the Cleanup)"
    assert len(deployment.rules) == sum(len(f.schedules) for f in scheduled.values()), deployment.rules
    for logical_id, function in scheduled.items():
        arn = deployment.function_arn(logical_id)
        rules = [rule for rule in deployment.rules if [t["Arn"] for t in rule["Targets"]] == [arn]]
        expected = sorted(_schedule_expression(function, event_id, deployment.parameters) for event_id in function.schedules)
        assert sorted((rule["ScheduleExpression"], rule["State"]) for rule in rules) == expected, deployment.rules
        # ... and EventBridge may invoke it: from those rules only.
        from_events = [s for s in deployment.invoke_statements[logical_id] if s["Principal"] == {"Service": "events.amazonaws.com"}]
        assert sorted(s["Condition"]["ArnLike"]["AWS:SourceArn"] for s in from_events) == sorted(r["Arn"] for r in rules)
        assert all(_as_list(s["Action"]) == ["lambda:InvokeFunction"] for s in from_events)
    expressions = {rule["ScheduleExpression"] for rule in deployment.rules}
    assert {deployment.parameters["CleanupSchedule"], deployment.parameters["ReminderSchedule"]} <= expressions
    reminders = [rule for rule in deployment.rules if [t["Arn"] for t in rule["Targets"]] == [deployment.function_arn("Reminders")]]
    assert [(rule["ScheduleExpression"], rule["State"]) for rule in reminders] == [("rate(5 minutes)", "ENABLED")]
    publish = [rule for rule in deployment.rules if [t["Arn"] for t in rule["Targets"]] == [deployment.function_arn("PublishChanges")]]
    assert [(rule["ScheduleExpression"], rule["State"]) for rule in publish] == [("rate(2 minutes)", "ENABLED")]


def test_the_api_has_its_own_bus_and_only_the_publishers_are_told_its_name(deployed):
    deployment = deployed("url")
    buses = deployment.resources_of_type("AWS::Events::EventBus")
    assert list(buses) == ["EventBus"], buses
    assert {bus["Name"]: bus["Arn"] for bus in deployment.event_buses}.get(BUS_NAME) == BUS_ARN, deployment.event_buses
    assert publishers() == {"Reminders", "PublishChanges"}
    for logical_id, configuration in deployment.configurations.items():
        variables = configuration["Environment"]["Variables"]
        if logical_id in publishers():
            assert variables["EVENT_BUS_NAME"] == BUS_NAME, (logical_id, variables)
        else:
            assert "EVENT_BUS_NAME" not in variables, logical_id
    reminders = deployment.configurations["Reminders"]
    assert str(reminders["Environment"]["Variables"]["REMINDER_MAX_LATE_HOURS"]) == COMMON_PARAMETERS["ReminderMaxLateHours"]
    assert reminders["Timeout"] == 60
    assert deployment.configurations["PublishChanges"]["Timeout"] == 60
    # Only the cleanup prunes the change log: only it is told how long entries are kept.
    kept = {lid for lid, c in deployment.configurations.items() if "CHANGES_RETENTION_DAYS" in c["Environment"]["Variables"]}
    assert kept == {"Cleanup"}, kept
    cleanup = deployment.configurations["Cleanup"]["Environment"]["Variables"]
    assert str(cleanup["CHANGES_RETENTION_DAYS"]) == COMMON_PARAMETERS["ChangesRetentionDays"]


def test_put_events_is_granted_on_the_bus_alone_in_the_translated_policy(deployed):
    """The policy as sam-translator wrote it (before moto): one statement, one action, the
    bus's ARN, for every setup."""
    for setup in SETUP_IDS:
        deployment = deployed(setup)
        resources = resolve_conditions(deployment.template, deployment.parameters)["Resources"]
        for logical_id in publishers():
            role_id = resources[logical_id]["Properties"]["Role"]["Fn::GetAtt"][0]
            statements = [
                statement
                for policy in resources[role_id]["Properties"].get("Policies", [])
                for statement in _statements(policy["PolicyDocument"])
                if any(str(action).startswith("events:") for action in _as_list(statement["Action"]))
            ]
            assert statements == [
                {"Effect": "Allow", "Action": "events:PutEvents", "Resource": {"Fn::GetAtt": ["EventBus", "Arn"]}}
            ], (setup, logical_id, statements)


def test_each_function_may_be_invoked_only_by_its_own_triggers(deployed):
    """Resource policies in moto: API Gateway for the function's routes, EventBridge for its
    schedules, each with a source ARN; nothing for anyone else. (moto cannot resolve the
    API's id, which it does not create: the API scope is checked in the template below.)"""
    deployment = deployed("url")
    for logical_id, function in functions().items():
        statements = deployment.invoke_statements[logical_id]
        assert len(statements) == len(function.routes) + len(function.schedules), (logical_id, statements)
        for statement in statements:
            assert statement["Effect"] == "Allow" and _as_list(statement["Action"]) == ["lambda:InvokeFunction"], statement
            assert statement["Principal"] in ({"Service": "apigateway.amazonaws.com"}, {"Service": "events.amazonaws.com"}), statement
            assert statement["Condition"]["ArnLike"]["AWS:SourceArn"], statement
        api_arns = [
            s["Condition"]["ArnLike"]["AWS:SourceArn"]
            for s in statements
            if s["Principal"] == {"Service": "apigateway.amazonaws.com"}
        ]
        prefix = f"arn:{PARTITION}:execute-api:{REGION}:{ACCOUNT}:"
        assert all(arn.startswith(prefix) for arn in api_arns), api_arns
        assert sorted(arn.split("/", 1)[1] for arn in api_arns) == sorted(
            f"*/{_execute_api_path(route.method, route.path)}" for route in function.routes
        ), (logical_id, api_arns)


def _operations(body: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in body["paths"].items()
        for method, operation in item.items()
        if method.lower() in HTTP_METHODS
    }


def test_the_http_api_has_exactly_the_routes_of_the_template_each_on_its_own_function(deployed):
    """sam-translator emits an HttpApi as one AWS::ApiGatewayV2::Api with an OpenAPI `Body`
    (routes = its paths and methods), not as Route/Integration resources."""
    deployment = deployed("url")
    _, api = _http_api(deployment)
    for kind in ("Route", "Integration", "Authorizer"):
        assert not deployment.resources_of_type(f"AWS::ApiGatewayV2::{kind}"), f"SAM now emits {kind}s: read them too"
    operations = _operations(api["Body"])
    expected = {(route.method, route.path): function for function in functions().values() for route in function.routes}
    assert set(operations) == set(expected)
    for (method, path), function in expected.items():
        integration = operations[(method, path)]["x-amazon-apigateway-integration"]
        assert integration["type"] == "aws_proxy" and integration["payloadFormatVersion"] == "2.0", integration
        assert integration["httpMethod"] == "POST", integration
        assert render(integration["uri"], deployment.parameters) == (
            f"arn:{PARTITION}:apigateway:{REGION}:lambda:path/2015-03-31/functions/<{function.logical_id}Alias{ALIAS}>/invocations"
        ), (method, path)


def test_the_http_api_throttles_every_route_by_the_template_parameters(deployed):
    """ThrottleRate / ThrottleBurst become the default route settings of the API's stage (the
    gateway then answers 429 itself; OpenAPI documents it)."""
    deployment = deployed("url")
    (stage,) = deployment.resources_of_type("AWS::ApiGatewayV2::Stage").values()
    settings = render(stage["Properties"]["DefaultRouteSettings"], deployment.parameters)
    assert {key: str(value) for key, value in settings.items()} == {
        "ThrottlingRateLimit": COMMON_PARAMETERS["ThrottleRate"],
        "ThrottlingBurstLimit": COMMON_PARAMETERS["ThrottleBurst"],
    }


def test_the_jwt_authorizer_checks_every_route_but_health_and_the_mcp_metadata(deployed):
    deployment = deployed("url")
    _, api = _http_api(deployment)
    auth = next(r for r in load_template()["Resources"].values() if r["Type"] == "AWS::Serverless::HttpApi")["Properties"]["Auth"]
    name = auth["DefaultAuthorizer"]
    schemes = api["Body"]["components"]["securitySchemes"]
    assert set(schemes) == {name}, schemes
    assert render(schemes[name]["x-amazon-apigateway-authorizer"], deployment.parameters) == {
        "type": "jwt",
        "identitySource": "$request.header.Authorization",
        "jwtConfiguration": {
            "issuer": deployment.parameters["JwtIssuer"],
            "audience": [deployment.parameters["JwtAudience"]],
        },
    }
    operations = _operations(api["Body"])
    routes = [route for function in functions().values() for route in function.routes]
    public = {("GET", "/health"), ("GET", "/.well-known/oauth-protected-resource")}
    assert {(route.method, route.path) for route in routes if route.public} == public
    for route in routes:
        security = operations[(route.method, route.path)].get("security")
        if route.public:
            assert not any(name in requirement for requirement in security or []), (route, security)
        else:
            assert security == [{name: []}], (route, security)


def test_each_api_permission_is_scoped_to_the_api_and_the_route(deployed):
    deployment = deployed("url")
    api_id, _ = _http_api(deployment)
    found = set()
    for permission in deployment.resources_of_type("AWS::Lambda::Permission").values():
        props = permission["Properties"]
        if props["Principal"] != "apigateway.amazonaws.com":
            continue
        function = render(props["FunctionName"], deployment.parameters)
        source = render(props["SourceArn"], deployment.parameters)
        match = re.fullmatch(rf"arn:{PARTITION}:execute-api:{REGION}:{ACCOUNT}:<{api_id}>/\*/(.+)", source)
        assert match, f"{function} may be invoked from {source}, not only from the API <{api_id}>"
        found.add((function, match[1]))
    expected = {
        (f"<{function.logical_id}Alias{ALIAS}>", _execute_api_path(route.method, route.path))
        for function in functions().values()
        for route in function.routes
    }
    assert found == expected


def test_no_function_has_a_function_url(deployed):
    deployment = deployed("url")
    assert not deployment.resources_of_type("AWS::Lambda::Url")
    for logical_id in functions():
        assert "FunctionUrlConfig" not in load_template()["Resources"][logical_id]["Properties"], logical_id
    for permission in deployment.resources_of_type("AWS::Lambda::Permission").values():
        assert "FunctionUrlAuthType" not in permission["Properties"], permission
        assert permission["Properties"]["Principal"] != "*", permission


# -- published versions, the alias, SnapStart and the architecture ----------------------------


@pytest.mark.parametrize("setup", ["url", "secret", "parameter", "parameter-path"])
def test_every_function_has_its_snapstart_and_architecture_from_the_parameters(deployed, setup):
    deployment = deployed(setup)
    snapstart, architecture = deployment.parameters["SnapStart"], deployment.parameters["Architecture"]
    resources = resolve_conditions(deployment.template, deployment.parameters)["Resources"]
    for logical_id in functions():
        props = render(resources[logical_id]["Properties"], deployment.parameters)
        assert props["SnapStart"] == {"ApplyOn": snapstart}, (logical_id, props.get("SnapStart"))
        assert props["Architectures"] == [architecture], logical_id  # (moto's CloudFormation drops it: x86_64)
    (layer,) = [r for r in resources.values() if r["Type"] == "AWS::Lambda::LayerVersion"]
    assert render(layer["Properties"]["CompatibleArchitectures"], deployment.parameters) == [architecture]  # (moto drops it)


@pytest.mark.parametrize("setup", ["url", "secret"])  # SnapStart None and PublishedVersions
def test_every_trigger_invokes_the_live_alias_of_a_published_version(deployed, setup):
    """SnapStart snapshots published versions only: the routes and the schedules must invoke
    the alias (AutoPublishAlias), never the function's unpublished $LATEST."""
    deployment = deployed(setup)
    resources = deployment.template["Resources"]
    aliases = deployment.resources_of_type("AWS::Lambda::Alias")
    versions = deployment.resources_of_type("AWS::Lambda::Version")
    assert set(aliases) == {f"{logical_id}Alias{ALIAS}" for logical_id in functions()}, sorted(aliases)
    for logical_id in functions():
        alias = aliases[f"{logical_id}Alias{ALIAS}"]["Properties"]
        assert alias["Name"] == ALIAS and alias["FunctionName"] == {"Ref": logical_id}, alias
        version_id, attribute = alias["FunctionVersion"]["Fn::GetAtt"]
        assert attribute == "Version" and versions[version_id]["Properties"]["FunctionName"] == {"Ref": logical_id}
    # Every permission names an alias (API Gateway's and EventBridge's alike) ...
    permissions = deployment.resources_of_type("AWS::Lambda::Permission").values()
    assert permissions and all(p["Properties"]["FunctionName"]["Ref"] in aliases for p in permissions)
    # ... every schedule targets one, and so does every route's integration.
    rules = deployment.resources_of_type("AWS::Events::Rule")
    assert len(rules) == sum(len(f.schedules) for f in functions().values())
    for rule in rules.values():
        assert [target["Arn"]["Ref"] in aliases for target in rule["Properties"]["Targets"]] == [True], rule
    _, api = _http_api(deployment)
    uris = [op["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"] for op in _operations(api["Body"]).values()]
    assert uris and all(re.search(rf"/functions/\$\{{\w+Alias{ALIAS}\}}/invocations$", uri) for uri in uris), uris
    assert not [lid for lid, r in resources.items() if r["Type"] == "AWS::Lambda::Function" and lid not in functions()]
