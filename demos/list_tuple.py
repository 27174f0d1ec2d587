"""List vs tuple in CPython: object sizes, the list's over-allocation, tuple constant folding.

    python -m demos.list_tuple [--param max_len=80] [--param timeit_number=200000]

What it measures on the running interpreter (article `python-list-tuple`, CPython 3.11, 64-bit):
`sys.getsizeof` of empty and filled lists/tuples (a tuple grows by exactly one pointer per element; a
list carries `ob_item` and `allocated` on top of a tuple's header), the capacities a list jumps to while
appending, compared with `list_resize`'s formula, the bytecode of a tuple vs a list literal, and the
creation time of both (a metric only: timings vary by machine). Typical duration: about 1 s.
It does not look at the free lists of small tuples (their reuse depends on what ran before).
"""
from __future__ import annotations

import dis
import struct
import sys
import timeit

from demos.harness import Report, main_for
from demos.spec import DemoSpec, Param

SPEC = DemoSpec(
    id="list-tuple",
    title="列表与元组：内存布局与过度分配",
    summary="测量空列表/空元组大小、元组每元素 8 字节、列表追加时的容量增长（与 CPython 公式对照）和元组字面量的常量折叠。",
    articles=("python-list-tuple",),
    module="demos.list_tuple",
    params=(
        Param("max_len", int, 80, "追加到多长的列表为止，记录容量跳变", min=8, max=20_000),
        Param("timeit_number", int, 200_000, "timeit 每种字面量执行的次数（只作为指标）", min=1_000, max=5_000_000),
    ),
    timeout_s=60,
)

POINTER = struct.calcsize("P")   # 8 on a 64-bit build
GC_HEAD = 2 * POINTER            # PyGC_Head: two pointers, counted by getsizeof for tracked containers
TUPLE_LITERAL = "(1, 2, 3, 4, 5)"
LIST_LITERAL = "[1, 2, 3, 4, 5]"


def next_capacity(newsize: int) -> int:
    """`list_resize` in Objects/listobject.c (CPython 3.9+): over-allocate by ~1/8, round down to 4."""
    return (newsize + (newsize >> 3) + 6) & ~3


def expected_jumps(max_len: int) -> list[tuple[int, int]]:
    """(length, capacity) at every resize while appending 1..max_len items, from `next_capacity`."""
    capacity, jumps = 0, []
    for n in range(1, max_len + 1):
        if n > capacity:
            capacity = next_capacity(n)
            jumps.append((n, capacity))
    return jumps


