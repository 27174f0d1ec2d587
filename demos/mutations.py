"""The project's own catalogue of planted bugs (and benign variants) for `python -m demos.mutate`.

Each bug patches the code a demo exercises (samplers, denoisers, processes, workers, the program being
debugged, the behaviour being shown), never its checks; `where` names the function, class or article block
the patch must lie in, and `demos.mutate` refuses entries that do not apply there. A comment per entry says
which check is meant to catch it. Benign variants (other seed, more samples, renamed variables) must pass.

Entries marked `fast` form the CI subset (tests/test_mutate.py): cheap runs, one per concept demo at
least, plus a few of the heavy demos.
"""
from __future__ import annotations

from demos.mutate import Mutation as M

LT, GEN, MUT, GC, MRO, OBJ, TFX, AG = ("list-tuple", "generator", "mutability", "gc-cycles", "mro",
                                       "object-reference", "tf-export", "autograd")

CATALOGUE: list[M] = [
    # ---- list-tuple -------------------------------------------------------------------------------------
    M("capacity-off-by-one", LT, "bug", "capacity read from getsizeof counts one slot too many",
      "demos/list_tuple.py", "observed_jumps", "(size - empty) // POINTER", "(size - empty) // POINTER + 1",
      fast=True),  # list_resize formula
    M("tuple-sized-as-list", LT, "bug", "tuple growth measured on lists",
      "demos/list_tuple.py", "tuple_growth", "sys.getsizeof(tuple(range(k)))", "sys.getsizeof(list(range(k)))"),
    M("keep-return-value", LT, "bug", "RETURN_VALUE no longer filtered from the bytecode",
      "demos/list_tuple.py", "literal_opnames", '("RESUME", "RETURN_VALUE")', '("RESUME",)'),
    M("tuple-plus-in-place", LT, "bug", "t += (4,) shown on a list instead of a tuple",
      "demos/list_tuple.py", "tuple_edges", "t = (1, 2, 3)", "t = [1, 2, 3]"),
    M("more-appends", LT, "benign", "append up to 500 items", params={"max_len": 500}),
    M("rename", LT, "benign", "rename lst → grown in observed_jumps",
      "demos/list_tuple.py", "observed_jumps", "lst", "grown", rename=True, fast=True),

    # ---- generator --------------------------------------------------------------------------------------
    M("count-twice", GEN, "bug", "running_average counts each value twice",
      "demos/generator.py", "running_average", "count += 1", "count += 2", fast=True),  # exact averages
    M("summary-total", GEN, "bug", "summarize's total adds squares",
      "demos/generator.py", "summarize", "total += item", "total += item * item"),  # StopIteration.value
    M("eager-generator", GEN, "bug", "the 'generator' sum builds a list",
      "demos/generator.py", "sum_generator", "sum(x * x for x in range(n))", "sum([x * x for x in range(n)])"),
    M("yield-from-drops-return", GEN, "bug", "delegator drops the value of yield from",
      "demos/generator.py", "delegator", "result = yield from averager()",
      "yield from averager()\n    result = None"),  # yield from edge case
    M("bigger-n", GEN, "benign", "n = 400000", params={"n": 400_000}),
    M("rename", GEN, "benign", "rename total → acc in running_average",
      "demos/generator.py", "running_average", "total", "acc", rename=True),
    # ---- mutability -------------------------------------------------------------------------------------
    M("append-copies", MUT, "bug", "add_item builds a new list instead of appending",
      "demos/mutability.py", "add_item", "bucket.append(item)", "bucket = bucket + [item]", fast=True),
    M("rebind-mutates", MUT, "bug", "rebind overwrites the caller's list in place",
      "demos/mutability.py", "rebind", "bucket = [100, 200]", "bucket[:] = [100, 200]"),
    M("iadd-as-add", MUT, "bug", "the in-place demo uses items = items + [7]",
      "demos/mutability.py", "in_place_mutations", "items += [7]", "items = items + [7]"),
    M("plus-edge", MUT, "bug", "a = a + [2] written as a += [2]",
      "demos/mutability.py", "plus_vs_iadd", "a = a + [2]\n", "a += [2]\n"),  # the article's edge case
    M("rename", MUT, "benign", "rename bucket → box in add_item",
      "demos/mutability.py", "add_item", "bucket", "box", rename=True),
    # ---- gc-cycles --------------------------------------------------------------------------------------
    M("no-cycle", GC, "bug", "the ring's last link is missing (a chain, freed by refcounting)",
      "demos/gc_cycles.py", "make_ring", "nodes[(i + 1) % size]", "(nodes[i + 1] if i + 1 < size else None)",
      fast=True),
    M("fewer-slots", GC, "bug", "the list holds b twice, not three times",
      "demos/gc_cycles.py", "refcount_steps", "items = [b, b, b]", "items = [b, b]"),
    M("finalizer-no-cycle", GC, "bug", "the __del__ pair is not a cycle",
      "demos/gc_cycles.py", "finalizer_cycle", "x.peer, y.peer = y, x", "x.peer, y.peer = y, y"),
    M("big-ring", GC, "benign", "a ring of 50", params={"cycle_size": 50}),
    M("rename", GC, "benign", "rename watchers → refs in make_ring",
      "demos/gc_cycles.py", "make_ring", "watchers", "refs", rename=True),
    # ---- mro --------------------------------------------------------------------------------------------
    M("tail-from-2", MRO, "bug", "merge checks tails from the third element",
      "demos/mro.py", "merge", "head in other[1:]", "head in other[2:]", fast=True),
    M("no-local-order", MRO, "bug", "linearize drops the list of direct bases from the merge",
      "demos/mro.py", "linearize", "+ [bases]", ""),
    M("last-list-first", MRO, "bug", "merge looks for a good head from the last list",
      "demos/mro.py", "merge", "for seq in seqs:", "for seq in reversed(seqs):"),
    M("dfs-right-first", MRO, "bug", "the classic depth-first order visits bases right to left",
      "demos/mro.py", "dfs_order", "for base in c.__bases__:", "for base in reversed(c.__bases__):"),
    M("other-seed", MRO, "benign", "seed 7, 300 hierarchies", params={"seed": 7, "hierarchies": 300}),
    M("rename", MRO, "benign", "rename seqs → lists in merge",
      "demos/mro.py", "merge", "seqs", "pending", rename=True),
    # ---- object-reference -------------------------------------------------------------------------------
    M("mutate-rebinds", OBJ, "bug", "mutate() rebinds instead of appending",
      "demos/object_reference.py", "mutate", 'items.append("added")', 'items = items + ["added"]', fast=True),
    M("rebind-mutates", OBJ, "bug", "rebind() writes through the caller's list",
      "demos/object_reference.py", "rebind", 'items = ["brand", "new"]', 'items[:] = ["brand", "new"]'),
    M("no-second-name", OBJ, "bug", "the second reference is never taken",
      "demos/object_reference.py", "del_removes_name", "other = r", "other = None"),
    M("deep-is-shallow", OBJ, "bug", "deepcopy replaced by copy",
      "demos/object_reference.py", "aliasing_and_copies", "copy.deepcopy(grid)", "copy.copy(grid)"),
    M("rename", OBJ, "benign", "rename events → log in del_removes_name",
      "demos/object_reference.py", "del_removes_name", "events", "log", rename=True),
    # ---- tf-export --------------------------------------------------------------------------------------
    M("hasattr", TFX, "bug", "already-exported test with hasattr instead of __dict__",
      "demos/tf_export.py", "api_export._set_attr", "attr in symbol.__dict__", "hasattr(symbol, attr)",
      fast=True),  # the subclass case
    M("collect-dir", TFX, "bug", "collect looks at dir(obj), inherited names included",
      "demos/tf_export.py", "ApiRegistry.collect", 'set(getattr(obj, "__dict__", {}))', "set(dir(obj))"),
    M("v1-default-empty", TFX, "bug", "v1 names default to none instead of the v2 names",
      "demos/tf_export.py", "api_export.__init__", "else self._names", "else ()"),
    M("compat-v1-is-v2", TFX, "bug", "tf.compat.v1 built from the v2 table",
      "demos/tf_export.py", "ApiRegistry.build", '("compat.v1.", self.v1)', '("compat.v1.", self.v2)'),
    M("twice-allowed", TFX, "bug", "a second symbol may take an existing name",
      "demos/tf_export.py", "ApiRegistry.add", "table[name] is not symbol", "table[name] is symbol"),
    M("rename", TFX, "benign", "rename node → cursor in _place",
      "demos/tf_export.py", "_place", "node", "cursor", rename=True),
    # ---- autograd ---------------------------------------------------------------------------------------
    M("f-extra-term", AG, "bug", "f gains a linear term the formula does not have",
      "demos/autograd.py", "f", "(x.sin() * x.pow(2)).sum()", "(x.sin() * x.pow(2) + 1e-3 * x).sum()"),
    M("badsquare-fixed", AG, "bug", "BadSquare's backward made correct: gradcheck has nothing to catch",
      "demos/autograd.py", "bad_square", "return grad_out * x", "return grad_out * 2 * x", fast=True),
    M("ones-gradient", AG, "bug", "non-scalar backward with gradient of ones instead of v",
      "demos/autograd.py", "nonscalar_backward", "y.backward(gradient=v)", "y.backward(gradient=torch.ones_like(y))"),
    M("other-input", AG, "benign", "seed 3, size 8", params={"seed": 3, "size": 8}),
    M("rename", AG, "benign", "rename grad → g in central_differences",
      "demos/autograd.py", "central_differences", "grad", "g", rename=True),
]
