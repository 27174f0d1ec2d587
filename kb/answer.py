"""Answers: grounded Chinese answers with `[n]` citations, from the retrieved chunks, streamed.

    stream = stream_answer(kb, "生成器和迭代器有什么区别？", history=[("生成器是什么？", "...")])
    for delta in stream: print(delta, end="")          # text increments
    stream.answer.citations, stream.answer.demos       # known before the first increment

Extractive by default (no model to download): the sentences of the top chunks are scored against the
question with the knowledge base's own embedding model (`kb.sentences`), picked with MMR, put back in source
order, each followed by its citation; a code block of the cited section is kept when the question is about
code; a 来源 list links every cited section's anchor. With an `LLMConfig`, the question is rewritten from
the history, the chunks go to the LLM as numbered context and the streamed reply loses any citation to a
number that was not in the context. When the engine says the knowledge base cannot answer, the answer
says so plainly and offers the nearest articles; no LLM is asked.

Every answer carries the demos of the cited articles, ranked for the question. This module knows answers
and citations; retrieval is `KnowledgeBase.search`, the LLM transport is `kb.llm`, the UI is elsewhere.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Iterator, Sequence
from urllib.parse import quote

from kb import followup
from kb.llm import CitationFilter, LLMConfig, LLMError, complete, rewrite_messages, stream_grounded
from kb.retrieval import Hit, SearchResult
from kb.answer_markdown import escape_prose as _escape_prose, pieces_markdown
from kb.compose import compose
from kb.sentences import Candidate, code_block_of, pick_sentences, rank_texts

# LLM failures are logged here with the endpoint's details; readers see only that the LLM failed (the
# endpoint's URL is internal and never goes into an answer).
log = logging.getLogger("kb.answer")

NO_ANSWER = "知识库中没有相关内容"
ARTICLE_ROUTE = "article"        # relative: /article/<slug> where the app is served at the root
LLM_PASSAGES = 5                  # hits given to the LLM as numbered context
COMPOSERS = ("default", "baseline")   # baseline: the composer and refusal rule before kb.compose/kb.refusal
_CODE_QUESTION = re.compile(r"代码|示例|例子|写法|怎么写|如何写|实现|用法|怎么用|如何使用|演示|语法|调用|"
                            r"code|example|snippet|syntax|\bhow to\b", re.I)

Turn = tuple[str, str]            # (question, answer text) of an earlier exchange


@dataclass(frozen=True)
class Citation:
    n: int
    slug: str
    title: str
    heading: str
    anchor: str
    url: str


@dataclass
class Answer:
    question: str                                # as asked
    text: str                                    # Markdown: the answer, its citations, the 来源 list
    citations: list[Citation]
    hits: list[Hit]
    answerable: bool
    demos: list[str]                             # demo ids, best first
    notice: str | None = None                    # truncation, refusal or fallback message
    searched: str = ""                           # the question actually searched (follow-ups get a topic)
    mode: str = "extractive"                     # or "llm"
    timings: dict[str, float] = field(default_factory=dict)   # milliseconds: search, compose


def article_url(slug: str, anchor: str | None = None) -> str:
    return f"{ARTICLE_ROUTE}/{quote(slug)}" + (f"#{quote(anchor)}" if anchor else "")


def citation_link(c: Citation) -> str:
    return f"[[{c.n}]]({c.url})"


def sources_markdown(citations: Sequence[Citation]) -> str:
    lines = [f"{c.n}. [{_md_text(c.title)} › {_md_text(c.heading)}]({c.url})" for c in citations]
    return "**来源**\n\n" + "\n".join(lines)


def _md_text(text: str) -> str:
    """Text placed inside a Markdown link label: brackets and HTML neutralised."""
    return text.replace("[", "［").replace("]", "］").replace("<", "&lt;")


def refusal_markdown(result: SearchResult) -> str:
    lines = [f"{NO_ANSWER}，无法根据现有文章回答这个问题。"]
    if result.nearest_articles:
        lines += ["", "最接近的文章："]
        lines += [f"- [{_md_text(a.title)}]({article_url(a.slug)})" for a in result.nearest_articles]
    return "\n".join(lines)


def is_code_question(question: str) -> bool:
    return bool(_CODE_QUESTION.search(question))


def _citation_for(hit: Hit, n: int, kb=None) -> Citation:
    c = hit.chunk
    url = kb.page_url(c.slug, c.anchor) if kb is not None else article_url(c.slug, c.anchor)   # the blog's page with KB_SITE_URL
    return Citation(n, c.slug, c.title, c.heading_path[-1], c.anchor, url)


def _section_citation(kb, key: tuple[str, str], n: int) -> Citation:
    """The citation of a section no hit points at (the composer quoted another section of the top article)."""
    slug, anchor = key
    article = kb.articles[slug]
    section = article.section(anchor)
    heading = section.path[-1] if section is not None else article.title   # as a chunk's heading_path[-1]
    return Citation(n, slug, article.title, heading, anchor, kb.page_url(slug, anchor))


def rank_demos(kb, question: str, citations: Sequence[Citation], weights: dict[str, float]) -> list[str]:
    """Demo ids of the cited articles, best first: how much of the answer cites the article, then how close
    the demo's title and summary are to the question."""
    from demos import registry

    linked: dict[str, float] = {}
    for c in citations:
        article = kb.articles.get(c.slug)
        ids = list(article.demos) if article else []
        for demo_id in registry.DEMO_IDS:   # demos that name the article themselves count too
            try:
                if c.slug in registry.get(demo_id).articles and demo_id not in ids:
                    ids.append(demo_id)
            except Exception:  # a demo module that cannot be imported is not offered
                continue
        for demo_id in ids:
            linked[demo_id] = max(linked.get(demo_id, 0.0), weights.get(c.slug, 0.0))
    if not linked:
        return []
    texts = []
    for demo_id in linked:
        try:
            spec = registry.get(demo_id)
            texts.append(f"{spec.title}：{spec.summary}")
        except Exception:
            texts.append(demo_id)
    closeness = rank_texts(kb.embedder, question, texts)
    score = {d: 0.5 * linked[d] + 0.5 * s for d, s in zip(linked, closeness)}
    return sorted(linked, key=lambda d: (-score[d], d))


