"""Run demos as subprocesses: one fresh folder per run, live output lines, timeouts, a FIFO queue.

`Runner(runs_dir).submit("gc-cycles", {"n": 3})` validates the parameters at once (raising `UnknownDemo`
or `DemoParamError`), queues the run and returns a `RunHandle`. A run executes
`python -m <spec.module> --out . --params-json <json>` with its folder as cwd, in its own process group,
stdout and stderr merged; every line goes to `log.txt` and to `RunHandle.lines()` as it arrives. The
timeout (spec.timeout_s unless overridden) and `cancel()` kill the whole process group (SIGTERM, then
SIGKILL after `KILL_GRACE_S`), so no child a demo started survives it.

Scheduling: at most `max_concurrent` runs at once; a `cuda-preferred` demo also takes the one GPU token
when a GPU is present (one GPU run at a time). Waiting runs form a FIFO queue; a CPU run may start ahead
of a GPU run that waits only for the GPU. Everything is event-driven: submit, cancel and the end of a
run call `_dispatch`, which starts what can start; each running run has one worker thread.

Limits (all optional; the app sets them): `max_queue` runs waiting at once and `max_per_client` runs one
client (the `client` given to `submit`, e.g. a browser session) may have queued or running; past either,
`submit` raises `QueueFull` with a Chinese message and queues nothing. Finished runs are pruned, oldest
first, beyond `keep_runs` folders or `keep_days` of age (never a live one). `get(run_id)` finds one run
without reading the others.

Per run folder: `run.json` (the runner's record: id, demo, params, status, timestamps, exit code),
`log.txt`, and `result.json` — written by the demo's harness, or by the runner when the demo left none
(crash, timeout, cancel). This module knows processes and files; it knows nothing about what a demo does.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Iterator

from demos import registry
from demos.harness import RESULT_FILE
from demos.spec import DemoSpec

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUNS_DIR = ROOT / ".demo-runs"   # git-ignored; the CLI's default, and the app's
RUN_FILE = "run.json"
LOG_FILE = "log.txt"
KILL_GRACE_S = 3.0
LOG_TAIL_LINES = 40
TERMINAL = ("passed", "failed", "timeout", "error", "cancelled")
RUN_ID = re.compile(r"\d{8}-\d{6}-[a-z0-9-]{1,64}-[0-9a-f]{6}")   # what submit() names a run; nothing else is a run
PRUNE_EVERY_S = 60.0


class QueueFull(ValueError):
    """The demo queue (or this client's share of it) is full; the message says so in Chinese. Nothing queued."""


def cuda_present() -> bool:
    """A GPU driver is visible, judged without importing torch (the runner stays light)."""
    return shutil.which("nvidia-smi") is not None or Path("/proc/driver/nvidia").exists()


def live_group_members(pgid: int) -> list[int]:
    """Pids of processes in group `pgid` that are not zombies (a zombie runs nothing; its parent may
    simply not reap it). Read from /proc, so no psutil is needed."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended while we looked
            continue
        # Fields after the parenthesised command name: state ppid pgrp ...
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


class RunnerUnavailable(RuntimeError):
    """The runner cannot take runs now (the demo queue's broker is down); the message says why."""


def make_runner(runs_dir: Path, max_concurrent: int = 2, broker_url: str | None = None,
                max_queue: int | None = None, max_per_client: int | None = None):
    """The local `Runner`, or with a broker URL (KB_DEMO_BROKER=redis://...) the Celery pool's
    `demos.remote.RemoteRunner`: the same submit/RunHandle API and limits, the runs executed by
    `python -m demos worker`."""
    if broker_url:
        from demos.remote import RemoteRunner
        return RemoteRunner(runs_dir, broker_url, max_concurrent=max_concurrent, max_queue=max_queue,
                            max_per_client=max_per_client)
    return Runner(runs_dir, max_concurrent=max_concurrent, max_queue=max_queue, max_per_client=max_per_client)


class RunHandle:
    """One run, queued, running or finished. Thread-safe; created by `Runner.submit` or `load_history`."""

    def __init__(self, run_id: str, spec: DemoSpec | None, demo: str, params: dict, run_dir: Path,
                 timeout_s: float, client: str | None = None):
        self.id = run_id
        self.client = client
        self.spec = spec
        self.demo = demo
        self.params = params
        self.run_dir = run_dir
        self.timeout_s = timeout_s
        self.status = "queued"
        self.queue_position: int | None = None
        self.result: dict | None = None
        self.returncode: int | None = None
        self.pgid: int | None = None
        self.submitted = time.time()
        self.started: float | None = None
        self.ended: float | None = None
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._done = threading.Event()
        self._cancel_requested = False
        self._runner: Runner | None = None

    def __repr__(self) -> str:
        return f"RunHandle({self.id!r}, status={self.status!r})"

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def lines(self) -> Iterator[str]:
        """Every output line from the first one, then the new ones as they arrive; ends with the run."""
        i = 0
        while True:
            with self._cond:
                while i >= len(self._lines) and not self._done.is_set():
                    self._cond.wait()
                batch = self._lines[i:]
                finished = self._done.is_set()
            yield from batch
            i += len(batch)
            if finished and not batch:
                return

    def wait(self, timeout: float | None = None) -> dict:
        """The result dict once the run has ended; TimeoutError if it has not ended within `timeout`."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"run {self.id} still {self.status} after {timeout} s")
        return self.result

    def cancel(self) -> None:
        """Drop a queued run, or kill a running one's process group. No effect once it has ended."""
        if self._runner is not None:
            self._runner._cancel(self)

    # Internal: the worker thread and the runner feed the handle through these.
    def _add_line(self, line: str) -> None:
        with self._cond:
            self._lines.append(line)
            self._cond.notify_all()

    def _finish(self, status: str, result: dict) -> None:
        with self._cond:
            self.status, self.result, self.ended = status, result, time.time()
            self.queue_position = None
        # run.json before anyone waiting learns the run has ended: they may read it at once.
        Runner._write_record(self)
        with self._cond:
            self._done.set()
            self._cond.notify_all()

    def record(self) -> dict:
        return {"id": self.id, "client": self.client, "demo": self.demo, "params": self.params, "status": self.status,
                "timeout_s": self.timeout_s, "submitted": self.submitted, "started": self.started,
                "ended": self.ended, "returncode": self.returncode}


class Runner:
    """Queue and run demos; see the module docstring."""

    def __init__(self, runs_dir: Path, max_concurrent: int = 2, gpu_available: bool | None = None,
                 kill_grace_s: float = KILL_GRACE_S, max_queue: int | None = None,
                 max_per_client: int | None = None, keep_runs: int = 1000, keep_days: float = 30.0):
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be ≥ 1, got {max_concurrent}")
        self.max_queue, self.max_per_client = max_queue, max_per_client
        self.keep_runs, self.keep_days = keep_runs, keep_days
        self._pruned_at = float("-inf")
        self.runs_dir = Path(runs_dir)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.max_concurrent = max_concurrent
        self.gpu_available = cuda_present() if gpu_available is None else gpu_available
        self.kill_grace_s = kill_grace_s
        self._lock = threading.Lock()
        self._queue: deque[RunHandle] = deque()
        self._running: list[RunHandle] = []
        self._gpu_holder: RunHandle | None = None
        self._history: list[RunHandle] = []
        self._by_id: dict[str, RunHandle] = {}

    # ---- public API ------------------------------------------------------------------------------
    def submit(self, demo: str | DemoSpec, params: dict | None = None,
               timeout_s: float | None = None, client: str | None = None) -> RunHandle:
        """Validate now (UnknownDemo, DemoParamError, ValueError for a bad timeout, QueueFull), then queue.

        `demo` is a registry id, or a DemoSpec (tests run their own fixture demos this way). `client`
        names who asks (a session); it counts against `max_per_client` and is kept in run.json."""
        spec = demo if isinstance(demo, DemoSpec) else registry.get(demo)
        values = spec.validate(params or {})
        timeout = spec.timeout_s if timeout_s is None else float(timeout_s)
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout_s}")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_id = f"{stamp}-{spec.id}-{uuid.uuid4().hex[:6]}"
        run_dir = self.runs_dir / run_id
        handle = RunHandle(run_id, spec, spec.id, values, run_dir, timeout, client)
        handle._runner = self
        with self._lock:   # checked and queued under one lock: concurrent submits cannot overshoot
            self._admit(client)
            run_dir.mkdir(parents=True)
            self._write_record(handle)
            self._queue.append(handle)
            self._history.append(handle)
            self._by_id[run_id] = handle
            self._renumber()
        self._dispatch()
        self.prune()
        return handle

    def _admit(self, client: str | None) -> None:
        """QueueFull when the queue, or this client's share, is full (called with the lock held)."""
        if client is not None and self.max_per_client is not None:
            mine = sum(1 for h in (*self._queue, *self._running) if h.client == client)
            if mine >= self.max_per_client:
                raise QueueFull(f"你已有 {mine} 个演示在排队或运行（每人最多 {self.max_per_client} 个），"
                                "请等它们结束后再试。")
        if self.max_queue is not None and len(self._queue) >= self.max_queue \
                and len(self._running) >= self.max_concurrent:
            raise QueueFull(f"演示队列已满（{len(self._queue)} 个在排队），请稍后再试。")

    def get(self, run_id: str) -> RunHandle | None:
        """One run by id: this runner's live handle, else its folder read back; None when there is none.

        Only names `submit` can produce are looked up, so an id can never point outside runs_dir."""
        if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
            return None
        with self._lock:
            live = self._by_id.get(run_id)
        if live is not None:
            return live
        run_dir = self.runs_dir / run_id
        return _load_handle(run_dir) if (run_dir / RUN_FILE).is_file() else None

    def prune(self, force: bool = False) -> list[str]:
        """Delete finished runs beyond the newest `keep_runs` or older than `keep_days`; their ids.

        At most once a minute unless `force`; live runs (queued or running here) are never touched."""
        now = time.time()
        if not force and time.monotonic() - self._pruned_at < PRUNE_EVERY_S:
            return []
        self._pruned_at = time.monotonic()
        with self._lock:
            live = {h.id for h in (*self._queue, *self._running)}
        runs = sorted((d for d in self.runs_dir.iterdir() if RUN_ID.fullmatch(d.name) and d.name not in live),
                      key=_submitted, reverse=True)   # newest first
        cutoff = now - self.keep_days * 86400
        removed = []
        for i, run_dir in enumerate(runs):
            try:
                old = (run_dir / RUN_FILE).stat().st_mtime < cutoff
            except OSError:
                old = True
            if i >= self.keep_runs or old:
                shutil.rmtree(run_dir, ignore_errors=True)
                removed.append(run_dir.name)
        if removed:
            gone = set(removed)
            with self._lock:
                self._history = [h for h in self._history if h.id not in gone]
                for run_id in gone:
                    self._by_id.pop(run_id, None)
        return removed

    def history(self) -> list[RunHandle]:
        """This runner's handles in submit order."""
        with self._lock:
            return list(self._history)

    def load_history(self) -> list[RunHandle]:
        """Every run folder under runs_dir, oldest first; live handles for this runner's own runs."""
        with self._lock:
            live = {h.id: h for h in self._history}
        handles = []
        for run_dir in self.runs_dir.iterdir():
            if not (run_dir / RUN_FILE).is_file():
                continue
            handles.append(live.get(run_dir.name) or _load_handle(run_dir))
        return sorted((h for h in handles if h is not None), key=lambda h: (h.submitted, h.id))

    def close(self) -> None:
        """Cancel everything queued or running (the app shuts down). Returns when the running demos' process
        groups are gone: SIGTERM, then SIGKILL after `kill_grace_s` (the app's process may exit right after)."""
        killers = [thread for thread in map(self._cancel, self.history()) if thread is not None]
        for thread in killers:
            thread.join()

    # ---- scheduling --------------------------------------------------------------------------------
    def _needs_gpu(self, handle: RunHandle) -> bool:
        return self.gpu_available and handle.spec.device == "cuda-preferred"

    def _renumber(self) -> None:
        for pos, h in enumerate(self._queue, start=1):
            h.queue_position = pos

    def _dispatch(self) -> None:
        """Start every queued run that can start now, in FIFO order."""
        to_start = []
        with self._lock:
            for handle in list(self._queue):
                if len(self._running) >= self.max_concurrent:
                    break
                if self._needs_gpu(handle):
                    if self._gpu_holder is not None:
                        continue  # waits for the GPU; a CPU run behind it may go ahead
                    self._gpu_holder = handle
                self._queue.remove(handle)
                self._running.append(handle)
                handle.status, handle.queue_position, handle.started = "running", None, time.time()
                to_start.append(handle)
            self._renumber()
        for handle in to_start:
            threading.Thread(target=self._work, args=(handle,), name=f"run-{handle.id}", daemon=True).start()

    def _release(self, handle: RunHandle) -> None:
        with self._lock:
            if handle in self._running:
                self._running.remove(handle)
            if self._gpu_holder is handle:
                self._gpu_holder = None
        self._dispatch()

    def _cancel(self, handle: RunHandle) -> threading.Thread | None:
        """Drop a queued run, or start killing a running one's process group: the killing thread, which
        `close` waits for."""
        with self._lock:
            if handle.done:
                return None
            handle._cancel_requested = True
            queued = handle in self._queue
            if queued:
                self._queue.remove(handle)
                self._renumber()
        if queued:
            self._end(handle, "cancelled", None, "cancelled before it started")
        elif handle.pgid is not None:
            # Killing waits out the grace period; the caller (a UI handler) should not.
            killer = threading.Thread(target=_kill_group, args=(handle.pgid, self.kill_grace_s), daemon=True)
            killer.start()
            return killer
        # A running handle whose process is not up yet: the worker sees _cancel_requested.
        return None

    # ---- one run -------------------------------------------------------------------------------------
    def _work(self, handle: RunHandle) -> None:
        try:
            self._execute(handle)
        except Exception as exc:  # the runner's own failure still ends the run with a message
            self._end(handle, "error", handle.returncode, f"runner error: {type(exc).__name__}: {exc}")
        finally:
            self._release(handle)

    def _execute(self, handle: RunHandle) -> None:
        spec = handle.spec
        self._write_record(handle)
        cmd = [sys.executable, "-m", spec.module, "--out", ".",
               "--params-json", json.dumps(handle.params, ensure_ascii=False)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
        env["PYTHONUNBUFFERED"] = "1"  # tracebacks and prints reach the log line by line
        env.setdefault("PYTHONIOENCODING", "utf-8")
        if handle._cancel_requested:
            self._end(handle, "cancelled", None, "cancelled before it started")
            return
        log = open(handle.run_dir / LOG_FILE, "w", encoding="utf-8")
        try:
            proc = subprocess.Popen(cmd, cwd=handle.run_dir, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            handle.pgid = proc.pid  # a new session: the leader's pid is the group id
            if handle._cancel_requested:  # cancel() came between the check above and Popen
                _kill_group(proc.pid, self.kill_grace_s)
            reader = threading.Thread(target=_pump, args=(proc.stdout, handle, log), daemon=True)
            reader.start()
            timed_out = False
            try:
                proc.wait(timeout=handle.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc.pid, self.kill_grace_s)
                proc.wait()
            # Children the demo left behind would hold the pipe open and live on: end them too.
            if live_group_members(proc.pid):
                _kill_group(proc.pid, grace_s=0.5)
            reader.join(timeout=10)
            handle.returncode = proc.returncode
        finally:
            log.close()
        if handle._cancel_requested:
            self._end(handle, "cancelled", proc.returncode, "cancelled while running")
        elif timed_out:
            self._end(handle, "timeout", proc.returncode, f"timed out after {handle.timeout_s:g} s; process group killed")
        else:
            self._finish_from_result(handle, proc.returncode)

    def _finish_from_result(self, handle: RunHandle, returncode: int) -> None:
        try:
            result = json.loads((handle.run_dir / RESULT_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            why = "no result.json" if isinstance(exc, FileNotFoundError) else f"unreadable result.json ({exc})"
            self._end(handle, "error", returncode, f"{why}; process exited with code {returncode}")
            return
        checks = result.get("checks") or []
        if result.get("error"):
            status = "error"  # the demo raised; the harness put the traceback in result.json
        elif returncode == 0 and result.get("passed") and checks and all(c.get("passed") for c in checks):
            status = "passed"
        else:
            status = "failed"
        handle._finish(status, result)

    def _end(self, handle: RunHandle, status: str, returncode: int | None, message: str) -> None:
        """End a run that left no usable result.json: write a synthetic one that says why."""
        handle.returncode = returncode
        handle._add_line(f"[runner] {message}")
        with open(handle.run_dir / LOG_FILE, "a", encoding="utf-8") as log:
            log.write(f"[runner] {message}\n")
        with handle._cond:
            tail = handle._lines[-LOG_TAIL_LINES:]
        started = handle.started or handle.submitted
        result = {
            "demo": handle.demo, "params": handle.params,
            "device": "unknown",
            "started": _dt.datetime.fromtimestamp(started, _dt.timezone.utc).isoformat(timespec="seconds"),
            "duration_s": round(time.time() - started, 3),
            "passed": False, "checks": [], "metrics": {}, "artifacts": [],
            "error": message, "status": status, "log_tail": "\n".join(tail),
        }
        (handle.run_dir / RESULT_FILE).write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
        handle._finish(status, result)

    @staticmethod
    def _write_record(handle: RunHandle) -> None:
        path = handle.run_dir / RUN_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(handle.record(), ensure_ascii=False, indent=2), encoding="utf-8")
        os.replace(tmp, path)  # readers (load_history) never see half a file


def _pump(stream, handle: RunHandle, log) -> None:
    """Reader thread: split the merged output into lines, keep them and write them to log.txt."""
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        try:
            log.write(line + "\n")
            log.flush()
        except ValueError:  # log closed: the run ended while an escaped process still writes
            pass
        handle._add_line(line)
    stream.close()


def _kill_group(pgid: int, grace_s: float = KILL_GRACE_S) -> None:
    """SIGTERM the group, then SIGKILL whatever is still alive after `grace_s`; returns when the group is gone
    (a SIGKILL takes effect a moment after it is sent; at most one more second)."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and live_group_members(pgid):
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and live_group_members(pgid):
        time.sleep(0.01)


def _submitted(run_dir: Path) -> tuple[str, float]:
    """Sort key of a run folder: its name's timestamp (to the second), then run.json's submit time."""
    try:
        submitted = float(json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8")).get("submitted") or 0.0)
    except (OSError, ValueError, TypeError, AttributeError):
        submitted = 0.0
    return run_dir.name[:15], submitted


def _load_handle(run_dir: Path) -> RunHandle | None:
    """A finished handle rebuilt from a run folder written earlier (by this or another process)."""
    try:
        record = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    handle = RunHandle(record.get("id", run_dir.name), None, record.get("demo", "?"),
                       record.get("params", {}), run_dir, record.get("timeout_s") or 0.0, record.get("client"))
    handle.submitted = record.get("submitted") or 0.0
    handle.started, handle.ended = record.get("started"), record.get("ended")
    handle.returncode = record.get("returncode")
    try:
        result = json.loads((run_dir / RESULT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        result = None
    status = record.get("status", "error")
    if status not in TERMINAL:  # the process that ran it ended before the run did
        status = "error"
    try:
        handle._lines = (run_dir / LOG_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        pass
    handle.status, handle.result = status, result
    handle._done.set()
    return handle
