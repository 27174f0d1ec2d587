"""Evaluation: metrics by hand on a fake system, the dev set's own checks, and the quality invariant on the
real model (hit@5, MRR@10, refusal) through `kb eval`, on the session's real index."""
import json
from pathlib import Path

import pytest

from kb import cli
from kb.articles import load_article
from kb.chunking import chunk_article
from kb.errors import DevSetError
from kb.evaluate import DevQuestion, Ranking, evaluate, format_table, load_devset

ROOT = Path(__file__).resolve().parent.parent
DEVSET = ROOT / "tests" / "data" / "devset.jsonl"
SLUGS = sorted(p.stem for p in (ROOT / "articles").glob("*.md"))
GOALS = {"hit5": 0.95, "mrr10": 0.85, "refusal_rate": 0.9}
MAX_FALSE_REFUSALS = 0.03
# The d4-* dev questions (issue 8: the dev split grown for the sentence-scorer refit) are written as new users
# type them: English, typos, colloquial. The refusal model refused 37 of their 235 on 2026-12-01 before the
# English generic-word rule and refit (kb.refusal), 6 after (0.026; they are in the split the threshold is chosen
# on); the ceiling leaves a margin of two questions (8/235). The 0.03 goal keeps holding for the other questions.
MAX_FALSE_REFUSALS_D4 = 0.035


def test_metrics_by_hand():
    questions = [
        DevQuestion("a", "q1", ("x",), ("kw",)),        # first chunk right
        DevQuestion("b", "q2", ("y", "z"), ("none",)),   # right at rank 3, keyword absent
        DevQuestion("c", "q3", ("x",), ()),              # not found; no keywords: not in keyword recall
        DevQuestion("d", "q4", (), ()),                  # unanswerable, refused
        DevQuestion("e", "q5", (), ()),                  # unanswerable, answered
    ]
    answers = {
        "q1": Ranking(["x", "y"], ["has kw", "b"], True),
        "q2": Ranking(["w", "w", "z", "y"], ["a", "b", "c", "d"], False),
        "q3": Ranking(["w"] * 12, ["t"] * 12, True),
        "q4": Ranking(["x"], ["t"], False),
        "q5": Ranking(["x"], ["t"], True),
    }
    m = evaluate(questions, lambda q: answers[q], "fake")
    assert (m.answerable, m.unanswerable) == (3, 2)
    assert (m.hit1, m.hit3, m.hit5) == pytest.approx((1 / 3, 2 / 3, 2 / 3))
    assert m.mrr10 == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert m.keyword_recall == pytest.approx(1 / 2)
    assert (m.refusal_rate, m.false_refusal_rate) == pytest.approx((1 / 2, 1 / 3))
    assert m.misses == ["c"] and m.wrong_decisions == ["b", "e"]
    no_decision = evaluate(questions, lambda q: Ranking(answers[q].slugs, answers[q].texts, None), "baseline")
    assert (no_decision.refusal_rate, no_decision.false_refusal_rate) == (None, None)


def test_metrics_by_split_by_hand():
    questions = [
        DevQuestion("a", "q1", ("x",), ("kw",), split="dev"),     # rank 1
        DevQuestion("b", "q2", ("x",), ("kw",), split="dev"),     # rank 4, refused wrongly
        DevQuestion("c", "q3", ("x",), ("kw",), split="test"),    # rank 2
        DevQuestion("d", "q4", (), (), split="test"),              # unanswerable, refused
        DevQuestion("e", "q5", (), (), split="test"),              # unanswerable, answered
        DevQuestion("f", "q6", ("x",), ("kw",)),                   # no split: only in the totals
    ]
    answers = {"q1": (["x"], True), "q2": (["w", "w", "w", "x"], False), "q3": (["w", "x"], True),
               "q4": (["x"], False), "q5": (["x"], True), "q6": (["x"], True)}
    m = evaluate(questions, lambda q: Ranking(answers[q][0], ["kw"] * len(answers[q][0]), answers[q][1]), "fake")
    assert m.by_split == {
        "dev": {"answerable": 2, "unanswerable": 0, "hit1": 0.5, "hit5": 1.0, "mrr10": (1 + 1 / 4) / 2,
                "refusal_rate": None, "false_refusal_rate": 0.5},
        "test": {"answerable": 1, "unanswerable": 2, "hit1": 0.0, "hit5": 1.0, "mrr10": 0.5,
                 "refusal_rate": 0.5, "false_refusal_rate": 0.0}}
    assert m.answerable == 4 and m.mrr10 == pytest.approx((1 + 1 / 4 + 1 / 2 + 1) / 4)
    table = format_table([m])
    assert "dev (2) hit@1 0.500 hit@5 1.000 MRR@10 0.625" in table, table
    assert "test (1) hit@1 0.000 hit@5 1.000 MRR@10 0.500, refused 0.500 of 2, false 0.000" in table, table


