"""How a demo run looks to a client: checks parsed from the live lines, Markdown summaries, status dicts.

    parse_checks(lines)                  ✓/✗ per check from the harness's `CHECK` lines, as they arrive
    status_markdown(handle, n_checks)    queue position, elapsed time and progress, or the final result
    checks_markdown(checks)              the checks as a Markdown list with a passed/total count
    scan_artifacts(handle, lines, ...)   images and text transcripts whose files are complete
    status_dict(handle)                  a run for API clients; history_rows(handles) for the history table
    loadable_specs(), list_demos()       the demos whose modules import, as specs or as API rows

It only reads a `demos.runner.RunHandle`'s public attributes and the run folder's files, and returns plain
strings, lists and dicts; it knows nothing about gradio (app.py turns these into component updates).
"""
from __future__ import annotations

import time
from pathlib import Path

from demos import labels, registry
from demos.__main__ import spec_row
from demos.spec import DemoSpec

LOG_LINES = 400                    # the panel shows the log's tail
API_LOG_LINES = 40                 # status_dict's log tail
IMAGE_EXT = (".png", ".jpg", ".jpeg", ".gif", ".webp")
TEXT_EXT = (".txt", ".log", ".md")
HISTORY_HEADERS = ["运行", "演示", "状态", "检查", "耗时 s"]
DEVICE_LABEL = {"cpu": "CPU", "cuda": "GPU（CUDA）", "cuda-preferred": "优先 GPU"}
STATUS_LABEL = {"queued": "排队中", "running": "运行中", "passed": "通过 ✓", "failed": "未通过 ✗",
                "timeout": "超时 ✗", "error": "出错 ✗", "cancelled": "已取消"}


def loadable_specs() -> list[DemoSpec]:
    """Every registered demo whose module imports; a broken one is left out, not fatal."""
    specs = []
    for demo_id in registry.DEMO_IDS:
        try:
            specs.append(registry.get(demo_id))
        except Exception:
            continue
    return specs


def list_demos() -> list[dict]:
    return [spec_row(s) for s in loadable_specs()]


def parse_checks(lines: list[str]) -> list[dict]:
    """Checks from `CHECK ✓ name: detail` lines, as the harness logs them while the demo runs."""
    checks = []
    for line in lines:
        if line.startswith("CHECK ") and len(line) > 8:
            mark, rest = line[6], line[8:]
            name, _, detail = rest.partition(": ")
            checks.append({"name": name, "passed": mark == "✓", "detail": detail})
    return checks


def checks_markdown(checks: list[dict]) -> str:
    """The checks as a list: ✓/✗ in colour, the Chinese name (the id as a tooltip), the detail's numbers tidied."""
    if not checks:
        return ""
    lines = []
    for c in checks:
        ok = bool(c.get("passed"))
        mark = '<span class="kb-pass">✓</span>' if ok else '<span class="kb-fail">✗</span>'
        name = str(c["name"])
        title = f'<span title="{_attr(name)}">{_md(labels.label(name))}</span>'
        # The detail is the demo's own output (values, its oracle's description): marked as such.
        detail = (f'：<span class="kb-detail">{_md(labels.tidy_numbers(str(c["detail"])))}</span>'
                  if c.get("detail") else "")
        lines.append(f"- {mark} **{title}**{detail}")
    return f"检查（{sum(bool(c.get('passed')) for c in checks)}/{len(checks)} 通过）：\n\n" + "\n".join(lines)


def _md(text) -> str:
    return str(text).replace("<", "&lt;").replace("*", "\\*").replace("_", "\\_")


def _attr(text) -> str:
    return str(text).replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def demo_title(demo_id: str) -> str:
    try:
        return registry.get(demo_id).title
    except Exception:
        return demo_id


def expected_checks(handles, demo_id: str) -> int | None:
    """How many checks the demo made in its latest ended run (the phases of its progress bar), if known."""
    for h in reversed(list(handles)):
        checks = (h.result or {}).get("checks") if h.demo == demo_id and h.done else None
        if checks:
            return len(checks)
    return None


