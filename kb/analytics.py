"""The question log: what readers ask, what the blog could not answer, their feedback and demo runs.

    log = QuestionLog(config.home / ANALYTICS_FILE, retention_days=90)
    qid = log.log_question("生成器为什么省内存", answer.text, answer.answerable, answer.citations,
                           mode="extractive", article="python-generators")
    log.log_feedback(qid, +1, "讲得清楚")
    log.log_demo(qid, "generator", run_id, passed=None)      # launched
    log.log_demo(qid, "generator", run_id, passed=True)      # finished: the same run_id is updated
    report = log.report(days=30)                              # top and refused questions, feedback, demos
    log.export_csv("questions.csv", days=30)

With KB_DATABASE_URL the log lives in PostgreSQL instead (kb/pg_analytics.py: same API, only the storage
methods differ; `open_log` picks), so every app replica's questions are in one report. Otherwise: one
SQLite file under the data folder (KB_HOME) in WAL mode; several app workers (processes) and the threads
of one worker write to it at once; each thread has its own connection (busy timeout 30 s, one short
IMMEDIATE transaction per call), so no connection is shared across threads. Stored per question: UTC time, the question, the
answer text, answerable, the cited (slug, anchor) pairs, the answer mode and the article the reader was
on. No IP address, user agent, cookie or session id is stored: a question is not linked to a person.
Retention: rows older than `retention_days` are deleted when the log opens and at most hourly after.
This module knows nothing about gradio or the engine; citations are any objects or dicts with `slug`
and `anchor`.
"""
from __future__ import annotations

import csv
import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

# The report's dataclasses and its text form live in kb/analytics_report.py; imported here for callers.
from kb.analytics_report import DemoStat, FeedbackItem, QuestionStat, Report, format_report  # noqa: F401
from kb.errors import KBError

