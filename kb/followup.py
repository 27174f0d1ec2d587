"""Follow-up questions: give a question that leans on the previous turn ("它和迭代器有什么区别？") its topic.

Without an LLM the rule is lexical: a question that refers back (a pronoun such as 它/这个/两者, or a
continuation such as "那元组呢？") or that has no content word of its own gets the key terms of the most
recent earlier question that had some prepended: "生成器是什么？" then "它和迭代器有什么区别？" searches
"生成器 它和迭代器有什么区别？". `inherit_topic` is also what the answer module tries when a question's own
retrieval evidence is too weak to answer. With an LLM the question is rewritten from the history instead
(`kb.llm.rewrite_messages`), falling back to the rule when the endpoint fails.

This module knows Chinese question shapes and the tokenizer; it does not search.
"""
from __future__ import annotations

import re
from typing import Sequence

from kb.text import tokenize

# Words that point back at something said before. Single characters are matched only as whole pronouns
# at the start of a clause (这/那 also begin ordinary words like 这里, 那么).
_REFERS_BACK = re.compile(
    r"它们|它|他们|这个|那个|这些|那些|这种|那种|这两|那两|两者|二者|前者|后者|上面|上述|刚才|之前说的|这样做|那样做"
    r"|^(?:其|该|此)|^那(?!么)|^那么|^还有|^另外|^再|^那如果|^如果是|呢[？?。!！\s]*$")
MAX_TERMS = 6


def has_reference(question: str) -> bool:
    """The question has a pronoun or continuation word pointing at something said before."""
    return bool(_REFERS_BACK.search(question.strip()))


def refers_back(question: str) -> bool:
    """The question points at an earlier turn: a pronoun, a continuation, or no content word at all."""
    return has_reference(question) or not tokenize(question.strip())


def key_terms(question: str) -> list[str]:
    """The question's content tokens, first occurrence order, at most MAX_TERMS.

    jieba's search mode also yields the pieces of a long word (生成, 成器 for 生成器); only the word is kept.
    """
    tokens = list(dict.fromkeys(tokenize(question)))
    return [t for t in tokens if not any(t != u and t in u for u in tokens)][:MAX_TERMS]


def previous_topic(previous_questions: Sequence[str]) -> list[str]:
    """Key terms of the most recent earlier question that had a topic of its own, or of the chain.

    Walks back over the history: a follow-up of a follow-up inherits from the question that started it.
    """
    terms: list[str] = []
    for question in reversed(previous_questions):
        own = key_terms(question)
        terms = own + [t for t in terms if t not in own]
        if own and not refers_back(question):
            break
    return terms[:MAX_TERMS]


def inherit_topic(question: str, previous_questions: Sequence[str]) -> str:
    """`question` with the previous topic's terms prepended (the ones it does not already contain)."""
    own = set(tokenize(question))
    extra = [t for t in previous_topic(previous_questions) if t not in own]
    return f"{' '.join(extra)} {question.strip()}" if extra else question.strip()


def contextualize(question: str, previous_questions: Sequence[str]) -> str:
    """The question to search: with the previous topic when it refers back, else unchanged."""
    if previous_questions and refers_back(question):
        return inherit_topic(question, previous_questions)
    return question.strip()
