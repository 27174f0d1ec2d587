"""Refusal on new-user questions the refusal model never saw (tests/data/refusal_probes.jsonl).

The probes were written before the refit: in-scope questions across all twelve articles in a new user's words
(colloquial, English, mixed, a typo, near-synonyms) and out-of-scope questions of the hard kind (the articles'
topics in other languages and frameworks). Only their dev half guided the choice of features; the figures
asserted here are those measured on the test half (README, refusal section), so a regression shows.
"""
import json
from pathlib import Path

import pytest

from kb.refusal import FEATURES, features, load_model, probe_rates

ROOT = Path(__file__).resolve().parent.parent
PROBES = [json.loads(line) for line in (ROOT / "tests" / "data" / "refusal_probes.jsonl").read_text(
    encoding="utf-8").splitlines() if line.strip()]

# The issue's own examples, wrongly decided before this refit.
NAMED = {
    "EDM 的采样步长是怎么安排的？": True,      # generic verb 安排 is not in the corpus
    "how does ddp sync gradients": True,      # English, plural 'gradients'
    "Java 的内存模型是什么": False,            # 'java' occurs in the object-reference article in passing
    "Rust 的所有权是什么": False,              # 所有权 matched by its characters
}


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    from shared_app import real_kb
    return real_kb(tmp_path_factory)


def test_probe_file_is_balanced_and_holds_the_named_questions():
    assert len(PROBES) >= 80, f"only {len(PROBES)} probes"
    for split in ("dev", "test"):
        part = [p for p in PROBES if p["split"] == split]
        answerable = sum(p["answerable"] for p in part)
        assert answerable == len(part) - answerable, f"{split}: {answerable} answerable of {len(part)}"
    by_question = {p["question"]: p for p in PROBES}
    assert len(by_question) == len(PROBES), "duplicate probe questions"
    for q, expected in NAMED.items():
        assert by_question[q]["split"] == "test" and by_question[q]["answerable"] is expected, q
    bank = {line.strip() for line in (ROOT / "tests" / "data" / "refusal_oos.txt").read_text(
        encoding="utf-8").splitlines()}
    assert not bank & set(by_question), f"probes in the training bank: {bank & set(by_question)}"


@pytest.mark.slow
def test_the_issues_named_questions_are_decided_right(kb):
    model = load_model()
    assert model is not None and model.applies_to(kb.embedder.model_id), "the fitted refusal model is not in use"
    for question, expected in NAMED.items():
        result = kb.search(question)
        e = result.evidence
        assert result.answerable is expected, (
            f"{question!r}: answerable={result.answerable}, expected {expected}; "
            f"features {dict(zip(FEATURES, features(e).round(3)))}, P={model.probability(e):.3f} "
            f"vs threshold {model.threshold:.3f}")
    # The evidence behind the decisions, as designed: 安排 is a generic word (jieba's dictionary) the corpus lacks,
    # so it is no content term and no unknown word; Java is the Java question's subject but not the top article's;
    # 所有权 is a real word no chunk contains.
    assert kb.search("EDM 的采样步长是怎么安排的？").evidence.unknown_word == 0.0
    java = kb.search("Java 的内存模型是什么").evidence
    assert (java.lead_name_off, java.lead_off_topic) == (1.0, 1.0), java
    assert kb.search("Rust 的所有权是什么").evidence.unknown_word == 1.0


@pytest.mark.slow
def test_probe_test_half_rates(kb):
    rates = probe_rates(kb, [p for p in PROBES if p["split"] == "test"])["test"]
    refused = rates["refused"] / rates["out_of_scope"]
    false_refusals = rates["false_refusals"] / rates["answerable"]
    # Measured 2026-12-01 (README): 20/22 refused (19/22 before English questions naming another language counted
    # as off the top article's subject), 0/22 falsely refused; before the first refit 17/22 and 3/22.
    assert refused >= 20 / 22, f"refused {rates['refused']}/{rates['out_of_scope']} out-of-scope probes; wrong: {rates['wrong']}"
    assert false_refusals <= 0.0, (
        f"falsely refused {rates['false_refusals']}/{rates['answerable']} answerable probes; wrong: {rates['wrong']}")


@pytest.mark.slow
def test_everyday_probes_rate(kb):
    """The "everyday" probes (round 12): questions about resumes, cats, cooking, health, written after the
    refusal model was fitted and never in its bank. Their generic words (写, 学好, 总结) are in the articles, and
    a question such as 简历怎么写 was answered from the inheritance article. Measured: 25/37 refused with round
    11's model, 28/37 after the bank grew by 123 everyday questions (README); the rest is this feature set's
    limit, asserted so that it cannot get worse unseen."""
    rates = probe_rates(kb, [p for p in PROBES if p["split"] == "everyday"])["everyday"]
    assert rates["out_of_scope"] == 37 and rates["answerable"] == 0
    assert rates["refused"] >= 28, f"refused {rates['refused']}/37 everyday questions; answered: {rates['wrong']}"
    bank = {line.strip() for line in (ROOT / "tests" / "data" / "refusal_oos.txt").read_text(encoding="utf-8").splitlines()}
    assert not bank & {p["question"] for p in PROBES if p["split"] == "everyday"}, "an everyday probe is in the bank"


# Issue 8, item 2: natural English and Chinese dev questions (d4-*) refused before the English generic-word rule,
# the lead term's "discusses" check and the refit of 2026-12-01; all eight are answered now.
NATURAL = [
    "how do I write a custom autograd.Function in PyTorch 2",
    "why does DDIM still work with only a few steps",
    "when should I call gc.collect() manually",
    "what is the ideal denoiser in EDM",
    "tuple vs list indexing speed",
    "c_noise 为什么取 ln sigma 的四分之一",
    "deepcopy 碰到循环引用会不会无限递归",
    "Langevin 校正的步常怎么定",
]


@pytest.mark.slow
def test_natural_english_and_lead_term_questions_are_answered(kb):
    model = load_model()
    wrong = {}
    for question in NATURAL:
        result = kb.search(question)
        if not result.answerable:
            e = result.evidence
            wrong[question] = (dict(zip(FEATURES, features(e).round(3))), round(model.probability(e), 3))
    assert not wrong, f"refused (features, P vs threshold {model.threshold:.3f}): {wrong}"
    # Why: manually (Zipf 3.7) is common English, not an unknown subject; deepcopy is not in the headings of the
    # mutability article but it discusses deepcopy (in 3+ chunks), unlike Java in the object-reference article.
    assert kb.search("when should I call gc.collect() manually").evidence.unknown_word == 0.0
    assert kb.search("deepcopy 碰到循环引用会不会无限递归").evidence.lead_off_topic == 0.0


@pytest.mark.slow
def test_an_english_question_naming_another_language_is_refused(kb):
    """Lower case, java is no name by casing and common English by frequency (Zipf 4.0); as one of
    kb.terms.TECH_NAMES it is the question's subject, which the GC and object-reference articles do not discuss."""
    for question in ("what is the java memory model", "how does java garbage collection work"):
        result = kb.search(question)
        assert not result.answerable and result.evidence.lead_name_off == 1.0, (question, result.evidence)
    # A name outside that list (Docker) or one the article discusses (DDP) leaves an English question answered.
    for question in ("how can I debug with pdb inside a Docker container over SSH", "how does DDP keep the model replicas in sync"):
        result = kb.search(question)
        assert result.answerable and result.evidence.lead_name_off == 0.0, (question, result.evidence)