ANALYTICS_FILE = "analytics.sqlite3"
MAX_TEXT = 20_000             # characters of an answer kept
MAX_QUESTION = 2_000          # characters of a question kept (the engine searches no more)
MAX_COMMENT = 1_000
PURGE_EVERY_S = 3600.0
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS questions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,                 -- unix time, UTC
    question TEXT NOT NULL,
    norm TEXT NOT NULL,               -- grouping key: case-folded, spaces and end punctuation removed
    answer TEXT NOT NULL,
    answerable INTEGER NOT NULL,
    citations TEXT NOT NULL,          -- JSON [[slug, anchor], ...]
    mode TEXT NOT NULL,
    article TEXT NOT NULL             -- the article the reader was on, '' when none
);
CREATE INDEX IF NOT EXISTS questions_ts ON questions(ts);
CREATE INDEX IF NOT EXISTS questions_norm ON questions(norm);
CREATE TABLE IF NOT EXISTS feedback (
    question_id INTEGER PRIMARY KEY REFERENCES questions(id) ON DELETE CASCADE,
    ts REAL NOT NULL,
    rating INTEGER NOT NULL CHECK (rating IN (-1, 1)),
    comment TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS demo_runs (
    run_id TEXT PRIMARY KEY,
    question_id INTEGER REFERENCES questions(id) ON DELETE SET NULL,
    ts REAL NOT NULL,
    demo_id TEXT NOT NULL,
    passed INTEGER                    -- NULL while running or when it never finished
);
CREATE INDEX IF NOT EXISTS demo_runs_ts ON demo_runs(ts);
"""


class AnalyticsError(KBError):
    """A bad call into the question log (unknown question, bad rating) or an unreadable log file."""


def normalize(question: str) -> str:
    """The grouping key of a question: case-folded, whitespace and trailing ?！。 marks removed."""
    q = re.sub(r"\s+", "", question.casefold())
    return q.rstrip("?？!！。.~～…")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _citation_pairs(citations: Iterable[Any] | None) -> list[list[str]]:
    pairs: list[list[str]] = []
    for c in citations or ():
        slug = c.get("slug") if isinstance(c, dict) else getattr(c, "slug", None)
        anchor = c.get("anchor") if isinstance(c, dict) else getattr(c, "anchor", None)
        if slug:
            pair = [str(slug), str(anchor or "")]
            if pair not in pairs:
                pairs.append(pair)
    return pairs


class QuestionLog:
    """The SQLite question log at `path` (created with its folder when missing)."""

    def __init__(self, path: str | Path, retention_days: float | None = None,
                 clock: Callable[[], float] = time.time):
        self.path = Path(path)
        if retention_days is not None and retention_days <= 0:
            raise AnalyticsError(f"retention must be a positive number of days, not {retention_days}")
        self.retention_days = retention_days
        self.clock = clock
        self._last_purge = float("-inf")
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._connect(transaction=False) as db:
                db.execute("PRAGMA journal_mode=WAL")      # persistent: stored in the file
                db.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
        except sqlite3.DatabaseError as exc:
            self.close()
            raise AnalyticsError(f"{self.path}: not a readable question log ({exc})") from None
        self.purge()

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, opened once: closing the last connection of a WAL database checkpoints
        and fsyncs (16 ms here), so a connection per call would cost more than the write itself."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA synchronous=NORMAL")   # WAL: durable against a crash of the app, enough for a log
            self._local.db = db
        return db

    @contextmanager
    def _connect(self, transaction: bool = True):
        """This thread's connection in a transaction that commits on success and rolls back on error."""
        db = self._connection()
        if not transaction:
            yield db
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            self._local.db = None
            db.close()

    # ---- writing ------------------------------------------------------------------------------------
    def log_question(self, question: str, answer_text: str, answerable: bool,
                     citations: Sequence[Any] | None = (), mode: str = "extractive",
                     article: str | None = None) -> int:
        """Store one answered or refused question; returns its id (for feedback and demo launches)."""
        question = (question or "").strip()
        if not question:
            raise AnalyticsError("an empty question is not logged")
        self._maybe_purge()
        return self._insert_question(self.clock(), question[:MAX_QUESTION], normalize(question[:MAX_QUESTION]),
                                     (answer_text or "")[:MAX_TEXT], bool(answerable), _citation_pairs(citations),
                                     str(mode or ""), str(article or ""))

    def _insert_question(self, ts, question, norm, answer, answerable, citations, mode, article) -> int:
        with self._connect() as db:
            return int(db.execute(
                "INSERT INTO questions(ts, question, norm, answer, answerable, citations, mode, article)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (ts, question, norm, answer, int(answerable),
                                                     json.dumps(citations, ensure_ascii=False), mode, article)).lastrowid)

    def log_feedback(self, question_id: int, rating: int, comment: str = "") -> None:
        """👍 (+1) or 👎 (-1) on one answer; a later rating of the same answer replaces the earlier one.

        Rating 0 withdraws the feedback (the reader un-clicked it).
        """
        if rating not in (-1, 0, 1):
            raise AnalyticsError(f"rating must be +1, -1 or 0, not {rating!r}")
        self._write_feedback(int(question_id), int(rating), (comment or "").strip()[:MAX_COMMENT])

    def _write_feedback(self, question_id: int, rating: int, comment: str) -> None:
        with self._connect() as db:
            if not db.execute("SELECT 1 FROM questions WHERE id = ?", (question_id,)).fetchone():
                raise AnalyticsError(f"no question with id {question_id} in the log")
            if rating == 0:
                db.execute("DELETE FROM feedback WHERE question_id = ?", (question_id,))
                return
            db.execute(
                "INSERT INTO feedback(question_id, ts, rating, comment) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(question_id) DO UPDATE SET ts = excluded.ts, rating = excluded.rating,"
                " comment = CASE WHEN excluded.comment != '' THEN excluded.comment ELSE feedback.comment END",
                (question_id, self.clock(), rating, comment))

    def log_demo(self, question_id: int | None, demo_id: str, run_id: str, passed: bool | None) -> None:
        """A demo launch (passed=None) or its end (True/False); calls with the same run_id update one row."""
        if not demo_id or not run_id:
            raise AnalyticsError("a demo run needs a demo id and a run id")
        self._write_demo(None if question_id is None else int(question_id), str(demo_id), str(run_id), passed)

    def _write_demo(self, question_id: int | None, demo_id: str, run_id: str, passed: bool | None) -> None:
        with self._connect() as db:
            if question_id is not None and not db.execute(
                    "SELECT 1 FROM questions WHERE id = ?", (question_id,)).fetchone():
                question_id = None          # purged or unknown: keep the run, drop the link
            db.execute(
                "INSERT INTO demo_runs(run_id, question_id, ts, demo_id, passed) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(run_id) DO UPDATE SET passed = COALESCE(excluded.passed, demo_runs.passed),"
                " question_id = COALESCE(demo_runs.question_id, excluded.question_id)",
                (run_id, question_id, self.clock(), demo_id, None if passed is None else int(passed)))

    # ---- retention ----------------------------------------------------------------------------------
    def purge(self, days: float | None = None) -> int:
        """Delete questions (with their feedback) and demo runs older than `days` (default: the retention)."""
        days = self.retention_days if days is None else days
        self._last_purge = self.clock()
        if days is None:
            return 0
        return self._delete_before(self.clock() - days * 86400.0)

    def _delete_before(self, cutoff: float) -> int:
        with self._connect() as db:
            n = db.execute("DELETE FROM questions WHERE ts < ?", (cutoff,)).rowcount
            db.execute("DELETE FROM demo_runs WHERE ts < ?", (cutoff,))
        return n

    def _maybe_purge(self) -> None:
        if self.retention_days is not None and self.clock() - self._last_purge >= PURGE_EVERY_S:
            self.purge()

    # ---- reading ------------------------------------------------------------------------------------
    def _since(self, days: float | None) -> float | None:
        return None if days is None else self.clock() - days * 86400.0

    def questions(self, days: float | None = None) -> list[dict]:
        """Every question in the window, oldest first, with its feedback and demo runs."""
        since = self._since(days)
        rows, links = self._fetch_questions(since if since is not None else 0.0)
        runs: dict[int, list[dict]] = {}
        for qid, demo_id, run_id, passed in links:
            runs.setdefault(qid, []).append(
                {"demo": demo_id, "run_id": run_id, "passed": None if passed is None else bool(passed)})
        return [{"id": qid, "time": iso(ts), "question": q, "answerable": bool(ok),
                 "citations": [{"slug": s, "anchor": a} for s, a in cits], "mode": mode,
                 "article": article, "answer": answer, "rating": rating, "comment": comment or "",
                 "demos": runs.get(qid, [])}
                for qid, ts, q, ok, cits, mode, article, answer, rating, comment in rows]

    def _fetch_questions(self, lo: float) -> tuple[list[tuple], list[tuple]]:
        """(questions since `lo` oldest first: id, ts, question, answerable, [[slug, anchor]], mode, article,
        answer, rating, comment; demo runs linked to a question, oldest first: question id, demo, run, passed)."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT q.id, q.ts, q.question, q.answerable, q.citations, q.mode, q.article, q.answer,"
                " f.rating, f.comment FROM questions q LEFT JOIN feedback f ON f.question_id = q.id"
                " WHERE q.ts >= ? ORDER BY q.ts, q.id", (lo,)).fetchall()
            links = db.execute("SELECT question_id, demo_id, run_id, passed FROM demo_runs"
                               " WHERE question_id IS NOT NULL ORDER BY ts").fetchall()
        return [(*r[:4], json.loads(r[4]), *r[5:]) for r in rows], links

    def _demo_counts(self, lo: float) -> list[tuple]:
        """(demo id, launched, passed, failed, unfinished) per demo since `lo`, most launched first."""
        with self._connect() as db:
            return db.execute(
                "SELECT demo_id, COUNT(*), SUM(passed = 1), SUM(passed = 0), SUM(passed IS NULL)"
                " FROM demo_runs WHERE ts >= ? GROUP BY demo_id ORDER BY COUNT(*) DESC, demo_id", (lo,)).fetchall()

    def report(self, days: float | None = None, limit: int = 20) -> Report:
        """Top and refused questions, cited articles, feedback and demo pass/fail in the last `days`."""
        since = self._since(days)
        lo = since if since is not None else 0.0
        rows = self.questions(days)
        groups: dict[str, list[dict]] = {}
        for r in rows:
            groups.setdefault(normalize(r["question"]), []).append(r)

        def stat(items: list[dict], refused: bool) -> QuestionStat:
            arts: list[str] = []
            for r in items:
                for slug in ([c["slug"] for c in r["citations"]] if not refused else [r["article"]]):
                    if slug and slug not in arts:
                        arts.append(slug)
            return QuestionStat(items[-1]["question"], len(items), items[-1]["time"],
                                sum(r["answerable"] for r in items), arts)

        def ranked(stats: list[QuestionStat]) -> list[QuestionStat]:
            return sorted(stats, key=lambda s: (s.count, s.last_asked), reverse=True)[:limit]

        top = ranked([stat(items, False) for items in groups.values()])
        refused = ranked([stat([r for r in items if not r["answerable"]], True)
                          for items in groups.values() if any(not r["answerable"] for r in items)])
        cited: dict[str, int] = {}
        for r in rows:
            for slug in dict.fromkeys(c["slug"] for c in r["citations"]):
                cited[slug] = cited.get(slug, 0) + 1
        feedback = [FeedbackItem(r["id"], r["time"], r["question"], r["rating"], r["comment"])
                    for r in reversed(rows) if r["rating"] is not None]
        feedback.sort(key=lambda f: f.rating)        # stable: 👎 first, newest first within each
        demo_rows = self._demo_counts(lo)
        answered = sum(r["answerable"] for r in rows)
        return Report(
            since=None if since is None else iso(since), questions=len(rows), answered=answered,
            refused=len(rows) - answered, refusal_rate=round((len(rows) - answered) / len(rows), 4) if rows else 0.0,
            feedback_up=sum(f.rating > 0 for f in feedback), feedback_down=sum(f.rating < 0 for f in feedback),
            top_questions=top, refused_questions=refused,
            cited_articles=sorted(cited.items(), key=lambda kv: (-kv[1], kv[0]))[:limit],
            feedback=feedback[:limit],
            demos=[DemoStat(d, n, int(p or 0), int(f or 0), int(u or 0)) for d, n, p, f, u in demo_rows])

    CSV_FIELDS = ("id", "time", "question", "answerable", "cited_articles", "mode", "article", "rating",
                  "comment", "demos")

    def export_csv(self, out: str | Path | IO[str], days: float | None = None) -> int:
        """One row per question (UTF-8 with BOM so Excel shows the Chinese); returns the number of rows.

        Cells that a spreadsheet would run as a formula are neutralised (kb.security.csv_cell).
        """
        from kb.security import csv_cell
        rows = self.questions(days)

        def write(f: IO[str]) -> None:
            w = csv.writer(f)
            w.writerow(self.CSV_FIELDS)
            for r in rows:
                cited = " ".join(dict.fromkeys(f"{c['slug']}#{c['anchor']}" if c["anchor"] else c["slug"]
                                               for c in r["citations"]))
                demos = " ".join(f"{d['demo']}:{'running' if d['passed'] is None else 'pass' if d['passed'] else 'fail'}"
                                 for d in r["demos"])
                w.writerow([csv_cell(v) for v in (
                    r["id"], r["time"], r["question"], int(r["answerable"]), cited, r["mode"], r["article"],
                    "" if r["rating"] is None else r["rating"], r["comment"], demos)])

        if isinstance(out, (str, Path)):
            with open(out, "w", encoding="utf-8-sig", newline="") as f:
                write(f)
        else:
            write(out)
        return len(rows)


def open_log(config) -> QuestionLog:
    """The question log of a configuration, with its retention: in PostgreSQL when `database_url` is set
    (kb/pg_analytics.py: every replica logs into one place), else `<home>/analytics.sqlite3`."""
    days = config.log_retention_days if config.log_retention_days > 0 else None
    if config.database_url:
        from kb.pg_analytics import PgQuestionLog
        return PgQuestionLog(config.database_url, retention_days=days)
    return QuestionLog(Path(config.home) / ANALYTICS_FILE, retention_days=days)
