"""The eight small demos, called in-process: exact check outcomes and metrics in the default
configuration, and for each demo a planted change of behaviour that its checks must catch."""
import functools
import gc
import weakref

import pytest

from demos import autograd, gc_cycles, generator, list_tuple, mro, mutability, object_reference, tf_export
from demos.harness import Report

SMALL_DEMOS = (list_tuple, generator, mutability, gc_cycles, mro, object_reference, tf_export, autograd)


@pytest.fixture(autouse=True)
def _small_heap():
    """A demo runs in its own small process (demos.runner); in-process here, the suite's heap (torch, gradio, the
    embedding model: millions of objects) moves to the collector's permanent generation for the test, so that
    gc_cycles' full collections and `gc.get_objects()` see the demo's objects only (6.5 s → 0.05 s a test)."""
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture
def report(tmp_path):
    return Report(tmp_path / "out", quiet=True)


def failed(report: Report) -> list[str]:
    return [c.name for c in report.checks if not c.passed]


def all_names(report: Report) -> list[str]:
    return [c.name for c in report.checks]


@pytest.mark.parametrize("module", SMALL_DEMOS, ids=lambda m: m.SPEC.id)
def test_spec_is_light_and_bounded(module):
    spec = module.SPEC
    assert spec.module == module.__name__ and spec.device == "cpu" and spec.timeout_s == 60
    assert spec.articles and all(p.default == p.parse(p.default) for p in spec.params)


# ---- list-tuple -------------------------------------------------------------------------------------

