"""Method resolution order: our own C3 linearization against Python's `__mro__`, conflicts, super().

    python -m demos.mro [--param seed=0] [--param hierarchies=200] [--param classes=8]

`linearize(target, graph=None)` is a pure C3 (article `python-inheritance-mro`): `target` is a class,
or a name in a dict graph `{name: (base names...)}` whose root is "object". It must equal `__mro__`
for the diamond, the article's deeper K1/K2/K3/Z hierarchy and `hierarchies` random hierarchies built
from `seed`; where Python refuses a class (TypeError at the class statement) `linearize` must raise
`MROConflictError` naming the same stuck heads. Also shown: the depth-first order of Python 2's classic
classes and a breadth-first order, both of which differ from C3, and a cooperative `super()` chain that
visits the classes in MRO order. Typical duration: well under a second.
"""
from __future__ import annotations

import random
from collections import deque

from demos.harness import Report, main_for
from demos.spec import DemoSpec, Param

SPEC = DemoSpec(
    id="mro",
    title="多重继承：C3 线性化与 super()",
    summary="自己实现 C3 线性化，与 Python 的 __mro__ 在菱形、多层和随机继承结构上逐项比对，验证冲突结构被双方拒绝，以及 super() 按 MRO 调用。",
    articles=("python-inheritance-mro",),
    module="demos.mro",
    params=(
        Param("seed", int, 0, "随机继承结构的种子", min=0, max=2**31 - 1),
        Param("hierarchies", int, 200, "随机生成的继承结构个数", min=1, max=2000),
        Param("classes", int, 8, "每个随机结构中的类数", min=2, max=30),
    ),
    timeout_s=60,
)


class MROConflictError(Exception):
    """No linearization satisfies C3's constraints; `heads` are the candidates merge got stuck on."""

    def __init__(self, target: str, heads: list[str]):
        self.target, self.heads = target, heads
        super().__init__(f"cannot linearize {target}: merge stuck at heads {', '.join(heads)}")


def _name(node) -> str:
    return node.__name__ if isinstance(node, type) else str(node)


def merge(seqs: list[list], target: str = "?") -> list:
    """C3 merge: repeatedly take the first head that is in no list's tail (for `target`'s MRO)."""
    seqs = [list(s) for s in seqs if s]
    result = []
    while seqs:
        for seq in seqs:
            head = seq[0]
            if not any(head in other[1:] for other in seqs):
                break
        else:
            heads = list(dict.fromkeys(s[0] for s in seqs))  # CPython's error lists them like this
            raise MROConflictError(target, [_name(h) for h in heads])
        result.append(head)
        seqs = [s[1:] if s[0] == head else s for s in seqs]
        seqs = [s for s in seqs if s]
    return result


def linearize(target, graph: dict | None = None) -> list:
    """L[C] = C + merge(L[B1], ..., L[Bn], [B1, ..., Bn]) for a class, or for a name in `graph`."""
    bases_of = (lambda c: c.__bases__) if graph is None else graph.__getitem__
    memo: dict = {}

    def lin(node):
        if node not in memo:
            bases = list(bases_of(node))
            memo[node] = [node] + merge([lin(b) for b in bases] + [bases], target=_name(node))
        return memo[node]

    return lin(target)


def dfs_order(cls: type) -> list[type]:
    """Python 2 classic classes: depth-first, left to right, first occurrence kept."""
    seen, out = set(), []

    def visit(c):
        if c not in seen:
            seen.add(c)
            out.append(c)
            for base in c.__bases__:
                visit(base)
    visit(cls)
    return out


def bfs_order(cls: type) -> list[type]:
    """Breadth-first: a common misdescription of Python 3's MRO."""
    seen, out, queue = {cls}, [], deque([cls])
    while queue:
        c = queue.popleft()
        out.append(c)
        for base in c.__bases__:
            if base not in seen:
                seen.add(base)
                queue.append(base)
    return out


def names(seq) -> list[str]:
    return [_name(c) for c in seq]


def python_heads(exc: TypeError) -> list[str] | None:
    """The heads in CPython's 'Cannot create a consistent method resolution order (MRO) for bases A, B'."""
    msg = " ".join(str(exc).split())
    marker = "order (MRO) for bases "
    if marker not in msg:
        return None
    return [h.strip() for h in msg.split(marker, 1)[1].split(",")]


