"""The demo catalogue: demo id -> module. Each module defines `SPEC` (a DemoSpec) at import time without
heavy imports, a pure core function `run(report, **params)`, and `main()` for `python -m demos.<name>`.

This is the one list of demo ids; articles' front matter is validated against it.
"""
from __future__ import annotations

import importlib

from demos.spec import DemoSpec

MODULES = {
    "edm-sampling": "demos.edm_sampling",
    "sde-vs-ode": "demos.sde_vs_ode",
    "ddp-launch": "demos.ddp_launch",
    "pdb-transcript": "demos.pdb_transcript",
    "list-tuple": "demos.list_tuple",
    "generator": "demos.generator",
    "mutability": "demos.mutability",
    "gc-cycles": "demos.gc_cycles",
    "mro": "demos.mro",
    "object-reference": "demos.object_reference",
    "tf-export": "demos.tf_export",
    "autograd": "demos.autograd",
}
DEMO_IDS = tuple(MODULES)


class UnknownDemo(KeyError):
    def __str__(self) -> str:
        return f"unknown demo '{self.args[0]}'; known: {', '.join(DEMO_IDS)}"


def get(demo_id: str) -> DemoSpec:
    if demo_id not in MODULES:
        raise UnknownDemo(demo_id)
    spec = importlib.import_module(MODULES[demo_id]).SPEC
    assert spec.id == demo_id, f"{MODULES[demo_id]}.SPEC.id is {spec.id!r}, registered as {demo_id!r}"
    return spec


def all_specs() -> list[DemoSpec]:
    return [get(i) for i in DEMO_IDS]
