"""PyTorch autograd checked three ways, and the rules of `.grad`, `no_grad` and `detach`.

    python -m demos.autograd [--param seed=0] [--param size=4]

For the article's f(x) = Σ sin(x_i) x_i² on `torch.randn(size)` in float64 (article `pytorch-autograd`;
seed 0 and size 4 give its numbers, 3.151379 0.252161 0.865026 0.884289): the gradient from `backward()`,
from central finite differences and from the analytic formula 2x sin x + x² cos x must agree within
tolerances; `torch.autograd.gradcheck` must pass, and must catch the article's `BadSquare` whose backward
forgets the factor 2. Then: two backward calls accumulate into `.grad` (exactly 2× one call) and `zero_()`
resets it; tensors made under `torch.no_grad()` do not require grad; an in-place write to a leaf that
requires grad is refused outside `no_grad`; `detach()` shares storage with its source but is cut from the
graph, so a product with a detached factor gets only the other factor's gradient. Runs on the CPU (the
point is exactness, not speed). Typical duration: 2-3 s, most of it importing torch.
"""
from __future__ import annotations

from demos.harness import Report, main_for
from demos.spec import DemoSpec, Param

SPEC = DemoSpec(
    id="autograd",
    title="自动求导：autograd、有限差分与解析梯度",
    summary="在 float64 下比较 autograd、中心有限差分与解析梯度，运行 gradcheck，并验证梯度累加与清零、no_grad 和 detach 的行为。",
    articles=("pytorch-autograd",),
    module="demos.autograd",
    params=(
        Param("seed", int, 0, "随机输入的种子", min=0, max=2**31 - 1),
        Param("size", int, 4, "输入向量长度", min=1, max=64),
    ),
    timeout_s=60,
)

FD_STEP = 1e-6
TOL_AUTOGRAD = 1e-12   # autograd and the formula compute the same expression: rounding only
TOL_FINITE_DIFF = 1e-6  # central differences: O(h²) truncation plus rounding/h


def f(x):
    """f(x) = Σ sin(x) x², on a torch tensor (the article's function)."""
    return (x.sin() * x.pow(2)).sum()


def analytic_grad(x):
    """∂f/∂x_i = 2 x_i sin x_i + x_i² cos x_i."""
    return 2 * x * x.sin() + x ** 2 * x.cos()


def central_differences(fn, x, h: float = FD_STEP):
    """(f(x + h e_i) - f(x - h e_i)) / 2h for every coordinate i."""
    import torch

    grad = torch.empty_like(x)
    with torch.no_grad():
        for i in range(x.numel()):
            e = torch.zeros_like(x)
            e.view(-1)[i] = h
            grad.view(-1)[i] = (fn(x + e) - fn(x - e)) / (2 * h)
    return grad


def bad_square():
    """The article's autograd.Function whose backward is wrong (x instead of 2x)."""
    import torch

    class BadSquare(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, grad_out):
            (x,) = ctx.saved_tensors
            return grad_out * x
    return BadSquare


def nonscalar_backward() -> tuple[str | None, list[float]]:
    """The article's edge: backward() on a non-scalar output needs `gradient=v` and computes vᵀJ.
    Returns (the error of the bare backward(), x.grad after backward(gradient=v))."""
    import torch

    x = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
    y = x ** 2
    try:
        y.backward()
        error = None
    except RuntimeError as exc:
        error = f"{type(exc).__name__} {exc}"
    v = torch.tensor([1.0, 0.1, 0.01], dtype=torch.float64)
    y.backward(gradient=v)
    return error, x.grad.tolist()


