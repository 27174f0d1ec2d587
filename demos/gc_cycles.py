"""CPython's garbage collection: reference counts, a cycle only `gc.collect()` frees, generations.

    python -m demos.gc_cycles [--param cycle_size=2]

Following the article `python-gc` (CPython 3.11): `sys.getrefcount` rises and falls as names,
container slots and arguments come and go; a ring of `cycle_size` objects, watched through weak
references, outlives `del` while automatic collection is off and dies only in `gc.collect()`, whose
return value counts at least the ring; the thresholds; the per-generation counters; an object
promoted generation by generation (`gc.get_objects(generation=g)`). The collector's state (enabled,
thresholds, debug flags) is saved first and restored at the end, which is checked too.
Typical duration: well under a second.
"""
from __future__ import annotations

import gc
import sys
import weakref

from demos.harness import Report, main_for
from demos.spec import DemoSpec, Param

SPEC = DemoSpec(
    id="gc-cycles",
    title="垃圾回收：引用计数、循环引用与分代",
    summary="观察 sys.getrefcount 的增减，验证关闭自动回收时循环引用在 del 后仍存活、只有 gc.collect() 能回收，以及对象逐代晋升。",
    articles=("python-gc",),
    module="demos.gc_cycles",
    params=(Param("cycle_size", int, 2, "环中对象的个数", min=1, max=1000),),
    timeout_s=60,
)

DEFAULT_THRESHOLD_311 = (700, 10, 10)


class Box:
    pass


class Node:
    def __init__(self, name):
        self.name = name
        self.partner = None


def make_ring(size: int) -> list[weakref.ref]:
    """Link `size` nodes into a ring (size 1: a node that is its own partner), drop every name for
    them and return weak references only: nothing outside the ring refers to it any more."""
    nodes = [Node(f"n{i}") for i in range(size)]
    for i, node in enumerate(nodes):
        node.partner = nodes[(i + 1) % size]
    watchers = [weakref.ref(n) for n in nodes]
    del nodes, node
    return watchers


class Resource:
    """The article's PEP 442 example: a finalizer that reads its peer, which must still be intact."""

    def __init__(self, name, events):
        self.name, self.peer, self.events = name, None, events

    def __del__(self):
        self.events.append(f"__del__ {self.name}，对方是 {self.peer.name}")


def finalizer_cycle() -> tuple[list[str], list[str], int, int]:
    """Two Resources in a cycle, names deleted, then gc.collect() (call with automatic collection off).
    Returns (events before collect, events after, collect()'s count, len(gc.garbage))."""
    events: list[str] = []
    x, y = Resource("x", events), Resource("y", events)
    x.peer, y.peer = y, x
    del x, y
    before = list(events)
    found = gc.collect()
    return before, events, found, len(gc.garbage)


def refcount_steps() -> list[int]:
    """The article's sequence: getrefcount counts its own argument too."""
    b = Box()
    steps = [sys.getrefcount(b)]           # name b + argument
    alias = b
    steps.append(sys.getrefcount(b))       # + alias
    items = [b, b, b]
    steps.append(sys.getrefcount(b))       # + three list slots
    del items
    alias = None                           # noqa: F841 - rebinding drops the reference
    steps.append(sys.getrefcount(b))
    steps.append(sys.getrefcount(Box()))   # a temporary: only the argument
    return steps


def generation_of(obj) -> int | None:
    for g in range(3):
        if any(o is obj for o in gc.get_objects(generation=g)):
            return g
    return None


