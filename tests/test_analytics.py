"""The question log and `kb report`: exact reports, CSV, retention, several writers. Each behaviour test runs
on both stores behind the one QuestionLog API: the SQLite file (kb/analytics.py) and PostgreSQL
(kb/pg_analytics.py, on the session's real pgserver PostgreSQL, a fresh database per test)."""
import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from kb import cli
from kb.analytics import ANALYTICS_FILE, AnalyticsError, QuestionLog, normalize, open_log
from kb.config import Config
from kb.security import csv_cell

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_800_000_000.0          # 2027-01-15T08:00:00Z
DAY = 86400.0


class Clock:
    def __init__(self, t=T0):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture
def clock():
    return Clock()


class SqliteStore:
    """The SQLite question log at `path`: open logs on it, look into its tables."""
    name = "sqlite"

    def __init__(self, path):
        self.path, self.target = path, str(path)

    def open(self, **kw):
        return QuestionLog(self.path, **kw)

    def rows(self, sql):
        with sqlite3.connect(self.path) as db:
            return db.execute(sql.replace("kb_", "")).fetchall()

    def columns(self, table):
        return [r[1] for r in self.rows(f"PRAGMA table_info({table})")]

    def close(self):
        pass


class PostgresStore:
    """A fresh database on the session's PostgreSQL (tests/servers.py): the log's tables are kb_<name>."""
    name = "postgres"

    def __init__(self, url):
        self.url = self.target = url
        self.logs = []

    def open(self, **kw):
        from kb.pg_analytics import PgQuestionLog
        self.logs.append(PgQuestionLog(self.url, **kw))
        return self.logs[-1]

    def rows(self, sql):
        import psycopg
        with psycopg.connect(self.url) as conn:
            return conn.execute(sql).fetchall()

    def columns(self, table):
        return [r[0] for r in self.rows("SELECT column_name FROM information_schema.columns WHERE table_name ="
                                        f" 'kb_{table}' ORDER BY ordinal_position")]

    def close(self):
        for log in self.logs:
            log.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    s = SqliteStore(tmp_path / "home" / ANALYTICS_FILE) if request.param == "sqlite" \
        else PostgresStore(request.getfixturevalue("pg_url"))
    yield s
    s.close()


@pytest.fixture
def log(store, clock):
    return store.open(retention_days=30, clock=clock)


def fill(log, clock):
    """Five questions over two days: two groups of repeats, two refusals of the same topic, one lone."""
    ids = []
    for dt, q, ok, cits, art in [
        (0, "生成器为什么省内存？", True, [{"slug": "python-generators", "anchor": "惰性"}], ""),
        (60, "生成器为什么省内存", True, [{"slug": "python-generators", "anchor": "惰性"},
                                         {"slug": "python-list-tuple", "anchor": "列表"},
                                         {"slug": "python-generators", "anchor": "yield"}], "python-generators"),
        (120, "怎么部署到 K8S", False, [], "python-generators"),
        (DAY, "怎么部署到k8s？", False, [], ""),
        (DAY + 60, "MRO 是什么", True, [{"slug": "python-mro", "anchor": "c3"}], ""),
    ]:
        clock.t = T0 + dt
        ids.append(log.log_question(q, f"答：{q}", ok, cits, "extractive", art))
    return ids


def test_normalize_groups_wordings():
    assert normalize("怎么部署到 K8S？") == normalize("怎么部署到k8s") == "怎么部署到k8s"
    assert normalize("生成器 为什么\t省内存?!") == "生成器为什么省内存"


def test_report_exact(log, clock):
    ids = fill(log, clock)
    assert ids == [1, 2, 3, 4, 5], "ids are consecutive integers from 1"
    log.log_feedback(ids[0], +1, "清楚")
    log.log_feedback(ids[2], -1, "没回答")
    log.log_demo(ids[0], "generator", "run-a", None)
    log.log_demo(ids[0], "generator", "run-a", True)
    log.log_demo(ids[4], "mro", "run-b", False)
    log.log_demo(None, "mro", "run-c", None)
    r = log.report()
    assert (r.questions, r.answered, r.refused, r.refusal_rate) == (5, 3, 2, 0.4)
    assert (r.feedback_up, r.feedback_down) == (1, 1)
    assert [(s.question, s.count, s.answerable, s.articles) for s in r.top_questions] == [
        ("怎么部署到k8s？", 2, 0, []),
        ("生成器为什么省内存", 2, 2, ["python-generators", "python-list-tuple"]),
        ("MRO 是什么", 1, 1, ["python-mro"])], "groups by normalized wording, most asked first, then latest"
    assert [(s.question, s.count, s.last_asked, s.articles) for s in r.refused_questions] == [
        ("怎么部署到k8s？", 2, "2027-01-16T08:00:00Z", ["python-generators"])], \
        "refused questions list the article the reader was on"
    assert r.cited_articles == [("python-generators", 2), ("python-list-tuple", 1), ("python-mro", 1)]
    assert [(f.question_id, f.rating, f.comment) for f in r.feedback] == [(3, -1, "没回答"), (1, 1, "清楚")]
    assert [(d.demo_id, d.launched, d.passed, d.failed, d.unfinished) for d in r.demos] == [
        ("mro", 2, 0, 1, 1), ("generator", 1, 1, 0, 0)]
    clock.t = T0 + DAY + 121
    last_day = log.report(days=1)
    assert last_day.since == "2027-01-15T08:02:01Z" and last_day.questions == 2, "window of one day"
    assert [s.question for s in last_day.top_questions] == ["MRO 是什么", "怎么部署到k8s？"]


