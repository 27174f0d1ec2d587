"""What a sentence of an article needs to be quoted on its own, and the check that a finished answer
leaves no reference dangling.

    _group(units, i, heading=...)        # unit i with what it brings, in source order; None: cannot stand
    dangling_references(answer_text, sections)   # [] when every reference is resolved

A sentence that opens with a connective (因此, 所以, 但是, 这, 它, 其中...) or refers to 这个问题 / 这一点 / 这个值
brings the sentence before it (the question the article asks just before, or, right after a block, the lead-in
sentence that brings that block, and the block), or is left out; when its connective is only a discourse marker (因此, 所以, 可以看到 after a
program's output…, an ordinal 其二，) and what follows points at nothing, it is quoted without the marker instead
(`detach`); an aside in parentheses that points back (（如上例中…）) is dropped the same way (`drop_aside`), and
every quoted sentence drops its pointers to other parts of the article (见后文, 下一节的 `yield from`: `unpoint`); a
section's first sentence that refers to the section's subject (两者…, 它…) gets the heading as its lead-in
(**heading**：). A sentence that ends in ：or points at 下面的代码 / 如下公式 / 下表 brings that block (code, `$$` formula,
table) or the list it introduces, or is left out; one that points back (上面的代码, 上例, 本文) is left out. A list
item brings its list's lead-in (the sentence ending in ：before the list; the section's heading when the list
opens the section or that sentence cannot stand); a later sentence of an item brings the item's first sentence.
The check reads a finished Markdown answer (list items, **heading**： lead-ins, blocks) and applies the same
rules. This module knows sentence units (kb.sentences), not scores, citations or rendering.
"""
from __future__ import annotations

import functools
import re
from dataclasses import replace
from typing import Sequence

from kb.chunking import split_units
from kb.sentences import Unit, section_units

CONNECTIVE = re.compile(r"^(?:因此|所以|因而|从而|于是|但是|但|然而|不过|而且|并且|而|这|那么|那|此外|另外|同样|同理|"
                        r"也就是说|换句话说|反之|否则|此时|然后|接着|其次|再|也|第[二三四五六]|最后|其中|它|其(?!实)|该|此|"
                        r"两者|二者|前者|后者|上述|对应地|相应地|类似地|与之相比|相比之下|与此相比|"
                        # "DDP 则…", "生成器对象则只有…": a subject and 则 contrast with the sentence before.
                        r"[^，。；,：]{1,12}?(?<![否规原法准实])则)")
FORWARD = re.compile(r"[：:]\s*$|^下面|下面的|下面这|如下|下例|下表|下图|以下(?:操作|几|面|性质|内容|代码|命令|步骤|方法|方式|[是为：:])|这张表|下面是|见下")
# A section's first sentence that opens with one of these usually means the section's subject (its heading).
REFERENT = re.compile(r"^(?:两者|二者|它们|它|其|该|此|这(?![样里时么]))")
_ENDS = tuple("。！？；.!?;）)”」")
SERIES_CHARS = 16      # a clause ending in ；this short, after another, is a step of a series
LIST_CHARS = 300        # a lead-in ending in ：brings its whole list when the list is this short
# "Python 用 MRO 回答这个问题。", "PEP 442 解决了这个问题": the problem is the sentence (or the question) before.
PROBLEM = re.compile(r"这个问题|这些问题|这一问题|此问题|该问题|^答案")
# 输出是… is the output of the program above, not a function's "它的输入是…，输出是…" (EDM's denoiser).
BACKWARD = re.compile(r"上面|上例|上表|上图|前面的代码|前面的例子|这段代码|这个例子|运行结果|^[^输]*输出[为是]|"
                      r"(?:^|[，,从中里后]|输出|结果)可以(?:看到|看出|读出)|"
                      r"^(?:本文|本节|本篇|这篇文章|下文|后文)|"
                      # "注意最后一行：…", "最后一行说明…", "以第一行为例": a line of the program or output above.
                      r"(?:^|^注意|现象是)最后一[行例]|^以第[一二三四五]行为例")
