"""The blog owner's part of the 知识库管理 tab: delete an article, the question log (问答统计), list refresh.

OwnerHandlers (mixed into ChatApp) call kb.upload.delete_article, the engine's incremental index and
kb.analytics; every action goes through the admin password check (and its rate limit) of kb/ui/admin.py.
`track_demo` logs a demo launch and, from a waiting thread, its pass/fail. After an upload, a re-index or
a delete, `refresh_lists` updates every article list on the page, so nothing needs a restart.
"""
from __future__ import annotations

import logging
import tempfile
import threading
import time
from pathlib import Path

import gradio as gr

from kb.ui.guard import refuse
from kb.upload import UploadError, delete_article

log = logging.getLogger("kb.ui")
PERIODS = [("最近 7 天", 7), ("最近 30 天", 30), ("最近 90 天", 90), ("全部", 0)]


def log_answer(question_log, question: str, a, slug: str | None) -> int | None:
    """Store an answered or refused question; its id, or None when there is no log or the write failed."""
    if question_log is None:
        return None
    try:
        return question_log.log_question(question, a.text, a.answerable, a.citations, a.mode, slug)
    except Exception as exc:         # the reader gets the answer even when the log cannot be written
        log.warning("question not logged: %s", exc)
        return None


def track_demo(question_log, question_id: int | None, handle) -> None:
    """Log a run's launch now and its end (passed / failed; cancelled stays unfinished) when it ends."""
    if question_log is None:
        return
    try:
        question_log.log_demo(question_id, handle.demo, handle.id, None)
    except Exception as exc:         # logging must never stop a launch
        log.warning("demo launch not logged: %s", exc)
        return

    def wait():
        try:
            handle.wait()
            if handle.status != "cancelled":
                question_log.log_demo(question_id, handle.demo, handle.id, handle.status == "passed")
        except Exception as exc:     # a log write must never take a run or the app down
            log.warning("demo end not logged: %s", exc)

    threading.Thread(target=wait, daemon=True, name=f"log-{handle.id}").start()


class OwnerHandlers:
    """`self` is the ChatApp (kb, question_log, _check_password, _index_lock)."""

    def article_choices(self) -> list[tuple[str, str]]:
        return [(f"{a.title}（{a.slug}）", a.slug) for a in self.kb.articles.values()]

    def refresh_lists(self):
        """Updates for every article list on the page: the 文章 tab's picker and the delete picker."""
        self.kb.reload_articles()
        articles = [(a.title, a.slug) for a in self.kb.articles.values()]
        return gr.update(choices=articles), gr.update(choices=self.article_choices(), value=None)

    def delete(self, slug: str | None, confirmed: bool, password: str | None = None, request: gr.Request = None,
               progress=gr.Progress()):
        """Move the article's file to the backups folder, then re-index: it leaves the answers at once."""
        self._check_password(password, request)
        if not slug:
            raise refuse("请先选择要删除的文章。", request, "admin")
        if not confirmed:
            raise refuse("请勾选“确认删除”：文章会从知识库中移除（文件移到备份目录）。", request, "admin")
        article = self.kb.articles.get(slug)
        if article is None:
            raise refuse(f"没有 slug 为 {slug!r} 的文章（可能已被删除），列表已刷新。", request, "admin")
        try:
            backup = delete_article(article, self.kb.config.articles_dir, self.kb.config.home / "backups")
        except UploadError as exc:
            raise refuse(f"删除失败：{exc}", request, "admin") from None
        except OSError as exc:
            raise refuse(f"删除失败：{exc}", request, "admin") from None
        log.info("article deleted: %s (backup %s)", slug, backup)
        report, rows = self.reindex(password, request, progress)
        return f"已删除《{article.title}》，文件已移到备份目录（backups/{backup.name}）。\n\n{report}", rows

    def analytics_view(self, days: int | float | None, password: str | None = None, request: gr.Request = None):
        """(summary Markdown, top questions, refused questions, feedback, demos) for the admin tab."""
        self._check_password(password, request)
        if self.question_log is None:
            where = ("KB_DATABASE_URL 指向的 PostgreSQL" if self.kb.config.database_url
                     else "数据目录里的 analytics.sqlite3")
            return f"问答记录未开启（无法打开{where}，原因见服务器日志）。", [], [], [], []
        r = self.question_log.report(days=days or None, limit=50)
        window = f"最近 {days:g} 天" if days else "全部记录"
        summary = (f"**{window}**：{r.questions} 个问题，回答 {r.answered}，未能回答 {r.refused}"
                   f"（{r.refusal_rate:.0%}）；好评 {r.feedback_up}，差评 {r.feedback_down}")
        top = [[s.count, s.question, s.answerable, "、".join(s.articles), s.last_asked] for s in r.top_questions]
        refused = [[s.count, s.question, "、".join(a for a in s.articles if a), s.last_asked]
                   for s in r.refused_questions]
        feedback = [["好评" if f.rating > 0 else "差评", f.question, f.comment, f.time] for f in r.feedback]
        demos = [[d.demo_id, d.launched, d.passed, d.failed, d.unfinished] for d in r.demos]
        return summary, top, refused, feedback, demos

    def analytics_csv(self, days: int | float | None, password: str | None = None,
                      request: gr.Request = None) -> str:
        """A CSV file of every question in the window, for the download button."""
        self._check_password(password, request)
        if self.question_log is None:
            raise refuse("问答记录未开启。", request, "admin")
        folder = Path(tempfile.mkdtemp(prefix="kb-report-"))
        path = folder / f"questions-{time.strftime('%Y%m%d-%H%M%S')}.csv"
        self.question_log.export_csv(path, days=days or None)
        return str(path)