def test_feedback_replace_withdraw_and_errors(log, clock):
    qid = fill(log, clock)[1]
    log.log_feedback(qid, 1, "好")
    log.log_feedback(qid, -1)
    rows = {r["id"]: r for r in log.questions()}
    assert (rows[qid]["rating"], rows[qid]["comment"]) == (-1, "好"), "a later rating replaces, an empty comment keeps"
    log.log_feedback(qid, 0)
    assert log.questions()[1]["rating"] is None, "rating 0 withdraws the feedback"
    with pytest.raises(AnalyticsError, match="no question with id 99"):
        log.log_feedback(99, 1)
    with pytest.raises(AnalyticsError, match="rating must be"):
        log.log_feedback(qid, 5)
    with pytest.raises(AnalyticsError, match="empty question"):
        log.log_question("   ", "", False)
    log.log_demo(12345, "mro", "run-x", True)
    assert log.report().demos[0].passed == 1, "a run linked to an unknown question is kept, unlinked"


def test_retention_purges_old_rows_with_feedback(store, clock):
    log = store.open(retention_days=30, clock=clock)
    old = log.log_question("旧问题", "", False)
    log.log_feedback(old, -1, "旧")
    log.log_demo(old, "mro", "old-run", True)
    clock.t = T0 + 20 * DAY
    log.log_question("新问题", "", True)
    clock.t = T0 + 31 * DAY
    reopened = store.open(retention_days=30, clock=clock)       # purges on open
    assert [r["question"] for r in reopened.questions()] == ["新问题"]
    assert store.rows("SELECT COUNT(*) FROM kb_feedback") == [(0,)], "feedback goes with its question"
    assert store.rows("SELECT COUNT(*) FROM kb_demo_runs") == [(0,)]
    with pytest.raises(AnalyticsError, match="positive number of days"):
        store.open(retention_days=0)


def test_schema_stores_no_personal_data(store, log):
    if store.name == "sqlite":
        assert store.rows("PRAGMA journal_mode") == [("wal",)]
    columns = {t: store.columns(t) for t in ("questions", "feedback", "demo_runs")}
    assert columns == {
        "questions": ["id", "ts", "question", "norm", "answer", "answerable", "citations", "mode", "article"],
        "feedback": ["question_id", "ts", "rating", "comment"],
        "demo_runs": ["run_id", "question_id", "ts", "demo_id", "passed"]}, \
        "no IP address, user agent or session column: a change here must be a deliberate privacy decision"


def test_csv_export_exact_and_formula_safe(log, clock, tmp_path):
    ids = fill(log, clock)
    log.log_question("=HYPERLINK(\"http://x\") 是什么", "", False)
    log.log_feedback(ids[0], 1, "+1 好")
    log.log_demo(ids[0], "generator", "run-a", True)
    log.log_demo(ids[0], "generator", "run-b", None)
    out = io.StringIO()
    assert log.export_csv(out) == 6
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0] == ["id", "time", "question", "answerable", "cited_articles", "mode", "article", "rating",
                       "comment", "demos"]
    assert rows[1] == ["1", "2027-01-15T08:00:00Z", "生成器为什么省内存？", "1", "python-generators#惰性",
                       "extractive", "", "1", "'+1 好", "generator:pass generator:running"]
    assert rows[2][4] == "python-generators#惰性 python-list-tuple#列表 python-generators#yield"
    assert rows[6][2] == "'=HYPERLINK(\"http://x\") 是什么", "a formula cell is neutralised"
    path = tmp_path / "q.csv"
    assert log.export_csv(path, days=0.5) == 3, "the second day: two questions and the formula one"
    assert path.read_bytes().startswith(b"\xef\xbb\xbf"), "UTF-8 BOM so spreadsheets read the Chinese"


def test_csv_cell():
    assert [csv_cell(v) for v in ("=1+1", "-2", "@a", "\t=x", "正常", 3, None)] == [
        "'=1+1", "'-2", "'@a", "'\t=x", "正常", 3, ""]


WRITER = """
import sys
from kb.analytics import QuestionLog
from kb.pg_analytics import PgQuestionLog
target, n, worker = sys.argv[1], int(sys.argv[2]), sys.argv[3]
log = (PgQuestionLog if target.startswith("postgresql:") else QuestionLog)(target, retention_days=30)
for i in range(n):
    qid = log.log_question(f"进程{worker}问题{i}", "答", i % 2 == 0, [], "extractive")
    log.log_feedback(qid, 1 if i % 3 else -1)
"""


