"""Composition of extractive answers: a direct first sentence, then a coherent passage, no dangling references.

    plan = compose(embedder, question, hits, sections, article_sections)
    # sections: (slug, anchor) -> kb.articles.Section of the hits; article_sections: the top hit's article's
    plan.groups   # [((slug, anchor), [Unit(index, kind="prose"|"block"|"intro"|"heading", text, item...)...]), ...]

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
within `floor` of it and the prose stays within MAX_CHARS, in the order of their score less `char_cost` per
100 characters of prose their group brings (a long group must earn its room); a sentence whose predecessors
are already in the answer continues their group; another section joins when its sentence is within
`close_same` (same article) or `close_other` (another article) of the first, up to `max_sections`. Short
answers continue with the sentences that follow the first one, up to `fill_chars`. The thresholds are the
model's (fitted with it) or HAND_PARAMS.

Each sentence is offered with what it needs to stand alone (kb/references.py: the sentence before a
connective, the block or list a lead-in announces, a list's lead-in, the heading a section's first 两者/它
sentence refers to), or not at all; `dangling_references` checks a finished answer the same way. Chosen
sentences are ordered: the opening group, the rest of its section in source order, then the other sections;
a list is never cut up: its chosen items stay together in source order under their lead-in, with the first
sentences of its other items when the prose stays within MAX_CHARS + LIST_SLACK, and when the
opening section's answer uses two or more items of a list, that list opens the answer. A question that does
not ask for code never opens with a program's lead-in (下面真正启动 2 个进程…：): the section's best chosen sentence
without one opens, and the program follows in source order. An answer has at
most one block: code for a code question, not a program for one that asks for a formula by name (公式, 方程);
a code or how-to question without one gets its section's code block, a formula question its section's formula.
This module knows sentences and blocks, not citations or Markdown links.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from kb.references import (BACKWARD, CONNECTIVE, FORWARD, REFERENT, _chars, _group, _groups,  # noqa: F401 (re-exported)
                           answer_elements, candidate_groups, dangling_references, refers_back)
from kb.sentences import CACHE, Unit, code_block_of, query_vector, section_units  # noqa: F401
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
LIST_SLACK = 100     # a list's other items may take the answer's prose this far past MAX_CHARS (round 13)


_FORMULA_ASK = re.compile(r"公式|方程|等式|formula|equation", re.I)


def wants_formula(question: str) -> bool:
    """The question asks for a formula by name: the answer's one block is a formula, not a program."""
    return bool(_FORMULA_ASK.search(question))


def question_type(question: str) -> str:
    """One of QUESTION_TYPES: what the first sentence of the answer must do (define, explain a cause, show
    code, state a formula or number, give steps, contrast two things)."""
    q = question.lower()
    for name, pattern in _TYPE_PATTERNS:
        if re.search(pattern, q):
            return name
    return "what"


@dataclass
class Plan:
    qtype: str
    groups: list[tuple[tuple[str, str], list[Unit]]] = field(default_factory=list)   # ((slug, anchor), pieces)
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


@dataclass
class Scored:
    """Every prose sentence of the candidate sections with its score (what `select` chooses from)."""
    qtype: str
    cands: list[Cand]
    rel: dict[tuple[int, int], float]                   # (candidate, unit index) -> score (higher: better)
    groups: dict[tuple[int, int], list[Unit] | None]    # what the sentence brings; None: cannot stand alone
    params: dict = field(default_factory=dict)          # selection thresholds for this kind of score
    wants_formula: bool = False                         # the question asks for a formula (公式, 方程), not code


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
    keys = [(c, u.index) for c, u in prose]
    groups = candidate_groups(cands)
    # The fitted scorer reads English terms as the articles' Chinese (kb/glossary.py); the hand-set blend does not.
    scoring = sentence_model.scoring_question(question) if model is not None else question
    cos = CACHE.vectors(embedder, [u.text for _, u in prose]) @ query_vector(embedder, scoring)
    if model is not None:
        X = sentence_model.features(scoring, qtype, cands, prose, cos)
        z = model.logits(X)
        return Scored(qtype, cands, dict(zip(keys, map(float, z))), groups, model.params, wants_formula(question))
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
    return Scored(qtype, cands, rel, groups, dict(HAND_PARAMS), wants_formula(question))


