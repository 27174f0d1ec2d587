"""Composition of extractive answers: a direct first sentence, then a coherent passage, no dangling references.

    plan = compose(embedder, question, hits, sections, article_sections)
    # sections: (slug, anchor) -> kb.articles.Section of the hits; article_sections: the top hit's article's
    plan.groups   # [((slug, anchor), [Piece(kind="prose"|"block"|"intro", text)...]), ...] in answer order

The question's type (`question_type`: what / why / how / diff / code / formula) shapes the answer. Every prose
sentence of the candidate sections is scored. With the fitted sentence model (kb/sentence_model.py, fitted on
the dev split's gold sentences) the candidates are the top hits' sections and the other sections of the top
hit's article, and the score is the model's linear score over features such as the cosine with the
question, the hit's rank, the heading's and the sentence's overlap with the question's words. Without it
(another embedding model) the candidates are the hits' sections and the score is the hand-set blend
    r(s) = 0.65 · cos(q, s) + 0.15 · cos(q, chunk) + 0.20 · lexical(q, s) + type bonus + rank prior
           + article prior (the top hit's article),
where lexical is the IDF-free share of the question's content words the sentence contains and the type bonus
rewards a definition for 是什么, a cause for 为什么, a command or inline code for 怎么/代码, a formula or a
number for 公式/多少, a contrast for 区别. `select` then builds the answer: the best sentence opens it (from
the top hit's article unless another article's is better by `switch`); more sentences follow while they stay
within `floor` of it and the prose stays within MAX_CHARS; another section joins when its sentence is within
`close_same` (same article) or `close_other` (another article) of the first, up to `max_sections`. Short
answers continue with the sentences that follow the first one, up to `fill_chars`. The thresholds are the
model's (fitted with it) or HAND_PARAMS.

References are resolved, never left dangling (`dangling_references` checks a finished answer the same way):
a sentence that opens with a connective (因此, 所以, 但是, 这, 它, 其中...) brings the sentence before it (or,
right after a block, the lead-in sentence that brings that block, and the block), or is left out; a sentence that ends in ：or points at 下面的代码 / 如下公式 / 下表 brings that block (code,
`$$` formula, table), or is left out; one that points back (上面的代码, 上例, 本文) is left out. An answer
has at most one block; a code or how-to question without one gets its section's code block, a formula
question its section's formula. This module knows sentences and blocks, not citations or Markdown links.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from kb.sentences import CACHE, Unit, code_block_of, query_vector, section_units
from kb.text import tokenize

QUESTION_TYPES = ("diff", "why", "code", "formula", "how", "what")
_TYPE_PATTERNS = (
    ("diff", r"区别|不同|差别|差异|对比|比较|不一样|一样吗|有何异同|还是.+好|vs\.?|versus|difference|compare"),
    ("why", r"为什么|为啥|为何|原因|何以|怎么会|why"),
    ("code", r"代码|示例|例子|写法|怎么写|如何写|用法|怎么用|如何使用|命令|语法|调用|启动|code|example|snippet|syntax|command"),
    ("formula", r"公式|方程|等式|数值|多少|几个|几次|几代|默认值|阈值|取值|大小|复杂度|formula|equation|how (?:many|much)"),
    ("how", r"怎么|如何|怎样|咋|步骤|方法|办法|\bhow\b"),
)
_TYPE_BONUS = {
    "what": re.compile(r"是|指|称为|叫做|就是|即|意思|定义|作用"),
    "why": re.compile(r"因为|由于|所以|因此|原因|之所以|为了|导致|否则|这样|保证"),
    "how": re.compile(r"`|用|调用|设置|使用|通过|输入|执行|运行|命令"),
    "code": re.compile(r"`|调用|写|用法|命令|运行"),
    "formula": re.compile(r"\$|\d|公式|等于|为"),
    "diff": re.compile(r"区别|不同|而|相比|则|前者|后者|差异|不是|而是|但"),
}
TYPE_BONUS = 0.03
RANK_PRIOR = (0.06, 0.03, 0.01, 0.0)     # favours the best-ranked sections (retrieval's hit@1 is ~0.95)
ARTICLE_PRIOR = 0.04                     # favours the top hit's article: another article must clearly win
MAX_SECTIONS = 4
FLOOR = 0.08
CLOSE_SAME = 0.04
CLOSE_OTHER = 0.01
MIN_CHARS = 120
MAX_CHARS = 450

CONNECTIVE = re.compile(r"^(?:因此|所以|因而|从而|于是|但是|但|然而|不过|而且|并且|而|这|那么|那|此外|另外|同样|同理|"
                        r"也就是说|换句话说|反之|否则|此时|然后|接着|其次|再次|第[二三四五六]|最后|其中|它|其|该|此|"
                        r"两者|二者|前者|后者|上述|对应地|相应地|类似地)")
FORWARD = re.compile(r"[：:]\s*$|^下面|下面的|下面这|如下|下例|下表|下图|以下|这张表|下面是|见下")
BACKWARD = re.compile(r"上面|上例|上表|上图|前面的代码|前面的例子|这段代码|这个例子|运行结果|输出[为是]|可以看到|"
                      r"^(?:本文|本节|本篇|这篇文章|下文|后文)")


def question_type(question: str) -> str:
    """One of QUESTION_TYPES: what the first sentence of the answer must do (define, explain a cause, show
    code, state a formula or number, give steps, contrast two things)."""
    q = question.lower()
    for name, pattern in _TYPE_PATTERNS:
        if re.search(pattern, q):
            return name
    return "what"


@dataclass
class Piece:
    kind: str            # "prose" or "block"
    text: str


@dataclass
class Plan:
    qtype: str
    groups: list[tuple[tuple[str, str], list[Piece]]] = field(default_factory=list)   # ((slug, anchor), pieces)
    prose_chars: int = 0

    @property
    def has_block(self) -> bool:
        return any(p.kind == "block" for _, pieces in self.groups for p in pieces)


@dataclass
class Cand:
    """A section the answer may quote: one of the top hits' sections, or another section of the top article."""
    slug: str
    anchor: str
    heading: str
    rank: int | None         # the hit's rank (0 = best); None for a section no hit points at
    units: list[Unit]
    chunk_cos: float         # the hit's dense cosine; 0.0 without a hit
    bm25_rank: int | None = None     # the hit's 1-based rank in each ranker (None: outside its candidates)
    dense_rank: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.slug, self.anchor


