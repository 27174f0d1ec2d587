"""The named API endpoints for gradio_client: /ask, /search, /list_articles, /list_demos, /run_demo,
/demo_status; plus the dicts an Answer and a Hit become (stable keys: add, never rename)."""
from __future__ import annotations

import gradio as gr

from demos import present
from kb import security
from kb.answer import Answer, stream_answer
from kb.errors import KBError, QueryError
from kb.security import UnsafeInput
from kb.ui.guard import log, refuse
from kb.ui.owner import log_answer

KB_FAILED = "知识库出错，请稍后再试或联系管理员。"


class ApiHandlers:
    """API handlers; `self` is the ChatApp (kb, llm, start_demo, runner)."""

    def api_ask(self, question: str, article: str = "", history_json: str = "[]", request: gr.Request = None) -> dict:
        """Answer a question. history_json: [[question, answer], ...] of earlier turns (the last few are used)."""
        try:
            return self.answer_request(question, article, history_json)
        except (QueryError, UnsafeInput) as exc:
            raise refuse(str(exc), request, "/ask") from None
        except KBError as exc:
            log.error("/ask failed: %s", exc)
            raise refuse(KB_FAILED, request, "/ask") from None

    def answer_request(self, question: str, article: str = "", history_json: str = "[]") -> dict:
        """What /ask and POST /api/ask return, without the transport. Raises QueryError or UnsafeInput (the
        client's mistake, with a Chinese message) or KBError (the knowledge base failed)."""
        question = security.text_field(question, "question", self.limits)
        turns = security.parse_history_json(history_json, self.limits)
        slug = self._slug_or_none(article)
        stream = stream_answer(self.kb, question, turns, prefer_slug=slug, llm=self.llm)
        for _ in stream:
            pass
        log_answer(self.question_log, question, stream.answer, slug)
        # "bm25" while a first start builds the semantic index (kb/warm_start.py), else "hybrid".
        return {**answer_dict(stream.answer), "retrieval": getattr(stream.result, "retrieval", "hybrid")}

    def api_search(self, question: str, k: int = 5, article: str = "", request: gr.Request = None) -> dict:
        try:
            question = security.text_field(question, "question", self.limits)
            if isinstance(k, bool) or not isinstance(k, (int, float)) or k != k:
                raise UnsafeInput("参数 k 必须是 1 到 20 的整数。")
            result = self.kb.search(question, k=min(max(int(k), 1), 20), prefer_slug=self._slug_or_none(article))
        except (QueryError, UnsafeInput, OverflowError) as exc:
            raise refuse(str(exc) if not isinstance(exc, OverflowError) else "参数 k 必须是 1 到 20 的整数。",
                         request, "/search") from None
        except KBError as exc:
            log.error("/search failed: %s", exc)
            raise refuse(KB_FAILED, request, "/search") from None
        return {"question": result.question, "answerable": result.answerable, "confidence": result.confidence,
                "notice": result.notice, "hits": [hit_dict(h) for h in result.hits], "retrieval": result.retrieval,
                "nearest_articles": [{"slug": a.slug, "title": a.title} for a in result.nearest_articles]}

    def api_list_articles(self) -> list:
        return [{"slug": a.slug, "title": a.title, "summary": a.summary, "tags": list(a.tags), "demos": list(a.demos),
                 "url": f"article/{a.slug}", "sections": [{"anchor": s.anchor, "heading": s.heading, "level": s.level}
                                                          for s in a.sections]}
                for a in self.kb.articles.values()]

    def api_list_demos(self) -> list:
        return present.list_demos()

    def api_run_demo(self, demo_id: str, params_json: str = "{}", wait: bool = False,
                     request: gr.Request = None) -> dict:
        """Start a demo (params as a JSON object); with wait=True return when it has ended, or after at most
        `limits.wait_max_s` with the run still going (then poll /demo_status)."""
        try:
            params = security.params_object(params_json, self.limits)
            if not isinstance(wait, bool):
                raise UnsafeInput("参数 wait 必须是 true 或 false。")
        except UnsafeInput as exc:
            raise refuse(str(exc), request, "/run_demo") from None
        handle = self.start_demo(demo_id, params, request)
        if wait:
            try:
                handle.wait(min(handle.timeout_s + 30, self.limits.wait_max_s))
            except TimeoutError:
                pass   # still queued or running: the status says so
        return present.status_dict(handle)

    def api_demo_status(self, run_id: str, request: gr.Request = None) -> dict:
        """A run this client started (looked up by id alone, without reading the other runs)."""
        handle = self.own_run(run_id, request)
        if handle is None:   # the id is not echoed: the client knows what it sent
            raise refuse("没有编号为这个的运行（只能查看自己启动的运行）。", request, "/demo_status")
        return present.status_dict(handle)


def hit_dict(hit) -> dict:
    c = hit.chunk
    return {"slug": c.slug, "title": c.title, "heading_path": list(c.heading_path), "anchor": c.anchor,
            "url": f"article/{c.slug}#{c.anchor}", "text": c.text, "score": hit.score,
            "dense_score": hit.dense_score, "bm25_score": hit.bm25_score}


def answer_dict(a: Answer) -> dict:
    return {"question": a.question, "searched": a.searched, "text": a.text, "answerable": a.answerable,
            "mode": a.mode, "notice": a.notice, "demos": a.demos,
            "citations": [{"n": c.n, "slug": c.slug, "title": c.title, "heading": c.heading, "anchor": c.anchor,
                           "url": c.url} for c in a.citations],
            "hits": [hit_dict(h) for h in a.hits]}


def create_endpoints(state) -> None:
    """Register the named endpoints; called inside the Blocks."""
    # /ask shares the chat's concurrency group: a few answers at once, so one slow request (each bounded by
    # kb.security.Limits) cannot hold everyone else's. /run_demo only queues (bounded by the runner's limits)
    # and its bounded wait=True must not hold the one slot everyone else submits through.
    gr.api(state.api_ask, api_name="ask", concurrency_limit=state.limits.ask_concurrency, concurrency_id="ask")
    gr.api(state.api_search, api_name="search", concurrency_limit=state.limits.ask_concurrency,
           concurrency_id="ask")
    gr.api(state.api_list_articles, api_name="list_articles")
    gr.api(state.api_list_demos, api_name="list_demos")
    gr.api(state.api_run_demo, api_name="run_demo",
           concurrency_limit=(state.runner.max_queue or state.limits.demo_queue_max) + state.runner.max_concurrent)
    gr.api(state.api_demo_status, api_name="demo_status")