# 其二，… / 第二，…: an ordinal that enumerates points which state their own facts.
_ORDINAL = r"(?:其[一二三四五]|第[一二三四五六])(?=[，,])"
# A discourse marker that only links a sentence to what precedes it ("因此…", "可以看到…" after a program's
# output): without it the sentence states its fact on its own. Pronouns (这, 它, 该), contrasts (但, 而) and
# steps (然后, 其次) are no such markers: the sentence needs what they point at.
MARKER = re.compile(r"^(?:因此|所以|因而|于是|此外|另外|同样|同理|也就是说|换句话说|总之|由此可见|可见|不难看出|"
                    r"可以看到|可以看出|类似地|" + _ORDINAL + r"|最后一个例子说明|这个例子(?:里|中)?可以(?:看到|观察到))[，,]?\s*")



def _group(units: list[Unit], i: int, depth: int = 0, heading: str = "", forward: bool = True) -> list[Unit] | None:
    """Unit i with what it needs to be understood on its own, in source order; None when that is impossible.
    `heading`: the section's heading, the lead-in of a first sentence that refers to it (两者…, 它…) and of a
    list that opens the section. `forward=False`: the block or list the sentence announces is brought anyway."""
    u = units[i]
    if u.kind != "prose":
        return None
    if BACKWARD.search(u.text):
        bare = drop_aside(u.text) or detach(u.text)
        if bare is None:
            return None
        u = replace(u, text=bare)
    opens_section = all(v.kind == "skip" for v in units[:i])
    out = [u]
    # "一个引用失效，计数减 1；" is one short step of a series of clauses ("新增一个引用，计数加 1；一个引用失效，…"): it
    # comes with the clauses before it in its sentence.
    series = (u.text.endswith("；") and len(u.text) <= SERIES_CHARS and i > 0 and units[i - 1].kind == "prose"
              and units[i - 1].text.endswith("；"))
    if refers_back(u.text) or series:
        asked = 0
        while asked < 3 and i - asked > 0 and _asks(units[i - asked - 1]):
            asked += 1
        if asked and (asked == 1 or PROBLEM.search(u.text)):
            # The questions the article asks just before ("…调用哪一个？Python 用 MRO 回答这个问题。"), then the answer.
            out = [replace(v, kind="prose") for v in units[i - asked:i]] + out
        elif heading and opens_section and REFERENT.match(u.text):
            out = [Unit(-1, "heading", heading), u]      # "**索引与负数索引**：两者都支持…"
        else:
            before = None
            if i > 0 and depth < 2 and units[i - 1].kind == "block":
                # "其中 f 称为…" / "这样…" right after a formula: the lead-in that brings that block comes too.
                before = _group(units, i - 2, depth + 1, heading) if i >= 2 else None
                before = before if before is not None and before[-1] is units[i - 1] else None
            elif i > 0 and depth < 2:
                # A clause after ；continues one sentence of the article: reaching back to it is no extra link.
                before = _group(units, i - 1, depth + (not units[i - 1].text.endswith("；")), heading)
            if before is not None:
                out = before + out
            elif (bare := detach(u.text)) is not None:
                out = [replace(u, text=bare)]      # "因此…" quoted without its predecessor: "…"
            else:
                return None
    if u.item >= 0 and u.item != i and not any(v.index == u.item for v in out):
        # A later sentence of a list item continues the item: the item's first sentence comes first (the sentences
        # between come only when it leans on them, by the connective rule above).
        earlier = [units[u.item]] if units[u.item].kind == "prose" else []
        if not earlier or any(BACKWARD.search(v.text) for v in earlier):
            return None
        out = earlier + [v for v in out if v not in earlier]
    if out[0].list_id >= 0 and out[0].kind != "heading":
        # A list item needs its list's lead-in ("以下操作会让引用计数加 1：…"), or the heading of the section it opens.
        lead = _lead_in(units, out[0].list_id, depth, heading)
        if lead is None:
            return None
        out = [v for v in lead if v not in out] + out
    # "前向 SDE 的边缘密度满足" cut at the line break before its formula announces that formula too.
    unfinished = i + 1 < len(units) and units[i + 1].kind == "block" and not u.text.rstrip().endswith(_ENDS)
    if forward and (FORWARD.search(u.text) or unfinished):
        if i + 1 < len(units) and units[i + 1].kind == "block":
            out.append(units[i + 1])
        elif i + 1 < len(units) and units[i + 1].item == i + 1 and u.item < 0:
            # A lead-in to a list brings the list, or its items' first sentences.
            items = [v for v in units if v.list_id == i + 1 and v.kind != "block"]
            if _chars(items) > LIST_CHARS:
                items = [v for v in items if v.item == v.index and not CONNECTIVE.match(v.text)]
            if _chars(items) > LIST_CHARS or not items:
                return None
            out += items
        else:
            return None
    return out