class AnswerStream:
    """Retrieval happens on construction; iterating yields the answer text in increments.

    `answer` holds the hits, citations, demos and notice from the start and the full text at the end.
    Raises `kb.errors.QueryError` (empty question) on construction, like `KnowledgeBase.search`.
    """

    def __init__(self, kb, question: str, history: Sequence[Turn] = (), prefer_slug: str | None = None,
                 llm: LLMConfig | None = None, k: int | None = None, composer: str = "default"):
        assert composer in COMPOSERS, f"composer must be one of {COMPOSERS}"
        self.kb, self.llm, self.composer = kb, llm, composer
        self.prefer_slug = prefer_slug
        self.history = list(history)
        t0 = time.perf_counter()
        previous = [q for q, _ in self.history]
        if not previous and prefer_slug in kb.articles and followup.has_reference(question):
            # Embedded on an article page, a first question's "它" means the article's subject.
            previous = [kb.articles[prefer_slug].title]
        searched, self.rewrite_notice = self._searched_question(question, previous)
        result = kb.search(searched, k=k, prefer_slug=prefer_slug)
        if not result.answerable and self.history and searched == question.strip():
            # Weak evidence on its own: the question may lean on the previous turn's topic.
            retry = followup.inherit_topic(question, previous)
            if retry != searched:
                second = kb.search(retry, k=k, prefer_slug=prefer_slug)
                if second.answerable:
                    searched, result = retry, second
        if composer == "baseline" and result.evidence is not None:
            from dataclasses import replace

            from kb.retrieval import decide_thresholds
            result = replace(result, answerable=decide_thresholds(result.evidence, kb.config)[0])
        self.result = result
        self.answer = Answer(question=question, text="", citations=[], hits=list(result.hits),
                             answerable=result.answerable, demos=[], searched=result.question,
                             notice=_join(self.rewrite_notice, result.notice),
                             mode="llm" if llm and result.answerable else "extractive")
        self.answer.timings["search"] = (time.perf_counter() - t0) * 1000
        self._plan = None
        if result.answerable and not llm:
            t1 = time.perf_counter()
            self._plan = self._extractive_plan()
            self.answer.timings["compose"] = (time.perf_counter() - t1) * 1000

    def _searched_question(self, question: str, previous: list[str]) -> tuple[str, str | None]:
        if not previous:
            return question.strip(), None
        if self.llm and self.history:
            try:
                rewritten = complete(self.llm, rewrite_messages(question, self.history)).strip()
                if rewritten:
                    return rewritten.splitlines()[0][:500], None
            except LLMError as exc:
                log.warning("follow-up rewrite failed: %s", exc)
                return followup.contextualize(question, previous), "改写追问失败，已按上文补全主题。"
        return followup.contextualize(question, previous), None

    # Extractive ------------------------------------------------------------------------------------------

    def _extractive_plan(self) -> list[str]:
        """The answer as pieces to stream: paragraphs with their citations, at most one block, the sources."""
        if self.composer == "baseline":
            return self._baseline_plan()
        hits = self.answer.hits
        sections = {}
        for hit in hits:
            article = self.kb.articles.get(hit.chunk.slug)
            section = article.section(hit.chunk.anchor) if article else None
            if section is not None:
                sections[(hit.chunk.slug, hit.chunk.anchor)] = section
        top = self.kb.articles.get(hits[0].chunk.slug) if hits else None
        # On an article's page, an answer that page can give stays on it (the reader asked there).
        on_page = top is not None and hits[0].chunk.slug == self.prefer_slug
        plan = compose(self.kb.embedder, self.result.question, hits, sections, top.sections if top else (),
                       keep_article=on_page)
        if not plan.groups:   # sections with no prose at all (only code): cite the best one whole
            return self._baseline_plan()
        by_key = {}
        for hit in reversed(hits):
            by_key[(hit.chunk.slug, hit.chunk.anchor)] = hit
        numbers: dict[tuple[str, str], int] = {}
        citations: list[Citation] = []
        weights: dict[str, float] = {}
        paragraphs: list[str] = []
        n_prose = sum(p.kind == "prose" for _, pieces in plan.groups for p in pieces) or 1
        for key, pieces in plan.groups:
            if key not in numbers:
                numbers[key] = len(numbers) + 1
                hit = by_key.get(key)
                citations.append(_citation_for(hit, numbers[key], self.kb) if hit is not None
                                 else _section_citation(self.kb, key, numbers[key]))
            link = citation_link(citations[numbers[key] - 1])
            paragraphs += pieces_markdown(pieces, link)
            weights[key[0]] = weights.get(key[0], 0.0) + sum(p.kind == "prose" for p in pieces) / n_prose
        self.answer.citations = citations
        self.answer.demos = rank_demos(self.kb, self.result.question, citations, weights)
        return [p + "\n\n" for p in paragraphs] + [sources_markdown(citations)]

    def _baseline_plan(self) -> list[str]:
        """Today's composer before kb.compose (MMR-picked sentences per hit), kept for `kb eval --answers`."""
        hits = self.answer.hits
        picked = pick_sentences(self.kb.embedder, self.result.question, hits)
        if not picked:   # chunks with no prose at all (only code): cite the best one whole
            picked = [Candidate(text=hits[0].chunk.text.strip(), hit_rank=0, start=0, relevance=1.0)]
        numbers: dict[tuple[str, str], int] = {}
        citations: list[Citation] = []
        weights: dict[str, float] = {}
        paragraphs: list[str] = []
        current_rank, current = None, []
        for cand in sorted(picked, key=lambda c: (c.hit_rank, c.start)):
            hit = hits[cand.hit_rank]
            key = (hit.chunk.slug, hit.chunk.anchor)
            if key not in numbers:
                numbers[key] = len(numbers) + 1
                citations.append(_citation_for(hit, numbers[key], self.kb))
            weights[hit.chunk.slug] = weights.get(hit.chunk.slug, 0.0) + 1.0 / len(picked)
            if cand.hit_rank != current_rank and current:
                paragraphs.append("".join(current))
                current = []
            current_rank = cand.hit_rank
            current.append(f"{_escape_prose(cand.text)}{citation_link(citations[numbers[key] - 1])}")
        if current:
            paragraphs.append("".join(current))
        if is_code_question(self.answer.question):   # as asked: inherited topic terms do not count
            block = self._code_block(citations)
            if block:
                n, code = block
                paragraphs.append(f"示例代码（出自 {citation_link(citations[n - 1])}）：\n\n{code}")
        self.answer.citations = citations
        self.answer.demos = rank_demos(self.kb, self.result.question, citations, weights)
        return [p + "\n\n" for p in paragraphs] + [sources_markdown(citations)]

    def _code_block(self, citations: list[Citation]) -> tuple[int, str] | None:
        """A code block for a question about code, as (citation n, fenced code): from the cited chunks, else
        the cited sections, else another retrieved section of a cited article (which is then cited too)."""
        by_key = {(c.slug, c.anchor): c.n for c in citations}
        for hit in self.answer.hits:
            n = by_key.get((hit.chunk.slug, hit.chunk.anchor))
            code = code_block_of(hit.chunk.text) if n else None
            if code:
                return n, code
        for c in list(citations):
            article = self.kb.articles.get(c.slug)
            section = article.section(c.anchor) if article else None
            code = code_block_of(section.text) if section else None
            if code:
                return c.n, code
        cited_slugs = {c.slug for c in citations}
        for hit in self.answer.hits:
            code = code_block_of(hit.chunk.text) if hit.chunk.slug in cited_slugs else None
            if code:
                citations.append(_citation_for(hit, len(citations) + 1, self.kb))
                return citations[-1].n, code
        return None

    # Streaming --------------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[str]:
        if not self.result.answerable:
            yield from self._emit([refusal_markdown(self.result)])
        elif self._plan is not None:
            yield from self._emit(self._plan)
        else:
            yield from self._llm_stream()

    def _emit(self, pieces: Sequence[str]) -> Iterator[str]:
        for piece in pieces:
            self.answer.text += piece
            yield piece

    def _llm_stream(self) -> Iterator[str]:
        hits = self.answer.hits[:LLM_PASSAGES]
        citations = [_citation_for(h, i, self.kb) for i, h in enumerate(hits, start=1)]
        passages = [f"{h.chunk.title} › {' › '.join(h.chunk.heading_path[1:])}\n{h.chunk.text}" for h in hits]
        links = {c.n: citation_link(c) for c in citations}
        filt = CitationFilter(range(1, len(hits) + 1), fmt=links.__getitem__, escape_html=True)
        try:
            for delta in stream_grounded(self.llm, self.result.question, passages, self.history, citations=filt):
                self.answer.text += delta
                yield delta
        except LLMError as exc:
            log.warning("LLM answer failed: %s", exc)
            if not self.answer.text:   # nothing shown yet: answer extractively instead
                self.answer.mode, self.answer.notice = "extractive", _join(self.answer.notice, "LLM 不可用，改用摘录式回答。")
                yield from self._emit(self._extractive_plan())
                return
            yield from self._emit(["\n\n（LLM 连接中断，回答不完整。）"])
        cited = [c for c in citations if c.n in filt.cited] or citations
        weights = {}
        for c in cited:
            weights[c.slug] = weights.get(c.slug, 0.0) + 1.0 / len(cited)
        self.answer.citations = cited
        self.answer.demos = rank_demos(self.kb, self.result.question, cited, weights)
        yield from self._emit(["\n\n" + sources_markdown(cited)])


def stream_answer(kb, question: str, history: Sequence[Turn] = (), prefer_slug: str | None = None,
                  llm: LLMConfig | None = None, k: int | None = None, composer: str = "default") -> AnswerStream:
    """Search now; iterate the returned stream for text increments, read `.answer` for the rest."""
    return AnswerStream(kb, question, history, prefer_slug, llm, k, composer)


def answer(kb, question: str, history: Sequence[Turn] = (), prefer_slug: str | None = None,
           llm: LLMConfig | None = None, k: int | None = None, composer: str = "default") -> Answer:
    """The whole answer at once."""
    stream = stream_answer(kb, question, history, prefer_slug, llm, k, composer)
    for _ in stream:
        pass
    return stream.answer


def _join(*parts: str | None) -> str | None:
    return " ".join(p for p in parts if p) or None
