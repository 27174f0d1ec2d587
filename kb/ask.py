"""`kb ask`: the chat's answer on the command line, one question or a JSONL batch with one model load.

    kb ask "生成器为什么省内存？" [--article SLUG] [--json]
    kb ask --batch questions.jsonl --json        # one JSON object per input line, in input order

A batch line is an object with `question` (required), `id`, `article` (the page the reader is on) and
`history` ([[question, answer], ...]); other fields are ignored. Each output line has the stable fields
`id, question, answerable, text, citations: [{n, slug, anchor, url}], demos`, plus `notice` and `mode`; a
line that cannot be answered (not JSON, no question, an empty question, a bad history) gives
`{"id", "line", "error"}` instead, and the rest of the batch is still answered. This module turns inputs
into `kb.answer` calls and answers into records; it knows nothing about argparse.
"""
from __future__ import annotations

import json
import logging
from typing import IO, Iterator

from kb.answer import Answer, answer
from kb.errors import QueryError

log = logging.getLogger("kb")


def record(a: Answer, qid=None) -> dict:
    """The stable JSON record of one answer."""
    return {"id": qid, "question": a.question, "answerable": a.answerable, "text": a.text,
            "citations": [{"n": c.n, "slug": c.slug, "anchor": c.anchor, "url": c.url} for c in a.citations],
            "demos": list(a.demos), "notice": a.notice, "mode": a.mode}


def _history(value) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(
            isinstance(t, (list, tuple)) and len(t) == 2 and all(isinstance(s, str) for s in t) for t in value):
        raise ValueError("history 必须是 [[问题, 回答], ...] 形式的列表")
    return [(q, a) for q, a in value]


def answer_line(kb, line: str, n: int, llm=None) -> dict:
    """One batch line -> its record or its error record (never raises for bad input)."""
    qid = None
    try:
        d = json.loads(line)
    except ValueError as exc:
        return {"id": None, "line": n, "error": f"第 {n} 行不是 JSON：{exc}"}
    if not isinstance(d, dict):
        return {"id": None, "line": n, "error": f"第 {n} 行不是 JSON 对象"}
    qid = d.get("id")
    question = d.get("question")
    if not isinstance(question, str):
        return {"id": qid, "line": n, "error": f"第 {n} 行缺少字符串字段 question"}
    article = d.get("article")
    if article is not None and (not isinstance(article, str) or article not in kb.articles):
        return {"id": qid, "line": n, "error": f"第 {n} 行的 article 不是已知文章：{article!r}"}
    try:
        history = _history(d.get("history"))
        return record(answer(kb, question, history, prefer_slug=article, llm=llm), qid)
    except (QueryError, ValueError) as exc:
        return {"id": qid, "line": n, "error": f"第 {n} 行：{exc}"}


def answer_batch(kb, lines: IO[str], llm=None) -> Iterator[dict]:
    """Records for every non-blank line of a JSONL stream, in order; bad lines become error records."""
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        rec = answer_line(kb, line, n, llm)
        if "error" in rec:
            log.warning("kb ask: %s", rec["error"])
        yield rec


def format_text(a: Answer) -> str:
    """The answer as the chat shows it, for a terminal: notice, Markdown text, linked demos."""
    parts = [f"（{a.notice}）"] if a.notice and a.answerable else []
    parts.append(a.text.strip())
    if a.demos:
        parts.append("可运行的演示：" + "、".join(a.demos) + "（python -m demos run ID）")
    return "\n\n".join(parts)