# Within a sentence: "Python 做不到这一点", "可以用 `__del__` 观察这一点", "autograd 用版本计数器来发现这种情况",
# "需要可修改的版本时用前者，…用后者", "当 N 变大时，这个值趋近于 2K" (after the formula it means). Not a quoted 这一点
# ("只在“导出到哪个 API”这一点上不同"), a pair the sentence names itself ("`a` 与 `b` 并不等价：前者…") or a remark
# in parentheses ("（扩散模型正是这种情况）"). Round 10: "引用计数就存放在其中的 `ob_refcnt` 字段里" (not when a clause of
# the sentence comes first: "…一个 `PyGC_Head`，其中的两个指针…") and "前两个值已经被 `next()` 取走了" (the values of
# the output above). "`gradcheck` 把这个过程自动化了：它对每个输入做有限差分…" stands: its colon says what 这个过程 is.
# A 它 after an opening frame names nothing of the sentence ("在 `read` 里，它出现在 `co_names` 中", "为了便于演示，它
# 不解析命令行参数"), unlike one after a clause with its subject ("对象释放后，它的块回到所在的池里"); and a short subject
# with 因此 concludes from the sentence before ("$r$ 因此是需要调的超参数").
_LEANS = re.compile(r"(?<![”\"」])这一点|这种情况|^[^：:—]*前者[^：:—]*后者|这个(?:值|公式|关系|数字|式子)|"
                    r"^[^，,。；：:]*其中的|^前[两三四五六七八九十\d]+个|^[^，,。；：:]{1,20}把它|"
                    r"^(?:在|为了|如果|若)[^，,。；：:]{1,14}[，,]它|^[^，,。；：:]{1,10}因此|^[^，,。；：:“”]{1,5}它")


def refers_back(text: str) -> bool:
    """The sentence leans on what comes before it: it opens with a connective or refers to 这个问题 / 答案 /
    这一点."""
    return bool(CONNECTIVE.match(text) or PROBLEM.search(text) or _LEANS.search(_ASIDE.sub("", text)))


_POINTS_BACK = re.compile(r"这[个些种一]|上述|前者|后者")
_ASIDE = re.compile(r"（[^（）]*）|\([^()]*\)")


def drop_aside(text: str) -> str | None:
    """The sentence without the parenthetical asides that point back ("（如上例中 …）") when the rest points at
    nothing; None otherwise."""
    bare = _ASIDE.sub(lambda m: "" if BACKWARD.search(m.group(0)) else m.group(0), text)
    return bare if bare != text and not BACKWARD.search(bare) else None