def create_ui(ui: dict) -> None:
    """The owner's blocks inside the admin tab (called by kb/ui/admin.py's create_ui)."""
    with gr.Accordion("删除文章", open=False):
        with gr.Row():
            ui["owner_delete_pick"] = gr.Dropdown(label="文章", choices=[], scale=4, elem_id="delete-pick")
            ui["owner_delete_confirm"] = gr.Checkbox(label="确认删除（文件移到备份目录）", scale=2,
                                                     elem_id="delete-confirm")
            ui["owner_delete_btn"] = gr.Button("删除并更新索引", variant="stop", scale=1, elem_id="delete-btn")
    with gr.Accordion("问答统计", open=False, elem_id="analytics"):
        with gr.Row():
            ui["owner_period"] = gr.Dropdown(label="时间范围", choices=PERIODS, value=30, scale=2)
            ui["owner_report_btn"] = gr.Button("刷新统计", scale=1, elem_id="report-btn")
            ui["owner_csv_btn"] = gr.Button("导出 CSV", scale=1, elem_id="csv-btn")
        ui["owner_summary"] = gr.Markdown(elem_id="report-summary")
        ui["owner_refused"] = gr.Dataframe(headers=["次数", "未能回答的问题（博客还没写到的内容）", "读者所在文章", "最近一次"],
                                           interactive=False, elem_id="report-refused")
        ui["owner_top"] = gr.Dataframe(headers=["次数", "热门问题", "已回答", "引用的文章", "最近一次"],
                                       interactive=False, elem_id="report-top")
        ui["owner_feedback"] = gr.Dataframe(headers=["评价", "问题", "留言", "时间"], interactive=False,
                                            elem_id="report-feedback")
        ui["owner_demos"] = gr.Dataframe(headers=["演示", "启动", "通过", "失败", "未结束"], interactive=False,
                                         elem_id="report-demos")
        ui["owner_csv"] = gr.File(label="CSV 文件", interactive=False, elem_id="report-csv")


def create_event_handlers(state, ui: dict, demo: gr.Blocks) -> None:
    password = ui["admin_password"]
    lists = [ui["article_pick"], ui["owner_delete_pick"]]
    report_out = [ui["owner_summary"], ui["owner_top"], ui["owner_refused"], ui["owner_feedback"], ui["owner_demos"]]
    ui["owner_delete_btn"].click(state.delete, [ui["owner_delete_pick"], ui["owner_delete_confirm"], password],
                                 [ui["admin_msg"], ui["admin_table"]], api_visibility="private").then(
        state.refresh_lists, None, lists, api_visibility="private").then(
        lambda: False, None, ui["owner_delete_confirm"], api_visibility="private")
    ui["owner_report_btn"].click(state.analytics_view, [ui["owner_period"], password], report_out,
                                 api_visibility="private")
    ui["owner_csv_btn"].click(state.analytics_csv, [ui["owner_period"], password], ui["owner_csv"],
                              api_visibility="private")
    demo.load(state.refresh_lists, None, lists, api_visibility="private")
