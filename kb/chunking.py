"""Chunking for Chinese Markdown: sections first, then sentences, packed toward a target size with overlap.

The heading split is `kb.articles`' sections (the equal of LangChain's MarkdownHeaderTextSplitter, with the
anchors the UI links to). Inside a section the text is cut into units: fenced code blocks and `$$` formulas
(found by `kb.articles.iter_blocks`) are single units that are never cut; prose is cut after 。！？；and at
line breaks, never inside inline code, inline math or a full-width parenthesis. Units are packed greedily up to
`size` characters; the next chunk repeats the trailing prose sentences of the previous one, up to `overlap`
characters; a section's remainder within 25 % of `size` stays in the last chunk. A block longer than `size`
becomes a chunk of its own.

Each chunk records the character span it covers in its section's text (`start`, `end`), so overlapping
windows can be merged exactly and coverage can be checked. The heading path is prepended to the text that
is embedded (`embed_text`), not to the text shown. This module knows nothing about embeddings or indexes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from kb.articles import Article, Section, iter_blocks

CHUNKER_VERSION = 3                # bump when the cutting rules change: the index is rebuilt
_BOUNDARY = re.compile(r"[。！？；]+[”’」』）)\"']*|\n")
TAIL_SLACK = 1.25
_PROTECTED = re.compile(r"`[^`\n]+`|\$[^$\n]+\$")


@dataclass(frozen=True)
class Chunk:
    id: str                        # "<slug>:<position>"
    slug: str
    title: str
    heading_path: tuple[str, ...]  # article title down to the section heading
    anchor: str                    # the section's anchor
    position: int                  # 0-based order of the chunk in its article
    text: str                      # what is shown: section text[start:end]
    embed_text: str                # what is embedded and BM25-indexed: heading path + text
    start: int = 0                 # character span of `text` in the section's text
    end: int = 0


@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    atomic: bool                   # a code block or formula: never cut, never repeated as overlap


def heading_line(path: tuple[str, ...]) -> str:
    return " > ".join(path)


def _in_aside(text: str, pos: int) -> bool:
    """text[pos] is inside a full-width parenthesis opened earlier on its line: "（…取 $10^{-3}$；Song 等人…）" is one
    remark, and cutting after its ；would leave both halves with an unmatched parenthesis (version 3)."""
    line = text[text.rfind("\n", 0, pos) + 1:pos]
    return line.count("（") > line.count("）")


def _sentences(text: str, start: int, end: int, size: int) -> list[_Unit]:
    """Prose text[start:end] cut after sentence ends and line breaks; inline code/math is kept whole."""
    protected = [(m.start() + start, m.end() + start) for m in _PROTECTED.finditer(text[start:end])]
    cuts = []
    for m in _BOUNDARY.finditer(text, start, end):
        if not any(s < m.end() < e for s, e in protected) and (m.group() == "\n" or not _in_aside(text, m.end())):
            cuts.append(m.end())
    units, prev = [], start
    for cut in [*cuts, end]:
        # A run-on sentence longer than a chunk is cut at the size limit (prose only, never a block).
        while cut - prev > size:
            hard = prev + size
            inside = next(((s, e) for s, e in protected if s < hard < e), None)
            if inside:
                hard = inside[0] if inside[0] > prev else inside[1]
            units.append(_Unit(prev, hard, False))
            prev = hard
        if cut > prev:
            units.append(_Unit(prev, cut, False))
            prev = cut
    return units


def split_units(text: str, size: int) -> list[_Unit]:
    """Contiguous units covering all of `text`; blank runs are joined to the next unit (or the last)."""
    lines = text.split("\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    units, pos = [], 0
    for _kind, s, e in iter_blocks(text):
        block_start, block_end = offsets[s], min(offsets[e + 1] - 1, len(text))
        units += _sentences(text, pos, block_start, size)
        units.append(_Unit(block_start, block_end, True))
        pos = block_end
    units += _sentences(text, pos, len(text), size)
    joined: list[_Unit] = []
    blank_from = None
    for u in units:
        if not text[u.start:u.end].strip():
            blank_from = u.start if blank_from is None else blank_from
            continue
        joined.append(_Unit(u.start if blank_from is None else blank_from, u.end, u.atomic))
        blank_from = None
    if blank_from is not None and joined:
        joined[-1] = _Unit(joined[-1].start, len(text), joined[-1].atomic)
    return joined


def _windows(units: list[_Unit], size: int, overlap: int) -> list[tuple[int, int]]:
    """Greedy packing of units into [first, last) index windows, with sentence overlap between windows."""
    windows, i, n = [], 0, len(units)
    while i < n:
        j = i + 1
        while j < n and units[j].end - units[i].start <= size:
            j += 1
        # A short remainder joins this window (up to TAIL_SLACK over size) instead of becoming a small
        # chunk that would mostly repeat this one's overlap.
        if units[n - 1].end - units[i].start <= size * TAIL_SLACK:
            j = n
        windows.append((i, j))
        if j == n:
            break
        # Step back over the trailing prose units that fit in `overlap`; always move forward.
        k = j
        while k - 1 > i and not units[k - 1].atomic and units[j - 1].end - units[k - 1].start <= overlap:
            k -= 1
        # Repeat only what still leaves room for the next unit, so every window ends further on.
        while k < j and units[j].end - units[k].start > size:
            k += 1
        i = k
    return windows


def chunk_section(article: Article, section: Section, size: int, overlap: int, first_position: int) -> list[Chunk]:
    text = section.text
    units = split_units(text, size)
    chunks = []
    for i, j in _windows(units, size, overlap):
        start, end = units[i].start, units[j - 1].end
        piece = text[start:end]
        # Trim surrounding whitespace and keep the span exact.
        start += len(piece) - len(piece.lstrip())
        end -= len(piece) - len(piece.rstrip())
        if end <= start:
            continue
        body = text[start:end]
        position = first_position + len(chunks)
        chunks.append(Chunk(
            id=f"{article.slug}:{position}", slug=article.slug, title=article.title,
            heading_path=section.path, anchor=section.anchor, position=position, text=body,
            embed_text=f"{heading_line(section.path)}\n{body}", start=start, end=end,
        ))
    return chunks


def chunk_article(article: Article, size: int = 400, overlap: int = 80) -> list[Chunk]:
    """All chunks of an article in reading order; positions run 0..n-1 over the whole article."""
    assert 0 <= overlap < size, f"overlap {overlap} must be smaller than size {size}"
    chunks: list[Chunk] = []
    for section in article.sections:
        chunks += chunk_section(article, section, size, overlap, len(chunks))
    return chunks