def observed_jumps(max_len: int) -> list[tuple[int, int]]:
    """(length, capacity) wherever `getsizeof` of an appended-to list changes; capacity from the size."""
    empty = sys.getsizeof([])
    lst, last, jumps = [], empty, []
    for i in range(max_len):
        lst.append(i)
        size = sys.getsizeof(lst)
        if size != last:
            jumps.append((len(lst), (size - empty) // POINTER))
            last = size
    return jumps


def tuple_growth(max_k: int = 64) -> list[int]:
    """Bytes a k-element tuple takes beyond the empty tuple, for k = 0..max_k."""
    empty = sys.getsizeof(())
    return [sys.getsizeof(tuple(range(k))) - empty for k in range(max_k + 1)]


def tuple_edges() -> dict[str, object]:
    """The article's edge cases: a tuple refuses item assignment, deletion and append; `t += (4,)` binds the
    name to a new tuple (an alias keeps the old one), the same `+=` on a list extends it in place."""
    point = (3, 4)

    def assign():
        point[0] = 10

    def delete():
        del point[1]

    def append():
        point.append(5)

    errors = []
    for action in (assign, delete, append):
        try:
            action()
            errors.append("no error")
        except (TypeError, AttributeError) as exc:
            errors.append(f"{type(exc).__name__} {exc}")
    t = (1, 2, 3)
    t_alias = t
    t += (4,)
    lst = [1, 2, 3]
    l_alias = lst
    lst += [4]
    return {"errors": errors, "tuple": (t, t is t_alias, t_alias), "list": (lst, lst is l_alias)}


def literal_opnames(source: str) -> list[str]:
    """Instruction names of an expression, without the frame bookkeeping every code object has."""
    code = compile(source, "<literal>", "eval")
    return [ins.opname for ins in dis.get_instructions(code) if ins.opname not in ("RESUME", "RETURN_VALUE")]


def _plot(path, jumps: list[tuple[int, int]], formula: list[tuple[int, int]], max_len: int) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Capacity at every length 0..max_len: a step function that only moves at the jumps.
    lengths, caps, cap, k = list(range(max_len + 1)), [], 0, 0
    for n in lengths:
        while k < len(jumps) and jumps[k][0] <= n:
            cap = jumps[k][1]
            k += 1
        caps.append(cap)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.step(lengths, caps, where="post", label="allocated (getsizeof)")
    ax.plot(lengths, lengths, "--", color="gray", label="len")
    ax.scatter([n for n, _ in formula], [c for _, c in formula], s=14, color="C3", zorder=3,
               label="resize: (n + n>>3 + 6) & ~3")
    ax.set_xlabel("len(list)")
    ax.set_ylabel("capacity (slots)")
    ax.set_title("list over-allocation while appending")
    ax.legend()
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.13, top=0.92)  # fixed margins: tight_layout cost ~1 s of CPU per figure
    fig.savefig(path)
    plt.close(fig)


def run(report: Report, max_len: int = 80, timeit_number: int = 200_000) -> None:
    report.device = "cpu"
    report.metric("python", sys.version.split()[0])

    # Empty containers: a tuple is a header (refcnt, type, size); a list adds ob_item and allocated.
    empty_list, empty_tuple = sys.getsizeof([]), sys.getsizeof(())
    report.metric("sizeof_empty_list", empty_list)
    report.metric("sizeof_empty_tuple", empty_tuple)
    report.log(f"getsizeof([]) = {empty_list}, getsizeof(()) = {empty_tuple}")

    # Tuples: one pointer per element, nothing more.
    per_element = tuple_growth(64)
    bad = [k for k, d in enumerate(per_element) if d != POINTER * k]
    report.log(f"tuple growth for k = 0, 1, 2, 3, 64: {[per_element[k] for k in (0, 1, 2, 3, 64)]} bytes")

    # Lists: capacity jumps while appending, against the formula.
    observed = observed_jumps(max_len)
    expected = expected_jumps(max_len)
    report.metric("capacities", [c for _, c in observed])
    report.log("len  capacity (observed)  capacity (formula)")
    for i in range(max(len(observed), len(expected))):
        o = observed[i] if i < len(observed) else ("-", "-")
        e = expected[i] if i < len(expected) else ("-", "-")
        report.log(f"{o[0]!s:>4} {o[1]!s:>10}          {e[0]!s:>4} {e[1]!s:>6}")

    # Bytecode: a constant tuple literal is folded into one constant; a list is built every time.
    tuple_ops, list_ops = literal_opnames(TUPLE_LITERAL), literal_opnames(LIST_LITERAL)
    tuple_const = next(i.argval for i in dis.get_instructions(compile(TUPLE_LITERAL, "<literal>", "eval"))
                       if i.opname == "LOAD_CONST")
    report.log(f"{TUPLE_LITERAL}: {tuple_ops}")
    report.log(f"{LIST_LITERAL}: {list_ops}")

    # Creation time: a metric, never a check (it depends on the machine).
    t_tuple = timeit.timeit(f"x = {TUPLE_LITERAL}", number=timeit_number)
    t_list = timeit.timeit(f"x = {LIST_LITERAL}", number=timeit_number)
    report.metric("tuple_literal_ns", round(t_tuple / timeit_number * 1e9, 2))
    report.metric("list_literal_ns", round(t_list / timeit_number * 1e9, 2))
    report.metric("list_over_tuple_time", round(t_list / t_tuple, 2) if t_tuple > 0 else None)
    report.log(f"timeit ×{timeit_number}: tuple {report.metrics['tuple_literal_ns']} ns, "
               f"list {report.metrics['list_literal_ns']} ns per literal")

    edges = tuple_edges()
    report.log(f"tuple edges: {edges}")

    _plot(report.artifact("capacity.png"), observed, expected, max_len)

    report.check("空元组 = 3 个指针 + GC 头", empty_tuple == 3 * POINTER + GC_HEAD,
                 f"getsizeof(()) = {empty_tuple}, expected {3 * POINTER + GC_HEAD} (oracle: PyTupleObject header ob_refcnt, "
                 f"ob_type, ob_size + PyGC_Head, from struct.calcsize('P'))")
    report.check("空列表比空元组多 ob_item 和 allocated 两个字段", empty_list - empty_tuple == 2 * POINTER,
                 f"{empty_list} - {empty_tuple} = {empty_list - empty_tuple}, expected {2 * POINTER} (oracle: PyListObject's "
                 f"two extra fields, ob_item and allocated)")
    report.check("元组每个元素恰好 8 字节", not bad,
                 (f"k = 0..64 all grow by {POINTER}·k" if not bad else f"mismatch at k = {bad[:5]}")
                 + " (oracle: one pointer per ob_item slot)")
    report.check("列表容量跳变与 CPython 增长公式一致", observed == expected,
                 f"{len(observed)} resizes, capacities {[c for _, c in observed][:12]}"
                 + ("" if observed == expected else f"; formula gives {[c for _, c in expected][:12]}")
                 + " (oracle: list_resize's (n + (n >> 3) + 6) & ~3, Objects/listobject.c)")
    report.check("常量元组字面量只有一条 LOAD_CONST", tuple_ops == ["LOAD_CONST"] and tuple_const == (1, 2, 3, 4, 5),
                 f"{tuple_ops}, constant {tuple_const!r} (oracle: the article's dis output)")
    report.check("列表字面量每次运行时 BUILD_LIST", list_ops == ["BUILD_LIST", "LOAD_CONST", "LIST_EXTEND"],
                 f"{list_ops} (oracle: CPython 3.11's BUILD_LIST 0, LOAD_CONST, LIST_EXTEND 1)")
    want_errors = ["TypeError 'tuple' object does not support item assignment",
                   "TypeError 'tuple' object doesn't support item deletion",
                   "AttributeError 'tuple' object has no attribute 'append'"]
    report.check("元组不能赋值、删除、追加；t += (4,) 绑定新元组，列表 += 原地扩展",
                 edges == {"errors": want_errors, "tuple": ((1, 2, 3, 4), False, (1, 2, 3)),
                           "list": ([1, 2, 3, 4], True)},
                 f"{edges} (oracle: the article's printed output, section 元组是不可变的)")


def main(argv=None):
    raise SystemExit(main_for(SPEC, run, argv))


if __name__ == "__main__":
    main()