def test_load_devset_errors_name_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": "a", "question": "q", "articles": []}\n\n{"id": "a", "question": "r", "articles": []}\n',
                    encoding="utf-8")
    with pytest.raises(DevSetError, match=r"d.jsonl:3: duplicate id 'a'"):
        load_devset(path)
    path.write_text('{"id": "a", "question": "  ", "articles": []}\n', encoding="utf-8")
    with pytest.raises(DevSetError, match=r"d.jsonl:1: empty question"):
        load_devset(path)
    with pytest.raises(DevSetError, match="no such file"):
        load_devset(tmp_path / "missing.jsonl")


def test_devset_shape_and_keywords_occur_in_the_accepted_articles():
    questions = load_devset(DEVSET)
    answerable = [q for q in questions if q.answerable]
    assert len(answerable) >= 80 and len(questions) - len(answerable) >= 10
    per_article = {s: sum(s in q.articles for q in answerable) for s in SLUGS}
    assert all(n >= 5 for n in per_article.values()), f"every article is asked about: {per_article}"
    bodies = {s: load_article(ROOT / "articles" / f"{s}.md").body.lower() for s in SLUGS}
    for q in answerable:
        assert set(q.articles) <= set(SLUGS), f"{q.id}: unknown slug in {q.articles}"
        assert q.keywords, f"{q.id}: an answerable question needs keywords"
        for kw in q.keywords:
            assert any(kw.lower() in bodies[s] for s in q.articles), f"{q.id}: keyword {kw!r} not in {q.articles}"
    assert sum(any("a" <= ch.lower() <= "z" for ch in q.question) for q in answerable) >= 20, "mixed and English"


def test_devset_gold_fragments_are_in_the_current_articles():
    """Gold sentences are stored as verbatim fragments: an article edit that drifts from one fails here."""
    from kb.compose import QUESTION_TYPES
    questions = load_devset(DEVSET)
    answerable = [q for q in questions if q.answerable]
    assert len(answerable) >= 200 and len(questions) - len(answerable) >= 60
    bodies = {s: load_article(ROOT / "articles" / f"{s}.md").body for s in SLUGS}
    drifted = [(q.id, g) for q in answerable for g in q.gold if not any(g in bodies[s] for s in q.articles)]
    assert drifted == [], f"gold fragments no longer in their articles: {drifted}"
    # Questions appended for new article sections (ids new-*, issue 10) are not annotated yet: no gold metrics.
    assert all(q.gold for q in answerable if not q.id.startswith("new-")), [q.id for q in answerable if not q.gold]
    assert {q.split for q in questions} == {"dev", "test"}
    held_out = [q for q in questions if q.split == "test"]
    assert sum(q.answerable for q in held_out) >= 100 and sum(not q.answerable for q in held_out) >= 30
    for t in QUESTION_TYPES:
        assert sum(q.qtype == t for q in answerable) >= 8, f"question type {t} is under-represented"
    per_article = {s: sum(s in q.articles for q in held_out) for s in SLUGS}
    assert min(per_article.values()) >= 5, per_article


def test_refusal_training_bank_is_large_varied_and_disjoint_from_the_devset():
    bank = [line.strip() for line in (ROOT / "tests" / "data" / "refusal_oos.txt").read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]
    assert len(bank) >= 300 and len(set(bank)) == len(bank)
    devset = {q.question for q in load_devset(DEVSET)}
    assert devset.isdisjoint(bank), devset & set(bank)
    english = sum(all(ord(ch) < 128 for ch in q) for q in bank)
    assert english >= 20, "English out-of-scope questions too"


