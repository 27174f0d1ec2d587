"""TensorFlow's `tf_export` pattern without TensorFlow: a decorator records API names, a registry
builds the nested `tf.*` namespaces from them.

    python -m demos.tf_export

Modelled on `tensorflow/python/util/tf_export.py` (article `tensorflow-tf-export`): `api_export(*names,
v1=..., api_name=...)` sets `_tf_api_names` / `_tf_api_names_v1` on the symbol and returns the symbol
itself; `tf_export = functools.partial(api_export, api_name="tensorflow")`. TensorFlow's build then
scans modules for those attributes and generates the `tf` package; here `ApiRegistry` does the same in
memory: v2 names at the root (`tf.math.add`), v1 names under `tf.compat.v1` (`tf.compat.v1.app.run`),
and a TF1-style root whose top level is the v1 API; it also keeps the name -> symbol table newer TF
versions have (`get_symbol_from_name`). The exported functions are the article's (`app.run` in v1 only,
`add`, `square`, `relu`). A name claimed by two different symbols is refused (`SymbolExposedTwiceError`),
as TensorFlow's API generator does; exporting one symbol twice raises `SymbolAlreadyExposedError` unless
`allow_multiple_exports`; `v2=` and names under `estimator.*` are refused. Typical duration: well under
a second.
"""
from __future__ import annotations

import functools
import types

from demos.harness import Report, main_for
from demos.spec import DemoSpec

SPEC = DemoSpec(
    id="tf-export",
    title="tf_export：一个函数，多个 API 名字",
    summary="不依赖 TensorFlow 重现 tf_export 装饰器：记录 v2/v1 名字、由注册表构建 tf.xxx 与 tf.compat.v1.xxx 命名空间，并验证同一对象、原样返回和重名拒绝。",
    articles=("tensorflow-tf-export",),
    module="demos.tf_export",
    timeout_s=60,
)

TENSORFLOW_API_NAME = "tensorflow"
KERAS_API_NAME = "keras"
ESTIMATOR_API_NAME = "estimator"
# API name -> (attribute holding v2 names, attribute holding v1 names), one pair per API.
API_ATTRS = {
    TENSORFLOW_API_NAME: ("_tf_api_names", "_tf_api_names_v1"),
    KERAS_API_NAME: ("_keras_api_names", "_keras_api_names_v1"),
    ESTIMATOR_API_NAME: ("_estimator_api_names", "_estimator_api_names_v1"),
}
SUBPACKAGE_NAMESPACES = (ESTIMATOR_API_NAME,)


class SymbolAlreadyExposedError(Exception):
    """The symbol already carries API names for this API."""


class SymbolExposedTwiceError(Exception):
    """Two different symbols claim the same API name."""


class InvalidSymbolNameError(Exception):
    """The name lies in a namespace this API may not export to."""


class api_export:  # noqa: N801 - TensorFlow's name
    """Decorator: `@api_export("math.add", "add", v1=[...], api_name="tensorflow")`."""

    def __init__(self, *names: str, v1: list[str] | tuple[str, ...] | None = None,
                 api_name: str = TENSORFLOW_API_NAME, allow_multiple_exports: bool = False, **kwargs):
        if "v2" in kwargs:
            raise ValueError("v2 names must be passed as positional arguments")
        if kwargs:
            raise TypeError(f"unexpected arguments: {', '.join(kwargs)}")
        self._names = tuple(names)
        self._names_v1 = tuple(v1) if v1 is not None else self._names  # v1 defaults to the v2 names
        self._api_name = api_name
        self._allow_multiple_exports = allow_multiple_exports
        self._validate_symbol_names()

    def _validate_symbol_names(self) -> None:
        all_names = set(self._names) | set(self._names_v1)
        if self._api_name == TENSORFLOW_API_NAME:
            for sub in SUBPACKAGE_NAMESPACES:
                if any(n == sub or n.startswith(sub + ".") for n in all_names):
                    raise InvalidSymbolNameError(f"@tf_export is not allowed to export symbols under {sub}.*")
        elif not all(n.startswith(self._api_name) for n in all_names):
            raise InvalidSymbolNameError(f"can only export symbols under the package name {self._api_name}.*")

    def __call__(self, symbol):
        names_attr, names_attr_v1 = API_ATTRS[self._api_name]
        self._set_attr(symbol, names_attr, self._names)
        self._set_attr(symbol, names_attr_v1, self._names_v1)
        return symbol  # unchanged: the decorator only annotates

    def _set_attr(self, symbol, attr: str, names: tuple[str, ...]) -> None:
        # `in __dict__`, not hasattr: a subclass must not count as exported through its parent.
        if attr in symbol.__dict__ and not self._allow_multiple_exports:
            raise SymbolAlreadyExposedError(f"{symbol.__name__} is already exposed as {getattr(symbol, attr)}")
        setattr(symbol, attr, names)