def test_list_tuple_default(report):
    list_tuple.run(report, max_len=80, timeit_number=1000)
    assert failed(report) == [] and len(report.checks) == 7
    assert report.metrics["sizeof_empty_list"] == 56 and report.metrics["sizeof_empty_tuple"] == 40
    assert report.metrics["capacities"] == [4, 8, 16, 24, 32, 40, 52, 64, 76, 92]
    assert report.artifacts == ["capacity.png"]
    assert (report.out / "capacity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_list_tuple_formula_by_hand():
    assert [list_tuple.next_capacity(n) for n in (1, 5, 9, 17, 77)] == [4, 8, 16, 24, 92]
    assert list_tuple.expected_jumps(20) == [(1, 4), (5, 8), (9, 16), (17, 24)]
    assert list_tuple.literal_opnames("(1, 2)") == ["LOAD_CONST"]
    assert list_tuple.literal_opnames("(a, 2)") == ["LOAD_NAME", "LOAD_CONST", "BUILD_TUPLE"]


def test_list_tuple_catches_a_wrong_growth_formula(report, monkeypatch):
    monkeypatch.setattr(list_tuple, "next_capacity", lambda n: 2 * n)  # "doubling", as in many languages
    list_tuple.run(report, max_len=80, timeit_number=1000)
    assert failed(report) == ["列表容量跳变与 CPython 增长公式一致"]


# ---- generator --------------------------------------------------------------------------------------

def test_generator_default(report):
    generator.run(report)
    assert failed(report) == [] and len(report.checks) == 8
    assert report.metrics["list_peak_bytes"] > 1_600_000, "200 000 pointers alone take 1.6 MB"
    assert report.metrics["generator_peak_bytes"] < 10_000
    lines = (report.out / "transcript.txt").read_text(encoding="utf-8").splitlines()
    assert lines[2:6] == ["avg.send(None) -> None", "avg.send(10) -> 10.0", "avg.send(20) -> 15.0",
                          "avg.send(60) -> 30.0"]


def test_generator_catches_an_eager_generator(report, monkeypatch):
    monkeypatch.setattr(generator, "sum_generator", generator.sum_list)
    generator.run(report, n=10_000)
    assert failed(report) == ["生成器峰值内存至少小 50 倍"]


def test_generator_catches_a_wrong_average(report, monkeypatch):
    def last_value():  # forgets the history: returns the latest value, not the average
        average = None
        while True:
            average = float((yield average))
    monkeypatch.setattr(generator, "running_average", last_value)
    generator.run(report, n=10_000)
    assert failed(report) == ["send 返回精确的累计平均值"]


# ---- mutability -------------------------------------------------------------------------------------

def test_mutability_default_and_repeatable(report, tmp_path):
    mutability.run(report)
    assert failed(report) == [] and len(report.checks) == 12
    again = Report(tmp_path / "again", quiet=True)
    mutability.run(again)
    assert failed(again) == [], "the shared default list must be reset for the next run"


def test_mutability_catches_fixed_defaults_and_copying_arguments(report, monkeypatch):
    monkeypatch.setattr(mutability, "append_to", mutability.append_to_fixed)
    monkeypatch.setattr(mutability, "add_item", lambda bucket, item: list(bucket) + [item])
    mutability.run(report)
    assert failed(report) == ["函数内修改可变参数，调用者可见", "可变默认参数在调用之间共享"]


# ---- gc-cycles --------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [1, 2, 50])
def test_gc_cycles_rings(tmp_path, size):
    report = Report(tmp_path, quiet=True)
    gc_cycles.run(report, cycle_size=size)
    assert failed(report) == [] and len(report.checks) == 8
    assert report.metrics["collected"] >= size
    assert report.metrics["generations"] == [0, 1, 2, 2]
    assert report.metrics["threshold"] == [700, 10, 10]


def test_gc_cycles_catches_a_structure_without_cycle(report, monkeypatch):
    def weak_ring(size):  # partners held weakly: plain reference counting frees everything
        nodes = [gc_cycles.Node(f"n{i}") for i in range(size)]
        for i, node in enumerate(nodes):
            node.partner = weakref.ref(nodes[(i + 1) % size])
        return [weakref.ref(n) for n in nodes]
    monkeypatch.setattr(gc_cycles, "make_ring", weak_ring)
    gc_cycles.run(report, cycle_size=3)
    assert failed(report) == ["关闭自动回收时，环在 del 之后仍存活", "gc.collect() 回收整个环"]


def test_gc_cycles_restores_the_collector(report):
    import gc
    gc.set_threshold(900, 11, 12)
    try:
        gc_cycles.run(report)
        assert gc.get_threshold() == (900, 11, 12) and gc.isenabled()
        assert failed(report) == ["3.11 默认阈值 (700, 10, 10)，set_threshold 生效"]
    finally:
        gc.set_threshold(700, 10, 10)


# ---- mro --------------------------------------------------------------------------------------------

def test_mro_default(report):
    mro.run(report)
    assert failed(report) == [] and len(report.checks) == 7
    assert (report.metrics["random_classes_consistent"], report.metrics["random_classes_rejected"],
            report.metrics["random_disagreements"]) == (1416, 184, 0)


def test_linearize_graph_and_conflict():
    graph = {"object": (), "A": ("object",), "B": ("A",), "C": ("A",), "D": ("B", "C")}
    assert mro.linearize("D", graph) == ["D", "B", "C", "A", "object"]
    assert mro.linearize("D", graph) != ["D", "B", "A", "C", "object"], "a wrong expected MRO must not match"
    with pytest.raises(mro.MROConflictError) as info:
        mro.linearize("W", {**graph, "W": ("A", "B")})  # a base before its own subclass
    assert (info.value.target, info.value.heads) == ("W", ["A", "B"])


def test_mro_catches_depth_first_linearization(report, monkeypatch):
    def depth_first(target, graph=None):
        bases_of = (lambda c: c.__bases__) if graph is None else graph.__getitem__
        out = []

        def visit(node):
            if node not in out:
                out.append(node)
                for base in bases_of(node):
                    visit(base)
        visit(target)
        return out
    monkeypatch.setattr(mro, "linearize", depth_first)
    mro.run(report, hierarchies=20)
    assert failed(report) == all_names(report)[:-1], "only the super() check does not use linearize"


# ---- object-reference -------------------------------------------------------------------------------

def test_object_reference_default(report):
    object_reference.run(report)
    assert failed(report) == [] and len(report.checks) == 12
    assert all("(oracle: " in c.detail for c in report.checks), [c.detail for c in report.checks]


def test_object_reference_catches_rebinding_that_mutates(report, monkeypatch):
    def slice_assign(items):
        items[:] = ["brand", "new"]  # mutation disguised as rebinding: the caller sees it
    monkeypatch.setattr(object_reference, "rebind", slice_assign)
    object_reference.run(report)
    assert failed(report) == ["共享传参：重新绑定参数调用者不可见"]


# ---- tf-export --------------------------------------------------------------------------------------

def test_tf_export_default(report):
    tf_export.run(report)
    assert failed(report) == [] and len(report.checks) == 10
    assert report.metrics["exported_paths"] == 20


def test_tf_export_registry_by_hand():
    registry = tf_export.ApiRegistry()

    @tf_export.tf_export("a.b.c", v1=["x.y"])
    def fn():
        pass
    registry.add(fn)
    tf2, tf1 = registry.build(2), registry.build(1)
    assert tf2.a.b.c is fn and tf2.compat.v1.x.y is fn and tf1.x.y is fn and tf1.compat.v2.a.b.c is fn
    assert not hasattr(tf2, "x") and tf2.a.b.__name__ == "tf.a.b"
    assert registry.name_to_symbol() == {"a.b.c": fn, "compat.v1.x.y": fn}
    assert registry.get_symbol_from_name("x.y") is None


def test_tf_export_refusals():
    with pytest.raises(ValueError, match="^v2 names must be passed as positional arguments$"):
        tf_export.tf_export(v2=["a"])
    with pytest.raises(tf_export.InvalidSymbolNameError):
        tf_export.keras_export("layers.Dense")  # keras names must start with "keras"


def test_tf_export_catches_wrapping_decorator_and_missing_duplicate_check(report, monkeypatch):
    original_call = tf_export.api_export.__call__

    def wrapping_call(self, symbol):
        original_call(self, symbol)
        return functools.wraps(symbol)(lambda *a, **k: symbol(*a, **k))
    monkeypatch.setattr(tf_export.api_export, "__call__", wrapping_call)

    def add_without_check(self, symbol):
        for name in symbol.__dict__.get("_tf_api_names", ()):
            self.v2[name] = symbol
        for name in symbol.__dict__.get("_tf_api_names_v1", ()):
            self.v1[name] = symbol
    monkeypatch.setattr(tf_export.ApiRegistry, "add", add_without_check)
    tf_export.run(report)
    assert failed(report) == ["装饰器原样返回函数（is）", "同一名字导出给另一个函数被拒绝"]


# ---- autograd ---------------------------------------------------------------------------------------

def test_autograd_default(report):
    autograd.run(report)
    assert failed(report) == [] and len(report.checks) == 8
    assert report.metrics["gradient"] == [3.151379, 0.252161, 0.865026, 0.884289], "the article's numbers"
    assert report.metrics["max_abs_err_autograd"] <= 1e-12
    assert report.metrics["max_abs_err_finite_diff"] <= 1e-6


def test_autograd_catches_a_wrong_analytic_gradient(report, monkeypatch):
    monkeypatch.setattr(autograd, "analytic_grad", lambda x: x * x.sin() + x ** 2 * x.cos())  # lost the 2
    autograd.run(report, seed=3, size=8)
    assert failed(report) == ["autograd 与解析梯度一致", "中心有限差分与解析梯度一致"]


def test_autograd_catches_a_gradcheck_that_accepts_everything(report, monkeypatch):
    import torch

    class GoodSquare(torch.autograd.Function):  # a correct backward: gradcheck must pass it...
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, grad_out):
            (x,) = ctx.saved_tensors
            return 2 * grad_out * x
    monkeypatch.setattr(autograd, "bad_square", lambda: GoodSquare)  # ...so "caught a bad one" fails
    autograd.run(report, size=3)
    assert failed(report) == ["gradcheck 通过，并能发现错误的 backward"]


