"""Hybrid retrieval with the fake embedder: exact component and fused scores, tokenization of mixed
Chinese-English questions, near-duplicate merging, the prefer boost, refusal, bad questions, LangChain."""
import math

import pytest

from kb.chunking import Chunk
from kb.config import Config
from kb.embedding import FakeEmbedder
from kb.engine import KnowledgeBase
from kb.errors import QueryError
import numpy as np

from kb.retrieval import Evidence, Hit, decide, merge_overlaps, zscores
from kb.text import tokenize
from tests.test_index import TERMS, write_corpus

# Thresholds for the fake embedder's cosines (the real defaults are calibrated for m3e-small).
FAKE_THRESHOLDS = dict(min_dense=0.9, min_coverage=0.5, max_agreement_rank=5)


@pytest.fixture
def kb(tmp_path):
    folder = write_corpus(tmp_path / "articles")
    kb = KnowledgeBase(Config(articles_dir=folder, home=tmp_path / "home", **FAKE_THRESHOLDS),
                       embedder=FakeEmbedder(TERMS))
    kb.index()
    return kb


def test_tokenize_mixed_chinese_english():
    assert tokenize("Python 的 GC 怎么处理循环引用？") == ["python", "gc", "处理", "循环", "引用"]
    assert tokenize("请问 pdb 怎么设置断点") == ["pdb", "设置", "断点"]
    assert "is" in tokenize("is 和 == 的区别"), "Python keywords are not English stopwords here"
    assert tokenize("DDP 的 all_reduce") == ["ddp", "all", "reduce"]
    assert tokenize("什么？怎么办！") == []


def test_zscores_hand_computed():
    # Mean 2, population standard deviation sqrt(8/3).
    assert zscores(np.array([0.0, 2.0, 4.0])) == pytest.approx([-math.sqrt(1.5), 0.0, math.sqrt(1.5)])
    assert zscores(np.array([3.0, 3.0])).tolist() == [0.0, 0.0], "a ranker that does not vary says nothing"
    assert zscores(np.zeros(0)).tolist() == []


def test_exact_component_and_fused_scores(kb):
    result = kb.search("循环引用 gc", k=6)
    assert len(result.hits) == 6, "six one-section chunks, all dense candidates: every chunk is a hit"
    top = result.hits[0]
    assert top.chunk.id == "refs:1" and top.chunk.anchor == "循环"
    # Query (引用 1, gc 1)/√2; "refs > 循环 / 循环引用要靠 gc 回收。gc 会分代。" is (引用 1, gc 2)/√5.
    assert top.dense_score == pytest.approx(3 / math.sqrt(10), rel=1e-6)
    assert (top.dense_rank, top.bm25_rank) == (1, 1)
    second = result.hits[1]
    assert second.chunk.id == "refs:0"                     # "refs / 引用计数。": (引用 1)
    assert second.dense_score == pytest.approx(1 / math.sqrt(2), rel=1e-6)
    # The other four chunks hold none of the fake embedder's query terms: cosine 0.
    cosines = {h.chunk.id: h.dense_score for h in result.hits}
    assert sorted(cosines.values())[:4] == [0.0] * 4
    # Fused score: z-score of the cosine plus z-score of BM25, each over all six chunks (population std).
    dense = np.array([h.dense_score for h in result.hits])
    bm25 = np.array([h.bm25_score for h in result.hits])
    z = lambda x: (x - x.mean()) / x.std()
    expected = z(dense) + z(bm25)
    assert [h.score for h in result.hits] == pytest.approx(expected.tolist(), rel=1e-6)
    assert [h.score for h in result.hits] == sorted((h.score for h in result.hits), reverse=True)
    assert result.answerable and result.evidence.coverage == pytest.approx(1.0)
    assert result.evidence.agreement == 1, "refs:1 is first in both rankings"
    assert [a.slug for a in result.nearest_articles][0] == "refs"


def test_bm25_weight_scales_the_bm25_z_score(kb):
    heavy = KnowledgeBase(kb.config.with_(bm25_weight=3.0), embedder=kb.embedder)
    plain, weighted = kb.search("循环引用 gc", k=6), heavy.search("循环引用 gc", k=6)
    dense = {h.chunk.id: h.dense_score for h in plain.hits}
    bm25 = {h.chunk.id: h.bm25_score for h in plain.hits}
    ids = sorted(dense)
    zd = dict(zip(ids, zscores(np.array([dense[i] for i in ids]))))
    zb = dict(zip(ids, zscores(np.array([bm25[i] for i in ids]))))
    for h in weighted.hits:
        assert h.score == pytest.approx(zd[h.chunk.id] + 3.0 * zb[h.chunk.id], rel=1e-6), h.chunk.id