tf_export = functools.partial(api_export, api_name=TENSORFLOW_API_NAME)
keras_export = functools.partial(api_export, api_name=KERAS_API_NAME)


class ApiRegistry:
    """Collects exported symbols of one API and builds its namespaces (what TF's generator writes)."""

    def __init__(self, api_name: str = TENSORFLOW_API_NAME, root_name: str = "tf"):
        self.api_name, self.root_name = api_name, root_name
        self.v2: dict[str, object] = {}
        self.v1: dict[str, object] = {}

    def add(self, symbol) -> None:
        names_attr, names_attr_v1 = API_ATTRS[self.api_name]
        for table, attr in ((self.v2, names_attr), (self.v1, names_attr_v1)):
            for name in symbol.__dict__.get(attr, ()):
                if name in table and table[name] is not symbol:
                    raise SymbolExposedTwiceError(
                        f"Trying to export multiple symbols with same name: {name} "
                        f"({table[name].__name__} and {symbol.__name__})")
                table[name] = symbol

    def collect(self, namespace: dict) -> int:
        """Add every symbol in a module-like dict that carries this API's names; returns how many."""
        names_attr, names_attr_v1 = API_ATTRS[self.api_name]
        found = [obj for obj in namespace.values()
                 if {names_attr, names_attr_v1} & set(getattr(obj, "__dict__", {}))]
        for obj in found:
            self.add(obj)
        return len(found)

    def name_to_symbol(self) -> dict[str, object]:
        """The lookup table of newer TensorFlow versions: v2 names as they are, v1 names as compat.v1.*."""
        return {**self.v2, **{f"compat.v1.{name}": symbol for name, symbol in self.v1.items()}}

    def get_symbol_from_name(self, name: str):
        return self.name_to_symbol().get(name)

    def build(self, version: int = 2) -> types.ModuleType:
        """The package as TF `version` shows it: its own names at the root, plus compat.v1 and compat.v2."""
        root = types.ModuleType(self.root_name)
        main = self.v2 if version == 2 else self.v1
        for prefix, table in (("", main), ("compat.v1.", self.v1), ("compat.v2.", self.v2)):
            for name, symbol in table.items():
                _place(root, prefix + name, symbol)
        return root


def _place(root: types.ModuleType, dotted: str, symbol) -> None:
    """Create the intermediate modules of `dotted` under `root` and bind the last part to `symbol`."""
    *parents, leaf = dotted.split(".")
    node = root
    for part in parents:
        child = node.__dict__.get(part)
        if child is None:
            child = types.ModuleType(f"{node.__name__}.{part}")
            setattr(node, part, child)
        node = child
    setattr(node, leaf, symbol)


def resolve(root: types.ModuleType, dotted: str):
    """`resolve(tf, "compat.v1.app.run")` is `tf.compat.v1.app.run`; AttributeError when absent."""
    return functools.reduce(getattr, dotted.split("."), root)


def define_api(export=tf_export) -> dict[str, object]:
    """The article's example exports (platform_app.run, math_ops_mini.*), by Python name."""

    @export(v1=["app.run"])  # TF1 only: gone from the v2 root, still in tf.compat.v1
    def run(main=None, argv=None):
        argv = ["prog"] if argv is None else argv
        return main(argv)

    @export("math.add", "add")
    def add(x, y):
        return x + y

    @export("math.square", v1=["math.square", "square"])
    def square(x):
        return x * x

    @export("nn.relu")
    def relu(x):
        return x if x > 0 else 0

    return {"run": run, "add": add, "square": square, "relu": relu}


