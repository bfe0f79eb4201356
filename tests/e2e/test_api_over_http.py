"""Every route over real HTTP through `todo-api serve`: two users, their data kept apart."""

from __future__ import annotations

import httpx

from tests.e2e.conftest import CORS_ORIGIN, bearer, mint


def test_health_needs_no_token(client: httpx.Client):
    reply = client.get("/health")
    assert (reply.status_code, reply.json()) == (200, {"status": "ok", "database": "ok"})
    assert reply.headers["apigw-requestid"]


def test_tasks_end_to_end_for_two_users(client: httpx.Client, alice: str, bob: str):
    a = bearer(mint(alice, email=f"{alice}@example.com"))
    b = bearer(mint(bob))

    # create (both the literal `me` and the caller's own id name the caller)
    created = client.post("/api/me/tasks", headers=a, json={"title": "  Write report ", "tags": ["work", "work"]})
    assert created.status_code == 201, created.text
    task = created.json()
    assert (task["title"], task["tags"], task["completed"], task["version"]) == ("Write report", ["work"], False, 1)
    assert created.headers["location"] == f"/api/me/tasks/{task['id']}"
    assert created.headers["etag"] == '"1"'
    other = client.post(f"/api/{alice}/tasks", headers=a, json={"title": "Second", "priority": "high"}).json()
    bobs = client.post("/api/me/tasks", headers=b, json={"title": "Bob's own"}).json()

    # list: each sees only their own
    listed = client.get("/api/me/tasks", headers=a).json()
    assert {t["id"] for t in listed["items"]} == {task["id"], other["id"]}
    assert listed["next_cursor"] is None
    assert [t["id"] for t in client.get("/api/me/tasks", headers=b).json()["items"]] == [bobs["id"]]

    # get
    got = client.get(f"/api/me/tasks/{task['id']}", headers=a)
    assert (got.status_code, got.json()["id"], got.headers["etag"]) == (200, task["id"], '"1"')

    # update (PATCH): only the fields sent
    patched = client.patch(f"/api/me/tasks/{task['id']}", headers=a, json={"description": "by Friday"})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["description"], patched.json()["tags"], patched.json()["version"]) == ("by Friday", ["work"], 2)

    # a stale If-Match changes nothing
    stale = client.patch(f"/api/me/tasks/{task['id']}", headers={**a, "If-Match": '"1"'}, json={"title": "x"})
    assert stale.status_code == 412
    assert stale.headers["etag"] == '"2"'

    # replace (PUT): absent optional fields go back to their defaults
    replaced = client.put(f"/api/me/tasks/{task['id']}", headers=a, json={"title": "Write the report"})
    assert replaced.status_code == 200, replaced.text
    body = replaced.json()
    assert (body["title"], body["description"], body["tags"], body["priority"], body["version"]) == (
        "Write the report", None, [], "medium", 3,
    )

    # complete: no body toggles, a body sets
    toggled = client.patch(f"/api/me/tasks/{task['id']}/complete", headers=a)
    assert toggled.status_code == 200, toggled.text
    assert toggled.json()["completed"] is True and toggled.json()["completed_at"] is not None
    toggled_back = client.patch(f"/api/me/tasks/{task['id']}/complete", headers=a).json()
    assert toggled_back["completed"] is False and toggled_back["completed_at"] is None
    set_true = client.patch(f"/api/me/tasks/{task['id']}/complete", headers=a, json={"completed": True}).json()
    assert set_true["completed"] is True
    done = client.get("/api/me/tasks", headers=a, params={"status": "completed"}).json()
    assert [t["id"] for t in done["items"]] == [task["id"]]

    # delete: to the trash, invisible elsewhere
    deleted = client.delete(f"/api/me/tasks/{task['id']}", headers=a)
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert client.get(f"/api/me/tasks/{task['id']}", headers=a).status_code == 404
    trash = client.get("/api/me/trash", headers=a).json()
    assert [t["id"] for t in trash["items"]] == [task["id"]]
    assert client.get("/api/me/trash", headers=b).json()["items"] == []

    # restore
    restored = client.post(f"/api/me/trash/{task['id']}/restore", headers=a)
    assert restored.status_code == 200, restored.text
    assert client.get(f"/api/me/tasks/{task['id']}", headers=a).status_code == 200
    assert client.get("/api/me/trash", headers=a).json()["items"] == []


def test_a_user_cannot_reach_another_users_task(client: httpx.Client, alice: str, bob: str):
    a, b = bearer(mint(alice)), bearer(mint(bob))
    task = client.post("/api/me/tasks", headers=a, json={"title": "Alice's secret"}).json()
    path = f"/api/me/tasks/{task['id']}"

    for method, url, body in [
        ("GET", path, None),
        ("PATCH", path, {"title": "mine now"}),
        ("PUT", path, {"title": "mine now"}),
        ("PATCH", f"{path}/complete", None),
        ("DELETE", path, None),
        ("POST", f"/api/me/trash/{task['id']}/restore", None),
    ]:
        reply = client.request(method, url, headers=b, json=body)
        assert reply.status_code == 404, (method, url, reply.text)
        assert reply.headers["content-type"] == "application/problem+json"
        assert reply.json()["code"] == "not_found"

    # Naming alice in the path with bob's token: 403, before anything is read.
    for method, url in [("GET", f"/api/{alice}/tasks"), ("GET", f"/api/{alice}/tasks/{task['id']}"),
                        ("POST", f"/api/{alice}/tasks"), ("GET", f"/api/{alice}/categories")]:
        reply = client.request(method, url, headers=b, json={"title": "x"} if method == "POST" else None)
        assert reply.status_code == 403, (method, url, reply.text)
        assert reply.json()["code"] == "forbidden"

    # Alice's task is untouched.
    assert client.get(path, headers=a).json()["title"] == "Alice's secret"