# ---- each demo's article edge case, and every check names its oracle ---------------------------------

@pytest.mark.parametrize("module", SMALL_DEMOS, ids=lambda m: m.SPEC.id)
def test_every_check_states_its_oracle(module, tmp_path):
    report = Report(tmp_path, quiet=True)
    module.run(report, **({"timeit_number": 1000} if module is list_tuple else {}))
    missing = [c.name for c in report.checks if "(oracle: " not in c.detail]
    assert missing == [], f"{module.SPEC.id}: checks without an oracle in their detail line: {missing}"


def test_tuple_edges_follow_the_article():
    edges = list_tuple.tuple_edges()
    assert edges["errors"][1] == "TypeError 'tuple' object doesn't support item deletion"
    assert edges["tuple"] == ((1, 2, 3, 4), False, (1, 2, 3)) and edges["list"] == ([1, 2, 3, 4], True)


def test_yield_from_returns_the_subgenerators_value():
    assert generator.delegate_scores((90, 80, 100)) == {"math": 90.0}
    assert generator.delegate_scores((1, 2)) == {"math": 1.5}


def test_plus_versus_iadd_edge():
    edge = mutability.plus_vs_iadd()
    assert edge["plus"] == ([1, 2], [1]) and edge["iadd"] == ([1, 2], [1, 2]), edge


def test_pep442_cycle_with_finalizers_is_collected():
    import gc
    was = gc.isenabled()
    gc.disable()
    try:
        before, after, found, garbage = gc_cycles.finalizer_cycle()
    finally:
        if was:
            gc.enable()
    assert before == [] and sorted(after) == ["__del__ x，对方是 y", "__del__ y，对方是 x"] and garbage == 0
    assert found >= 2, found


def test_tf_export_subclass_case_needs_dict_not_hasattr(report, monkeypatch):
    sub = tf_export.subclass_exports()
    assert sub["inherited"] == ("layers.Layer",) and sub["export_error"] is None and sub["collected"] == 2

    def set_attr_with_hasattr(self, symbol, attr, names):  # the bug the article warns about
        if hasattr(symbol, attr) and not self._allow_multiple_exports:
            raise tf_export.SymbolAlreadyExposedError(f"{symbol.__name__} is already exposed as {getattr(symbol, attr)}")
        setattr(symbol, attr, names)
    monkeypatch.setattr(tf_export.api_export, "_set_attr", set_attr_with_hasattr)
    tf_export.run(report)
    assert failed(report) == ["子类可另行导出，未导出的子类不会冒用父类的名字（查 __dict__ 而非 hasattr）"]


def test_autograd_nonscalar_backward():
    error, grad = autograd.nonscalar_backward()
    assert error == "RuntimeError grad can be implicitly created only for scalar outputs"
    assert grad == [2.0, 0.4, 0.06]