def subclass_exports() -> dict[str, object]:
    """The article's reason for `__dict__` rather than hasattr: a subclass SEES its parent's `_tf_api_names`
    through attribute lookup, but it is not exported by that. Exporting the subclass under its own name must
    work, and a subclass never exported must not be collected under its parent's name."""
    class Layer:
        pass
    tf_export("layers.Layer")(Layer)  # not as @: the subclasses below need the class itself

    class Dense(Layer):  # exported below under its own name
        pass

    class Conv(Layer):   # never exported
        pass

    inherited = getattr(Dense, "_tf_api_names", None)  # what hasattr would see: the parent's names
    error = _raised(lambda: tf_export("layers.Dense")(Dense))
    registry = ApiRegistry()
    collected = registry.collect({"Layer": Layer, "Dense": Dense, "Conv": Conv})
    return {"inherited": inherited, "export_error": error, "collected": collected,
            "dense_names": Dense.__dict__.get("_tf_api_names"), "layer_names": Layer._tf_api_names,
            "v2": {name: sym.__name__ for name, sym in registry.v2.items()}}


def _raised(fn) -> str | None:
    """'ErrorType message' of the exception fn() raises, or None."""
    try:
        fn()
    except Exception as exc:  # the demo reports whichever error comes, and checks its type and text
        return f"{type(exc).__name__} {exc}"
    return None