def test_categories_end_to_end(client: httpx.Client, alice: str, bob: str):
    a, b = bearer(mint(alice)), bearer(mint(bob))
    created = client.post("/api/me/categories", headers=a, json={"name": "Work", "color": "#336699"})
    assert created.status_code == 201, created.text
    work = created.json()
    assert (work["name"], work["color"], work["task_count"], work["version"]) == ("Work", "#336699", 0, 1)
    home = client.post(f"/api/{alice}/categories", headers=a, json={"name": "home"}).json()
    assert client.post("/api/me/categories", headers=a, json={"name": "WORK"}).status_code == 409

    client.post("/api/me/tasks", headers=a, json={"title": "In work", "category_id": work["id"]})
    listed = client.get("/api/me/categories", headers=a).json()
    assert [(c["name"], c["task_count"]) for c in listed["items"]] == [("home", 0), ("Work", 1)]
    assert client.get("/api/me/categories", headers=b).json()["items"] == []

    got = client.get(f"/api/me/categories/{work['id']}", headers=a)
    assert (got.status_code, got.json()["task_count"]) == (200, 1)
    assert client.get(f"/api/me/categories/{work['id']}", headers=b).status_code == 404

    patched = client.patch(f"/api/me/categories/{home['id']}", headers=a, json={"color": "#aabbcc"})
    assert (patched.status_code, patched.json()["color"], patched.json()["version"]) == (200, "#aabbcc", 2)
    assert client.patch(f"/api/me/categories/{home['id']}", headers=b, json={"color": "#000000"}).status_code == 404

    assert client.delete(f"/api/me/categories/{work['id']}", headers=b).status_code == 404
    deleted = client.delete(f"/api/me/categories/{work['id']}", headers=a)
    assert deleted.status_code == 204
    assert client.get(f"/api/me/categories/{work['id']}", headers=a).status_code == 404
    # its task is uncategorised, not deleted
    tasks = client.get("/api/me/tasks", headers=a).json()["items"]
    assert [(t["title"], t["category_id"]) for t in tasks] == [("In work", None)]


def test_unknown_routes_and_methods_are_the_gateways_404(client: httpx.Client, alice: str):
    a = bearer(mint(alice))
    for method, path, headers in [
        ("GET", "/nope", {}),
        ("GET", "/api/me/tasks/", a),  # a trailing slash is another path
        ("GET", "/api/me/tasks/1/2/3", a),
        ("PUT", "/api/me/tasks", a),  # a known path, an unknown method
        ("DELETE", "/health", {}),
        ("POST", "/health", {}),
        ("HEAD", "/health", {}),
    ]:
        reply = client.request(method, path, headers=headers)
        assert reply.status_code == 404, (method, path)
        assert reply.headers["content-type"] == "application/json"
        if method != "HEAD":
            assert reply.json() == {"message": "Not Found"}, (method, path)


def test_the_gateway_serves_its_jwks_openapi_and_docs(client: httpx.Client):
    jwks = client.get("/.well-known/jwks.json").json()
    assert [k["kty"] for k in jwks["keys"]] == ["RSA"] and "d" not in jwks["keys"][0]
    document = client.get("/openapi.json").json()
    assert document["servers"][0]["url"] == str(client.base_url).rstrip("/")
    assert document["security"]
    assert document["paths"]["/health"]["get"]["security"] == []
    assert "/api/{user_id}/tasks" in document["paths"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower() and "/openapi.json" in docs.text


def test_cors_preflight_is_answered_by_the_gateway(client: httpx.Client, server):
    before = server.count_invocations("CreateTask")
    preflight = client.options(
        "/api/me/tasks",
        headers={"Origin": CORS_ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == CORS_ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"]
    assert preflight.headers["access-control-max-age"] == "600"
    assert server.count_invocations("CreateTask") == before

    # A browser MCP client sends the protocol version on every request (Streamable HTTP).
    mcp = client.options(
        "/mcp",
        headers={"Origin": CORS_ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type,mcp-protocol-version"},
    )
    assert mcp.status_code == 204
    assert "mcp-protocol-version" in mcp.headers["access-control-allow-headers"].split(",")

    stranger = client.options("/api/me/tasks", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in stranger.headers


def test_cors_headers_on_actual_responses(client: httpx.Client, alice: str):
    reply = client.post("/api/me/tasks", headers={**bearer(mint(alice)), "Origin": CORS_ORIGIN}, json={"title": "cors"})
    assert reply.status_code == 201
    assert reply.headers["access-control-allow-origin"] == CORS_ORIGIN
    assert "etag" in reply.headers["access-control-expose-headers"]
    refused = client.get("/api/me/tasks", headers={"Origin": CORS_ORIGIN})
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == CORS_ORIGIN
    assert "access-control-allow-origin" not in client.get("/health", headers={"Origin": "https://evil.example"}).headers


def test_concurrent_requests_run_the_handlers_side_by_side(client: httpx.Client, alice: str):
    from concurrent.futures import ThreadPoolExecutor

    a = bearer(mint(alice))
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda i: client.post("/api/me/tasks", headers=a, json={"title": f"t{i}"}), range(24)))
    assert [r.status_code for r in replies] == [201] * 24
    listed = client.get("/api/me/tasks", headers=a, params={"limit": 100}).json()["items"]
    assert sorted(t["title"] for t in listed) == sorted(f"t{i}" for i in range(24))