def test_several_processes_write_at_once(store):
    """Four app workers or replicas (real processes) log at the same time: SQLite from several uvicorn workers
    of one machine, PostgreSQL from replicas anywhere; one report has every question."""
    store.open()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, store.target, "40", str(w)], env=env,
                              stderr=subprocess.PIPE, text=True) for w in range(4)]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], f"a writer failed: {errors}"
    r = store.open().report(limit=1000)
    assert (r.questions, r.answered, r.feedback_down) == (160, 80, 4 * 14)
    assert len(r.top_questions) == 160, "every question stored once"


def test_corrupt_file_is_a_clear_error(tmp_path):
    path = tmp_path / ANALYTICS_FILE
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(AnalyticsError, match="not a readable question log"):
        QuestionLog(path)


def test_kb_report_cli(store, tmp_path, monkeypatch, capsys):
    """`kb report` reads the log `open_log` picks: KB_HOME's SQLite file, or PostgreSQL with KB_DATABASE_URL."""
    monkeypatch.setenv("KB_HOME", str(tmp_path / "home"))
    if store.name == "postgres":
        monkeypatch.setenv("KB_DATABASE_URL", store.url)
    else:
        monkeypatch.delenv("KB_DATABASE_URL", raising=False)
    opened = open_log(Config.from_env())
    opened.close()
    assert type(opened).__name__ == {"sqlite": "QuestionLog", "postgres": "PgQuestionLog"}[store.name], \
        "KB_DATABASE_URL puts the question log in PostgreSQL"
    log = store.open()
    a = log.log_question("生成器为什么省内存", "答", True, [{"slug": "python-generators", "anchor": "x"}])
    log.log_question("怎么部署到 k8s", "没有", False, [])
    log.log_question("怎么部署到K8S？", "没有", False, [])
    log.log_feedback(a, 1)
    assert cli.main(["report", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(q["question"], q["count"]) for q in data["refused_questions"]] == [("怎么部署到K8S？", 2)]
    assert (data["questions"], data["refused"], data["feedback_up"]) == (3, 2, 1)
    assert cli.main(["report"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0] == "问答统计（全部记录）：3 个问题，回答 1，未能回答 2（67%），👍 1 👎 0"
    assert "未能回答的问题（博客还没有写到的内容）：" in text and "     2×  怎么部署到K8S？" in text
    out_csv = tmp_path / "q.csv"
    assert cli.main(["report", "--csv", str(out_csv)]) == 0
    assert capsys.readouterr().err == f"kb: wrote 3 question(s) to {out_csv}\n"
    assert len(out_csv.read_text(encoding="utf-8-sig").splitlines()) == 4
    assert cli.main(["report", "--days", "-1"]) == 2
    assert capsys.readouterr().err == "kb: error: --days must be a positive number of days\n"
    monkeypatch.setenv("KB_LOG_RETENTION_DAYS", "soon")
    assert cli.main(["report"]) == 1
    assert "KB_LOG_RETENTION_DAYS must be 0 (keep everything) or a number of days, not 'soon'" in capsys.readouterr().err


def test_pg_log_schema_is_versioned_and_a_newer_one_refused(pg_url):
    """The PostgreSQL log records its schema version apart from the index's; a newer one is refused, not written."""
    import psycopg
    from kb.pg_analytics import SCHEMA_VERSION, PgQuestionLog
    PgQuestionLog(pg_url).close()
    PgQuestionLog(pg_url).close()             # opening again migrates nothing
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM kb_log_schema").fetchall() == [(SCHEMA_VERSION,)]
        assert conn.execute("SELECT to_regclass('kb_schema')").fetchone() == (None,), "the index's schema is its own"
        conn.execute("UPDATE kb_log_schema SET version = 99")
    with pytest.raises(AnalyticsError, match=f"schema 版本是 99，本程序只认识到 {SCHEMA_VERSION}"):
        PgQuestionLog(pg_url)


def test_pg_log_unreachable_server_and_nul_characters(pg_url):
    """A server that is not there is one clear AnalyticsError without the password; NUL characters, which
    PostgreSQL text cannot hold, are dropped instead of failing the write."""
    from kb.pg_analytics import PgQuestionLog
    with pytest.raises(AnalyticsError, match=r"问答记录（PostgreSQL postgresql://kb@127\.0\.0\.1:1/kb）出错") as err:
        PgQuestionLog("postgresql://kb:s3cret@127.0.0.1:1/kb", connect_timeout_s=2)
    assert "s3cret" not in str(err.value)
    log = PgQuestionLog(pg_url)
    qid = log.log_question("生成器\x00是什么", "答\x00", True, [{"slug": "python-generators", "anchor": "a\x00"}])
    log.log_feedback(qid, -1, "不\x00对")
    rows = log.questions()
    log.close()
    assert [(r["question"], r["answer"], r["citations"], r["comment"]) for r in rows] == [
        ("生成器是什么", "答", [{"slug": "python-generators", "anchor": "a"}], "不对")]
