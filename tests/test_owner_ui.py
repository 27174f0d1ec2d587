"""The owner's admin handlers (kb/ui/owner.py) on a small corpus with the fake embedder: delete (backup,
gone from answers and lists at once, password and rate limit), the question-log view and its CSV, demo
launches logged with pass/fail."""
import csv
import threading
import time
from pathlib import Path

import gradio as gr
import pytest

from demos.runner import Runner
from kb.analytics import ANALYTICS_FILE, QuestionLog
from kb.config import Config
from kb.embedding import FakeEmbedder
from kb.engine import KnowledgeBase
from kb.ui.owner import track_demo
from kb.ui.state import ChatApp
from tests.test_index import TERMS, write_corpus


@pytest.fixture
def app(tmp_path):
    arts = write_corpus(tmp_path / "articles")
    kb = KnowledgeBase(Config(articles_dir=arts, home=tmp_path / "home"), embedder=FakeEmbedder(TERMS))
    kb.index()
    state = ChatApp(kb, Runner(tmp_path / "runs", max_concurrent=1), admin_password="pw-1234",
                    question_log=QuestionLog(tmp_path / "home" / ANALYTICS_FILE))
    yield state
    state.runner.close()


def test_delete_then_lists_and_answers_forget_it(app, tmp_path):
    assert [slug for _title, slug in app.article_choices()] == ["gens", "lists", "refs"]
    with pytest.raises(gr.Error, match="勾选“确认删除”"):
        app.delete("lists", False, "pw-1234")
    assert (tmp_path / "articles" / "lists.md").exists(), "not confirmed: nothing deleted"
    msg, rows = app.delete("lists", True, "pw-1234", progress=lambda *a, **k: None)
    assert msg.startswith("已删除《lists》，文件已移到备份目录（backups/lists.") and "deleted: lists" in msg
    assert str(tmp_path) not in msg, "no server path in a message"
    assert [r[0] for r in rows] == ["gens", "refs"], "the admin table is refreshed"
    assert not (tmp_path / "articles" / "lists.md").exists()
    assert len(list((tmp_path / "home" / "backups").glob("lists.*.deleted.md"))) == 1
    assert all(h.chunk.slug != "lists" for h in app.kb.search("元组").hits), "gone from answers at once"
    pick, delete_pick = app.refresh_lists()
    assert [slug for _t, slug in pick["choices"]] == ["gens", "refs"]
    assert [slug for _t, slug in delete_pick["choices"]] == ["gens", "refs"]
    with pytest.raises(gr.Error, match="没有 slug 为 'lists' 的文章"):
        app.delete("lists", True, "pw-1234")


def test_wrong_password_changes_nothing(app, tmp_path):
    with pytest.raises(gr.Error, match="管理密码不正确"):
        app.delete("refs", True, "wrong")
    with pytest.raises(gr.Error, match="管理密码不正确"):
        app.analytics_view(30, "wrong")
    assert (tmp_path / "articles" / "refs.md").exists()


def test_analytics_view_and_csv(app):
    log = app.question_log
    a = log.log_question("生成器为什么省内存", "答", True, [{"slug": "gens", "anchor": "惰性"}], "extractive", "")
    log.log_question("怎么部署到 k8s", "没有", False, [], "extractive", "refs")
    log.log_question("怎么部署到K8S？", "没有", False, [], "extractive", "")
    log.log_feedback(a, -1, "太短")
    log.log_demo(a, "generator", "r1", True)
    summary, top, refused, feedback, demos = app.analytics_view(30, "pw-1234")
    assert summary == "**最近 30 天**：3 个问题，回答 1，未能回答 2（67%）；好评 0，差评 1"
    assert refused == [[2, "怎么部署到K8S？", "refs", refused[0][3]]]
    assert top[0][:4] == [2, "怎么部署到K8S？", 0, ""] and top[1][:4] == [1, "生成器为什么省内存", 1, "gens"]
    assert feedback == [["差评", "生成器为什么省内存", "太短", feedback[0][3]]]
    assert demos == [["generator", 1, 1, 0, 0]]
    path = Path(app.analytics_csv(0, "pw-1234"))
    rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    assert len(rows) == 4 and rows[1][2] == "生成器为什么省内存" and rows[1][9] == "generator:pass"


class FakeHandle:
    """What track_demo reads of a demos.runner.RunHandle: id, demo, wait(), status."""

    def __init__(self, status):
        self.id, self.demo, self._status = f"run-{status}", "mro", status
        self.status = "running"
        self._done = threading.Event()

    def finish(self):
        self.status = self._status
        self._done.set()

    def wait(self, timeout=None):
        self._done.wait(timeout)
        return {}


def test_track_demo_logs_launch_then_result(app):
    log = app.question_log
    qid = log.log_question("mro 怎么算", "答", True, [], "extractive", "")
    handles = [FakeHandle(s) for s in ("passed", "failed", "cancelled")]
    for h in handles:
        track_demo(log, qid, h)
    assert log.report().demos[0].unfinished == 3, "launched, not ended"
    for h in handles:
        h.finish()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and log.report().demos[0].unfinished != 1:
        time.sleep(0.05)
    d = log.report().demos[0]
    assert (d.launched, d.passed, d.failed, d.unfinished) == (3, 1, 1, 1), "a cancelled run stays unfinished"
    assert [x["demo"] for x in log.questions()[0]["demos"]] == ["mro", "mro", "mro"]


def test_admin_actions_are_rate_limited(app, tmp_path):
    """Ten wrong passwords from one address block that address, even with the right password after."""
    for _ in range(10):
        with pytest.raises(gr.Error, match="管理密码不正确"):
            app.delete("refs", True, "guess")
    with pytest.raises(gr.Error, match="密码错误次数过多"):
        app.delete("refs", True, "pw-1234")
    with pytest.raises(gr.Error, match="密码错误次数过多"):
        app.analytics_csv(0, "pw-1234")
    assert (tmp_path / "articles" / "refs.md").exists()


def test_upload_into_a_blog_tree_lands_in_its_posts_folder(tmp_path):
    """An admin upload into a Hexo tree is written to source/_posts, where the index reads posts."""
    from tests.test_sources import hexo_tree
    from tests.test_upload import article_bytes

    root = hexo_tree(tmp_path / "hexo")
    kb = KnowledgeBase(Config(articles_dir=root, home=tmp_path / "home"), embedder=FakeEmbedder(TERMS))
    kb.index()
    state = ChatApp(kb, Runner(tmp_path / "runs", max_concurrent=1), question_log=None, upload_dir=tmp_path)
    upload = tmp_path / "my-note.md"
    upload.write_bytes(article_bytes("my-note"))
    msg, rows = state.upload_article(str(upload), None, "my-note.md", progress=lambda *a, **k: None)
    state.runner.close()
    assert (root / "source" / "_posts" / "my-note.md").exists() and not (root / "my-note.md").exists()
    assert "my-note" in [r[0] for r in rows] and "my-note" in kb.articles, msg


def test_chat_and_api_questions_are_logged(app):
    """The chat handler and /ask both store the question, answerable or refused, with its citations."""
    for _ in app.ask("元组可以做键吗", [], ""):
        pass
    app.api_ask("循环引用 gc", "refs")
    rows = app.question_log.questions()
    assert [(r["question"], r["article"]) for r in rows] == [("元组可以做键吗", ""), ("循环引用 gc", "refs")]
    assert rows[0]["answerable"] and rows[0]["citations"][0]["slug"] == "lists"