HAND_PARAMS = {"floor": FLOOR, "close_same": CLOSE_SAME, "close_other": CLOSE_OTHER, "max_sections": 2,
               "fill_chars": MIN_CHARS, "switch": 0.0, "char_cost": 0.0}


def compose(embedder, question: str, hits: Sequence, sections: dict, article_sections: Sequence = (),
            keep_article: bool = False) -> Plan:
    """The answer's pieces, grouped per cited section (see the module docstring). `article_sections`: all
    sections of the top hit's article, which the fitted sentence model may quote from too. `keep_article`:
    the answer opens in the top hit's article whatever another article's sentences score (the reader asked
    on that article's page)."""
    scored = score_sentences(embedder, question, hits, sections, article_sections)
    if scored is None:
        return Plan(question_type(question))
    return select(scored, keep_article=keep_article)


def select(scored: Scored, max_chars: int | None = None, keep_article: bool = False) -> Plan:
    """The opening sentence, its passage and sentences of at most `max_sections` sections, within the budget:
    a sentence joins while its score is within `floor` of the opening one's, from a new section of the same
    article within `close_same`, of another article within `close_other`."""
    max_chars = MAX_CHARS if max_chars is None else max_chars
    prm = {**HAND_PARAMS, **scored.params}
    plan = Plan(scored.qtype)
    qtype, cands, rel, groups = scored.qtype, scored.cands, scored.rel, scored.groups
    ranked = sorted((k for k in rel if groups[k] is not None), key=lambda k: -rel[k])
    # The one block of a code question is code, not a formula or a table; of a question that asks for a
    # formula, not a program (前向 SDE 的公式是啥 is not answered by its simulation's code).
    ranked = [k for k in ranked if _block_fits(groups[k], qtype, scored.wants_formula)] or ranked
    if not ranked:
        return plan
    best = ranked[0]
    # The answer opens in the top hit's article unless another article's sentence is clearly better.
    home = next((k for k in ranked if cands[k[0]].slug == cands[0].slug), best)
    if keep_article or rel[best] < rel[home] + prm["switch"]:
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
        if k in used:
            return False
        units = cands[k[0]].units
        # Several items of one list share its lead-in (or the section's heading): it is quoted once. A sentence
        # whose predecessors are already in the answer continues the group that ends with them ("这样…" after
        # the opening sentence); any other overlap would break a chain, which must stay together.
        shared = [u for u in g if (k[0], u.index) in used]
        host = None
        if any(u.kind != "heading" and u.list_id < 0 and not (u.index + 1 < len(units) and units[u.index + 1].item == u.index + 1)
               for u in shared):
            fresh = g[len(shared):]
            host = next((h for h in chosen.get(k[0], []) if h and h[-1] == shared[-1]), None)
            if host is None or g[:len(shared)] != shared or not fresh or fresh[0].index != shared[-1].index + 1:
                return False
        g = [u for u in g if (k[0], u.index) not in used]
        keys = {(k[0], u.index) for u in g}
        has_block = any(u.kind == "block" for u in g)
        if (has_block and block_used) or plan.prose_chars + _chars(g) > max_chars and chosen:
            return False
        if not _block_fits(g, qtype, scored.wants_formula):
            return False
        if host is not None:
            host.extend(g)
        else:
            chosen.setdefault(k[0], []).append(g)
        used.update(keys)
        block_used = block_used or has_block
        plan.prose_chars += _chars(g)
        return True

    take(best)
    # After the opening, a long group (a sentence with the lead-in and list it needs) must earn its room:
    # the order is the score less `char_cost` per 100 characters of prose the group adds.
    cost = prm.get("char_cost", 0.0)
    rest = sorted(ranked[1:], key=lambda k: -(rel[k] - cost * _chars(groups[k]) / 100)) if cost else ranked[1:]
    for k in rest:
        c = k[0]
        if rel[k] < top - prm["floor"]:
            if cost:
                continue
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
    # A list is never cut up: when the opening is a list item, the list's chosen items come with it.
    for c in [best[0], *[c for c in chosen if c != best[0]]]:
        gs = chosen[c]
        first, rest = (gs[0], gs[1:]) if c == best[0] else ([], gs)
        if first and qtype != "code" and _brings_code(first):
            # "下面真正启动 2 个进程…：" and its program answer no question but a request for code: the answer
            # opens with the section's best-scored chosen sentence without a program, one the article states
            # before the program when there is one (a sentence after it may describe its output), and the
            # program follows in source order.
            prose = [g for g in rest if not _brings_code(g)]
            prose = [g for g in prose if g[0].index < first[0].index] or prose
            if prose:
                lead = max(prose, key=lambda g: max(rel.get((c, u.index), -1e9) for u in g))
                first, rest = lead, [g for g in gs if g is not lead]
        lists = {u.list_id for u in first if u.list_id >= 0}
        if c == best[0] and not lists:
            # A list of the opening section with two or more chosen items is the answer's core: it opens.
            starts = [u.list_id for g in rest for u in g if u.list_id >= 0 and u.item == u.index]
            lists = {lid for lid in starts if starts.count(lid) >= 2}
        if lists:
            pulled = [g for g in rest if any(u.list_id in lists for u in g)]
            # A sentence that continues a pulled item ("这种拆分…" after the list's last item) moves with it.
            at = {u.index for g in pulled for u in g}
            for g in sorted(rest, key=lambda g: g[0].index):
                if not any(g is p for p in pulled) and g[0].index - 1 in at and refers_back(g[0].text):
                    pulled.append(g)
                    at.update(u.index for u in g)
            first = sorted(first + [u for g in pulled for u in g], key=lambda u: u.index)
            rest = [g for g in rest if not any(g is p for p in pulled)]
        rest = sorted((u for g in rest for u in g), key=lambda u: u.index)
        first = _whole_lists(first, groups, c, plan, max_chars)
        rest = _whole_lists(rest, groups, c, plan, max_chars)
        plan.groups.append((cands[c].key, first + rest))

    if not plan.has_block and qtype in ("code", "how", "formula"):
        _add_block(plan, cands, qtype, chosen)
    return plan


