"""English terms in a question, read as the Chinese the articles use (kb/glossary.tsv), for the sentence scorer.

    translate("what is the difference between a list and a tuple")
    # -> "what is the 区别 between a 列表 and a 元组"
    translate("为什么函数里 count += 1 会报错")     # unchanged: `count` is written as code here

m3e-small reads Chinese far better than English, and the articles name a concept in Chinese (可变性, 事后调试),
so an English or mixed question (`how do I set a breakpoint`, `DDP 保存 checkpoint 要注意啥`) scores the
sentences that answer it low. The sentence scorer (kb.compose.score_sentences, kb.sentence_model) reads the
question with each glossary term replaced by its Chinese. Retrieval reads a mixed or Chinese question as typed
(translated retrieval lowered dev answer recall, 0.826 → 0.812) and a wholly English one translated, without
its question frame (`retrieval_question`, round 7: the English questions' dev recall 0.67 → 0.73). A term is
left alone where the question writes it as code: inside backticks, next to a dot, `_` or `-`, or before `(`,
`[`, `=` or `+=` (`breakpoint()`, `list.sort()`, `count += 1`, `sub-VP`).
The longest term wins (`shallow copy` → 浅拷贝, not 浅 复制).
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

GLOSSARY_PATH = Path(__file__).with_name("glossary.tsv")


def _as_words(words) -> re.Pattern:
    """A pattern matching any of `words` (longest first, any case) where the question writes it as a word, not as
    code: not next to a word character, `.`, a backtick or `-`, and not before `(`, `[`, `=` or `+=`."""
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<![\w.`\-])(?:{alternatives})(?![\w`.\-]|\s*(?:[(\[=]|[-+*/%]=))", re.I | re.A)


@functools.lru_cache(maxsize=4)
def load(path: Path = GLOSSARY_PATH) -> tuple[dict[str, str], re.Pattern | None]:
    """({english term (lower case): chinese}, one pattern matching any term not written as code)."""
    terms: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        english, sep, chinese = line.partition("\t")
        if not sep or not english.strip() or not chinese.strip():
            raise ValueError(f"{path}:{n}: expected 'english<TAB>chinese', got {line!r}")
        terms[english.strip().lower()] = chinese.strip()
    if not terms:
        return terms, None
    return terms, _as_words(terms)


# The frame of an English question ("what is the … of a …"), dropped when retrieval searches it: BM25 would match
# `is`, `in` and `for` to the articles' Python code ("what is ZeroRedundancyOptimizer" found the `is` operator).
FRAME_WORDS = frozenset("""what which why how when where who whom whose is are was were be been the a an of in on at to
    for by with from do does did i you we it its this that these those can could should would will my your into about
    and or so if there than then after before only all""".split())
_FRAME = _as_words(FRAME_WORDS)
_CJK = re.compile(r"[\u4e00-\u9fff]")


def retrieval_question(question: str, path: Path = GLOSSARY_PATH) -> str:
    """What retrieval searches for: a question written wholly in English (no Chinese character) with its glossary
    terms in Chinese and its frame words dropped (`what is the ideal denoiser in EDM` → `理想 去噪器 EDM`); any
    other question as typed (translating mixed and Chinese questions too lowered dev answer recall, round 6)."""
    if _CJK.search(question) or not re.search(r"[A-Za-z]", question):
        return question
    # A capital A is a name (`class W(A, X)`), not the article.
    text = " ".join(_FRAME.sub(lambda m: m.group(0) if m.group(0) == "A" else " ", translate(question, path)).split())
    return text or question


def translate(question: str, path: Path = GLOSSARY_PATH) -> str:
    """`question` with each glossary term it writes as a word (not as code) replaced by its Chinese."""
    terms, pattern = load(path)
    if pattern is None or not re.search(r"[A-Za-z]", question):
        return question
    return pattern.sub(lambda m: terms[m.group(0).lower()], question)
