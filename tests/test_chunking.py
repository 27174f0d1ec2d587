"""Chunker invariants: blocks and formulas are never cut, every prose character lands in a chunk, spans are
exact, sizes and overlaps are bounded; checked on hand-made articles and on every real article."""
from pathlib import Path

import pytest

from kb.articles import iter_blocks, load_article, parse_article
from kb.chunking import TAIL_SLACK, Chunk, chunk_article, split_units

ARTICLES = Path(__file__).resolve().parent.parent / "articles"
REAL = sorted(ARTICLES.glob("*.md"))


def make_article(body: str, slug: str = "demo", title: str = "演示文章", summary: str = "一篇演示文章。") -> str:
    return (f"---\ntitle: {title}\nslug: {slug}\ndate: 2025-01-01\ntags: [演示]\nsummary: {summary}\n"
            f"demos: [gc-cycles]\n---\n{body}")


def parse(body: str):
    return parse_article(make_article(body), "demo.md")


def check_invariants(article, chunks: list[Chunk], size: int, overlap: int) -> None:
    where = article.slug
    assert [c.position for c in chunks] == list(range(len(chunks))), f"{where}: positions not 0..n-1"
    assert [c.id for c in chunks] == [f"{article.slug}:{i}" for i in range(len(chunks))]
    by_section = {}
    for c in chunks:
        section = article.section(c.anchor)
        assert section is not None, f"{where}: chunk {c.id} names unknown anchor {c.anchor}"
        assert c.heading_path == section.path
        assert c.text == section.text[c.start:c.end], f"{c.id}: text is not its span"
        assert c.text == c.text.strip() and c.text, f"{c.id}: untrimmed or empty"
        assert c.embed_text == " > ".join(section.path) + "\n" + c.text, f"{c.id}: embed_text"
        by_section.setdefault(c.anchor, []).append(c)
    for section in article.sections:
        spans = [(c.start, c.end) for c in by_section.get(section.anchor, [])]
        # Every non-space character of the section lands in some chunk.
        covered = [False] * len(section.text)
        for s, e in spans:
            covered[s:e] = [True] * (e - s)
        lost = [i for i, ch in enumerate(section.text) if not ch.isspace() and not covered[i]]
        assert not lost, f"{where}#{section.anchor}: characters {lost[:5]} ({section.text[lost[0]:lost[0] + 20]!r}) in no chunk"
        # No chunk boundary falls strictly inside a code block or a formula.
        lines = section.text.split("\n")
        offsets = [0]
        for line in lines:
            offsets.append(offsets[-1] + len(line) + 1)
        blocks = [(offsets[s], min(offsets[e + 1] - 1, len(section.text))) for _k, s, e in iter_blocks(section.text)]
        for s, e in spans:
            for bs, be in blocks:
                assert e <= bs or s >= be or (s <= bs and e >= be), \
                    f"{where}#{section.anchor}: chunk [{s},{e}) cuts the block [{bs},{be})"
        # Sizes: within the tail slack, unless the chunk is one block longer than the target.
        for c in by_section.get(section.anchor, []):
            one_block = any(c.start == bs and c.end == be for bs, be in blocks)
            assert len(c.text) <= size * TAIL_SLACK or one_block, f"{c.id}: {len(c.text)} characters"
        # Consecutive windows overlap by at most `overlap` characters.
        for (s1, e1), (s2, e2) in zip(spans, spans[1:]):
            assert s2 > s1 and e2 > e1, f"{where}#{section.anchor}: windows do not advance"
            assert max(0, e1 - s2) <= overlap, f"{where}#{section.anchor}: overlap {e1 - s2} > {overlap}"


def test_hand_computed_windows_with_overlap():
    body = "甲乙丙丁。戊己庚辛。壬癸子丑。寅卯辰巳。"          # four 5-character sentences
    article = parse(body)
    chunks = chunk_article(article, size=10, overlap=5)
    # Windows of two sentences; the next starts by repeating the last sentence (5 <= overlap).
    assert [c.text for c in chunks] == ["甲乙丙丁。戊己庚辛。", "戊己庚辛。壬癸子丑。", "壬癸子丑。寅卯辰巳。"]
    assert [(c.start, c.end) for c in chunks] == [(0, 10), (5, 15), (10, 20)]
    assert chunks[0].anchor == "intro" and chunks[0].heading_path == ("演示文章",)
    assert chunks[0].embed_text == "演示文章\n甲乙丙丁。戊己庚辛。"


