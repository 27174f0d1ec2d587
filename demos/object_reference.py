"""Objects, names and references: identity/type/value, `is` vs `==`, call by sharing, `del`.

    python -m demos.object_reference

The article `python-object-reference`'s claims, each checked on the running interpreter: names are
bound to objects (identity, type, value); `is` compares identity and `==` calls `__eq__` (equal but
distinct lists, a class defining `__eq__`, one whose `__eq__` says yes to everything against `None`,
NaN that is not equal to itself yet found in a list by identity, CPython's small-int cache as an
implementation detail); assignment never copies (aliases, shallow vs deep copies, `[[0] * 2] * 3`);
arguments are passed by sharing (mutation is seen by the caller, rebinding is not); `del` removes a
name, and the object goes only with its last reference. Typical duration: well under a second.
"""
from __future__ import annotations

import copy
import math
import weakref

from demos.harness import Report, main_for
from demos.spec import DemoSpec

SPEC = DemoSpec(
    id="object-reference",
    title="对象与引用：身份、相等与共享传参",
    summary="逐项验证对象的身份/类型/值、is 与 == 的区别（自定义 __eq__、NaN、None）、赋值不复制对象、共享传参中修改与重新绑定的差别，以及 del 只删除名字。",
    articles=("python-object-reference", "python-mutable-immutable"),
    module="demos.object_reference",
    timeout_s=60,
)


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        if not isinstance(other, Point):
            return NotImplemented
        return (self.x, self.y) == (other.x, other.y)

    def __hash__(self):
        return hash((self.x, self.y))


class Plain:
    def __init__(self, v):
        self.v = v


class Weird:
    def __eq__(self, other):
        return True  # "equal" to everything, None included

    __hash__ = None


class Resource:
    pass


def mutate(items):
    items.append("added")          # changes the shared object


def rebind(items):
    items = ["brand", "new"]       # binds the local name only
    items.append("added")


def inc(n, original):
    """Returns (was the same object on entry, is still the same after n += 1, new value)."""
    same_on_entry = n is original
    n += 1
    return same_on_entry, n is original, n


def identity_type_value() -> dict[str, bool]:
    a = 8
    b = a
    return {"same_identity": id(a) == id(b) and a is b, "type_is_int": type(a) is int,
            "value": a + 1 == 9, "int_is_a_type": type(int) is type,
            "none_has_a_type": type(None).__name__ == "NoneType", "functions_are_objects": callable(print)}


def is_vs_eq() -> dict[str, tuple]:
    a, b = [1, 2, 3], [1, 2, 3]
    c = a
    p, q = Point(1, 2), Point(1, 2)
    w = Weird()
    nan = float("nan")
    return {
        "equal_lists": (a == b, a is b, a is c),
        "custom_eq": (p == q, p is q, Plain(1) == Plain(1), p == (1, 2)),
        "none": (w == None, w is None),  # noqa: E711 - the point of the example
        "nan": (nan == nan, nan is nan, [nan] == [nan], nan in [nan], math.isnan(nan)),
    }


def small_int_cache() -> tuple[bool, bool, bool]:
    """CPython keeps one object per int in -5..256; outside it, equal ints are distinct objects."""
    x, y = int("256"), int("256")
    u, v = int("1000"), int("1000")
    return x is y, u == v, u is v


def aliasing_and_copies() -> dict[str, object]:
    a = [1, 2, 3]
    b = a
    b.append(4)
    c = a.copy()
    c.append(5)
    grid = [[0, 0], [0, 0]]
    shallow, deep = copy.copy(grid), copy.deepcopy(grid)
    grid[0][0] = 9
    rows = [[0] * 2] * 3
    rows[0][0] = 1
    return {"alias": (a, a is b), "copy": (a, c), "shallow_deep": (shallow[0][0], deep[0][0]),
            "rows": rows, "rows_shared": all(r is rows[0] for r in rows)}


def call_by_sharing() -> dict[str, object]:
    data = ["orig"]
    mutate(data)
    after_mutate = list(data)
    rebind(data)
    after_rebind = list(data)
    x = 1000
    same_on_entry, same_after, y = inc(x, x)
    return {"after_mutate": after_mutate, "after_rebind": after_rebind,
            "inc": (same_on_entry, same_after, x, y)}


