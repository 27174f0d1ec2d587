"""The edm-sampling demo's two figures, drawn with matplotlib's Figure on the Agg canvas (no pyplot: no
global figure manager, nothing to close). Margins are fixed: tight_layout cost ~1 s of CPU per figure.

`samples_png` writes the scatter panels (fresh data, Heun, Euler, the learned denoiser's Heun samples);
`error_vs_nfe_png` returns the convergence plot as PNG bytes, so the demo can draw it while its learned
denoiser still trains and save it after samples.png.
"""
from __future__ import annotations

import io


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def samples_png(path, mixture, fresh, x_heun, x_euler, x_learned, num_steps: int) -> None:
    """Coordinates 1-2 of each sample set, one panel each, on the mixture's square."""
    panels = [("data (fresh)", fresh), (f"Heun, N={num_steps}", x_heun), (f"Euler, N={num_steps}", x_euler)]
    if x_learned is not None:
        panels.append((f"learned D, Heun N={num_steps}", x_learned))
    fig = _figure(4 * len(panels), 4)
    axes = fig.subplots(1, len(panels), sharex=True, sharey=True)
    lim = 1.3 * float(mixture.means[:, :2].abs().max()) + 0.3
    for ax, (title, pts) in zip(axes, panels):
        pts = pts[:, :2].clamp(-3 * lim, 3 * lim).numpy()  # NumPy: matplotlib's unit checks would unbind a tensor
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.4)
        # A fixed title height (y = 1, where it sits anyway) spares matplotlib measuring the tick labels.
        ax.set_title(title if mixture.dim == 2 else f"{title} (coords 1-2)", y=1.0)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.07, top=0.92, wspace=0.08)
    fig.savefig(path, dpi=110)


def error_vs_nfe_png(study: dict, num_steps: int, ref_steps: int) -> bytes:
    """Median final-sample error against NFE, log-log, for each (sampler, ρ) of the convergence study."""
    fig = _figure(6, 4.5)
    ax = fig.subplots()
    for (name, rho), rows in study.items():
        nfe, err = zip(*rows)
        ax.loglog(nfe, err, ("o" if name == "heun" else "s") + ("-" if rho == 7.0 else "--"),
                  color="tab:orange" if name == "heun" else "tab:blue", alpha=1.0 if rho == 7.0 else 0.55,
                  label=f"{name.capitalize()}, ρ={rho:g}")
    ax.axvline(2 * num_steps - 1, color="gray", lw=0.8, ls=":")
    ax.set_xlabel("NFE (denoiser calls)")
    ax.set_ylabel(f"median ‖x − x_ref‖ (ref: Heun N={ref_steps})")
    ax.set_title("error vs NFE", y=1.0)
    ax.legend()
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.12, top=0.93)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    return png.getvalue()
