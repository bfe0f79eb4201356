"""Data outlives the process that wrote it: a fresh interpreter reads it back."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from shared.local.apigw import build_http_event
from shared.template import REPO_ROOT


def test_a_task_written_here_is_read_back_by_a_new_process(api, alice, database_url, tmp_path):
    # Given a task written through the CreateTask handler in this process
    task = api.create_task(alice, title="survives restarts", tags=["durable"])

    # When a brand-new process (new imports, new engine, new connection) invokes GetTask
    event = build_http_event(
        method="GET",
        path=f"/api/me/tasks/{task['id']}",
        route_path="/api/{user_id}/tasks/{task_id}",
        claims={"sub": alice},
    )
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(event))
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", "invoke", "GetTask", "--event", str(event_file)],
        cwd=REPO_ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        check=True,
        capture_output=True,
        text=True,
    )

    # Then it answers with the same task
    response = json.loads(result.stdout)
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == task