def run(report: Report, seed: int = 0, size: int = 4) -> None:
    import torch

    report.device = "cpu"
    gen = torch.Generator().manual_seed(seed)  # same stream as torch.manual_seed(seed), without global state
    x = torch.randn(size, generator=gen, dtype=torch.float64).requires_grad_()
    report.log(f"x = {[round(v, 4) for v in x.tolist()]}")

    # Three gradients of the same function.
    f(x).backward()
    g_auto = x.grad.detach().clone()
    g_formula = analytic_grad(x.detach())
    g_fd = central_differences(f, x.detach())
    err_auto = (g_auto - g_formula).abs().max().item()
    err_fd = (g_fd - g_formula).abs().max().item()
    report.metric("gradient", [round(g, 6) for g in g_auto.tolist()])
    report.metric("max_abs_err_autograd", err_auto)
    report.metric("max_abs_err_finite_diff", err_fd)
    report.log(f"autograd: {[f'{g:.6f}' for g in g_auto.tolist()]}")
    report.log(f"formula : {[f'{g:.6f}' for g in g_formula.tolist()]}")
    report.log(f"numeric : {[f'{g:.6f}' for g in g_fd.tolist()]}")
    report.log(f"max |autograd - formula| = {err_auto:.2e}, max |finite diff - formula| = {err_fd:.2e}")

    gradcheck_ok = torch.autograd.gradcheck(f, (x.detach().clone().requires_grad_(),), eps=1e-6, atol=1e-5)
    bad_caught = not torch.autograd.gradcheck(bad_square().apply, (x.detach().clone().requires_grad_(),),
                                              raise_exception=False)
    report.log(f"torch.autograd.gradcheck(f, x) -> {gradcheck_ok}; on BadSquare -> {not bad_caught}")

    # .grad accumulates across backward calls until it is zeroed.
    x.grad = None
    f(x).backward()
    once = x.grad.clone()
    f(x).backward()
    twice = x.grad.clone()
    x.grad.zero_()
    zeroed = x.grad.clone()
    accum_err = (twice - 2 * once).abs().max().item()
    report.log(f"after 1 backward {once[0].item():.6f}, after 2 {twice[0].item():.6f}, after zero_() {zeroed[0].item()}")

    # no_grad: results are plain tensors with no history.
    with torch.no_grad():
        y = x * 2
    report.log(f"under no_grad: y.requires_grad = {y.requires_grad}, y.grad_fn = {y.grad_fn}")

    # A leaf that requires grad refuses in-place writes while the graph is being recorded.
    try:
        x[0] = 1.0
        leaf_write = None
    except RuntimeError as exc:
        leaf_write = str(exc)
    with torch.no_grad():
        x[0] = x[0].item()  # allowed here (how optimizers update parameters); same value, so x is unchanged
    report.log(f"x[0] = 1.0 outside no_grad -> RuntimeError: {leaf_write}")

    # detach: same storage, no graph.
    d = x.detach()
    shares = d.data_ptr() == x.data_ptr()
    before = x[0].item()
    d[0] += 1.0  # in place through the detached view changes x too
    seen_through_x = x[0].item() == before + 1.0
    d[0] = before  # put x back exactly
    x.grad = None
    (d * x).sum().backward()  # d is a constant here: gradient d, not 2x
    detach_grad_err = (x.grad - x.detach()).abs().max().item()
    report.log(f"detach: same data_ptr {shares}, in-place change seen through x {seen_through_x}, "
               f"requires_grad {d.requires_grad}, grad of (d*x).sum() equals d: {detach_grad_err == 0}")

    ns_error, ns_grad = nonscalar_backward()
    report.log(f"non-scalar y = x**2: backward() -> {ns_error}; backward(gradient=v) -> x.grad = {ns_grad}")

    report.check("autograd 与解析梯度一致", err_auto <= TOL_AUTOGRAD, f"max abs diff {err_auto:.2e} ≤ {TOL_AUTOGRAD:g} (oracle: the "
                 f"hand-derived 2x sin x + x² cos x)")
    report.check("中心有限差分与解析梯度一致", err_fd <= TOL_FINITE_DIFF, f"max abs diff {err_fd:.2e} ≤ {TOL_FINITE_DIFF:g} (oracle: the "
                 f"hand-derived gradient; differences need no autograd)")
    report.check("gradcheck 通过，并能发现错误的 backward", gradcheck_ok is True and bad_caught,
                 f"gradcheck(f) {gradcheck_ok}, gradcheck(BadSquare) {not bad_caught} (oracle: gradcheck's "
                 f"own finite differences)")
    report.check("两次 backward 梯度累加为 2 倍，zero_() 清零", accum_err == 0 and bool((zeroed == 0).all()),
                 f"max |twice - 2·once| = {accum_err}, zeroed all 0: {bool((zeroed == 0).all())} (oracle: "
                 f"2 × the first gradient, exactly)")
    report.check("no_grad 下结果不需要梯度", y.requires_grad is False and y.grad_fn is None,
                 f"requires_grad={y.requires_grad}, grad_fn={y.grad_fn} (oracle: the article: no history under no_grad)")
    report.check("需要梯度的叶子张量不能在图追踪时原地修改",
                 leaf_write == "a view of a leaf Variable that requires grad is being used in an in-place operation.",
                 f"{leaf_write!r} (oracle: PyTorch's message quoted in the article)")
    report.check("detach 共享存储但切断计算图",
                 shares and seen_through_x and d.requires_grad is False and d.grad_fn is None and detach_grad_err == 0,
                 f"shares storage {shares}, in-place visible {seen_through_x}, grad err {detach_grad_err} "
                 f"(oracle: data_ptr equality; ∂(d·x)/∂x = d with d constant)")
    report.check("非标量输出的 backward 需要 gradient=v，得到 vᵀJ",
                 ns_error == "RuntimeError grad can be implicitly created only for scalar outputs"
                 and ns_grad == [2.0, 0.4, 0.06],
                 f"{ns_error!r}, x.grad = {ns_grad} (oracle: the article's output, vᵀ diag(2x) = [2, 0.4, 0.06])")


def main(argv=None):
    raise SystemExit(main_for(SPEC, run, argv))


if __name__ == "__main__":
    main()