# Pointers to other parts of the article (后文, 下一节, 前面提到的): the answer quotes one section, so "见后文" points at
# nothing the reader has. `unpoint` drops them where the sentence says the same without: a parenthetical 见后文…
# or 下文详述, a 后文的 / 前面提到的 before a name, a 下一节 before a quoted title, a closing ，下一节专门讲.
_NAV = r"(?:后文|下文|上文|前文|下一节|上一节|下一小节)"
_NAV_SAYS = r"(?:详述|详细介绍|介绍|专门讲|会推导|会分别介绍)"
_NAV_SEGMENT = re.compile(r"(?:见|详见|参见)" + _NAV + r"[^，,；;]*|" + _NAV + _NAV_SAYS)
_NAV_INLINE = re.compile(r"(?:" + _NAV + r"(?:也会用到|提到|介绍)?的(?=\s?[`“$\w])|前面提到的|" + _NAV + r"(?=“)|(?<=而)后面会看到，)"
                         r"(?: (?=[`$\w]))?")
_NAV_TAIL = re.compile(r"[，,]" + _NAV + _NAV_SAYS + r"(?=[。；]$)")
# "前面已经说过，从 σ_{N-1} 用 Euler 一步走到 0 …": what follows states its fact on its own.
_NAV_LEAD = re.compile(r"^(?:前面已经说过|前面说过|前面讲过|如前所述|正如前面所说|上文说过)[，,]\s*")


def unpoint(text: str) -> str:
    """The sentence without its pointers to other parts of the article (unchanged when it has none)."""
    def aside(m: re.Match) -> str:
        parts = re.split(r"([，,；;])", m.group(0)[1:-1])
        # "见后文 PEP 442 一节" names what it points at: kept (a quoted title, 见后文“…”, is only the way there).
        kept = [(p, sep) for p, sep in zip(parts[::2], parts[1::2] + [""])
                if not _NAV_SEGMENT.fullmatch(p.strip()) or re.search(r"[A-Za-z0-9]", re.sub(r"“[^”]*”", "", p))]
        if len(kept) == len(parts[::2]):
            return m.group(0)
        if kept:
            return m.group(0)[0] + "".join(p + sep for p, sep in kept[:-1]) + kept[-1][0] + m.group(0)[-1]
        latin_before = re.search(r"[A-Za-z0-9`$]$", m.string[:m.start()])
        return " " if latin_before and re.match(r"[\u4e00-\u9fff]", m.string[m.end():]) else ""
    def inline(m: re.Match) -> str:
        # The words on either side meet as the article spaces them: "用 `SyncBatchNorm`", "串起来，`super()`".
        before, after = m.string[:m.start()], m.string[m.end():]
        return " " if re.search(r"[^\s，。；：、“（]$", before) and re.match(r"[`$A-Za-z0-9]", after) else ""
    return _NAV_LEAD.sub("", _NAV_TAIL.sub("", _NAV_INLINE.sub(inline, _ASIDE.sub(aside, text))))


@functools.lru_cache(maxsize=16384)
def quoted_forms(text: str) -> frozenset[str]:
    """The ways an answer quotes a sentence of the article: as written, without its opening discourse marker
    (`detach`) or its asides that point back (`drop_aside`), and always without pointers (`unpoint`); a
    clause ending in ；also ending in 。 (`full_stop`)."""
    forms = {unpoint(t) for t in (text, detach(text), drop_aside(text)) if t}
    return frozenset(forms | {full_stop(t) for t in forms})


def full_stop(text: str) -> str:
    """A clause ending in ；as an answer quotes it without the clause that follows it: ending in 。."""
    return text[:-1] + "。" if text.endswith("；") else text


# "注意最后一行：前两个值已经被取走了", "另一个值得注意的现象是最后一行：`add.__name__` 变成了 `wrapper`": what follows
# the colon states the fact the line shows.
_LINE_LEAD = re.compile(r"^[^：:。]{0,16}最后一[行例][^：:。]{0,10}[：:]\s*")
# "不过上面的 `LoggingDict` 有一个隐患：内置的 `dict` 是用 C 实现的…", "这个例子清楚地表明：…": only the lead-in
# before the colon points at the example above; what follows it states a fact of its own.
_POINTER_LEAD = re.compile(r"^[^：:。；]{2,40}[：:]\s*")
_EXAMPLE = re.compile(r"上面|上例|这个例子|这段代码|从输出|运行结果")   # not 本文… (a plan of the article follows)