def run(report: Report) -> None:
    report.device = "cpu"

    # tf_export is a partial of the api_export class; calling it makes a decorator instance.
    partial_ok = tf_export.func is api_export and tf_export.keywords == {"api_name": TENSORFLOW_API_NAME}
    decorator = tf_export(v1=["app.run"])

    def app_run(main=None, argv=None):
        return main(argv)
    result = decorator(app_run)
    report.log(f"tf_export: {type(tf_export).__name__}, func is api_export {tf_export.func is api_export}, "
               f"keywords {tf_export.keywords}")
    report.log(f"tf_export(v1=['app.run'])(app_run) is app_run: {result is app_run}; "
               f"_tf_api_names = {app_run._tf_api_names}, _tf_api_names_v1 = {app_run._tf_api_names_v1}")

    # The generator's side: collect the marked symbols, build tf (v2) and a TF1-style root.
    symbols = define_api()
    registry = ApiRegistry()
    collected = registry.collect(symbols)
    tf2, tf1 = registry.build(version=2), registry.build(version=1)
    paths = [(tf2, "TF2", n, s) for n, s in registry.v2.items()] \
        + [(tf1, "TF1", f"compat.v2.{n}", s) for n, s in registry.v2.items()] \
        + [(tf2, "TF2", f"compat.v1.{n}", s) for n, s in registry.v1.items()] \
        + [(tf1, "TF1", n, s) for n, s in registry.v1.items()]
    resolved = {}
    for root, label, dotted, symbol in paths:
        try:
            resolved[f"{label} tf.{dotted}"] = resolve(root, dotted) is symbol
        except AttributeError:
            resolved[f"{label} tf.{dotted}"] = False
    for key, ok in resolved.items():
        report.log(f"{key} -> {'the same function object' if ok else 'MISSING or a different object'}")
    report.metric("exported_paths", len(resolved))
    v2_root_lacks = (not hasattr(tf2, "app"), not hasattr(tf2, "square"))
    report.log(f"TF2 root has app / square: {not v2_root_lacks[0]} / {not v2_root_lacks[1]}")

    recorded = {name: (fn._tf_api_names, fn._tf_api_names_v1) for name, fn in symbols.items()}
    report.log(f"recorded names: {recorded}")
    table = registry.name_to_symbol()
    lookups = {name: registry.get_symbol_from_name(name) is not None
               for name in ("add", "math.add", "compat.v1.square", "square", "compat.v1.app.run", "app.run")}
    report.log(f"name table: {len(table)} names; lookups {lookups}")

    # Refusals.
    def impostor(x, y):
        return x - y
    tf_export("math.add")(impostor)
    twice = _raised(lambda: registry.add(impostor))
    report.log(f"registry.add(impostor exported as math.add) -> {twice}")

    def scale(x, k=2):
        return x * k
    tf_export("math.scale")(scale)
    again = _raised(lambda: tf_export("scale")(scale))
    tf_export("scale", allow_multiple_exports=True)(scale)
    keras_export("keras.layers.scale")(scale)
    after = (scale._tf_api_names, scale._keras_api_names)
    report.log(f"tf_export('scale')(scale) again -> {again}; with allow_multiple_exports, then keras_export: {after}")
    bad_args = (_raised(lambda: tf_export(v2=["math.scale"])), _raised(lambda: tf_export("estimator.Estimator")))
    report.log(f"tf_export(v2=[...]) -> {bad_args[0]}; tf_export('estimator.Estimator') -> {bad_args[1]}")

    sub = subclass_exports()
    report.log(f"subclass of an exported class: {sub}")

    report.check("tf_export 是对 api_export 类的偏函数", partial_ok,
                 f"keywords {tf_export.keywords} (oracle: TensorFlow's definition, functools.partial(api_export, "
                 f"api_name='tensorflow'))")
    report.check("装饰器原样返回函数（is）", result is app_run and symbols["add"](2, 3) == 5,
                 f"{result is app_run} (oracle: identity with the function object passed in; add(2, 3) = 5)")
    report.check("名字记录在函数属性上（v1 默认同 v2）",
                 recorded == {"run": ((), ("app.run",)), "add": (("math.add", "add"), ("math.add", "add")),
                              "square": (("math.square",), ("math.square", "square")),
                              "relu": (("nn.relu",), ("nn.relu",))},
                 f"{recorded} (oracle: the names written in the article's decorators)")
    counts = (collected, len(registry.v2), len(registry.v1), len(resolved))
    report.check("每个导出名字都解析到同一个函数对象", all(resolved.values()) and counts == (4, 4, 6, 20),
                 f"{sum(resolved.values())}/{len(resolved)} paths resolve to their symbol; "
                 f"(symbols, v2 names, v1 names, paths) = {counts} (oracle: the article's export table, counted by hand)")
    report.check("只有 v1 名字的符号不在 TF2 根命名空间，但在 tf.compat.v1",
                 all(v2_root_lacks) and tf2.compat.v1.app.run is symbols["run"] and tf1.app.run is symbols["run"]
                 and tf2.compat.v1.app.run(lambda argv: f"main got {argv}") == "main got ['prog']",
                 f"TF2 root lacks app, square: {v2_root_lacks} (oracle: the article: v1-only names live in compat.v1)")
    report.check("登记表共 10 个名字，可按名字反查",
                 len(table) == 10 and lookups == {"add": True, "math.add": True, "compat.v1.square": True,
                                                  "square": False, "compat.v1.app.run": True, "app.run": False},
                 f"{len(table)} names, {lookups} (oracle: the article's table, 4 v2 + 6 compat.v1 names)")
    report.check("同一名字导出给另一个函数被拒绝",
                 twice == "SymbolExposedTwiceError Trying to export multiple symbols with same name: "
                          "math.add (add and impostor)" and registry.v2["math.add"] is symbols["add"],
                 f"{twice} (oracle: TensorFlow's SymbolExposedTwiceError text)")
    report.check("同一函数重复导出被拒绝（除非 allow_multiple_exports）",
                 again == "SymbolAlreadyExposedError scale is already exposed as ('math.scale',)"
                 and after == (("scale",), ("keras.layers.scale",)),
                 f"{again}; afterwards {after} (oracle: TensorFlow's SymbolAlreadyExposedError text)")
    report.check("v2= 关键字与 estimator.* 名字被拒绝",
                 bad_args == ("ValueError v2 names must be passed as positional arguments",
                              "InvalidSymbolNameError @tf_export is not allowed to export symbols under estimator.*"),
                 f"{bad_args} (oracle: TensorFlow's api_export argument checks)")
    report.check("子类可另行导出，未导出的子类不会冒用父类的名字（查 __dict__ 而非 hasattr）",
                 sub == {"inherited": ("layers.Layer",), "export_error": None, "collected": 2,
                         "dense_names": ("layers.Dense",), "layer_names": ("layers.Layer",),
                         "v2": {"layers.Layer": "Layer", "layers.Dense": "Dense"}},
                 f"{sub} (oracle: the article, step 3 of api_export: a subclass only sees its parent's names "
                 f"through attribute lookup)")


def main(argv=None):
    raise SystemExit(main_for(SPEC, run, argv))


if __name__ == "__main__":
    main()