def del_removes_name() -> list[str]:
    events = []
    r = Resource()
    other = r
    weakref.finalize(r, events.append, "finalized")
    del r
    events.append("after del r")
    del other
    events.append("after del other")
    return events


def run(report: Report) -> None:
    report.device = "cpu"
    itv = identity_type_value()
    report.log(f"a = 8; b = a: {itv}")
    eq = is_vs_eq()
    report.log(f"[1,2,3] == [1,2,3], is, a is c: {eq['equal_lists']}")
    report.log(f"Point(1,2) == Point(1,2), is, Plain(1) == Plain(1), Point(1,2) == (1,2): {eq['custom_eq']}")
    report.log(f"Weird() == None, is None: {eq['none']}")
    report.log(f"nan == nan, nan is nan, [nan] == [nan], nan in [nan], isnan: {eq['nan']}")
    cache = small_int_cache()
    report.log(f"int('256') is int('256'): {cache[0]}; int('1000') ==, is: {cache[1]}, {cache[2]}")
    al = aliasing_and_copies()
    report.log(f"aliasing and copies: {al}")
    share = call_by_sharing()
    report.log(f"mutate(data) -> {share['after_mutate']}; rebind(data) -> {share['after_rebind']}")
    report.log(f"inc(x, x): same on entry, same after n += 1, x, result = {share['inc']}")
    events = del_removes_name()
    report.log(f"del r; del other -> {events}")

    report.check("对象有身份、类型和值，b = a 绑定同一对象", all(itv.values()),
                 f"{itv} (oracle: id(), type() and the article's values)")
    report.check("内容相同的两个列表：== 为 True，is 为 False", eq["equal_lists"] == (True, False, True),
                 f"{eq['equal_lists']} (oracle: the article's output (True, False, True))")
    report.check("== 由 __eq__ 决定（未定义时退化为比较身份，NotImplemented 时为 False）",
                 eq["custom_eq"] == (True, False, False, False),
                 f"{eq['custom_eq']} (oracle: the data model: object.__eq__ is identity, NotImplemented both ways → False)")
    report.check("与 None 比较用 is：__eq__ 可以欺骗 ==", eq["none"] == (True, False),
                 f"{eq['none']} (oracle: None is a singleton; `is` cannot be overloaded)")
    report.check("NaN 不等于自身，但容器先比较身份", eq["nan"] == (False, True, True, True, True),
                 f"{eq['nan']} (oracle: IEEE 754 NaN ≠ NaN; containers test identity first)")
    report.check("小整数缓存是 CPython 实现细节", cache == (True, True, False),
                 f"{cache} (oracle: CPython caches -5..256, quoted in the article)")
    report.check("赋值不复制对象（别名、浅复制与深复制）",
                 al["alias"] == ([1, 2, 3, 4], True) and al["copy"] == ([1, 2, 3, 4], [1, 2, 3, 4, 5])
                 and al["shallow_deep"] == (9, 0),
                 f"{al['alias']}, {al['copy']}, {al['shallow_deep']} (oracle: values worked out by hand in the article)")
    report.check("[[0] * 2] * 3 的三行是同一个列表", al["rows"] == [[1, 0]] * 3 and al["rows_shared"],
                 f"{al['rows']} (oracle: one inner list referenced three times → [[1, 0]] × 3)")
    report.check("共享传参：修改可变参数调用者可见", share["after_mutate"] == ["orig", "added"],
                 f"{share['after_mutate']} (oracle: ['orig'] plus the appended item)")
    report.check("共享传参：重新绑定参数调用者不可见", share["after_rebind"] == ["orig", "added"],
                 f"{share['after_rebind']} (oracle: unchanged from before the call)")
    report.check("不可变参数：进入函数时是同一对象，+= 后是新对象", share["inc"] == (True, False, 1000, 1001),
                 f"{share['inc']} (oracle: (True, False, 1000, 1001) by hand)")
    report.check("del 只删除名字，最后一个引用消失时才回收",
                 events == ["after del r", "finalized", "after del other"],
                 f"{events} (oracle: weakref.finalize runs exactly when the last reference goes)")


def main(argv=None):
    raise SystemExit(main_for(SPEC, run, argv))


if __name__ == "__main__":
    main()
