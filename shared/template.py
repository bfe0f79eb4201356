"""template.yaml as data: the one list of functions and routes, and the one reader of the template.

The command line, the local gateway, the OpenAPI assembly and the tests all read the
routes from here, so a route added to the template is served, documented and tested
without a second list to keep in step; each function's timeout and the HTTP API's CORS
configuration are read here too. Development tooling only: no function imports it.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
DEFAULT_TIMEOUT_SECONDS = 10.0  # a function's when neither it nor Globals set `Timeout`


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation short forms (`!Ref X`, `!If [...]`) as their long forms."""


def _intrinsic(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _intrinsic)
_loading = threading.Lock()  # the local gateway and tests load functions from many threads


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    public: bool  # no authorizer (`Auth: {Authorizer: NONE}`)


@dataclass(frozen=True)
class Function:
    logical_id: str
    code_dir: Path
    handler: str  # "module.attribute"
    routes: tuple[Route, ...]
    schedules: tuple[str, ...]  # logical ids of Schedule/ScheduleV2 events
    timeout: float = DEFAULT_TIMEOUT_SECONDS  # seconds: its own `Timeout`, else Globals'
    # Each schedule's expression (`rate(...)`/`cron(...)`), in the order of `schedules`:
    # a `!Ref` to a parameter is that parameter's default (what `todo-api serve` runs).
    schedule_expressions: tuple[str, ...] = ()

    @property
    def module_path(self) -> Path:
        return self.code_dir / (self.handler.rsplit(".", 1)[0].replace(".", "/") + ".py")

    def load_module(self) -> ModuleType:
        """Imports the function's own file under a unique name (every one is `app.py`)."""
        name = f"functions_{self.logical_id}"
        with _loading:
            if name not in sys.modules:
                spec = importlib.util.spec_from_file_location(name, self.module_path)
                assert spec is not None and spec.loader is not None
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                sys.modules[name] = module
        return sys.modules[name]

    def load_handler(self) -> Any:
        return getattr(self.load_module(), self.handler.rsplit(".", 1)[1])


@lru_cache(maxsize=4)
def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


def functions(path: Path = TEMPLATE_PATH) -> dict[str, Function]:
    """Every `AWS::Serverless::Function` of the template, by logical id."""
    template = load_template(path)
    default_timeout = ((template.get("Globals") or {}).get("Function") or {}).get("Timeout", DEFAULT_TIMEOUT_SECONDS)
    found: dict[str, Function] = {}
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties", {})
        routes, schedules, expressions = [], [], []
        for event_id, event in (props.get("Events") or {}).items():
            event_props = event.get("Properties") or {}
            if event.get("Type") == "HttpApi":
                authorizer = (event_props.get("Auth") or {}).get("Authorizer")
                routes.append(Route(event_props["Method"].upper(), event_props["Path"], public=authorizer == "NONE"))
            elif event.get("Type") in ("Schedule", "ScheduleV2"):
                schedules.append(event_id)
                expressions.append(_default_value(template, event_props.get("Schedule") or event_props.get("ScheduleExpression")))
        timeout = props.get("Timeout", default_timeout)
        found[logical_id] = Function(
            logical_id=logical_id,
            code_dir=(path.parent / props["CodeUri"]).resolve(),
            handler=props["Handler"],
            routes=tuple(routes),
            schedules=tuple(schedules),
            timeout=float(timeout) if isinstance(timeout, (int, float, str)) else DEFAULT_TIMEOUT_SECONDS,
            schedule_expressions=tuple(expressions),
        )
    return found


def _default_value(template: dict[str, Any], value: Any) -> str:
    """A property's value as written, a `Ref` to a parameter being that parameter's default."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        parameter = (template.get("Parameters") or {}).get(value["Ref"]) or {}
        if "Default" not in parameter:
            raise ValueError(f"the schedule refers to {value['Ref']!r}, which has no default")
        return str(parameter["Default"])
    if not isinstance(value, str):
        raise ValueError(f"a schedule expression this reader does not know: {value!r}")
    return value


def http_routes(path: Path = TEMPLATE_PATH) -> list[tuple[Route, Function]]:
    return [(route, function) for function in functions(path).values() for route in function.routes]


@dataclass(frozen=True)
class CorsConfiguration:
    """The HttpApi's CorsConfiguration but its origins (a stack parameter: when it is empty,
    CORS is off)."""

    allow_headers: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None
    allow_credentials: bool = False


def cors_configuration(path: Path = TEMPLATE_PATH) -> CorsConfiguration:
    """The HttpApi's CorsConfiguration as written (the branch used when CORS is on)."""
    config: Any = {}
    for resource in load_template(path).get("Resources", {}).values():
        if resource.get("Type") != "AWS::Serverless::HttpApi":
            continue
        config = (resource.get("Properties") or {}).get("CorsConfiguration")
        if isinstance(config, dict) and "Fn::If" in config:
            config = config["Fn::If"][1]
        break
    if not isinstance(config, dict):
        config = {}

    def strings(name: str) -> tuple[str, ...]:
        value = config.get(name) or ()
        return tuple(str(v) for v in value) if isinstance(value, list) else ()

    max_age = config.get("MaxAge")
    return CorsConfiguration(
        allow_headers=strings("AllowHeaders"),
        allow_methods=strings("AllowMethods"),
        expose_headers=strings("ExposeHeaders"),
        max_age=int(max_age) if isinstance(max_age, (int, str)) and str(max_age).isdigit() else None,
        allow_credentials=config.get("AllowCredentials") is True,
    )