def _group(units: list[Unit], i: int, depth: int = 0) -> list[Unit] | None:
    """Unit i with what it needs to be understood on its own, in source order; None when that is impossible."""
    u = units[i]
    if u.kind != "prose" or BACKWARD.search(u.text):
        return None
    out = [u]
    if CONNECTIVE.match(u.text):
        if i == 0 or depth >= 2:
            return None
        if units[i - 1].kind == "block":
            # "其中 f 称为…" / "这样…" right after a formula: the lead-in that brings that block comes too.
            before = _group(units, i - 2, depth + 1) if i >= 2 else None
            if before is None or before[-1] is not units[i - 1]:
                return None
        else:
            before = _group(units, i - 1, depth + 1)
        if before is None:
            return None
        out = before + out
    if FORWARD.search(u.text):
        if i + 1 >= len(units) or units[i + 1].kind != "block":
            return None
        out.append(units[i + 1])
    return out


@functools.lru_cache(maxsize=4096)
def _groups(units: tuple[Unit, ...]) -> dict[int, list[Unit] | None]:
    """`_group` of every prose unit of a section (cached: the same sections answer many questions)."""
    return {u.index: _group(list(units), u.index) for u in units if u.kind == "prose"}


def _chars(units: Sequence[Unit]) -> int:
    return sum(len(u.text) for u in units if u.kind == "prose")


@dataclass
class Scored:
    """Every prose sentence of the candidate sections with its score (what `select` chooses from)."""
    qtype: str
    cands: list[Cand]
    rel: dict[tuple[int, int], float]                   # (candidate, unit index) -> score (higher: better)
    groups: dict[tuple[int, int], list[Unit] | None]    # what the sentence brings; None: cannot stand alone
    params: dict = field(default_factory=dict)          # selection thresholds for this kind of score


def candidates(hits: Sequence, sections: dict, article_sections: Sequence = ()) -> list[Cand]:
    """The distinct sections of the top hits (at most MAX_SECTIONS), then the top article's other sections."""
    cands: list[Cand] = []
    seen = set()
    for rank, hit in enumerate(hits):
        key = (hit.chunk.slug, hit.chunk.anchor)
        if key in seen or len(cands) >= MAX_SECTIONS:
            continue
        seen.add(key)
        section = sections.get(key)
        units = section_units(section.text if section is not None else hit.chunk.text)
        heading = section.heading if section is not None else hit.chunk.heading_path[-1]
        cands.append(Cand(key[0], key[1], heading, rank, units, hit.dense_score, hit.bm25_rank, hit.dense_rank))
    if cands:
        for section in article_sections:
            if (cands[0].slug, section.anchor) not in seen:
                seen.add((cands[0].slug, section.anchor))
                cands.append(Cand(cands[0].slug, section.anchor, section.heading, None, section_units(section.text), 0.0))
    return cands


