"""template.yaml as data: the one list of functions and routes.

The command line, the local gateway, the OpenAPI assembly and the tests all read the
routes from here, so a route added to the template is served, documented and tested
without a second list to keep in step. Development tooling only: no function imports it.
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
    found: dict[str, Function] = {}
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties", {})
        routes, schedules = [], []
        for event_id, event in (props.get("Events") or {}).items():
            event_props = event.get("Properties") or {}
            if event.get("Type") == "HttpApi":
                authorizer = (event_props.get("Auth") or {}).get("Authorizer")
                routes.append(Route(event_props["Method"].upper(), event_props["Path"], public=authorizer == "NONE"))
            elif event.get("Type") in ("Schedule", "ScheduleV2"):
                schedules.append(event_id)
        found[logical_id] = Function(
            logical_id=logical_id,
            code_dir=(path.parent / props["CodeUri"]).resolve(),
            handler=props["Handler"],
            routes=tuple(routes),
            schedules=tuple(schedules),
        )
    return found


def http_routes(path: Path = TEMPLATE_PATH) -> list[tuple[Route, Function]]:
    return [(route, function) for function in functions(path).values() for route in function.routes]
