"""Mutable vs immutable objects: identity across in-place changes, aliasing, `+=`, arguments, defaults.

    python -m demos.mutability

Every observation compares identities while both objects are alive (`x is old`, never a stored `id()`
of a dead object, whose address CPython may reuse). The examples and names follow the article
`python-mutable-immutable`: in-place mutation keeps the object, "changing" an immutable makes a new
one, aliases see mutations but not rebinding, `+=` is `__iadd__` on a list and `x = x + y` on a tuple,
arguments are shared the same way, a mutable default is shared between calls, and what is hashable.
Typical duration: well under a second.
"""
from __future__ import annotations

from demos.harness import Report, main_for
from demos.spec import DemoSpec

SPEC = DemoSpec(
    id="mutability",
    title="可变与不可变：身份、别名与 +=",
    summary="验证原地修改时身份不变、不可变对象的“修改”产生新对象、别名与函数参数的共享、列表与元组的 +=、可变默认参数陷阱和可哈希性。",
    articles=("python-mutable-immutable", "python-object-reference"),
    module="demos.mutability",
    timeout_s=60,
)


def add_item(bucket, item):
    """Mutates the caller's list: the parameter is bound to the same object."""
    bucket.append(item)
    return bucket


def rebind(bucket):
    """Rebinds the local name only: the caller's list is untouched."""
    bucket = [100, 200]
    return bucket


def increment(n):
    n += 1
    return n


def extend_tuple(t):
    t += (4,)
    return t


def append_to(item, target=[]):  # noqa: B006 - the pitfall this demo shows
    target.append(item)
    return target


def append_to_fixed(item, target=None):
    if target is None:
        target = []
    target.append(item)
    return target


def in_place_mutations() -> dict[str, bool]:
    """Container kind -> still the same object after in-place operations."""
    items = [1, 2, 3]
    old = items
    items.append(4)
    items.extend([5, 6])
    items.remove(1)
    items.sort(reverse=True)
    items[0] = 60
    items += [7]
    same_list = items is old and items == [60, 5, 4, 3, 2, 7]

    config = {"debug": False}
    old_config = config
    config["debug"] = True
    config.update(level=3)
    same_dict = config is old_config and config == {"debug": True, "level": 3}

    tags = {"a"}
    old_tags = tags
    tags |= {"b"}
    buf = bytearray(b"cat")
    old_buf = buf
    buf[0] = ord("b")
    return {"list": same_list, "dict": same_dict, "set": tags is old_tags and tags == {"a", "b"},
            "bytearray": buf is old_buf and buf == bytearray(b"bat")}


def immutable_changes() -> dict[str, bool]:
    """Immutable kind -> the "changed" value is a new object and the old one kept its value."""
    x = 1000
    old_x = x
    x = x + 1
    word = "hello"
    old_word = word
    word += " world"
    t = (1, 2)
    old_t = t
    t += (3,)
    f = frozenset({1})
    old_f = f
    f |= {2}
    b = b"cat"
    old_b = b
    b += b"s"
    return {"int": x is not old_x and old_x == 1000,
            "str": word is not old_word and old_word == "hello",
            "tuple": t is not old_t and old_t == (1, 2),
            "frozenset": f is not old_f and old_f == frozenset({1}),
            "bytes": b is not old_b and old_b == b"cat"}


def plus_vs_iadd() -> dict[str, object]:
    """The article's edge: `a = a + [2]` makes a new list (the alias keeps [1]); `c += [2]` extends in place;
    `+=` takes any iterable (a string's characters), `+` wants a list on both sides."""
    a = [1]
    b = a
    a = a + [2]
    c = [1]
    d = c
    c += [2]
    e = [1]
    e += "xy"
    try:
        e = e + "z"
        plus_error = None
    except TypeError as err:
        plus_error = f"{type(err).__name__} {err}"
    return {"plus": (a, b), "iadd": (c, d), "iadd_iterable": e, "plus_str": plus_error}


def item_assignment_errors() -> dict[str, str]:
    out = {}
    for name, obj in (("str", "cat"), ("tuple", (1, 2, 3)), ("bytes", b"cat")):
        try:
            obj[0] = obj[1]
            out[name] = "assigned"
        except TypeError as exc:
            out[name] = str(exc)
    return out


