"""template.yaml, the functions on disk, events/ and the OpenAPI document agree."""

from __future__ import annotations

from shared.openapi import build_openapi
from shared.template import REPO_ROOT, functions, http_routes


def _missing(expected: set, actual: set, where: str) -> list[str]:
    return [f"{item} is missing from {where}" for item in sorted(expected - actual)]


def test_routes_functions_and_openapi_paths_are_the_same_set():
    template_routes = {(route.method, route.path) for route, _ in http_routes()}
    function_dirs = {path.parent.name for path in (REPO_ROOT / "functions").glob("*/app.py")}
    template_dirs = {function.code_dir.name for function in functions().values()}
    openapi_routes = {(method.upper(), path) for path, ops in build_openapi()["paths"].items() for method in ops}
    app_routes = set()
    for function in functions().values():
        if not function.routes:
            continue  # scheduled (Cleanup): no HTTP app
        for route in function.load_module().app.routes:
            app_routes |= {(method, route.path) for method in route.methods if method != "HEAD"}

    problems = (
        _missing(function_dirs, template_dirs, "template.yaml (a folder in functions/ has no function)")
        + _missing(template_dirs, function_dirs, "functions/ (the template names a folder that does not exist)")
        + _missing(template_routes, openapi_routes, "the OpenAPI document")
        + _missing(openapi_routes, template_routes, "template.yaml's HttpApi events")
        + _missing(template_routes, app_routes, "the functions' own FastAPI apps")
        + _missing(app_routes, template_routes, "template.yaml (a function serves a route the gateway never sends)")
    )
    assert not problems, "\n".join(problems)


def test_each_function_serves_exactly_the_routes_the_template_sends_it():
    for function in functions().values():
        if not function.routes:
            continue
        served = {
            (method, route.path) for route in function.load_module().app.routes for method in route.methods if method != "HEAD"
        }
        assert served == {(r.method, r.path) for r in function.routes}, function.logical_id


def test_every_http_function_has_an_example_event():
    events = {path.stem for path in (REPO_ROOT / "events").glob("*.json")}
    missing = {f.logical_id for f in functions().values() if f.routes} - events
    assert not missing, f"events/ has no example event for {sorted(missing)}"