def status_markdown(handle, n_checks: int, max_concurrent: int | None = None,
                    expected: int | None = None) -> str:
    label = STATUS_LABEL.get(handle.status, handle.status)
    css = {"passed": "kb-pass", "failed": "kb-fail", "timeout": "kb-fail", "error": "kb-fail"}.get(handle.status)
    shown = f'<span class="{css}">{label}</span>' if css else label
    head = (f'**<span title="{_attr(handle.demo)}">{_md(demo_title(handle.demo))}</span>** · '
            f"运行 {_md(handle.id)} · **{shown}**")
    if handle.status == "queued":
        limit = f"（{max_concurrent} 个）" if max_concurrent else ""
        return (f"{head}\n\n已加入队列：同时运行的演示已达上限{limit}，排在第 {handle.queue_position or 1} 位，"
                "轮到时自动开始。")
    if handle.status == "running":
        elapsed = time.time() - (handle.started or time.time())
        if expected:
            done = min(n_checks, expected)
            phase = (f"第 {done + 1}/{expected} 项检查" if done < expected
                     else f"{expected} 项检查已完成，正在收尾")
            bar = f'<progress value="{done / expected:.3f}" max="1" style="width:100%"></progress>'
        else:
            phase = f"已完成 {n_checks} 项检查"
            bar = '<progress style="width:100%"></progress>'
        return f"{head}\n\n{phase} · 已用时 {elapsed:.1f} s（上限 {handle.timeout_s:g} s）\n\n{bar}"
    result = handle.result or {}
    # Wall time of the whole run (interpreter start and imports included) where the runner knows it; the
    # demo's own duration_s covers only its core and reads 0.0 s for the quick concept demos.
    wall = (handle.ended - handle.started) if handle.started and handle.ended else result.get("duration_s", 0)
    device = result.get("device")
    lines = [head, f"耗时 {wall:.2f} s（演示本身 {result.get('duration_s', 0):.2f} s）· "
                   f"设备 {DEVICE_LABEL.get(device, _md(device or '未知'))}"]
    if result.get("error"):
        lines.append(f"错误：\n```\n{relative_paths(handle, str(result['error']))[-1500:]}\n```")
    metrics = {k: v for k, v in (result.get("metrics") or {}).items() if k != "duration_s"}
    if metrics:
        rows = [f'- <span title="{_attr(k)}">{_md(labels.label(k))}</span>：{_md(labels.value(k, v))}'
                for k, v in list(metrics.items())[:12]]
        lines.append("指标：\n\n" + "\n".join(rows))
    return "\n\n".join(lines)


def relative_paths(handle, text: str) -> str:
    """The run folder's absolute path dropped from text: `…/runs/<id>/out.png` reads `out.png`."""
    for folder in sorted({str(Path(handle.run_dir)), str(Path(handle.run_dir).resolve())}, key=len, reverse=True):
        text = text.replace(folder + "/", "").replace(folder, ".")
    return text


def log_text(handle, lines: list[str]) -> str:
    return relative_paths(handle, "\n".join(lines))


def scan_artifacts(handle, lines: list[str], sizes: dict, final: bool) -> tuple[list, str]:
    """Images and transcripts whose files are complete: size unchanged since the last poll, or run ended.

    `sizes` is the caller's memory between polls (file name -> size seen last time); it is updated here.
    """
    names = (handle.result or {}).get("artifacts") if final else None
    names = names or [l[len("ARTIFACT "):].strip() for l in lines if l.startswith("ARTIFACT ")]
    images, texts = [], []
    run_dir = Path(handle.run_dir).resolve()
    for name in dict.fromkeys(names):
        path = (run_dir / name).resolve()
        if run_dir not in path.parents or not path.is_file():   # only files inside the run folder
            continue
        size = path.stat().st_size
        stable = final or (size > 0 and sizes.get(name) == size)
        sizes[name] = size
        if not stable:
            continue
        if name.lower().endswith(IMAGE_EXT):
            images.append((str(path), name))
        elif name.lower().endswith(TEXT_EXT):
            texts.append(f"=== {name}\n{path.read_text(encoding='utf-8', errors='replace')[-20000:]}")
    return images, "\n\n".join(texts)


def status_dict(handle) -> dict:
    """A run for API clients: status, queue position, checks, log tail, result."""
    lines = list(_lines_now(handle))
    result = handle.result or {}
    return {"run_id": handle.id, "demo": handle.demo, "params": handle.params, "status": handle.status,
            "queue_position": handle.queue_position, "done": handle.done,
            "checks": result.get("checks") or parse_checks(lines), "passed": handle.status == "passed",
            "log_tail": "\n".join(lines[-API_LOG_LINES:]), "result": handle.result}


def _lines_now(handle) -> list[str]:
    """The lines so far without waiting (RunHandle.lines() blocks until the run ends)."""
    try:
        return (Path(handle.run_dir) / "log.txt").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def history_rows(handles) -> list[list]:
    rows = []
    for h in reversed(list(handles)):
        checks = (h.result or {}).get("checks") or []
        duration = (h.result or {}).get("duration_s")
        rows.append([h.id, demo_title(h.demo), STATUS_LABEL.get(h.status, h.status),
                     f"{sum(bool(c.get('passed')) for c in checks)}/{len(checks)}" if checks else "",
                     f"{duration:.1f}" if isinstance(duration, (int, float)) else ""])
    return rows[:200]
