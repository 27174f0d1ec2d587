"""`KnowledgeBase`: the facade the CLI, the app and the answer module use.

    kb = KnowledgeBase(Config.from_env())
    summary = kb.index(progress=lambda done, total, message: ...)     # incremental
    result = kb.search("列表和元组有什么区别", k=5, prefer_slug="python-list-tuple")

It owns one embedder (the model loads once, on first use), one store (kb/store.py: the FAISS files in
KB_HOME, or PostgreSQL when KB_DATABASE_URL is set) and one loaded index with its retriever. A
search with no index builds one; a search that finds the index corrupted, truncated or built for another
model or chunker reports it in `notices` (and the log) and rebuilds before answering: a bad index is never
served. Articles are read from `config.articles_dir` on first use and again on every `index()`.

A store shared with other processes (PostgreSQL) is asked for its version at most every
`config.refresh_s`; when another replica has written (an upload), the index and the articles are reloaded
before the next search, so the upload is answerable here too.

`prefer_slug` (the article the reader is on, for the website embed) adds `config.prefer_boost` (1.5
standard deviations of the fused z-scores) to that article's hits: it wins near-ties but does not lift an
unrelated section above a clearly better one elsewhere, and it does not change whether the question is
answerable.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from kb.articles import Article, load_articles
from kb.chunking import Chunk
from kb.config import Config
from kb.embedding import Embedder, make_embedder
from kb.errors import ArticleError, IndexError_, IndexMissing, KBError, StoreError
from kb.index import VectorIndex
from kb.indexing import IndexSummary, Progress, update_index
from kb.retrieval import HybridRetriever, SearchResult, clean_question
from kb.warm_start import BuildProgress, Interim
from kb.store import Store, make_store

log = logging.getLogger("kb")

STATES = ("indexed", "changed", "new", "deleted", "unreadable")


@dataclass(frozen=True)
class ArticleStatus:
    slug: str
    title: str
    state: str                     # one of STATES: "changed"/"new"/"deleted" mean `kb index` has work to do
    chunks: int                    # chunks in the index for this article (0 when not indexed)
    path: str
    error: str | None = None       # why an article is unreadable


class KnowledgeBase:
    def __init__(self, config: Config | None = None, embedder: Embedder | None = None, store: Store | None = None):
        self.config = config or Config.from_env()
        self.store = store or make_store(self.config)
        self._embedder = embedder
        self._articles: dict[str, Article] | None = None
        self._errors: list[ArticleError] = []
        self._index: VectorIndex | None = None
        self._retriever: HybridRetriever | None = None
        self._version: str | None = None        # the store's version the loaded index was read at
        self._checked = 0.0                     # monotonic time of the last version check
        self._refresh_lock = threading.Lock()
        # While a first index builds in the background (kb/warm_start.py): the BM25-only retriever, and the
        # model-free embedder the answers use meanwhile. Both None once the semantic index serves.
        self._interim: Interim | None = None
        self._stand_in: Embedder | None = None
        self.progress = BuildProgress()
        self.notices: list[str] = []           # index problems found and repaired, for the CLI / app to show

    # Articles -----------------------------------------------------------------------------------------

    def reload_articles(self) -> None:
        articles, errors = load_articles(self.config.articles_dir, self.config.permalink)
        self._articles = {a.slug: a for a in articles}
        self._errors = errors

    @property
    def articles(self) -> dict[str, Article]:
        """slug -> Article, sorted by slug; unreadable files are in `skipped`."""
        if self._articles is None:
            self.reload_articles()
        return self._articles

    @property
    def skipped(self) -> list[ArticleError]:
        self.articles
        return list(self._errors)

    def article(self, slug: str) -> Article:
        try:
            return self.articles[slug]
        except KeyError:
            raise KBError(f"no article with slug '{slug}'") from None

    def page_url(self, slug: str, anchor: str | None = None) -> str:
        """Where a citation of (slug, anchor) links: the blog's own page when KB_SITE_URL is set and the
        article has a permalink, else the app's copy (/article/<slug>#<anchor>)."""
        from kb.answer import article_url
        found = self.articles.get(slug)
        if not (self.config.site_url and found is not None and found.page):
            return article_url(slug, anchor)
        return self.config.site_url + quote(found.page, safe="/:@!$&'()*+,;=-._~") + (f"#{quote(anchor)}" if anchor else "")

    # Model and index ----------------------------------------------------------------------------------

    @property
    def embedder(self) -> Embedder:
        """The embedder answers score sentences with: the model's, or a model-free stand-in while a first
        index builds in the background (kb/warm_start.py)."""
        return self._stand_in or self.model_embedder

    @property
    def model_embedder(self) -> Embedder:
        """The embedding model of this knowledge base (what the index is built with)."""
        if self._embedder is None:
            self._embedder = make_embedder(self.config)
        return self._embedder

    def index(self, rebuild: bool = False, progress: Progress | None = None) -> IndexSummary:
        """Bring the index up to date with the articles folder (incremental unless `rebuild`)."""
        index, summary = self.build(rebuild=rebuild, progress=progress)
        self._set_index(index)
        return summary

    def build(self, rebuild: bool = False, progress: Progress | None = None) -> tuple[VectorIndex, IndexSummary]:
        """`index` without serving the result: the new index is saved and returned (see `activate`)."""
        self.reload_articles()
        index, summary = update_index(self.config, list(self.articles.values()), self._errors, self.model_embedder,
                                      rebuild=rebuild, progress=progress, backend=self.store)
        if summary.rebuilt and summary.reason and summary.reason.startswith("the previous index is unusable"):
            self._notice(summary.reason + "; rebuilt it")
        return index, summary

    def activate(self, index: VectorIndex) -> None:
        """Serve `index` (hybrid) from the next search on, ending BM25-only serving. The retriever is made
        here, in the caller's thread, so the first hybrid search does not pay for it."""
        self._set_index(index)
        self._retriever = HybridRetriever(index, self.model_embedder, self.config)
        self._interim = self._stand_in = None

    def serve_interim(self, interim: Interim, stand_in: Embedder) -> None:
        """Serve `interim`'s BM25-only retriever (searches wait until it is made) and answer with
        `stand_in`, until `activate`."""
        self._interim, self._stand_in = interim, stand_in

    @property
    def semantic_ready(self) -> bool:
        """Whether searches are hybrid (False while a first index builds in the background)."""
        return self._interim is None

    def index_sentences(self, index: VectorIndex | None = None, progress: Progress | None = None):
        """Embed the answer sentences of the index's chunks that are not stored yet, store them beside the
        index (kb/sentence_store.py) and load them into the answer cache; returns a SentenceSummary."""
        from kb import sentence_store
        index = index or self.loaded_index()
        return sentence_store.update(self.config.home, self.model_embedder, [c.text for c in index.chunks], progress)

    def _set_index(self, index: VectorIndex) -> None:
        from kb import sentence_store
        self._index = index
        self._retriever = None
        self._version = index.version
        self._checked = time.monotonic()
        sentence_store.preload(self.config.home, self.model_embedder.model_id)

    def refresh(self) -> bool:
        """Reload the index and the articles when another process wrote to a shared store since they were
        loaded; checks at most every config.refresh_s. True when it reloaded."""
        if self._index is None or self._version is None or time.monotonic() - self._checked < self.config.refresh_s:
            return False
        with self._refresh_lock:
            if time.monotonic() - self._checked < self.config.refresh_s:
                return False
            self._checked = time.monotonic()
            try:
                if self.store.version() == self._version:
                    return False
                index = self.store.load()
            except (StoreError, IndexError_) as exc:   # keep serving the snapshot we have
                log.warning("cannot refresh the shared index, serving the loaded one: %s", exc)
                return False
            self.reload_articles()
            self._set_index(index)
            log.info("the shared index changed (version %s); reloaded %d chunks", self._version, len(index))
            return True

    def _notice(self, message: str) -> None:
        log.warning(message)
        self.notices.append(message)

    def try_load(self) -> str | None:
        """Load the index from the store and serve it if it is usable: None; otherwise the reason it is not
        (a corrupted index or one built for another model or chunker is also reported in `notices`)."""
        try:
            index = self.store.load()
        except IndexMissing as exc:
            return str(exc)
        except IndexError_ as exc:
            self._notice(f"{exc}; rebuilding the index")
            return str(exc)
        m, e = index.manifest, self.model_embedder
        if (m.model, m.passage_prompt) != (e.model_id, e.passage_prompt) or m.chunker != self.config.chunker:
            message = (f"the index in {self.config.home} was built with model {m.model} and chunker {m.chunker}, "
                       f"the configuration asks for {e.model_id} and {self.config.chunker}")
            self._notice(f"{message}; rebuilding the index")
            return message
        self._set_index(index)
        return None

    def loaded_index(self) -> VectorIndex:
        """The index, loaded once; built when missing, rebuilt (with a notice) when unusable. While a first
        index builds in the background, the chunks being indexed (BM25 serves them)."""
        interim = self._interim
        if self._index is None and interim is not None:
            return interim.get().index
        if self._index is None:
            try:
                missing = not self.store.exists()
            except IndexError_:
                missing = False            # a corrupted manifest: rebuilt below, with a notice
            if self.try_load() is not None:
                self.index(rebuild=not missing)
        return self._index

    @property
    def retriever(self) -> HybridRetriever:
        interim = self._interim
        if interim is not None:
            return interim.get()
        self.refresh()
        retriever = self._retriever
        if retriever is None:
            retriever = self._retriever = HybridRetriever(self.loaded_index(), self.model_embedder, self.config)
        return retriever

    def chunks(self, slug: str) -> list[Chunk]:
        """The indexed chunks of an article, in reading order."""
        if self._interim is None:
            self.refresh()
        return self.loaded_index().chunks_of(slug)

    def status(self) -> list[ArticleStatus]:
        """Per article: indexed, changed since indexing, new, deleted from the folder, or unreadable.

        Reads the manifest and checks the stored files' checksums (no model load, no rebuild); an index
        whose manifest cannot be read counts as none, one whose files fail their checksums is "corrupt".
        """
        self.reload_articles()
        try:
            entries = self.store.read_manifest().articles
        except IndexError_:
            entries = {}
        corrupt = False
        if entries:
            try:
                self.store.verify()
            except IndexError_:
                corrupt = True
        out = []
        for slug, a in self.articles.items():
            e = entries.get(slug)
            state = "new" if e is None else "corrupt" if corrupt else "indexed" if e.hash == a.content_hash else "changed"
            out.append(ArticleStatus(slug, a.title, state, len(e.chunk_ids) if e else 0, str(a.path)))
        unreadable = {Path(err.path).name: err for err in self._errors}
        for name, err in unreadable.items():
            # An unreadable file that was indexed before keeps its chunks (see kb/indexing.py).
            slug, e = next(((s, e) for s, e in entries.items() if Path(e.path).name == name), ("", None))
            out.append(ArticleStatus(slug, e.title if e else "", "unreadable", len(e.chunk_ids) if e else 0,
                                     err.path, str(err)))
        for slug, e in entries.items():
            if slug not in self.articles and Path(e.path).name not in unreadable:
                out.append(ArticleStatus(slug, e.title, "deleted", len(e.chunk_ids), e.path))
        return out

    # Search -------------------------------------------------------------------------------------------

    def search(self, question: str, k: int | None = None, prefer_slug: str | None = None,
               mode: str = "hybrid") -> SearchResult:
        """Top-k hits for `question` (merged windows), whether it is answerable, and the nearest articles."""
        clean_question(question, self.config.max_question_chars)    # a bad question fails before any loading
        return self.retriever.search(question, k or self.config.top_k, prefer_slug=prefer_slug, mode=mode)

    def as_langchain_retriever(self, k: int | None = None):
        """A langchain_core BaseRetriever over this knowledge base (imports LangChain on first use)."""
        from kb.lc_retriever import KBRetriever
        return KBRetriever(kb=self, k=k or self.config.top_k)
