"""The 知识库管理 tab: index status, incremental re-index, article upload; password-checked when one is set.

AdminHandlers (mixed into ChatApp) call kb.engine and kb.upload; the password is compared in constant time.
"""
from __future__ import annotations

import hmac
import html
from pathlib import Path

import gradio as gr

from kb.errors import KBError
from kb.upload import UploadError, save_article


class AdminHandlers:
    """Admin handlers; `self` is the ChatApp (kb, admin_password, _index_lock)."""

    def _check_password(self, password: str | None) -> None:
        if self.admin_password and not hmac.compare_digest((password or "").encode(), self.admin_password.encode()):
            raise gr.Error("管理密码不正确。")

    def status_rows(self, password: str | None = None) -> list[list]:
        self._check_password(password)
        labels = {"indexed": "已索引", "changed": "已修改，待重建", "new": "新文章，待索引",
                  "deleted": "已删除，待重建", "unreadable": "无法读取"}
        return [[s.slug or Path(s.path).name, s.title, labels.get(s.state, s.state), s.chunks, s.error or ""]
                for s in self.kb.status()]

    def reindex(self, password: str | None = None, progress=gr.Progress()):
        self._check_password(password)
        if not self._index_lock.acquire(blocking=False):
            raise gr.Error("索引正在重建中，请稍候。")
        try:
            summary = self.kb.index(progress=lambda done, total, msg: progress(done / total if total else 1.0, desc=msg))
        except KBError as exc:
            raise gr.Error(f"重建索引失败：{exc}") from None
        finally:
            self._index_lock.release()
        return "\n".join(f"- {line}" for line in summary.lines()), self.status_rows(password)

    def upload_article(self, file_path: str | None, password: str | None = None, original_name: str | None = None,
                       progress=gr.Progress()):
        """Validate, save atomically (with a backup when replacing), then re-index incrementally."""
        self._check_password(password)
        if not file_path:
            raise gr.Error("请选择要上传的 .md 文件。")
        name = original_name or Path(file_path).name
        try:
            data = Path(file_path).read_bytes()
            saved = save_article(self.kb.config.articles_dir, name, data, self.kb.config.home / "backups")
        except UploadError as exc:
            raise gr.Error(f"上传被拒绝：{exc}（未做任何修改）") from None
        except OSError as exc:
            raise gr.Error(f"读取上传的文件失败：{exc}") from None
        done = "替换" if saved.replaced else "新增"
        backup = f"（旧版本备份在 {saved.backup}）" if saved.backup else ""
        report, rows = self.reindex(password, progress)
        return f"已{done}《{html.escape(saved.article.title)}》{backup}。\n\n{report}", rows


def create_ui(ui: dict, admin_password: str | None) -> None:
    """The 知识库管理 tab's blocks, added to `ui`."""
    with gr.Tab("知识库管理", id="admin"):
        ui["admin_password"] = gr.Textbox(label="管理密码", type="password", visible=bool(admin_password))
        ui["admin_table"] = gr.Dataframe(headers=["文章", "标题", "索引状态", "片段数", "错误"], interactive=False)
        with gr.Row():
            ui["admin_show"] = gr.Button("刷新状态", size="sm")
            ui["admin_reindex"] = gr.Button("增量重建索引", size="sm")
        ui["admin_upload"] = gr.File(label="上传文章（.md，UTF-8，≤ 512 KiB，文件名须为 <slug>.md）",
                                     file_types=[".md"], type="filepath")
        ui["admin_upload_btn"] = gr.Button("上传并更新索引", variant="primary")
        ui["admin_msg"] = gr.Markdown(elem_id="admin-msg")


def create_event_handlers(state, ui: dict, demo: gr.Blocks) -> None:
    password, table, msg = ui["admin_password"], ui["admin_table"], ui["admin_msg"]
    if not state.admin_password:   # with a password, the table fills once it is given
        demo.load(state.status_rows, None, table, api_visibility="private")
    ui["admin_show"].click(state.status_rows, [password], [table], api_visibility="private")
    ui["admin_reindex"].click(state.reindex, [password], [msg, table], api_visibility="private")
    ui["admin_upload_btn"].click(lambda f, p, progress=gr.Progress(): state.upload_article(f, p, None, progress),
                                 [ui["admin_upload"], password], [msg, table], api_visibility="private")