def detach(text: str) -> str | None:
    """The sentence without its opening discourse marker (or its lead-in about the last line of the output
    above) when what remains stands on its own (it points at nothing before it); None otherwise."""
    m = MARKER.match(text) or _LINE_LEAD.match(text)
    if m is None and (lead := _POINTER_LEAD.match(text)) and _EXAMPLE.search(lead.group(0)):
        m = lead
    rest = text[m.end():] if m else ""
    if len(rest) < 8 or refers_back(rest) or BACKWARD.search(rest) or rest[0] in "，,：:；;":
        return None
    if re.match(_ORDINAL, text) and _POINTS_BACK.search(rest):
        return None      # "第二，把名字绑定到这个对象上": the step leans on the one before
    return rest


def _asks(u: Unit) -> bool:
    """A question the article asks in its prose (left out of the answer units alone: its answer follows)."""
    return u.kind == "skip" and u.text.rstrip().endswith(("？", "?")) and not u.text.startswith("#") and u.item < 0


def _lead_in(units: list[Unit], list_id: int, depth: int, heading: str) -> list[Unit] | None:
    """What a list item brings before it: the lead-in sentence ending in ：(with what that needs), the section's
    heading when the list opens the section, nothing after an ordinary sentence; a lead-in too short to say what the
    list is about ("几个要点：") with the sentence before it, or after a block the heading; None: it cannot stand."""
    before = units[list_id - 1] if list_id > 0 else None
    if before is not None and before.kind != "block" and before.text.rstrip().endswith(("：", ":")):
        if before.kind == "skip":
            lead = [replace(before, kind="prose")]     # "**优点**："
            if before.text.startswith("**"):
                return lead
            # "几个要点：" says nothing alone: the sentence before says what the points are about ("…检查点只需要保存
            # 一份，通常由 rank 0 负责。几个要点："); after a program's output ("逐条对照输出：") the heading introduces them.
            above = units[list_id - 2] if list_id >= 2 else None
            if above is not None and above.kind == "block":
                return [Unit(-1, "heading", heading)] if heading else lead
            prev = _group(units, list_id - 2, depth + 1, heading, forward=False) if above is not None else None
            return lead if prev is None else prev + lead
        lead = _group(units, list_id - 1, depth + 1, heading, forward=False)
        # A lead-in that cannot stand ("这带来两种选择：" after a chain): the section's heading introduces the list.
        return lead if lead is not None or not heading else [Unit(-1, "heading", heading)]
    if heading and all(v.kind == "skip" for v in units[:list_id]):
        return [Unit(-1, "heading", heading)]
    return []


@functools.lru_cache(maxsize=4096)
def _groups(units: tuple[Unit, ...], heading: str = "") -> dict[int, list[Unit] | None]:
    """`_group` of every prose unit of a section (cached: the same sections answer many questions)."""
    return {u.index: _quoted(_group(list(units), u.index, heading=heading)) for u in units if u.kind == "prose"}


def _quoted(group: list[Unit] | None) -> list[Unit] | None:
    """The group's sentences as the answer quotes them: without pointers to other parts of the article."""
    return None if group is None else [replace(u, text=unpoint(u.text)) if u.kind == "prose" else u for u in group]


def candidate_groups(cands: Sequence) -> dict[tuple[int, int], list[Unit] | None]:
    """(candidate index, unit index) -> `_group` of every prose unit of the candidate sections (kb.compose's
    Cand: .units, .heading), as the composer and the sentence model's fit both need them."""
    return {(c, i): g for c, cand in enumerate(cands) for i, g in _groups(tuple(cand.units), cand.heading).items()}


