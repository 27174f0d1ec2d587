"""A first start serves at once: BM25 answers while the semantic index builds in a thread, then hybrid
with no restart; answer-sentence vectors are stored with the index and checked by SHA-256."""
import logging
import threading
import time

import numpy as np
import pytest

from kb import sentence_store
from kb import warm_start
from kb.config import Config
from kb.embedding import FakeEmbedder
from kb.engine import KnowledgeBase
from kb.sentences import CACHE, sentence_texts
from tests.test_index import TERMS, write_corpus


class GatedEmbedder(FakeEmbedder):
    """The fake embedder, whose document embedding waits until the test opens the gate."""

    def __init__(self):
        super().__init__(TERMS)
        self.gate = threading.Event()

    def _embed(self, texts, is_query):
        if not is_query:
            assert self.gate.wait(30), "the test never opened the gate"
        return super()._embed(texts, is_query)


def wait_ready(progress, timeout=30):
    deadline = time.monotonic() + timeout
    while progress.state == "building" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert progress.state == "ready", progress.as_dict()


def test_bm25_while_building_then_hybrid_without_restart(tmp_path):
    corpus = write_corpus(tmp_path / "articles")
    home = tmp_path / "home"
    embedder = GatedEmbedder()
    kb = KnowledgeBase(Config(articles_dir=corpus, home=home), embedder=embedder)
    progress = warm_start.start(kb)
    assert progress.state == "building" and not kb.semantic_ready
    assert "语义索引正在建立" in progress.notice() and "关键词检索（BM25）" in progress.notice()

    result = kb.search("循环引用 gc")
    assert result.retrieval == "bm25" and result.hits[0].chunk.slug == "refs", result
    assert all(h.dense_score == 0.0 and h.dense_rank is None for h in result.hits), "no vector was used"
    assert isinstance(kb.embedder, warm_start.LexicalEmbedder), "answers do not wait for the model"
    assert [c.id for c in kb.chunks("lists")] == ["lists:0", "lists:1"], "articles readable while building"
    assert embedder.calls == [] and not (home / "manifest.json").exists()

    embedder.gate.set()
    wait_ready(progress)
    assert progress.notice() == "" and kb.semantic_ready and kb.embedder is embedder
    result = kb.search("循环引用 gc")
    assert result.retrieval == "hybrid" and result.hits[0].chunk.slug == "refs"
    assert result.hits[0].dense_score > 0.5, result.hits[0]

    # The sentences answers score were embedded at index time, stored, and are in the answer cache.
    texts = sentence_texts(c.text for c in kb.loaded_index().chunks)
    stored_texts, stored_vectors = sentence_store.load(home, embedder.model_id)
    assert stored_texts == texts and len(texts) > 0
    np.testing.assert_allclose(stored_vectors, FakeEmbedder(TERMS).embed_documents(texts), rtol=1e-6)
    calls = sum(embedder.calls)
    CACHE.vectors(embedder, texts)
    assert sum(embedder.calls) == calls, "composing an answer embeds nothing"

    # A second start finds the index and is ready at once, sentences from disk, nothing embedded.
    again = FakeEmbedder(TERMS)
    kb2 = KnowledgeBase(Config(articles_dir=corpus, home=home), embedder=again)
    assert warm_start.start(kb2).state == "ready" and kb2.semantic_ready
    assert kb2.search("元组").retrieval == "hybrid" and again.calls == []


def test_a_gate_holds_the_model_until_the_page_is_ready(tmp_path):
    """app.py passes a gate (kb/prestart.py): BM25 answers at once, the model is loaded only once it opens."""
    corpus = write_corpus(tmp_path / "articles")

    class Counting(FakeEmbedder):
        loaded = 0

        def _embed(self, texts, is_query):
            type(self).loaded += 1
            return super()._embed(texts, is_query)

    gate = threading.Event()
    kb = KnowledgeBase(Config(articles_dir=corpus, home=tmp_path / "home"), embedder=Counting(TERMS))
    progress = warm_start.start(kb, gate=gate)
    assert kb.search("循环引用 gc").hits[0].chunk.slug == "refs", "BM25 answers before the gate opens"
    time.sleep(0.3)
    assert progress.state == "building" and progress.phase == "bm25" and Counting.loaded == 0, progress.as_dict()
    gate.set()
    wait_ready(progress)
    assert Counting.loaded > 0 and kb.search("循环引用 gc").retrieval == "hybrid"


def test_failed_build_keeps_serving_bm25(tmp_path, caplog):
    class Broken(FakeEmbedder):
        def _embed(self, texts, is_query):
            raise RuntimeError("模型文件损坏")
    corpus = write_corpus(tmp_path / "articles")
    kb = KnowledgeBase(Config(articles_dir=corpus, home=tmp_path / "home"), embedder=Broken(TERMS))
    with caplog.at_level(logging.ERROR, logger="kb"):
        progress = warm_start.start(kb, background=False)
    assert progress.state == "failed" and progress.error == "模型文件损坏"
    assert "语义索引建立失败（模型文件损坏）" in progress.notice()
    assert [r.getMessage() for r in caplog.records] == ["building the semantic index failed: 模型文件损坏"]
    assert kb.search("元组").retrieval == "bm25", "the app keeps answering"


def test_lexical_embedder_by_hand():
    e = warm_start.LexicalEmbedder()
    a, b, c = e.embed_documents(["列表元组", "列表元组", "生成器"])
    assert float(a @ b) == pytest.approx(1.0) and float(a @ c) == pytest.approx(0.0)
    assert np.count_nonzero(a) == len(set(e._features("列表元组"))), "one bucket per distinct feature"
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_corrupted_sentence_vectors_are_recomputed(tmp_path, caplog, damage):
    home = tmp_path / "home"
    e = FakeEmbedder(TERMS)
    chunks = ["列表是可变的。元组不可变，可以做字典的键。", "循环引用要靠 gc 回收。生成器是惰性的，按需计算。"]
    n = len(sentence_texts(chunks))
    assert n == 3, sentence_texts(chunks)        # "列表是可变的。" is too short to quote
    first = sentence_store.update(home, e, chunks)
    assert (first.embedded, first.total) == (n, n)
    assert sentence_store.update(home, e, chunks).embedded == 0, "stored sentences are not embedded again"
    vectors = next((home / "sentences").glob("vectors-*.npy"))
    data = vectors.read_bytes()
    if damage == "flip":
        vectors.write_bytes(data[:-8] + bytes(b ^ 0xFF for b in data[-8:]))
    elif damage == "truncate":
        vectors.write_bytes(data[: len(data) // 2])
    else:
        vectors.unlink()
    with caplog.at_level(logging.WARNING, logger="kb"):
        assert sentence_store.load(home, e.model_id) is None
    assert len(caplog.records) == 1 and "computed again" in caplog.records[0].getMessage(), caplog.text
    again = sentence_store.update(home, e, chunks)
    assert (again.embedded, again.total) == (n, n), "recomputed, never served"
    assert sentence_store.load(home, e.model_id)[0] == sentence_texts(chunks)
    assert sentence_store.load(home, "another-model") is None, "vectors of another model are not used"