@pytest.fixture(scope="module")
def real_kb(tmp_path_factory):
    from shared_app import real_kb as shared
    return shared(tmp_path_factory)


@pytest.mark.slow
def test_real_index_matches_the_chunker(real_kb):
    index = real_kb.loaded_index()
    assert sorted(index.manifest.articles) == SLUGS
    for slug in SLUGS:
        expected = chunk_article(load_article(ROOT / "articles" / f"{slug}.md"), 400, 80)
        assert [c.id for c in real_kb.chunks(slug)] == [c.id for c in expected], slug
    assert {s.state for s in real_kb.status()} == {"indexed"}


@pytest.mark.slow
def test_kb_eval_meets_the_goals_on_the_real_model(real_kb, capsys):
    code = cli.main(["--home", str(real_kb.config.home), "eval", str(DEVSET), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    m = json.loads(out)
    for name, floor in GOALS.items():
        assert m[name] >= floor, f"{name} = {m[name]:.3f} < {floor} (misses {m['misses']}, wrong {m['wrong_decisions']})"
    answerable = {q.id for q in load_devset(DEVSET) if q.answerable}
    refused = answerable & set(m["wrong_decisions"])
    d4 = {i for i in answerable if i.startswith("d4-")}
    for ids, ceiling in ((answerable - d4, MAX_FALSE_REFUSALS), (d4, MAX_FALSE_REFUSALS_D4)):
        rate = len(refused & ids) / len(ids)
        assert rate <= ceiling, f"false refusals {rate:.3f} > {ceiling} on {len(ids)} questions: {sorted(refused & ids)}"
    # The refusal goals on the held-out split (issue 10: the fusion must not cost them; kb.refusal never saw it).
    held_out = m["by_split"]["test"]
    assert held_out["answerable"] >= 100 and held_out["unanswerable"] >= 30, held_out
    assert held_out["refusal_rate"] >= 0.95 and held_out["false_refusal_rate"] <= 0.02, held_out


@pytest.mark.slow
def test_hybrid_beats_each_single_ranker_on_mrr(real_kb):
    """Issue 10: hybrid MRR@10 above dense and BM25 alone and hit@1/hit@5 no lower than BM25's, on the whole dev
    set and on the held-out split (the fusion was chosen on `split: dev` only)."""
    from kb.evaluate import engine_system
    from kb.sentences import prefetch_queries
    questions = load_devset(DEVSET)
    prefetch_queries(real_kb, [q.question for q in questions])     # one batched encode for the three modes
    m = {mode: evaluate(questions, engine_system(real_kb, mode), mode) for mode in ("hybrid", "dense", "bm25")}
    figures = {mode: (round(x.mrr10, 3), round(x.hit1, 3), round(x.hit5, 3), x.by_split["test"]) for mode, x in m.items()}
    for scope, get in (("all", lambda x: (x.mrr10, x.hit1, x.hit5)),
                       ("test", lambda x: tuple(x.by_split["test"][k] for k in ("mrr10", "hit1", "hit5")))):
        (h_mrr, h1, h5), (d_mrr, _, _), (b_mrr, b1, b5) = (get(m[mode]) for mode in ("hybrid", "dense", "bm25"))
        assert h_mrr > max(d_mrr, b_mrr), f"{scope}: MRR@10 {figures}"
        assert h1 >= b1 and h5 >= b5, f"{scope}: hit@1/hit@5 below BM25 alone {figures}"


@pytest.mark.slow
def test_real_refusal_and_answer(real_kb):
    refused = real_kb.search("红烧肉怎么做才好吃")
    assert not refused.answerable and refused.notice and len(refused.nearest_articles) == 3
    answered = real_kb.search("Python 的 GC 怎么处理循环引用")
    assert answered.answerable and answered.hits[0].chunk.slug == "python-gc"
    # Both articles have a section on it: the page the reader is on wins the near-tie.
    plain = real_kb.search("默认参数的可变陷阱")
    preferred = real_kb.search("默认参数的可变陷阱", prefer_slug="python-object-reference")
    assert plain.hits[0].chunk.slug == "python-mutable-immutable"
    assert preferred.hits[0].chunk.slug == "python-object-reference"
    assert preferred.answerable == plain.answerable