def _chars(units: Sequence[Unit]) -> int:
    return sum(len(u.text) for u in units if u.kind == "prose")


# Checking a finished answer -------------------------------------------------------------------------------

_LINK = re.compile(r"\[\[\d+\]\]\([^)]*\)")
_FENCE = re.compile(r"^(`{3,}|~{3,}).*?^\1[ \t]*$", re.S | re.M)
_FORMULA = re.compile(r"^\$\$.*?\$\$[ \t]*$", re.S | re.M)
_ITEM_LINE = re.compile(r"^(?:[-*+]|\d+[.)])\s+")
_HEADING_LEAD = re.compile(r"^\*\*([^*\n]+)\*\*[：:]")


def _split(line: str) -> list[str]:
    """A line of the answer cut into sentences as the chunker cuts an article's (`kb.chunking.split_units`: after
    。！？；, not inside inline code, inline math or a full-width parenthesis), never at a size limit."""
    return [line[u.start:u.end] for u in split_units(line, len(line) + 1)]


def _elements(text: str) -> list[tuple[str, str, bool]]:
    """`answer_elements` with a third field: the sentence is in a Markdown list item."""
    body = text.split("**来源**", 1)[0]
    out: list[tuple[str, str, bool]] = []
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
                    out[-1] = ("block", out[-1][1] + "\n" + line, False)
                else:
                    out.append(("block", line, False))
                continue
            item = _ITEM_LINE.match(line)
            line = line[item.end():] if item else line
            lead = None if item else _HEADING_LEAD.match(line)
            if lead:
                out.append(("heading", lead.group(1), False))
                line = line[lead.end():]
            line = _LINK.sub("", line).replace("&lt;", "<")
            out.extend(("prose", s.strip(), bool(item)) for s in _split(line) if s.strip())
        if end > start:
            out.append(("block", body[start:end], False))
        pos = end
    return out


def answer_elements(text: str) -> list[tuple[str, str]]:
    """A finished answer's body (before 来源) as ("prose", sentence), ("block", block) and ("heading", a section
    heading shown as a lead-in: **heading**：) in reading order, list marks and citation links removed and HTML
    escapes undone."""
    return [(kind, t) for kind, t, _ in _elements(text)]


def dangling_references(text: str, sections: Sequence) -> list[str]:
    """Why the answer leaves a reference dangling (empty when none): a connective sentence not preceded by
    its source predecessor (or, for a section's first sentence, by its heading), a pointer to a block or list
    that does not follow, a self-reference."""
    elements = _elements(text)
    reasons = []
    for i, (kind, s, item) in enumerate(elements):
        if kind != "prose":
            continue
        nxt = elements[i + 1] if i + 1 < len(elements) else None
        if FORWARD.search(s) and (nxt is None or not (nxt[0] == "block" or (nxt[2] and not item))):
            reasons.append(f"points at a block that does not follow: {s[:40]}")
        if BACKWARD.search(s):
            reasons.append(f"points back at something not shown: {s[:40]}")
        if refers_back(s):
            prev = elements[i - 1] if i > 0 else None
            if prev is None or not any(_follows(sec, prev, s) for sec in sections):
                reasons.append(f"opens with a connective without its predecessor: {s[:40]}")
    return reasons


def _follows(section, prev: tuple, sentence: str) -> bool:
    """`sentence` comes right after `prev` in the section: its source predecessor, or the section's heading
    before the section's first sentence."""
    units = section_units(section.text)
    if prev[0] == "heading":
        prose = [u for u in units if u.kind != "skip"]
        return bool(prose) and prev[1] == section.heading and prose[0].text == sentence and bool(REFERENT.match(sentence))
    units = [u for u in units if u.kind != "skip" or _asks(u)]
    return any(prev[1] in quoted_forms(a.text) and sentence in (unpoint(b.text), full_stop(unpoint(b.text)))
               for a, b in zip(units, units[1:]))
