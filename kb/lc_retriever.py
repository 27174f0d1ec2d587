"""The knowledge base as a LangChain retriever, so any LangChain chain can use it.

Kept apart from kb/retrieval.py because importing langchain_core costs about a second, which the CLI and
the app should not pay unless a chain asks for it. Implements only `_get_relevant_documents`; a question
the knowledge base cannot answer returns no documents (the chain then has nothing to ground an answer on).
"""
from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever


class KBRetriever(BaseRetriever):
    kb: Any                         # a kb.engine.KnowledgeBase
    k: int = 5
    prefer_slug: str | None = None

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        result = self.kb.search(query, k=self.k, prefer_slug=self.prefer_slug)
        if not result.answerable:
            return []
        return [Document(
            page_content=h.chunk.text, id=h.chunk.id,
            metadata={"slug": h.chunk.slug, "title": h.chunk.title, "heading_path": list(h.chunk.heading_path),
                      "anchor": h.chunk.anchor, "score": h.score, "dense_score": h.dense_score,
                      "bm25_score": h.bm25_score},
        ) for h in result.hits]