def test_no_overlap_and_tail_joins_last_window():
    body = "一二三四。五六七八。九十。"
    chunks = chunk_article(parse(body), size=10, overlap=0)
    # The remainder "九十。" would make 13 characters, more than 1.25 x 10: a chunk of its own.
    assert [c.text for c in chunks] == ["一二三四。五六七八。", "九十。"]
    chunks = chunk_article(parse("一二三四。五六七八。九。"), size=10, overlap=0)
    # With 12 characters in all, the remainder joins the window.
    assert [c.text for c in chunks] == ["一二三四。五六七八。九。"]
    chunks = chunk_article(parse("一二三四。五六七八。九十一二三四。"), size=10, overlap=0)


def test_headings_split_and_path_is_embedded_not_shown():
    body = "引言一句。\n\n## 第一节\n\n第一节的内容。\n\n### 小节\n\n小节内容；第二句！\n\n## 第二节\n\n第二节内容？\n"
    article = parse(body)
    chunks = chunk_article(article, size=400, overlap=80)
    assert [(c.anchor, c.text) for c in chunks] == [
        ("intro", "引言一句。"), ("第一节", "第一节的内容。"), ("小节", "小节内容；第二句！"), ("第二节", "第二节内容？")]
    assert chunks[2].heading_path == ("演示文章", "第一节", "小节")
    assert chunks[2].embed_text == "演示文章 > 第一节 > 小节\n小节内容；第二句！"
    assert all("##" not in c.text for c in chunks)


def test_code_block_and_formula_are_never_cut():
    code = "```python\n" + "\n".join(f"x{i} = {i}  # 第{i}行。" for i in range(40)) + "\n```"
    formula = "$$\n" + "\n".join(f"a_{i} = b_{i} + c_{i}。" for i in range(20)) + "\n$$"
    body = ("前面的说明。" * 10 + "\n\n" + code + "\n\n中间一句话。\n\n" + formula + "\n\n" + "后面的说明！" * 30)
    article = parse(body)
    size = 120
    chunks = chunk_article(article, size=size, overlap=30)
    check_invariants(article, chunks, size, 30)
    texts = [c.text for c in chunks]
    assert code in texts, "the code block longer than the target size is one chunk of its own"
    assert any(formula in t for t in texts), "the formula sits whole inside one chunk"
    assert sum(t.count("```") for t in texts) == 2, "each fence line appears exactly once (blocks are never overlap)"


def test_inline_code_and_math_are_not_cut_at_a_semicolon():
    body = "用 `a = 1；b = 2` 这样的写法，再看 $x；y$ 的公式。下一句。"
    chunks = chunk_article(parse(body), size=12, overlap=0)
    assert any("`a = 1；b = 2`" in c.text for c in chunks), [c.text for c in chunks]
    assert any("$x；y$" in c.text for c in chunks), [c.text for c in chunks]


def test_a_full_width_parenthesis_is_not_cut_at_its_semicolon():
    text = "截断时间取 $10^{-3}$（本文取 $10^{-3}$；论文取 $10^{-5}$），而不是 0。下一句；再下一句。\n（独立的一行；\n下一行。"
    units = [text[u.start:u.end] for u in split_units(text, 400)]
    assert [u.strip() for u in units] == ["截断时间取 $10^{-3}$（本文取 $10^{-3}$；论文取 $10^{-5}$），而不是 0。", "下一句；",
                                          "再下一句。", "（独立的一行；", "下一行。"], "an unclosed parenthesis ends with its line"


def test_run_on_prose_without_punctuation_is_cut_at_the_size():
    body = "字" * 25
    chunks = chunk_article(parse(body), size=10, overlap=0)
    assert [len(c.text) for c in chunks] == [10, 10, 5]
    check_invariants(parse(body), chunks, 10, 0)


def test_overlap_must_be_smaller_than_size():
    with pytest.raises(AssertionError, match="overlap"):
        chunk_article(parse("一句。"), size=10, overlap=10)


@pytest.mark.skipif(not REAL, reason="no articles yet")
@pytest.mark.parametrize("path", REAL, ids=[p.stem for p in REAL])
def test_real_article_invariants(path):
    article = load_article(path)
    for size, overlap in ((400, 80), (150, 40)):
        chunks = chunk_article(article, size=size, overlap=overlap)
        assert len(chunks) >= len([s for s in article.sections if s.text.strip()])
        check_invariants(article, chunks, size, overlap)
