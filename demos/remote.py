"""The client side of the Celery demo pool (KB_DEMO_BROKER): a `RemoteRunner` with the `Runner` API.

    runner = RemoteRunner(runs_dir, "redis://queue:6379/0")      # what demos.runner.make_runner returns
    handle = runner.submit("gc-cycles", {"n": 3})                 # validated here, queued in Redis, sent to Celery
    for line in handle.lines(): ...                               # the worker's lines, live
    handle.wait(); handle.result; handle.status; handle.queue_position; handle.cancel()

A `RemoteRunHandle` follows its run's record in Redis (keys in demos/celery_app.py) with one polling thread:
status, queue position, new lines (mirrored into the local run folder's log.txt, which the app's status
API reads) and, at the end, result.json and the artifacts written into the local run folder, so the app
shows a remote run exactly like a local one. Any replica can follow any run (`load_history`): the record
lives in Redis, not in the replica that launched it.

A worker killed mid-run stops renewing the run's `alive` key; the first replica that sees it gone for
`lost_after_s` ends the run as failed with a message that says so, in Redis, for everyone. A broker that
cannot be reached makes `submit` raise `RunnerUnavailable` with a clear message; nothing else in the app
depends on it.
"""
from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path

from demos import registry
from demos.celery_app import HISTORY, KEY, TASK, TTL_S, make_app, redact, redis_client
from demos.runner import LOG_FILE, RUN_FILE, RUN_ID, TERMINAL, QueueFull, RunHandle, RunnerUnavailable
from demos.harness import RESULT_FILE
from demos.spec import DemoSpec

POLL_S = 0.2
LOST_GRACE_S = 1.5       # `alive` (renewed every second, 5 s expiry) missing this long: the worker is gone
LOST_MESSAGE = ("执行这个演示的 worker 失联了（进程被杀或机器掉线），运行已按失败结束，没有结果；请重新运行。"
                "(the worker running this demo stopped sending heartbeats)")


def _text(v) -> str:
    return v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v)


def _float(v) -> float | None:
    try:
        return float(v) if v not in (None, b"", "") else None
    except ValueError:
        return None