def score_sentences(embedder, question: str, hits: Sequence, sections: dict, article_sections: Sequence = (),
                    model=None) -> Scored | None:
    """The score of every prose sentence of the candidate sections; None when they hold no prose.

    With the fitted sentence model (kb/sentence_model.json, for this embedder) the score is its logit over
    `kb.sentence_model.FEATURES`; otherwise the hand-set blend of the module docstring over the hits' sections."""
    from kb import sentence_model

    qtype = question_type(question)
    if model is None:
        model = sentence_model.load_model(getattr(embedder, "model_id", None) or "")
    cands = candidates(hits, sections, article_sections if model is not None else ())
    prose = [(c, u) for c, cand in enumerate(cands) for u in cand.units if u.kind == "prose"]
    if not prose:
        return None
    q = query_vector(embedder, question)
    cos = CACHE.vectors(embedder, [u.text for _, u in prose]) @ q
    keys = [(c, u.index) for c, u in prose]
    groups = {}
    for c in {c for c, _ in keys}:
        groups.update(((c, i), g) for i, g in _groups(tuple(cands[c].units)).items())
    if model is not None:
        X = sentence_model.features(question, qtype, cands, prose, cos)
        z = model.logits(X)
        return Scored(qtype, cands, dict(zip(keys, map(float, z))), groups, model.params)
    words = [w for w in dict.fromkeys(tokenize(question)) if len(w) > 1 or not w.isascii()]
    bonus = _TYPE_BONUS.get(qtype)
    rel: dict[tuple[int, int], float] = {}
    for (c, u), cs in zip(prose, cos):
        text = u.text.lower()
        lexical = sum(w in text for w in words) / len(words) if words else 0.0
        r = 0.65 * float(cs) + 0.15 * cands[c].chunk_cos + 0.20 * lexical
        r += TYPE_BONUS if bonus is not None and bonus.search(u.text) else 0.0
        same = cands[c].slug == cands[0].slug
        rel[(c, u.index)] = r + RANK_PRIOR[min(c, len(RANK_PRIOR) - 1)] + (ARTICLE_PRIOR if same else 0.0)
    return Scored(qtype, cands, rel, groups, dict(HAND_PARAMS))


HAND_PARAMS = {"floor": FLOOR, "close_same": CLOSE_SAME, "close_other": CLOSE_OTHER, "max_sections": 2,
               "fill_chars": MIN_CHARS, "switch": 0.0}


def compose(embedder, question: str, hits: Sequence, sections: dict, article_sections: Sequence = ()) -> Plan:
    """The answer's pieces, grouped per cited section (see the module docstring). `article_sections`: all
    sections of the top hit's article, which the fitted sentence model may quote from too."""
    scored = score_sentences(embedder, question, hits, sections, article_sections)
    if scored is None:
        return Plan(question_type(question))
    return select(scored)


def select(scored: Scored, max_chars: int | None = None) -> Plan:
    """The opening sentence, its passage and sentences of at most `max_sections` sections, within the budget:
    a sentence joins while its score is within `floor` of the opening one's, from a new section of the same
    article within `close_same`, of another article within `close_other`."""
    max_chars = MAX_CHARS if max_chars is None else max_chars
    prm = {**HAND_PARAMS, **scored.params}
    plan = Plan(scored.qtype)
    qtype, cands, rel, groups = scored.qtype, scored.cands, scored.rel, scored.groups
    ranked = sorted((k for k in rel if groups[k] is not None), key=lambda k: -rel[k])
    if not ranked:
        return plan
    best = ranked[0]
    # The answer opens in the top hit's article unless another article's sentence is clearly better.
    home = next((k for k in ranked if cands[k[0]].slug == cands[0].slug), best)
    if rel[best] < rel[home] + prm["switch"]:
        # Kept home: the other articles' better-scored sentences lost that contest and stay out.
        ranked = [k for k in ranked if cands[k[0]].slug == cands[0].slug or rel[k] < rel[home]]
        best = home
    top = rel[best]
    chosen: dict[int, list[list[Unit]]] = {}     # candidate section -> groups in pick order
    used: set[tuple[int, int]] = set()
    block_used = False

    def take(k) -> bool:
        nonlocal block_used
        g = groups[k]
        keys = {(k[0], u.index) for u in g}
        if keys & used:
            return False
        has_block = any(u.kind == "block" for u in g)
        if (has_block and block_used) or plan.prose_chars + _chars(g) > max_chars and chosen:
            return False
        if qtype == "code" and any(u.kind == "block" and not u.text.lstrip().startswith(("```", "~~~")) for u in g):
            return False   # the one block of a code question is code, not a formula or a table
        chosen.setdefault(k[0], []).append(g)
        used.update(keys)
        block_used = block_used or has_block
        plan.prose_chars += _chars(g)
        return True

    take(best)
    for k in ranked[1:]:
        c = k[0]
        if rel[k] < top - prm["floor"]:
            break
        if c != best[0] and c not in chosen:
            same_article = cands[c].slug == cands[best[0]].slug
            if rel[k] < top - (prm["close_same"] if same_article else prm["close_other"]) or len(chosen) >= prm["max_sections"]:
                continue
        take(k)
    # Short: continue with what follows the opening sentence in its section.
    units = cands[best[0]].units
    i = max(u.index for u in groups[best])
    while plan.prose_chars < prm["fill_chars"] and i + 1 < len(units):
        i += 1
        if (best[0], i) in rel and groups[(best[0], i)] is not None and (best[0], i) not in used:
            take((best[0], i))

    # Still too short: the best sentences of the next sections of the same article (its subsections, usually).
    slug = cands[best[0]].slug
    for k in ranked:
        if plan.prose_chars >= MIN_CHARS:
            break
        if k[0] not in chosen and len(chosen) < 3 and cands[k[0]].slug == slug:
            take(k)

    # Answer order: the opening group, the rest of its section in source order, then the other sections.
    for c in [best[0], *[c for c in chosen if c != best[0]]]:
        gs = chosen[c]
        first, rest = (gs[0], gs[1:]) if c == best[0] else ([], gs)
        ordered = first + [u for g in sorted(rest, key=lambda g: g[0].index) for u in g]
        plan.groups.append((cands[c].key, [Piece(u.kind, u.text) for u in ordered]))

    if not plan.has_block and qtype in ("code", "how", "formula"):
        _add_block(plan, cands, qtype, chosen)
    return plan