def build_classes(graph: dict[str, tuple[str, ...]]) -> tuple[dict[str, type], dict[str, TypeError]]:
    """Create the graph's classes in order with `type()`; a class Python refuses goes to the errors."""
    built: dict[str, type] = {"object": object}
    errors: dict[str, TypeError] = {}
    for name, bases in graph.items():
        if name == "object":
            continue
        try:
            built[name] = type(name, tuple(built[b] for b in bases), {})
        except TypeError as exc:
            errors[name] = exc
    return built, errors


def random_hierarchies(seed: int, count: int, classes: int) -> list[dict[str, tuple[str, ...]]]:
    """`count` graphs; class i takes 0-3 distinct bases among earlier classes, in random order.
    Some will be inconsistent (e.g. a base listed before its own subclass): that is the point."""
    rng = random.Random(seed)
    graphs = []
    for _ in range(count):
        graph = {"object": ()}
        for i in range(classes):
            earlier = [n for n in graph if n != "object"]
            k = rng.randint(0, min(3, len(earlier)))
            graph[f"C{i}"] = tuple(rng.sample(earlier, k)) or ("object",)
        graphs.append(graph)
    return graphs


def compare_graph(graph: dict[str, tuple[str, ...]]) -> tuple[int, int, list[str]]:
    """Build the graph's classes in order with `type()`; classes that Python refuses are left out of the
    graph (and of later classes' bases). Returns (agreed consistent, agreed rejected, disagreements)."""
    built = {"object": object}
    live = {"object": ()}
    consistent = rejected = 0
    problems = []
    for name, bases in graph.items():
        if name == "object":
            continue
        bases = tuple(b for b in bases if b in built) or ("object",)
        live[name] = bases
        try:
            ours = names(linearize(name, live))
            our_error = None
        except MROConflictError as exc:
            ours, our_error = None, exc.heads
        try:
            cls = type(name, tuple(built[b] for b in bases), {})
            theirs, their_error = names(cls.__mro__), None
            built[name] = cls
        except TypeError as exc:
            theirs, their_error = None, python_heads(exc)
            del live[name]
        if ours == theirs and our_error == their_error:
            if ours is None:
                rejected += 1
            else:
                consistent += 1
        else:
            problems.append(f"{name}{bases}: ours {ours or our_error}, Python {theirs or their_error}")
    return consistent, rejected, problems


def c3_names(target, graph: dict | None = None) -> list[str] | str:
    """names(linearize(...)), or the conflict as text: a check then fails instead of the run crashing."""
    try:
        return names(linearize(target, graph))
    except MROConflictError as exc:
        return f"MROConflictError: {exc}"


