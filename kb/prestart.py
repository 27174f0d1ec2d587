"""Start the engine while the UI library is still being imported.

`python app.py` spends 4-6 s importing gradio before it can build the page. `EarlyEngine.start()` is
called before that import and does, in one thread, what needs no UI: the knowledge base (config, articles),
the index (loaded, or on a first start the background build of kb/warm_start.py with its BM25-only
retriever) and one answer end to end (jieba's dictionary, the retriever, the demo registry, the model when
an index is loaded). `app.main` then takes the knowledge base from it and, before serving, waits a bounded
time for that warm answer, so the first page it serves answers the first question at once. A first start's
build loads the model (exporting the ONNX file: seconds of busy Python) only once the app sets `serving`,
so that work does not compete with the import and the page.

No gradio here: importing this module must stay cheap.
"""
from __future__ import annotations

import sys
import threading

WARM_QUESTION = "列表和元组有什么区别"


def make_knowledge_base(config=None):
    """The app's knowledge base: the configured embedder, wrapped so that the retrieval's question vector is
    reused to score answer sentences."""
    from kb.config import Config
    from kb.embedding import make_embedder
    from kb.engine import KnowledgeBase
    from kb.sentences import QueryMemoEmbedder

    config = config or Config.from_env()
    return KnowledgeBase(config, embedder=QueryMemoEmbedder(make_embedder(config)))


def warm_answer(kb) -> None:
    """One answer end to end (BM25-only while a first index builds): imports the demo registry, loads jieba
    and, once ready, the model, so the first reader's answer pays for none of it. Warming up is an
    optimisation: a failure is one line on the console, never raised."""
    try:
        from kb.answer import stream_answer
        for _ in stream_answer(kb, WARM_QUESTION, []):
            pass
    except Exception as exc:  # noqa: BLE001 - never take the app down
        print(f"warm-up skipped: {exc}", file=sys.stderr)


class EarlyEngine:
    """The knowledge base being made in a thread; `knowledge_base()` waits for it."""

    def __init__(self, warm: bool = True):
        self.warm = warm
        self.kb = None
        self.error: BaseException | None = None
        self.serving = threading.Event()     # set by the app when its page is ready (releases the build)
        self._made = threading.Event()       # kb made and its index loaded or its build started (or error)
        self._warmed = threading.Event()     # the warm answer is done (or skipped, or failed)
        self._thread = threading.Thread(target=self._run, name="kb-early-engine", daemon=True)

    @classmethod
    def start(cls, warm: bool = True) -> "EarlyEngine":
        engine = cls(warm)
        engine._thread.start()
        return engine

    def _run(self) -> None:
        try:
            from kb import warm_start

            kb = make_knowledge_base()
            warm_start.start(kb, gate=self.serving)
            self.kb = kb
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which reports it
            self.error = exc
            self._warmed.set()
            return
        finally:
            self._made.set()
        try:
            if self.warm:
                warm_answer(self.kb)
        finally:
            self._warmed.set()

    def knowledge_base(self):
        """The knowledge base, once made; re-raises what stopped it (a KBError: a clear message)."""
        self._made.wait()
        if self.error is not None:
            raise self.error
        return self.kb

    def wait_warm(self, timeout: float) -> bool:
        """Wait at most `timeout` seconds for the warm answer; True when it is done."""
        return self._warmed.wait(timeout)