def _add_block(plan: Plan, cands, qtype: str, chosen) -> None:
    """A code (or formula) block of the cited sections for a question that asks for code, steps or a formula."""
    for c in chosen:
        units = cands[c].units
        text = "\n\n".join(u.text for u in units if u.kind == "block")
        if qtype == "formula":
            block = next((u.text for u in units if u.kind == "block" and u.text.startswith("$$")), None)
        else:
            block = code_block_of(text)
        if block:
            intro = "公式：" if qtype == "formula" else "示例代码："
            plan.groups.append((cands[c].key, [Piece("intro", intro), Piece("block", block)]))
            return


# Checking a finished answer -------------------------------------------------------------------------------

_LINK = re.compile(r"\[\[\d+\]\]\([^)]*\)")
_FENCE = re.compile(r"^(`{3,}|~{3,}).*?^\1[ \t]*$", re.S | re.M)
_FORMULA = re.compile(r"^\$\$.*?\$\$[ \t]*$", re.S | re.M)
_SENTENCE_END = re.compile(r"(?<=[。！？；])")


def answer_elements(text: str) -> list[tuple[str, str]]:
    """A finished answer's body (before 来源) as ("prose", sentence) and ("block", block) in reading order,
    citation links removed and HTML escapes undone."""
    body = text.split("**来源**", 1)[0]
    out: list[tuple[str, str]] = []
    pos = 0
    spans = sorted([(m.start(), m.end()) for m in _FENCE.finditer(body)] +
                   [(m.start(), m.end()) for m in _FORMULA.finditer(body)])
    for start, end in [*spans, (len(body), len(body))]:
        if start < pos:
            continue
        for line in body[pos:start].split("\n"):
            line = line.strip()
            if not line:
                continue
            if line.startswith("|"):
                if out and out[-1][0] == "block" and out[-1][1].startswith("|"):
                    out[-1] = ("block", out[-1][1] + "\n" + line)
                else:
                    out.append(("block", line))
                continue
            line = _LINK.sub("", line).replace("&lt;", "<")
            out.extend(("prose", s.strip()) for s in _SENTENCE_END.split(line) if s.strip())
        if end > start:
            out.append(("block", body[start:end]))
        pos = end
    return out


def dangling_references(text: str, sections: Sequence) -> list[str]:
    """Why the answer leaves a reference dangling (empty when none): a connective sentence not preceded by
    its source predecessor, a pointer to a block that does not follow (or precede), a self-reference."""
    elements = answer_elements(text)
    reasons = []
    for i, (kind, s) in enumerate(elements):
        if kind != "prose":
            continue
        nxt = elements[i + 1] if i + 1 < len(elements) else None
        if FORWARD.search(s) and (nxt is None or nxt[0] != "block"):
            reasons.append(f"points at a block that does not follow: {s[:40]}")
        if BACKWARD.search(s):
            reasons.append(f"points back at something not shown: {s[:40]}")
        if CONNECTIVE.match(s):
            prev = elements[i - 1][1] if i > 0 else None
            if prev is None or not any(_follows(sec.text, prev, s) for sec in sections):
                reasons.append(f"opens with a connective without its predecessor: {s[:40]}")
    return reasons


def _follows(section_text: str, prev: str, sentence: str) -> bool:
    units = [u for u in section_units(section_text) if u.kind != "skip"]
    return any(a.text == prev and b.text == sentence for a, b in zip(units, units[1:]))