def test_single_ranker_modes(kb):
    dense = kb.search("元组", k=3, mode="dense")
    assert dense.hits[0].chunk.id == "lists:1" and dense.hits[0].score == dense.hits[0].dense_score == pytest.approx(1.0)
    bm25 = kb.search("元组", k=3, mode="bm25")
    assert [h.chunk.id for h in bm25.hits] == ["lists:1"], "only chunks sharing a token are BM25 candidates"
    assert bm25.hits[0].score == bm25.hits[0].bm25_score > 0


N_CHUNKS = 6
IDF_IN_ONE_CHUNK = math.log((N_CHUNKS - 1 + 0.5) / (1 + 0.5) + 1)
IDF_UNKNOWN = math.log((N_CHUNKS + 0.5) / 0.5 + 1)


def test_coverage_is_idf_weighted_with_unknown_tokens_at_maximum_weight(kb):
    result = kb.search("红烧肉 gc")
    assert result.evidence.tokens == ("红烧", "烧肉", "红烧肉", "gc")
    # "gc" is in one chunk (refs:1, the only BM25 candidate); no chunk has 红, 烧 or 肉.
    assert result.evidence.coverage == pytest.approx(IDF_IN_ONE_CHUNK / (IDF_IN_ONE_CHUNK + 3 * IDF_UNKNOWN))
    assert result.evidence.agreement == 1, "the fake embedder sees only gc: refs:1 leads both rankings"


def test_unknown_chinese_compound_counts_by_its_characters(kb):
    result = kb.search("元组当键")
    assert result.evidence.tokens == ("元组", "当键")
    # "当键" is in no chunk; lists:1 ("元组不可变，元组可以做键。") has 键 but not 当: half of its weight.
    expected = (IDF_IN_ONE_CHUNK + 0.5 * IDF_UNKNOWN) / (IDF_IN_ONE_CHUNK + IDF_UNKNOWN)
    assert result.evidence.coverage == pytest.approx(expected)


def test_refusal_offers_the_nearest_articles(kb):
    result = kb.search("红烧肉怎么做")
    assert result.answerable is False and result.evidence.top_dense == 0.0
    assert result.confidence < 0.5
    assert len(result.nearest_articles) == 3 and "最接近的文章" in result.notice
    assert all(f"《{a.title}》" in result.notice for a in result.nearest_articles)
    answered = kb.search("元组")
    assert answered.answerable and answered.notice is None and answered.confidence > 0.5


def test_decide_boundaries():
    cfg = Config(min_dense=0.8, min_coverage=0.5, max_agreement_rank=5, candidates=20)
    ev = lambda dense, cov, agree: Evidence(dense, 0.0, cov, agree, ())
    assert decide(ev(0.5, 0.5, None), cfg) == (True, 0.5), "coverage alone suffices, inclusive"
    assert decide(ev(0.8, 0.0, 5), cfg) == (True, 0.5), "cosine with agreement suffices, inclusive"
    assert decide(ev(0.79, 0.49, 1), cfg)[0] is False, "cosine below the threshold, coverage too low"
    assert decide(ev(0.95, 0.2, 6), cfg)[0] is False, "high cosine but the rankers agree on no top chunk"
    assert decide(ev(0.95, 0.2, None), cfg)[0] is False
    assert decide(ev(0.5, 0.9, None), cfg)[1] > decide(ev(0.5, 0.6, None), cfg)[1] > 0.5
    assert decide(ev(0.5, 0.0, None), cfg)[1] < 0.01


def chunk(cid, anchor, start, end, text):
    return Chunk(cid, "s", "T", ("T", anchor), anchor, int(cid.split(":")[1]), text, f"T > {anchor}\n{text}", start, end)


def test_merge_overlapping_windows_into_their_exact_union():
    section = "甲乙丙丁。戊己庚辛。壬癸子丑。"
    a = chunk("s:0", "x", 0, 10, section[0:10])
    b = chunk("s:1", "x", 5, 15, section[5:15])
    other = chunk("s:2", "y", 0, 5, "别的节。")
    hits = [Hit(b, 0.03, 0.9, 1.0, 1, 1), Hit(other, 0.02, 0.5, 0.5, 2, 2), Hit(a, 0.01, 0.4, 0.4, 3, 3)]
    merged = merge_overlaps(hits)
    assert [h.chunk.id for h in merged] == ["s:1", "s:2"], "merged at the better hit's rank"
    m = merged[0].chunk
    assert (m.text, m.start, m.end, m.position) == (section, 0, 15, 0)
    assert m.embed_text == "T > x\n" + section and merged[0].score == 0.03
    inside = chunk("s:3", "x", 6, 9, section[6:9])
    assert merge_overlaps([Hit(a, 1, 1, 1, 1, 1), Hit(inside, 0.5, 1, 1, 2, 2)])[0].chunk.text == section[0:10]
    touching = chunk("s:4", "x", 10, 15, section[10:15])
    assert len(merge_overlaps([Hit(a, 1, 1, 1, 1, 1), Hit(touching, 0.5, 1, 1, 2, 2)])) == 2, "adjacent is not overlap"


