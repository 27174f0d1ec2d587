"""The 知识库管理 tab: index status, incremental re-index, article upload; password-checked when one is set.

AdminHandlers (mixed into ChatApp) call kb.engine and kb.upload; the password is compared in constant time
and wrong ones are rate-limited per client address (kb.security.RateLimiter, `ChatApp.admin_limiter`).
"""
from __future__ import annotations

import hmac
import html
from pathlib import Path

import gradio as gr

from kb import security
from kb.errors import KBError
from kb.security import UnsafeInput
from kb.sources import posts_folder
from kb.ui import owner
from kb.ui.guard import client_host, log, refuse
from kb.upload import UploadError, save_article


class AdminHandlers:
    """Admin handlers; `self` is the ChatApp (kb, admin_password, _index_lock)."""

    def _check_password(self, password: str | None, request: gr.Request = None) -> None:
        """Refuse a wrong password; a client address with too many wrong ones waits (rate limit)."""
        if not self.admin_password:
            return
        host = client_host(request)
        if self.admin_limiter.blocked(host):
            raise refuse("密码错误次数过多，请稍后再试。", request, "admin")
        if not isinstance(password, str) or not hmac.compare_digest(password.encode(), self.admin_password.encode()):
            self.admin_limiter.check(host)
            raise refuse("管理密码不正确。", request, "admin")

    def status_rows(self, password: str | None = None, request: gr.Request = None) -> list[list]:
        self._check_password(password, request)
        labels = {"indexed": "已索引", "changed": "已修改，待重建", "new": "新文章，待索引",
                  "deleted": "已删除，待重建", "unreadable": "无法读取",
                  "corrupt": "索引已损坏，待重建"}
        return [[s.slug or Path(s.path).name, s.title, labels.get(s.state, s.state), s.chunks, s.error or ""]
                for s in self.kb.status()]

    def reindex(self, password: str | None = None, request: gr.Request = None, progress=gr.Progress()):
        self._check_password(password, request)
        if not self._index_lock.acquire(blocking=False):
            raise refuse("索引正在重建中，请稍候。", request, "admin")
        try:
            return self._reindex_locked(progress), self.status_rows(password, request)
        finally:
            self._index_lock.release()

    def _reindex_locked(self, progress) -> str:
        try:
            summary = self.kb.index(progress=lambda done, total, msg: progress(done / total if total else 1.0, desc=msg))
        except KBError as exc:
            log.error("re-index failed: %s", exc)
            raise gr.Error(f"重建索引失败：{html.escape(str(exc)[:300], quote=False)}", print_exception=False) from None
        return "\n".join(f"- {line}" for line in summary.lines())

    def upload_article(self, file_path: str | None, password: str | None = None, original_name: str | None = None,
                       progress=gr.Progress(), request: gr.Request = None):
        """Validate, save atomically (with a backup when replacing), then re-index incrementally.

        Only a file the client uploaded (in gradio's upload cache) is read; the app checks this itself
        because a mounted gradio app skips gradio's own check. Refused while a re-index runs, before any
        write. Messages never name a server path."""
        self._check_password(password, request)
        if not file_path:
            raise refuse("请选择要上传的 .md 文件。", request, "upload")
        if isinstance(file_path, dict):   # a FileData payload sent through the API
            file_path = file_path.get("path")
        try:
            path = security.uploaded_file(file_path, self.upload_dir)
        except UnsafeInput as exc:
            raise refuse(str(exc), request, "upload") from None
        name = original_name if isinstance(original_name, str) and original_name else path.name
        if not self._index_lock.acquire(blocking=False):
            raise refuse("索引正在重建中，请稍候再上传（未做任何修改）。", request, "upload")
        try:
            try:
                data = path.read_bytes()
                saved = save_article(posts_folder(self.kb.config.articles_dir), name, data, self.kb.config.home / "backups")
            except UploadError as exc:
                raise refuse(f"上传被拒绝：{html.escape(str(exc), quote=False)}（未做任何修改）", request, "upload") from None
            except OSError as exc:
                log.warning("upload read/write failed: %s", exc)
                raise refuse("读取上传的文件失败，请重新上传（未做任何修改）。", request, "upload") from None
            report = self._reindex_locked(progress)
        finally:
            self._index_lock.release()
        done = "替换" if saved.replaced else "新增"
        backup = f"（旧版本已备份为 {saved.backup.name}）" if saved.backup else ""
        return f"已{done}《{html.escape(saved.article.title)}》{backup}。\n\n{report}", self.status_rows(password, request)


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
        owner.create_ui(ui)          # delete an article, the question log (kb/ui/owner.py)


def create_event_handlers(state, ui: dict, demo: gr.Blocks) -> None:
    password, table, msg = ui["admin_password"], ui["admin_table"], ui["admin_msg"]
    if not state.admin_password:   # with a password, the table fills once it is given
        demo.load(lambda: state.status_rows(None), None, table, api_visibility="private")
    ui["admin_show"].click(state.status_rows, [password], [table], api_visibility="private")
    lists = [ui["article_pick"], ui["owner_delete_pick"]]      # every article list: refreshed after a change
    ui["admin_reindex"].click(state.reindex, [password], [msg, table], api_visibility="private").then(
        state.refresh_lists, None, lists, api_visibility="private")
    ui["admin_upload_btn"].click(upload_handler(state), [ui["admin_upload"], password], [msg, table],
                                 api_visibility="private").then(state.refresh_lists, None, lists, api_visibility="private")
    owner.create_event_handlers(state, ui, demo)


def upload_handler(state):
    """The upload button (a def, so gradio hands it the request and a progress tracker)."""
    def upload(file_path, password, request: gr.Request = None, progress=gr.Progress()):
        return state.upload_article(file_path, password, None, progress, request)
    return upload