class RemoteRunHandle:
    """One run in the pool, followed from Redis. Same public surface as demos.runner.RunHandle."""

    def __init__(self, runner: "RemoteRunner", run_id: str, spec: DemoSpec | None, demo: str, params: dict,
                 timeout_s: float, client: str | None = None):
        self.id, self.spec, self.demo, self.params, self.timeout_s = run_id, spec, demo, params, timeout_s
        self.client = client
        self.run_dir = runner.runs_dir / run_id
        self.status = "queued"
        self.queue_position: int | None = None
        self.result: dict | None = None
        self.returncode: int | None = None
        self.pgid = None                        # the process runs on a worker
        self.worker: str | None = None
        self.submitted = time.time()
        self.started: float | None = None
        self.ended: float | None = None
        self._runner = runner
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._done = threading.Event()
        self._alive_missing_since: float | None = None
        self._outage = False                    # Redis unreachable at the last poll

    def __repr__(self) -> str:
        return f"RemoteRunHandle({self.id!r}, status={self.status!r})"

    # The same line buffer as a local run (_lines, _cond, _done): one implementation of reading it.
    done = RunHandle.done
    lines = RunHandle.lines
    wait = RunHandle.wait

    def cancel(self) -> None:
        """A queued run is taken off the queue at once; a running one is stopped by its worker (≤ 1 s)."""
        if self.done:
            return
        r, key = self._runner.redis, KEY.format(self.id)
        queue = _text(r.hget(key, "queue") or b"cpu")
        if r.zrem(f"kb:queue:{queue}", self.id):
            r.hset(key, mapping={"status": "cancelled", "ended": time.time(), "result": json.dumps(
                _synthetic(self, "cancelled", "cancelled before it started"), ensure_ascii=False)})
            r.rpush(f"{key}:lines", "[runner] cancelled before it started")
        else:
            r.set(f"{key}:cancel", "1", ex=TTL_S)

    def record(self) -> dict:
        return {"id": self.id, "client": self.client, "demo": self.demo, "params": self.params, "status": self.status,
                "timeout_s": self.timeout_s, "submitted": self.submitted, "started": self.started,
                "ended": self.ended, "returncode": self.returncode, "worker": self.worker}

    # ---- following the record ------------------------------------------------------------------------
    def _follow(self) -> None:
        """The polling thread: until the run ends, or forever-retrying while Redis is away."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        while not self.done:
            try:
                self._poll()
            except Exception as exc:   # Redis away: keep the last state, say so once per outage
                if not self._outage:
                    self._add_lines([f"[runner] lost contact with the demo queue: {type(exc).__name__}: {exc}"])
                    self._outage = True
            if not self.done:
                time.sleep(POLL_S)

    def _poll(self) -> None:
        r, key = self._runner.redis, KEY.format(self.id)
        pipe = r.pipeline()
        pipe.hgetall(key)
        pipe.lrange(f"{key}:lines", len(self._lines), -1)
        pipe.exists(f"{key}:alive")
        record, new, alive = pipe.execute()
        self._outage = False
        if not record:
            raise RuntimeError(f"run {self.id} has no record in Redis (expired or never queued)")
        rec = {_text(k): v for k, v in record.items()}
        status = _text(rec.get("status", b"queued"))
        self.worker = _text(rec["worker"]) if rec.get("worker") else None
        self.started = _float(rec.get("started"))
        if status == "queued":
            rank = r.zrank(f"kb:queue:{_text(rec.get('queue', b'cpu'))}", self.id)
            self.queue_position = None if rank is None else rank + 1
        else:
            self.queue_position = None
        self._add_lines([_text(x) for x in new])
        if status == "running" and not alive:
            # The worker renews `alive` every second with a 5 s expiry: gone, and still gone a moment later
            # (not a renewal racing the expiry), means no worker has run this for over ALIVE_TTL_S seconds.
            now = time.monotonic()
            self._alive_missing_since = self._alive_missing_since or now
            if now - self._alive_missing_since >= LOST_GRACE_S:
                self._declare_lost(key)
                return
        else:
            self._alive_missing_since = None
        with self._cond:
            self.status = status
        if status in TERMINAL:
            self._complete(rec)

    def _declare_lost(self, key: str) -> None:
        r = self._runner.redis
        result = _synthetic(self, "failed", LOST_MESSAGE)
        # Only if still running (no worker finished it meanwhile): a transaction on the status field.
        with r.pipeline() as pipe:
            try:
                pipe.watch(key)
                if _text(pipe.hget(key, "status") or b"") == "running":
                    pipe.multi()
                    pipe.hset(key, mapping={"status": "failed", "ended": time.time(),
                                            "result": json.dumps(result, ensure_ascii=False)})
                    pipe.rpush(f"{key}:lines", f"[runner] {LOST_MESSAGE}")
                    pipe.execute()
            except Exception:   # another replica got there first: read its verdict next poll
                return

    def _complete(self, rec: dict) -> None:
        r, key = self._runner.redis, KEY.format(self.id)
        self._add_lines([_text(x) for x in r.lrange(f"{key}:lines", len(self._lines), -1)])
        try:
            self.result = json.loads(_text(rec.get("result") or b"null"))
        except ValueError:
            self.result = None
        self.ended = _float(rec.get("ended")) or time.time()
        rc = _text(rec.get("returncode") or b"")
        self.returncode = int(rc) if rc.lstrip("-").isdigit() else None
        # The run folder as a local run would leave it: artifacts, result.json, run.json.
        for name, data in r.hgetall(f"{key}:files").items():
            path = (self.run_dir / _text(name)).resolve()
            if self.run_dir.resolve() in path.parents:      # names come from a worker: stay inside the folder
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
        if self.result is not None:
            (self.run_dir / RESULT_FILE).write_text(json.dumps(self.result, ensure_ascii=False, indent=2), encoding="utf-8")
        tmp = self.run_dir / (RUN_FILE + ".tmp")
        tmp.write_text(json.dumps(self.record(), ensure_ascii=False, indent=2), encoding="utf-8")
        os.replace(tmp, self.run_dir / RUN_FILE)
        with self._cond:
            self._done.set()
            self._cond.notify_all()

    def _add_lines(self, lines: list[str]) -> None:
        if not lines:
            return
        with open(self.run_dir / LOG_FILE, "a", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
        with self._cond:
            self._lines.extend(lines)
            self._cond.notify_all()


def _synthetic(handle, status: str, message: str) -> dict:
    return {"demo": handle.demo, "params": handle.params, "device": "unknown", "passed": False, "checks": [],
            "metrics": {}, "artifacts": [], "error": message, "status": status,
            "duration_s": round(time.time() - (handle.started or handle.submitted), 3)}


class RemoteRunner:
    """Enqueue runs on the Celery pool behind `broker_url`; the `Runner` API (submit, get, history,
    load_history, prune, close, runs_dir, max_concurrent, max_queue, max_per_client). Nothing connects until
    the first call: an app with the broker down starts and answers questions; only demo runs report the
    broker as unavailable.

    The limits hold across replicas (they are counted in Redis): `max_queue` runs waiting in a queue,
    `max_per_client` queued or running runs of one client. `max_concurrent` is only what the app sizes its
    own event handlers by; how many runs execute at once is the workers' `--concurrency` and GPUs."""

    def __init__(self, runs_dir: Path, broker_url: str, max_concurrent: int = 2, max_queue: int | None = None,
                 max_per_client: int | None = None):
        self.runs_dir = Path(runs_dir)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.broker_url = broker_url
        self.max_concurrent, self.max_queue, self.max_per_client = max_concurrent, max_queue, max_per_client
        self.redis = redis_client(broker_url)
        self._celery = None
        self._lock = threading.Lock()
        self._handles: dict[str, RemoteRunHandle] = {}
        self._history: list[RemoteRunHandle] = []

    def _where(self) -> str:
        return redact(self.broker_url)

    def submit(self, demo: str | DemoSpec, params: dict | None = None, timeout_s: float | None = None,
               client: str | None = None) -> RemoteRunHandle:
        spec = demo if isinstance(demo, DemoSpec) else registry.get(demo)
        values = spec.validate(params or {})
        timeout = spec.timeout_s if timeout_s is None else float(timeout_s)
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout_s}")
        import redis
        try:
            self.redis.ping()
            gpu_workers = any(True for _ in self.redis.scan_iter("kb:workers:gpu:*", count=100))
        except redis.RedisError as exc:
            raise RunnerUnavailable(f"演示队列（{self._where()}）连不上，暂时不能运行演示；问答不受影响。"
                                    f"({type(exc).__name__}: {exc})") from None
        queue = "gpu" if spec.device == "cuda-preferred" and gpu_workers else "cpu"
        self._admit(queue, client)
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{spec.id}-{uuid.uuid4().hex[:6]}"
        handle = RemoteRunHandle(self, run_id, spec, spec.id, values, timeout, client)
        key = KEY.format(run_id)
        record = {"demo": spec.id, "params": json.dumps(values, ensure_ascii=False), "timeout_s": timeout,
                  "queue": queue, "status": "queued", "submitted": handle.submitted, "client": client or ""}
        if not isinstance(demo, str) and registry.MODULES.get(spec.id) != spec.module:
            record["module"] = spec.module          # a fixture spec outside the registry
        try:
            pipe = self.redis.pipeline()
            pipe.hset(key, mapping=record)
            pipe.expire(key, TTL_S)
            pipe.zadd(f"kb:queue:{queue}", {run_id: handle.submitted})
            if client:
                pipe.sadd(f"kb:client:{client}", run_id)
                pipe.expire(f"kb:client:{client}", TTL_S)
            pipe.lpush("kb:runs", run_id)
            pipe.ltrim("kb:runs", 0, HISTORY - 1)
            pipe.execute()
            self.celery.send_task(TASK, args=[run_id], queue=queue, retry=False)
        except Exception as exc:
            self.redis.zrem(f"kb:queue:{queue}", run_id)
            self.redis.delete(key)
            raise RunnerUnavailable(f"演示没能送进队列（{self._where()}）：{type(exc).__name__}: {exc}") from None
        with self._lock:
            self._handles[run_id] = handle
            self._history.append(handle)
        handle.run_dir.mkdir(parents=True, exist_ok=True)
        threading.Thread(target=handle._follow, daemon=True, name=f"follow-{run_id}").start()
        return handle

    def _admit(self, queue: str, client: str | None) -> None:
        """QueueFull when the queue, or this client's share of the pool, is full (the Runner's messages).

        Checked before queueing, not atomically with it: two replicas may each admit one run past a limit."""
        r = self.redis
        if client is not None and self.max_per_client is not None:
            mine = [_text(x) for x in r.smembers(f"kb:client:{client}")]
            states = [_text(r.hget(KEY.format(i), "status") or b"") for i in mine]
            live = [i for i, s in zip(mine, states) if s in ("queued", "running")]
            if len(live) < len(mine):
                r.srem(f"kb:client:{client}", *[i for i in mine if i not in live])
            if len(live) >= self.max_per_client:
                raise QueueFull(f"你已有 {len(live)} 个演示在排队或运行（每人最多 {self.max_per_client} 个），"
                                "请等它们结束后再试。")
        if self.max_queue is not None:
            waiting = r.zcard(f"kb:queue:{queue}")
            if waiting >= self.max_queue:
                raise QueueFull(f"演示队列已满（{waiting} 个在排队），请稍后再试。")

    def get(self, run_id: str) -> RemoteRunHandle | None:
        """One run by id (any replica's), or None; only ids `submit` can produce are looked up."""
        if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
            return None
        with self._lock:
            handle = self._handles.get(run_id)
        if handle is not None:
            return handle
        try:
            return self.attach(run_id)
        except Exception:
            return None

    def prune(self, force: bool = False) -> list[str]:
        """Run records expire in Redis after TTL_S; the local mirrors are pruned with them (nothing to do)."""
        return []

    @property
    def celery(self):
        if self._celery is None:
            self._celery = make_app(self.broker_url)
        return self._celery

    def history(self) -> list[RemoteRunHandle]:
        """This replica's own handles in submit order."""
        with self._lock:
            return list(self._history)

    def load_history(self) -> list[RemoteRunHandle]:
        """The latest runs of the whole pool (any replica launched them), oldest first."""
        try:
            ids = [_text(x) for x in self.redis.lrange("kb:runs", 0, 199)]
        except Exception:
            return self.history()
        handles = []
        for run_id in reversed(ids):
            with self._lock:
                handle = self._handles.get(run_id)
            if handle is None:
                handle = self.attach(run_id)
            if handle is not None:
                handles.append(handle)
        return handles

    def attach(self, run_id: str) -> RemoteRunHandle | None:
        """A handle following a run another replica launched (None when Redis has no record of it)."""
        rec = {_text(k): v for k, v in self.redis.hgetall(KEY.format(run_id)).items()}
        if not rec:
            return None
        try:
            params = json.loads(_text(rec.get("params", b"{}")))
        except ValueError:
            params = {}
        handle = RemoteRunHandle(self, run_id, None, _text(rec.get("demo", b"?")), params,
                                 _float(rec.get("timeout_s")) or 0.0, _text(rec.get("client") or b"") or None)
        handle.submitted = _float(rec.get("submitted")) or 0.0
        with self._lock:
            if run_id in self._handles:
                return self._handles[run_id]
            self._handles[run_id] = handle
        handle.run_dir.mkdir(parents=True, exist_ok=True)
        handle._poll()              # terminal runs complete at once; live ones get a follower
        if not handle.done:
            threading.Thread(target=handle._follow, daemon=True, name=f"follow-{run_id}").start()
        return handle

    def close(self) -> None:
        """Cancel this replica's unfinished runs (the app is shutting down)."""
        for handle in self.history():
            try:
                handle.cancel()
            except Exception:
                pass