def run(report: Report, seed: int = 0, hierarchies: int = 200, classes: int = 8) -> None:
    report.device = "cpu"

    # The diamond: D(B, C) with B(A), C(A).
    class A: pass                                   # noqa: E701
    class B(A): pass                                # noqa: E701
    class C(A): pass                                # noqa: E701
    class D(B, C): pass                             # noqa: E701
    diamond = c3_names(D)
    report.log(f"diamond  C3 {diamond}  __mro__ {names(D.__mro__)}")
    report.log(f"diamond  depth-first (classic classes) {names(dfs_order(D))}")

    class C2: pass                                  # noqa: E701
    class NotDiamond(B, C2): pass                   # noqa: E701
    not_diamond = c3_names(NotDiamond)
    report.log(f"NotDiamond  C3 {not_diamond}  breadth-first {names(bfs_order(NotDiamond))}")

    # The article's deeper hierarchy, once as classes and once as a name graph.
    graph = {"object": (), "A": ("object",), "B": ("object",), "C": ("object",), "D": ("object",),
             "E": ("object",), "K1": ("A", "B", "C"), "K2": ("D", "B", "E"), "K3": ("D", "A"),
             "Z": ("K1", "K2", "K3")}
    built, _ = build_classes(graph)
    deep_graph = c3_names("Z", graph)
    deep_class = c3_names(built["Z"])
    deep_python = names(built["Z"].__mro__)
    report.log(f"Z  C3 on the graph {deep_graph}")

    # Random hierarchies.
    agreed_ok = agreed_rejected = 0
    problems = []
    for g in random_hierarchies(seed, hierarchies, classes):
        ok, rej, bad = compare_graph(g)
        agreed_ok, agreed_rejected = agreed_ok + ok, agreed_rejected + rej
        problems += bad
    report.metric("random_classes_consistent", agreed_ok)
    report.metric("random_classes_rejected", agreed_rejected)
    report.metric("random_disagreements", len(problems))
    report.log(f"random: {hierarchies} hierarchies × {classes} classes: {agreed_ok} linearized identically, "
               f"{agreed_rejected} rejected by both, {len(problems)} disagreements")
    for line in problems[:5]:
        report.log(f"  disagreement {line}")

    # A hierarchy C3 must reject: X(A, B) and Y(B, A) order A and B both ways.
    conflict = {"object": (), "A": ("object",), "B": ("object",), "X": ("A", "B"), "Y": ("B", "A"),
                "Z": ("X", "Y")}
    try:
        linearize("Z", conflict)
        our_heads = None
    except MROConflictError as exc:
        our_heads = exc.heads
    _, refused = build_classes(conflict)
    their_heads = python_heads(refused["Z"]) if "Z" in refused else None
    report.log(f"Z(X, Y) with X(A, B), Y(B, A): ours stuck at {our_heads}, Python TypeError at {their_heads}")

    # Cooperative super(): every class calls super(), so the chain follows the instance's MRO.
    class SA:
        def hello(self):
            return ["SA"]

    class SB(SA):
        def hello(self):
            return ["SB"] + super().hello()

    class SC(SA):
        def hello(self):
            return ["SC"] + super().hello()

    class SD(SB, SC):
        def hello(self):
            return ["SD"] + super().hello()
    chain = SD().hello()
    from_b = super(SB, SD()).hello()
    report.log(f"SD().hello() -> {chain}; super(SB, SD()).hello() -> {from_b}")

    report.check("菱形 D(B, C)：C3 等于 __mro__", diamond == names(D.__mro__) == ["D", "B", "C", "A", "object"],
                 f"{diamond} (oracle: Python's own __mro__ and the article's D, B, C, A, object)")
    report.check("经典类深度优先与 C3 不同",
                 names(dfs_order(D)) == ["D", "B", "A", "object", "C"] and names(dfs_order(D)) != diamond,
                 f"depth-first {names(dfs_order(D))} (oracle: by hand, D → B → A → object, then C)")
    report.check("非菱形结构：C3 不是广度优先",
                 not_diamond == names(NotDiamond.__mro__) != names(bfs_order(NotDiamond)),
                 f"C3 {not_diamond}, breadth-first {names(bfs_order(NotDiamond))} (oracle: "
                 f"Python's __mro__)")
    expected_deep = ["Z", "K1", "K2", "K3", "D", "A", "B", "C", "E", "object"]
    report.check("多层结构 Z(K1, K2, K3)：图与类两种输入都等于 __mro__",
                 deep_graph == deep_class == deep_python == expected_deep,
                 f"{deep_graph} (oracle: Python's __mro__ and the article's worked merge)")
    report.check("随机继承结构全部一致", not problems and agreed_ok > 0 and agreed_rejected > 0,
                 f"{agreed_ok} consistent + {agreed_rejected} rejected agree, {len(problems)} disagree (oracle: "
                 f"Python's type() on each random hierarchy)")
    report.check("冲突结构：我们的 C3 与 Python 都拒绝，卡在同样的表头",
                 our_heads == their_heads == ["A", "B"] and list(refused) == ["Z"],
                 f"ours {our_heads}, Python {their_heads} (oracle: the TypeError CPython raises at class creation)")
    report.check("super() 调用顺序等于 MRO",
                 chain == [c for c in names(SD.__mro__) if c != "object"] and from_b == ["SC", "SA"],
                 f"{chain}, {from_b} (oracle: SD.__mro__ without object; after SB in that MRO come SC, SA)")


def main(argv=None):
    raise SystemExit(main_for(SPEC, run, argv))


if __name__ == "__main__":
    main()