def run(report: Report) -> None:
    report.device = "cpu"

    mutated = in_place_mutations()
    report.log(f"in-place mutation keeps identity: {mutated}")
    changed = immutable_changes()
    report.log(f"'changing' an immutable gives a new object: {changed}")
    errors = item_assignment_errors()
    for name, msg in errors.items():
        report.log(f"{name}[0] = ... -> TypeError: {msg}")

    # Aliases: mutation through one name is seen through the other; rebinding one name is not.
    a = [1, 2, 3]
    b = a
    b.append(4)
    alias_sees_mutation = a == [1, 2, 3, 4] and a is b
    c = [1, 2]
    d = c
    c = [9, 9]
    alias_keeps_after_rebind = d == [1, 2] and c is not d
    report.log(f"b = a; b.append(4) -> a = {a}; c = [9, 9] leaves d = {d}")

    # += : __iadd__ on a list (in place), x = x + y on a tuple (new object).
    lst = [1, 2]
    alias = lst
    lst += [3]
    tup = (1, 2)
    alias_t = tup
    tup += (3,)
    report.log(f"list +=: {lst} alias {alias} same={lst is alias}; tuple +=: {tup} alias {alias_t} same={tup is alias_t}")

    # Arguments are shared exactly like assignment.
    data = [1, 2]
    returned = add_item(data, 3)
    mutated_arg = data == [1, 2, 3] and returned is data
    data2 = [1, 2]
    rebound = rebind(data2)
    count = 5
    nums = (1, 2, 3)
    bumped, extended = increment(count), extend_tuple(nums)
    report.log(f"add_item(data, 3) -> data = {data}; rebind(data2) -> {rebound}, data2 = {data2}")
    report.log(f"increment(5) -> {bumped}, count = {count}; extend_tuple((1, 2, 3)) -> {extended}, nums = {nums}")

    # The default list is created once, at def time, and shared by every call that omits it.
    default_obj = append_to.__defaults__[0]
    first = list(append_to(1))   # a snapshot: the returned object keeps changing
    returned_second = append_to(2)
    second, second_is_default = list(returned_second), returned_second is default_obj
    fixed = (append_to_fixed(1), append_to_fixed(2))
    report.log(f"append_to(1), append_to(2) -> {first}, {second}; __defaults__ = {append_to.__defaults__}")
    report.log(f"append_to_fixed(1), append_to_fixed(2) -> {fixed[0]}, {fixed[1]}")
    if isinstance(default_obj, list):
        default_obj.clear()  # the demo may run again in the same process

    edge = plus_vs_iadd()
    report.log(f"a = a + [2] vs c += [2], e += 'xy', e + 'z': {edge}")

    # Hashability follows immutability: a tuple only when all its items are hashable.
    hashable = {}
    for name, obj in (("list", [1]), ("tuple", (1, 2)), ("tuple_with_list", (1, [2])),
                      ("frozenset", frozenset({1})), ("set", {1})):
        try:
            hash(obj)
            hashable[name] = True
        except TypeError:
            hashable[name] = False
    report.log(f"hashable: {hashable}")

    report.check("原地修改后仍是同一个对象", all(mutated.values()),
                 f"{mutated} (oracle: `is` against the object kept before the change, and the values by hand)")
    report.check("不可变对象的“修改”得到新对象，旧对象不变", all(changed.values()),
                 f"{changed} (oracle: `is not` against the kept old object, whose value is unchanged)")
    report.check("不可变对象不支持下标赋值",
                 errors == {k: f"'{k}' object does not support item assignment" for k in ("str", "tuple", "bytes")},
                 f"{errors} (oracle: CPython's TypeError text, as in the article)")
    report.check("别名看得到修改，看不到重新绑定", alias_sees_mutation and alias_keeps_after_rebind,
                 f"a = {a}, d = {d} (oracle: values by hand and `is`)")
    report.check("列表 += 原地扩展，别名一起变", lst == alias == [1, 2, 3] and lst is alias,
                 f"lst = {lst}, alias = {alias} (oracle: list.__iadd__ extends in place)")
    report.check("元组 += 生成新元组，别名不变", tup == (1, 2, 3) and alias_t == (1, 2) and tup is not alias_t,
                 f"tup = {tup}, alias_t = {alias_t} (oracle: tuple has no __iadd__: x = x + y)")
    report.check("函数内修改可变参数，调用者可见", mutated_arg, f"data = {data} (oracle: [1, 2] + [3] by hand, same object)")
    report.check("函数内重新绑定参数，调用者不受影响",
                 data2 == [1, 2] and rebound == [100, 200] and count == 5 and bumped == 6
                 and nums == (1, 2, 3) and extended == (1, 2, 3, 4),
                 f"data2 = {data2}, count = {count}, nums = {nums} (oracle: the caller's values before the call)")
    report.check("可变默认参数在调用之间共享", first == [1] and second == [1, 2] and second_is_default,
                 f"{first}, {second}; the returned list is __defaults__[0]: {second_is_default} "
                 f"(oracle: defaults are evaluated once, at def time)")
    report.check("None 哨兵每次新建列表", fixed == ([1], [2]), f"{fixed} (oracle: a fresh [] per call gives [1], [2])")
    report.check("a = a + [2] 新建列表，c += [2] 原地；+= 接受任意可迭代对象，+ 不行",
                 edge == {"plus": ([1, 2], [1]), "iadd": ([1, 2], [1, 2]), "iadd_iterable": [1, "x", "y"],
                          "plus_str": 'TypeError can only concatenate list (not "str") to list'},
                 f"{edge} (oracle: the article's output, section lst += 与 lst = lst + 的区别)")
    report.check("只有不可变（且元素都可哈希）的对象可哈希",
                 hashable == {"list": False, "tuple": True, "tuple_with_list": False, "frozenset": True, "set": False},
                 f"{hashable} (oracle: the article's table of hashable types)")


def main(argv=None):
    raise SystemExit(main_for(SPEC, run, argv))


if __name__ == "__main__":
    main()
