"""Demo runs on a pool of Celery workers, Redis as broker and as the shared record of every run.

    KB_DEMO_BROKER=redis://queue:6379/0 python -m demos worker --concurrency 2 [--gpus 1]   # a worker machine
    celery -A demos.celery_app worker -Q cpu -P threads -c 2                                # what it starts

The app replicas and `python -m demos run` enqueue through demos/remote.py; the task here runs the demo
with the local `demos.runner.Runner` on the worker (same subprocess, process group, timeout and result
handling as on one machine) and mirrors the run into Redis, where every replica reads it:

    kb:run:<id>          hash: demo, params, timeout_s, queue, status, submitted/started/ended, worker,
                         returncode, result (the result.json), module (fixture specs only)
    kb:run:<id>:lines    list: the output lines, appended as they arrive (the live log)
    kb:run:<id>:files    hash: artifact name -> bytes, written when the run ends
    kb:run:<id>:alive    set with a 5 s expiry and renewed every second while a worker runs it: a replica
                         that sees it expire ends the run as failed (the worker was killed)
    kb:run:<id>:cancel   set by a replica to stop a running run
    kb:queue:<queue>     sorted set of the queued run ids (the queue position), by submit time
    kb:runs              the latest run ids, newest first (the history every replica shows)
    kb:workers:<kind>:<name>   a worker's heartbeat (kind cpu or gpu), 15 s expiry

Queues: `cpu`, and `gpu` for cuda-preferred demos when a GPU worker is alive. Each GPU worker process owns
one GPU (CUDA_VISIBLE_DEVICES) and runs one demo at a time: the GPU limit holds per worker. Tasks are
acknowledged late and a run is claimed once (SET NX), so a redelivered message never runs a demo twice.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

log = logging.getLogger("demos.worker")

KEY = "kb:run:{}"
TTL_S = 7 * 24 * 3600                # run records expire after a week
ALIVE_TTL_S = 5                      # a running run's heartbeat; a replica declares it lost after this
WORKER_TTL_S = 15
HISTORY = 500
MAX_ARTIFACT_BYTES = 8 << 20         # per file; bigger artifacts stay on the worker (named in the result)
MAX_RUN_FILES_BYTES = 32 << 20
TASK = "demos.run"


def make_app(broker_url: str) -> Celery:
    """A Celery app on `broker_url` (the client side only needs it to publish)."""
    app = Celery("demos", broker=broker_url)
    app.conf.update(
        task_ignore_result=True,              # the run record in Redis is the result
        task_acks_late=True,                  # a message is acked after the run: none lost on a crash
        task_reject_on_worker_lost=False,
        worker_prefetch_multiplier=1,         # a busy worker does not hoard queued runs
        task_default_queue="cpu",
        broker_connection_retry_on_startup=True,
        broker_transport_options={"socket_connect_timeout": 2, "socket_timeout": 5, "visibility_timeout": 3600},
        worker_hijack_root_logger=False,
    )
    return app


def redact(url: str) -> str:
    """The broker URL without its password, for messages."""
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"


def redis_client(url: str):
    import redis
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30)


# The worker's app: `celery -A demos.celery_app worker` reads KB_DEMO_BROKER at import (the edge).
app = make_app(os.environ.get("KB_DEMO_BROKER", "redis://127.0.0.1:6379/0"))
_local = {}


def _worker_state():
    """The worker process's Redis client and local Runner, made once."""
    if not _local:
        from demos.runner import Runner, cuda_present
        runs_dir = Path(os.environ.get("KB_DEMO_RUNS_DIR") or Path.cwd() / ".demo-runs-worker")
        kind = os.environ.get("KB_DEMO_WORKER_KIND", "cpu")
        _local["redis"] = redis_client(app.conf.broker_url)
        _local["runner"] = Runner(runs_dir, max_concurrent=int(os.environ.get("KB_DEMO_CONCURRENCY") or 4),
                                  gpu_available=kind == "gpu" and cuda_present())
        _local["kind"] = kind
        _local["name"] = os.environ.get("KB_DEMO_WORKER_NAME") or f"{kind}-{os.getpid()}@{socket.gethostname()}"
        allowed = os.environ.get("KB_DEMO_EXTRA_MODULES", "")
        _local["extra_modules"] = {m.strip() for m in allowed.split(",") if m.strip()}
    return _local


@worker_ready.connect
def _start_heartbeat(**_):
    state = _worker_state()
    key = f"kb:workers:{state['kind']}:{state['name']}"

    def beat():
        while not state.get("stopping"):
            try:
                state["redis"].set(key, json.dumps({"pid": os.getpid(), "since": time.time()}), ex=WORKER_TTL_S)
            except Exception as exc:  # the broker may come back; the worker itself reconnects
                log.warning("worker heartbeat failed: %s", exc)
            time.sleep(WORKER_TTL_S / 3)
    threading.Thread(target=beat, daemon=True, name="kb-worker-heartbeat").start()
    log.info("demo worker %s ready (queue %s, runs in %s)", state["name"], state["kind"], state["runner"].runs_dir)