def test_prefer_slug_wins_near_ties_only(kb):
    # "列表 生成器": "lists / 列表是可变的。" and "gens > 惰性 / 生成器是惰性的。" have the same cosine and
    # BM25 scores 0.09 apart: their fused scores are within 0.11, far less than the boost.
    plain = kb.search("列表 生成器", k=2)
    assert plain.hits[0].score - plain.hits[1].score < 0.2 and {h.chunk.slug for h in plain.hits} == {"lists", "gens"}
    for slug in ("lists", "gens"):
        result = kb.search("列表 生成器", k=2, prefer_slug=slug)
        assert result.hits[0].chunk.slug == slug, f"prefer {slug}: {[h.chunk.id for h in result.hits]}"
        assert result.hits[0].score == pytest.approx(
            next(h.score for h in plain.hits if h.chunk.slug == slug) + kb.config.prefer_boost)
    # "列表 惰性": lists:0 leads gens:1 by 2.5 standard deviations, more than the boost (1.5).
    assert kb.search("列表 惰性", prefer_slug="gens").hits[0].chunk.id == "lists:0"
    plain = kb.search("元组")
    preferred = kb.search("元组", prefer_slug="gens")
    assert preferred.hits[0].chunk.id == "lists:1", "a clearly better section elsewhere stays first"
    assert (preferred.answerable, preferred.confidence) == (plain.answerable, plain.confidence)


@pytest.mark.parametrize("question", ["", "   ", "\n\t "])
def test_empty_question_is_a_query_error(kb, question):
    with pytest.raises(QueryError, match="问题为空"):
        kb.search(question)


def test_empty_question_fails_before_any_index_or_model_work(tmp_path):
    kb = KnowledgeBase(Config(articles_dir=tmp_path / "missing", home=tmp_path / "home"), embedder=FakeEmbedder())
    with pytest.raises(QueryError):
        kb.search("  ")


def test_overlong_question_is_truncated_with_a_notice(kb):
    question = "元组" * 5000
    result = kb.search(question)
    assert len(result.question) == 2000 and result.question == question[:2000]
    assert "10000" in result.notice and "2000" in result.notice
    assert result.hits[0].chunk.id == "lists:1"


def test_langchain_retriever(kb):
    from langchain_core.retrievers import BaseRetriever
    retriever = kb.as_langchain_retriever(k=2)
    assert isinstance(retriever, BaseRetriever)
    docs = retriever.invoke("元组")
    assert docs[0].page_content == "元组不可变，元组可以做键。"
    assert docs[0].metadata["slug"] == "lists" and docs[0].metadata["anchor"] == "元组"
    assert docs[0].metadata["heading_path"] == ["lists", "元组"] and len(docs) == 2
    assert retriever.invoke("红烧肉怎么做") == [], "a refused question yields no documents"


def test_an_english_question_is_ranked_in_chinese_and_judged_as_typed(kb, monkeypatch):
    """A wholly English question is ranked as kb.glossary.retrieval_question reads it (the glossary's Chinese,
    no question frame); answerability still reads the question as typed, as the refusal model was fitted."""
    from kb import glossary

    question = "what is reference counting in the gc"
    assert glossary.retrieval_question(question) == "引用计数 gc"
    result = kb.search(question)
    searched = kb.search("引用计数 gc")
    assert [h.chunk.id for h in result.hits] == [h.chunk.id for h in searched.hits] == \
        ["refs:1", "refs:0", "gens:0", "gens:1", "lists:0"]
    assert [h.score for h in result.hits] == pytest.approx([h.score for h in searched.hits])
    monkeypatch.setattr(glossary, "retrieval_question", lambda q: q)
    as_typed = kb.search(question)
    assert [h.chunk.id for h in as_typed.hits][:2] == ["refs:1", "gens:0"], "typed: 引用 is missed"
    assert result.evidence == as_typed.evidence and result.answerable == as_typed.answerable
    assert result.question == question
