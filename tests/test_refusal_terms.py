"""The refusal features' content terms (kb.terms.content_terms): in an English question, an English word the
corpus lacks that is common English vocabulary (wordfreq's Zipf frequency >= GENERIC_ZIPF) is generic, not a
subject; a word the question writes as a name is kept. No model, no index: `known` is the corpus's stems."""
import pytest

from kb.terms import GENERIC_ZIPF, content_terms, english_zipf, names
from kb.text import tokenize


def terms(question: str, *known: str) -> tuple[str, ...]:
    return content_terms(tokenize(question), set(known).__contains__, question)


@pytest.mark.parametrize("question, known, expected", [
    # write, custom: everyday English the Chinese articles never use; the subject words are the corpus's.
    ("how do I write a custom autograd.Function in PyTorch 2", ("autograd", "function", "pytorch", "2"),
     ("autograd", "function", "pytorch", "2")),
    # job, hangs, communication: generic; DDP and NCCL are the corpus's.
    ("how to debug a DDP job that hangs in NCCL communication", ("debug", "ddp", "nccl"), ("debug", "ddp", "nccl")),
    # Rust is a common word (Zipf 3.7), but capitalised inside the sentence it is a name: kept, an unknown subject.
    ("what is the ownership model in Rust", ("model",), ("model", "rust")),
    # Lower-case it is still a name (kb.terms.TECH_NAMES); lifetimes (Zipf 3.5) is the common word.
    ("how do rust lifetimes work", (), ("rust",)),
    # A word outside that list keeps the casing rule: lower-case cargo reads as the common word, and the question
    # is left with no content term at all, which kb.retrieval counts as unknown_word = 1 like an unknown subject.
    ("how does cargo resolve features", (), ()),
    # asyncio (Zipf 0) is no English word: kept; timeout (Zipf 3.2) is below GENERIC_ZIPF: kept.
    ("how do I use asyncio.gather with a timeout", (), ("asyncio", "timeout")),
    # A Chinese question keeps its Latin words: there they are deliberate terms (trait is Zipf 3.7).
    ("Rust 的 trait 怎么用", (), ("rust", "trait")),
])
def test_generic_english_words_are_dropped_and_names_kept(question, known, expected):
    assert terms(question, *known) == expected, (question, [(t, english_zipf(t)) for t in tokenize(question)])


def test_names_are_capitalised_inside_a_sentence_or_written_with_inner_capitals():
    assert names("how to debug a DDP job that hangs in NCCL communication") == {"ddp", "nccl"}
    # Sentence case: "What" and "Compare" open English sentences and are no names; "JavaScript" has inner capitals.
    assert names("What is Swift? Compare it with JavaScript and Kotlin") == {"swift", "javascript", "kotlin"}
    # A language or framework of TECH_NAMES is a name in any casing, even opening a sentence (swift, Zipf 4.2) or
    # in lower case (java, Zipf 4.0); other words keep the casing rule, and everyday verbs (react) are not listed.
    assert names("Swift vs Kotlin, which one should I learn") == {"swift", "kotlin", "i"}
    assert names("what is the java memory model") == {"java"}
    assert names("how does ruby on rails react to a timeout") == {"ruby", "rails"}
    assert names("how can I debug with pdb inside a docker container") == {"i"}
    # A Chinese question opening with its subject: "Java 的…" is a name.
    assert names("Java 的内存模型是什么") == {"java"}
    # "autograd.Function": a dot inside an identifier does not start a sentence.
    assert "function" in names("how do I write a custom autograd.Function")


def test_english_zipf_reads_inflected_forms_by_their_base():
    assert english_zipf("modifies") == english_zipf("modify") >= GENERIC_ZIPF
    assert english_zipf("hangs") >= GENERIC_ZIPF and english_zipf("memory") >= GENERIC_ZIPF
    for name in ("kotlin", "redis", "numpy", "asyncio", "nginx"):
        assert english_zipf(name) < GENERIC_ZIPF, name