def _whole_lists(units: list[Unit], groups: dict, c: int, plan: Plan, max_chars: int) -> list[Unit]:
    """`units` (source order) with the other items of each list whose lead-in they quote for some of its items:
    the first sentences of the items the lead-in's own group quotes (within LIST_CHARS), when they fit in the
    budget plus LIST_SLACK. `各版本的差别可以归结为几条：` then four versions, not one; `以下几个部件：` numbered 1–4 as the article
    numbers them (round 13: 96 lists in the 584 batch answers showed fewer items than the article has)."""
    have = {u.index for u in units}
    add = []
    for lid in sorted({u.list_id for u in units if u.list_id >= 0 and u.kind != "heading"}):
        lead = groups.get((c, lid - 1)) if lid - 1 in have else None
        quoted = {u.item for u in units if u.list_id == lid}
        missing = [u for u in lead or () if u.list_id == lid and u.item == u.index and u.item not in quoted]
        if missing and plan.prose_chars + _chars(missing) <= max_chars + LIST_SLACK:
            plan.prose_chars += _chars(missing)
            add += missing
    return sorted(units + add, key=lambda u: u.index) if add else units


def _is_code(u: Unit) -> bool:
    """A fenced code block, not a `$$` formula or a table."""
    return u.kind == "block" and u.text.lstrip().startswith(("```", "~~~"))


def _block_fits(group: Sequence[Unit], qtype: str, formula: bool) -> bool:
    """The group's block is one the question may get: code for a code question, no program for a question
    that asks for a formula."""
    if qtype == "code":
        return not any(u.kind == "block" and not _is_code(u) for u in group)
    return not (formula and _brings_code(group))


def _brings_code(group: Sequence[Unit]) -> bool:
    """The group holds a program (and its lead-in)."""
    return any(_is_code(u) for u in group)


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
            plan.groups.append((cands[c].key, [Unit(-1, "intro", intro), Unit(-1, "block", block)]))
            return
