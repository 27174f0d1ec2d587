"""The question log (kb/analytics.py) and `kb report`: exact reports, CSV, retention, several writers."""
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
from kb.analytics import ANALYTICS_FILE, AnalyticsError, QuestionLog, normalize
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


@pytest.fixture
def log(tmp_path, clock):
    return QuestionLog(tmp_path / "home" / ANALYTICS_FILE, retention_days=30, clock=clock)


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


def test_retention_purges_old_rows_with_feedback(tmp_path, clock):
    path = tmp_path / ANALYTICS_FILE
    log = QuestionLog(path, retention_days=30, clock=clock)
    old = log.log_question("旧问题", "", False)
    log.log_feedback(old, -1, "旧")
    log.log_demo(old, "mro", "old-run", True)
    clock.t = T0 + 20 * DAY
    log.log_question("新问题", "", True)
    clock.t = T0 + 31 * DAY
    reopened = QuestionLog(path, retention_days=30, clock=clock)       # purges on open
    assert [r["question"] for r in reopened.questions()] == ["新问题"]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM feedback").fetchone() == (0,), "feedback goes with its question"
        assert db.execute("SELECT COUNT(*) FROM demo_runs").fetchone() == (0,)
    with pytest.raises(AnalyticsError, match="positive number of days"):
        QuestionLog(path, retention_days=0)


def test_schema_stores_no_personal_data_and_is_wal(log):
    with sqlite3.connect(log.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        columns = {t: [r[1] for r in db.execute(f"PRAGMA table_info({t})")] for t in ("questions", "feedback", "demo_runs")}
    assert columns == {
        "questions": ["id", "ts", "question", "norm", "answer", "answerable", "citations", "mode", "article"],
        "feedback": ["question_id", "ts", "rating", "comment"],
        "demo_runs": ["run_id", "question_id", "ts", "demo_id", "passed"]}, \
        "no IP address, user agent or session column: a change here must be a deliberate privacy decision"


def test_csv_export_exact_and_formula_safe(log, clock):
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
    path = log.path.parent / "q.csv"
    assert log.export_csv(path, days=0.5) == 3, "the second day: two questions and the formula one"
    assert path.read_bytes().startswith(b"\xef\xbb\xbf"), "UTF-8 BOM so spreadsheets read the Chinese"


def test_csv_cell():
    assert [csv_cell(v) for v in ("=1+1", "-2", "@a", "\t=x", "正常", 3, None)] == [
        "'=1+1", "'-2", "'@a", "'\t=x", "正常", 3, ""]


WRITER = """
import sys
from kb.analytics import QuestionLog
path, n, worker = sys.argv[1], int(sys.argv[2]), sys.argv[3]
log = QuestionLog(path, retention_days=30)
for i in range(n):
    qid = log.log_question(f"进程{worker}问题{i}", "答", i % 2 == 0, [], "extractive")
    log.log_feedback(qid, 1 if i % 3 else -1)
"""


def test_several_processes_write_at_once(tmp_path):
    """Four app workers (real processes, as with several uvicorn workers) log at the same time."""
    path = tmp_path / ANALYTICS_FILE
    QuestionLog(path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), "40", str(w)], env=env,
                              stderr=subprocess.PIPE, text=True) for w in range(4)]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], f"a writer failed: {errors}"
    r = QuestionLog(path).report(limit=1000)
    assert (r.questions, r.answered, r.feedback_down) == (160, 80, 4 * 14)
    assert len(r.top_questions) == 160, "every question stored once"


def test_corrupt_file_is_a_clear_error(tmp_path):
    path = tmp_path / ANALYTICS_FILE
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(AnalyticsError, match="not a readable question log"):
        QuestionLog(path)


def test_kb_report_cli(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    monkeypatch.setenv("KB_HOME", str(home))
    log = QuestionLog(home / ANALYTICS_FILE)
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