@worker_shutdown.connect
def _stop_heartbeat(**_):
    if _local:
        _local["stopping"] = True
        try:
            _local["redis"].delete(f"kb:workers:{_local['kind']}:{_local['name']}")
        except Exception:
            pass


def _spec(record: dict, extra_modules: set[str]):
    from demos import registry
    module = record.get("module")
    if module:   # a demo outside the registry (the tests' fixture): only modules the worker allows
        if module not in extra_modules:
            raise ValueError(f"module {module!r} is not a registered demo (KB_DEMO_EXTRA_MODULES allows extra ones)")
        return importlib.import_module(module).SPEC
    return registry.get(record["demo"])


@app.task(name=TASK, ignore_result=True)
def run_demo(run_id: str) -> str:
    """Run one queued run on this worker and mirror it into Redis; returns its final status."""
    state = _worker_state()
    return execute(state["redis"], state["runner"], run_id, state["name"], state["extra_modules"])


def execute(r, runner, run_id: str, worker_name: str, extra_modules: set[str] = frozenset()) -> str:
    key = KEY.format(run_id)
    record = {k.decode(): v.decode() for k, v in r.hgetall(key).items()}
    if not record:
        return "unknown"
    # Claim once: a redelivered message (worker lost after acking nothing) or a cancelled run is skipped.
    if not r.set(f"{key}:claim", worker_name, nx=True, ex=TTL_S) or record.get("status") != "queued":
        return record.get("status", "unknown")
    r.zrem(f"kb:queue:{record['queue']}", run_id)
    r.set(f"{key}:alive", worker_name, ex=ALIVE_TTL_S)
    r.hset(key, mapping={"status": "running", "started": time.time(), "worker": worker_name})
    try:
        spec = _spec(record, extra_modules)
        handle = runner.submit(spec, json.loads(record["params"]), timeout_s=float(record["timeout_s"]))
    except Exception as exc:  # the demo cannot even start here: say so in the record, like the runner does
        message = f"worker {worker_name} cannot start the run: {type(exc).__name__}: {exc}"
        r.rpush(f"{key}:lines", f"[worker] {message}")
        _finish(r, key, "error", {"demo": record.get("demo"), "passed": False, "checks": [], "metrics": {},
                                  "artifacts": [], "error": message, "status": "error"}, None)
        return "error"

    stop = threading.Event()

    def heartbeat():   # renew `alive` and honour a cancel request from any replica
        while not stop.wait(1.0):
            try:
                r.set(f"{key}:alive", worker_name, ex=ALIVE_TTL_S)
                if r.exists(f"{key}:cancel"):
                    handle.cancel()
            except Exception as exc:
                log.warning("heartbeat of run %s failed: %s", run_id, exc)
    beat = threading.Thread(target=heartbeat, daemon=True, name=f"beat-{run_id}")
    beat.start()
    try:
        for line in handle.lines():
            r.rpush(f"{key}:lines", line)
        result = handle.wait()
    finally:
        stop.set()
        beat.join(timeout=5)
    _store_files(r, key, handle.run_dir, result or {})
    _finish(r, key, handle.status, result, handle.returncode)
    return handle.status


def _store_files(r, key: str, run_dir: Path, result: dict) -> None:
    """The run's artifacts (images, transcripts the demo named) into Redis, within the size limits."""
    total = 0
    for name in dict.fromkeys(result.get("artifacts") or []):
        path = (Path(run_dir) / name).resolve()
        if Path(run_dir).resolve() not in path.parents or not path.is_file():
            continue
        size = path.stat().st_size
        if size > MAX_ARTIFACT_BYTES or total + size > MAX_RUN_FILES_BYTES:
            r.rpush(f"{key}:lines", f"[worker] artifact {name} ({size} bytes) too large to share; left on the worker")
            continue
        r.hset(f"{key}:files", name, path.read_bytes())
        total += size


def _finish(r, key: str, status: str, result: dict, returncode) -> None:
    pipe = r.pipeline()
    pipe.hset(key, mapping={"status": status, "ended": time.time(), "returncode": "" if returncode is None else returncode,
                            "result": json.dumps(result, ensure_ascii=False)})
    pipe.delete(f"{key}:alive")
    for suffix in ("", ":lines", ":files", ":claim", ":cancel"):
        pipe.expire(key + suffix, TTL_S)
    pipe.execute()
