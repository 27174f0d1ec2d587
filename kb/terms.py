"""The question's content terms for the refusal features (kb.refusal; computed in kb.retrieval's search).

kb/text.py's tokens stay as they are (the ranking depends on them); these are the words that say what the
question is about: no English function words, no generic word the corpus lacks (Chinese: jieba's general-corpus
dictionary; English: wordfreq's Zipf frequency, unless the question writes the word as a name), stemmed.
"""
from __future__ import annotations

import functools
import re


# English function words that kb.text keeps as Python keywords (is, in) and generic verbs the corpus never uses
# (安排, 搞: frequent in jieba's general-corpus dictionary) say nothing about the subject; an English plural or -ing form matches its stem (gradients ~ gradient).
_EN_FUNCTION = frozenset("is in and or not for with as from if all any to of into work works use used using "
                         "get make way ways".split())
GENERIC_FREQ = 3000     # jieba dictionary count from which a CJK word the corpus lacks counts as generic
# The English counterpart (wordfreq's Zipf scale: log10 of occurrences per billion words; memory 4.8, hangs 3.7,
# compute 3.4 are generic; django 3.1, kafka 3.0, redis 2.0, asyncio 0 are not), applied in English questions
# only (in a Chinese or mixed question a Latin word is a deliberate term), and never to a name: a word capitalised
# inside the sentence (Rust, Swift, Spring) or written with capitals past its first letter (NCCL, JavaScript).
GENERIC_ZIPF = 3.3
# Languages, runtimes and frameworks a reader names in lower case ("what is the java memory model"): names, never
# common vocabulary, although wordfreq counts java 4.0 and ruby 4.1 for their everyday senses. Words that are also
# everyday verbs (react, spring, go) are not listed: lower case, they stay vocabulary.
TECH_NAMES = frozenset("java javascript typescript kotlin scala groovy swift rust golang ruby perl php lua julia dart "
                       "elixir erlang haskell clojure fortran cobol matlab csharp dotnet nodejs django flask rails "
                       "angular vue svelte jvm jdk cuda keras jax mxnet paddle".split())


@functools.lru_cache(maxsize=1)
def _jieba_freq() -> dict:
    from kb.text import _jieba
    return _jieba().dt.FREQ


@functools.lru_cache(maxsize=4096)
def english_zipf(word: str) -> float:
    """wordfreq's Zipf frequency of an English word or of its base form (modifies ~ modify, chained ~ chain)."""
    from wordfreq import zipf_frequency
    forms = {word}
    for suffix, base in (("ies", "y"), ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"), ("ing", ""), ("ing", "e")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            forms.add(word[: len(word) - len(suffix)] + base)
    return max(zipf_frequency(f, "en") for f in forms)


_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_CJK = re.compile(r"[\u3400-\u9fff]")
_SENTENCE_START = re.compile(r"(?:^|[.?!:;]\s+|[。？！：；])\s*$")    # "autograd.Function" is no sentence start


def names(question: str) -> frozenset[str]:
    """Latin words the question writes as names, lowercased: one of TECH_NAMES in any casing, a word with a
    capital past the first letter (NCCL, JavaScript), or capitalised anywhere but at the start of a sentence
    ("in Rust", "Java 的…" counts only when followed by no English: a Chinese question opening with its subject)."""
    out = set()
    for m in _WORD.finditer(question):
        w = m.group()
        if w.lower() in TECH_NAMES:
            out.add(w.lower())
            continue
        if w.lower() == w:
            continue
        if any(c.isupper() for c in w[1:]):
            out.add(w.lower())
            continue
        at_start = _SENTENCE_START.search(question[: m.start()]) is not None
        english_follows = re.match(r"\s+[A-Za-z]", question[m.end():]) is not None
        if not at_start or not english_follows:
            out.add(w.lower())
    return frozenset(out)


def stem(token: str) -> str:
    """A light English stemmer for matching only: a plural -s (not -ss, -us, -is); other tokens unchanged."""
    if len(token) <= 4 or not token.isascii() or not token.isalpha():
        return token
    if token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


def content_terms(tokens, known, question: str = "") -> tuple[str, ...]:
    """The question's distinct content terms, stemmed. Without English function words when the question is
    English (3+ Latin tokens); without words the corpus lacks (`known(term)` false) that are common in general
    text: a CJK word jieba's general dictionary counts >= GENERIC_FREQ times, and in an English question (3+
    Latin tokens, no CJK character) an English word at Zipf >= GENERIC_ZIPF that `question` (its original casing) does not write as a
    name (see `names`)."""
    freq = _jieba_freq()
    latin = sum(t.isascii() for t in tokens) >= 3
    english = latin and bool(question) and not _CJK.search(question)
    named = names(question) if english else frozenset()
    out: dict[str, None] = {}
    for t in tokens:
        if latin and t in _EN_FUNCTION:
            continue
        term = stem(t)
        if not known(term):
            if not t.isascii() and freq.get(t, 0) >= GENERIC_FREQ:
                continue
            if english and t.isalpha() and t not in named and english_zipf(t) >= GENERIC_ZIPF:
                continue
        out[term] = None
    return tuple(out)


def dictionary_word(token: str) -> bool:
    """Whether jieba's general dictionary knows `token` (a real word, not a typo or an ad-hoc compound)."""
    return _jieba_freq().get(token, 0) > 0