def run(report: Report, cycle_size: int = 2) -> None:
    report.device = "cpu"
    saved = (gc.isenabled(), gc.get_threshold(), gc.get_debug())
    try:
        gc.disable()  # automatic collections would make every observation below a race
        gc.set_debug(0)
        gc.collect()

        steps = refcount_steps()
        report.log(f"getrefcount: new {steps[0]}, +alias {steps[1]}, +3 list slots {steps[2]}, "
                   f"after del/rebind {steps[3]}, temporary {steps[4]}")

        # A ring survives del (its members still refer to each other) until the cycle detector runs.
        watchers = make_ring(cycle_size)
        alive_after_del = sum(w() is not None for w in watchers)
        found = gc.collect()
        alive_after_collect = sum(w() is not None for w in watchers)
        report.metric("collected", found)
        report.log(f"ring of {cycle_size}: alive after del {alive_after_del}, gc.collect() -> {found}, "
                   f"alive after collect {alive_after_collect}")

        threshold = gc.get_threshold()
        gc.set_threshold(1000, 15, 15)
        changed = gc.get_threshold()
        gc.set_threshold(*threshold)
        report.metric("threshold", list(threshold))
        report.log(f"gc.get_threshold() = {threshold}; set_threshold(1000, 15, 15) -> {changed}")

        # The counters: a gen-0 collection bumps count[1]; a gen-1 collection moves that to count[2].
        gc.collect()
        counts = []
        gc.collect(0)
        counts.append(gc.get_count()[1:])
        gc.collect(1)
        counts.append(gc.get_count()[1:])
        report.log(f"get_count()[1:] after collect(0): {counts[0]}, after collect(1): {counts[1]}")

        # Promotion: survivors move one generation older per collection of their generation.
        data = ["payload"]
        path = [generation_of(data)]
        for gen in (0, 1, 2):
            gc.collect(gen)
            path.append(generation_of(data))
        report.metric("generations", path)
        report.log(f"generation of a new list: created {path[0]}, after collect(0) {path[1]}, "
                   f"after collect(1) {path[2]}, after collect(2) {path[3]}")

        # PEP 442: a cycle whose objects define __del__ is finalized (peers intact) and freed, not leaked.
        fin_before, fin_after, fin_found, garbage_len = finalizer_cycle()
        report.log(f"cycle with __del__: before collect {fin_before}; collect() -> {fin_found}; {fin_after}; "
                   f"len(gc.garbage) = {garbage_len}")
    finally:
        gc.set_threshold(*saved[1])
        gc.set_debug(saved[2])
        if saved[0]:
            gc.enable()
    restored = (gc.isenabled(), gc.get_threshold(), gc.get_debug())

    report.check("getrefcount 随引用增减", steps == [2, 3, 6, 2, 1], f"{steps} (oracle: the article's counts [2, 3, 6, 2, 1]: name + argument, +1 alias, "
                 f"+3 slots, back, temporary)")
    report.check("关闭自动回收时，环在 del 之后仍存活", alive_after_del == cycle_size,
                 f"{alive_after_del}/{cycle_size} alive (oracle: weak references, which keep nothing alive)")
    report.check("gc.collect() 回收整个环", alive_after_collect == 0 and found >= cycle_size,
                 f"collect() returned {found} (≥ {cycle_size}), {alive_after_collect} alive afterwards (oracle: weak "
                 f"references all dead)")
    report.check("3.11 默认阈值 (700, 10, 10)，set_threshold 生效",
                 threshold == DEFAULT_THRESHOLD_311 and changed == (1000, 15, 15),
                 f"{threshold}, then {changed} (oracle: the 3.11 defaults quoted in the article)")
    report.check("第 0/1 代回收计数器", counts == [(1, 0), (0, 1)], f"{counts} (oracle: the article's counter rules give [(1, 0), (0, 1)])")
    report.check("存活对象逐代晋升 0 → 1 → 2", path == [0, 1, 2, 2], f"{path} (oracle: gc.get_objects(generation=g) membership, expected [0, 1, 2, 2])")
    report.check("带 __del__ 的环（PEP 442）：collect 时才终结，对方仍完整，不进 gc.garbage",
                 fin_before == [] and sorted(fin_after) == ["__del__ x，对方是 y", "__del__ y，对方是 x"]
                 and fin_found >= 2 and garbage_len == 0,
                 f"before collect {fin_before}, after {fin_after}, collect() {fin_found}, gc.garbage {garbage_len} "
                 f"(oracle: the article's output, section 终结器与循环)")
    report.check("回收器状态已恢复", restored == saved, f"{restored} == {saved} (oracle: the state saved first)")


def main(argv=None):
    raise SystemExit(main_for(SPEC, run, argv))


if __name__ == "__main__":
    main()
