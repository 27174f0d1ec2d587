"""The named API endpoints for gradio_client: /ask, /search, /list_articles, /list_demos, /run_demo,
/demo_status; plus the dicts an Answer and a Hit become (stable keys: add, never rename)."""
from __future__ import annotations

import json

import gradio as gr

from demos import present
from kb.answer import Answer, stream_answer
from kb.errors import QueryError


class ApiHandlers:
    """API handlers; `self` is the ChatApp (kb, llm, start_demo, runner)."""

    def api_ask(self, question: str, article: str = "", history_json: str = "[]") -> dict:
        """Answer a question. history_json: [[question, answer], ...] of earlier turns."""
        try:
            turns = [tuple(t) for t in json.loads(history_json or "[]")]
            stream = stream_answer(self.kb, question, turns, prefer_slug=self._slug_or_none(article), llm=self.llm)
        except (QueryError, ValueError, TypeError) as exc:
            raise gr.Error(str(exc)) from None
        for _ in stream:
            pass
        return answer_dict(stream.answer)

    def api_search(self, question: str, k: int = 5, article: str = "") -> dict:
        try:
            result = self.kb.search(question, k=min(max(int(k), 1), 20), prefer_slug=self._slug_or_none(article))
        except QueryError as exc:
            raise gr.Error(str(exc)) from None
        return {"question": result.question, "answerable": result.answerable, "confidence": result.confidence,
                "notice": result.notice, "hits": [hit_dict(h) for h in result.hits],
                "nearest_articles": [{"slug": a.slug, "title": a.title} for a in result.nearest_articles]}

    def api_list_articles(self) -> list:
        return [{"slug": a.slug, "title": a.title, "summary": a.summary, "tags": list(a.tags), "demos": list(a.demos),
                 "url": f"article/{a.slug}", "sections": [{"anchor": s.anchor, "heading": s.heading, "level": s.level}
                                                          for s in a.sections]}
                for a in self.kb.articles.values()]

    def api_list_demos(self) -> list:
        return present.list_demos()

    def api_run_demo(self, demo_id: str, params_json: str = "{}", wait: bool = False) -> dict:
        """Start a demo (params as a JSON object); with wait=True return when it has ended."""
        try:
            params = json.loads(params_json or "{}")
        except ValueError as exc:
            raise gr.Error(f"params_json 不是 JSON：{exc}") from None
        handle = self.start_demo(demo_id, params if isinstance(params, dict) else {})
        if wait:
            handle.wait(handle.timeout_s + 30)
        return present.status_dict(handle)

    def api_demo_status(self, run_id: str) -> dict:
        for handle in self.runner.load_history():
            if handle.id == run_id:
                return present.status_dict(handle)
        raise gr.Error(f"没有编号为 {run_id!r} 的运行。")


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
    gr.api(state.api_ask, api_name="ask")
    gr.api(state.api_search, api_name="search")
    gr.api(state.api_list_articles, api_name="list_articles")
    gr.api(state.api_list_demos, api_name="list_demos")
    gr.api(state.api_run_demo, api_name="run_demo")
    gr.api(state.api_demo_status, api_name="demo_status")
