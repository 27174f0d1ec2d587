"""The composer's plan as Markdown (kb/compose.py knows sentences and blocks, not Markdown).

    paragraphs = pieces_markdown(pieces, "[[1]](article/python-pdb#...)")   # one cited section's pieces

Each sentence is followed by its citation link; the sentences of a list come out as a Markdown list, one
line per item, in the order the composer gives (source order), hanging from their lead-in sentence or
`**heading**：` with a single line break (so the lead-in and its list stay one paragraph); blocks stand
alone. HTML in article prose is shown as text.
"""
from __future__ import annotations

import re
from dataclasses import replace

from kb.references import full_stop


def pieces_markdown(pieces, link: str) -> list[str]:
    """One cited section's pieces as Markdown paragraphs: sentences each followed by `link`; a list's items as
    a Markdown list in source order (one line per item, numbered lists renumbered from 1), right under the
    sentence or heading that leads into it; a heading lead-in as **heading**：; blocks on their own."""
    paragraphs: list[str] = []
    para: list[str] = []                   # the sentences of the paragraph being written
    items: list[str] = []                  # the lines of the list being written
    lead = ""                              # what the list hangs from (its lead-in sentence or heading)
    current = (-1, -1)                     # (list, item) of the last list line

    def end_list() -> None:
        nonlocal lead
        if items:
            paragraphs.append("\n".join(([lead] if lead else []) + items))
            items.clear()
        lead = ""

    def end_para() -> None:
        if para:
            paragraphs.append("".join(para))
            para.clear()

    for at, piece in enumerate(pieces):
        if piece.kind == "prose" and piece.item < 0 and piece.text.endswith("；"):
            # A clause quoted without the clause that follows it in the article ends the sentence here:
            # "…总 NFE 为 2N−1；" then another paragraph would read as unfinished.
            after = pieces[at + 1] if at + 1 < len(pieces) else None
            if not (piece.index >= 0 and after and after.kind == "prose" and after.index == piece.index + 1):
                piece = replace(piece, text=full_stop(piece.text))
        if piece.kind == "prose" and piece.item >= 0:
            text = f"{escape_prose(piece.text)}{link}"
            if items and (piece.list_id, piece.item) == current:
                items[-1] += text
                continue
            if not items or piece.list_id != current[0]:
                end_list()
                lead = "".join(para)
                para.clear()
            mark = "-" if piece.mark in ("", "-") else f"{len(items) + 1}."
            items.append(f"{mark} {text}")
            current = (piece.list_id, piece.item)
            continue
        end_list()
        if piece.kind == "prose":
            para.append(f"{escape_prose(piece.text)}{link}")
        elif piece.kind == "heading":
            end_para()
            para.append(f"**{escape_prose(piece.text.replace('*', ''))}**：")
        elif piece.kind == "intro":
            para.append(f"{piece.text.rstrip('：')}（出自 {link}）：")
        else:
            end_para()
            paragraphs.append(piece.text)
    end_list()
    end_para()
    return paragraphs


_CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def escape_prose(text: str) -> str:
    """HTML in article prose is shown as text: '<' outside inline code becomes '&lt;'."""
    out, pos = [], 0
    for m in _CODE_SPAN.finditer(text):
        out.append(text[pos:m.start()].replace("<", "&lt;"))
        out.append(m.group(0))
        pos = m.end()
    out.append(text[pos:].replace("<", "&lt;"))
    return "".join(out)
