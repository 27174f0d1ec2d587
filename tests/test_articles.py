"""The twelve articles: front matter, length, and every runnable code block with its shown output."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kb.articles import DEMO_IDS, code_blocks, load_article, prose_chars

ARTICLES = Path(__file__).resolve().parent.parent / "articles"
SLUGS = [
    "edm-diffusion-framework", "diffusion-sde", "python-list-tuple", "python-generators",
    "python-mutable-immutable", "python-gc", "python-pdb", "python-inheritance-mro",
    "python-object-reference", "pytorch-ddp", "tensorflow-tf-export", "pytorch-autograd",
]
PROSE_FLOOR = 2500
MAX_NO_RUN = 3


def test_exactly_the_twelve_articles():
    assert sorted(p.stem for p in ARTICLES.glob("*.md")) == sorted(SLUGS)


@pytest.mark.parametrize("slug", SLUGS)
def test_front_matter_and_length(slug):
    article = load_article(ARTICLES / f"{slug}.md")
    assert article.slug == slug
    assert article.title and article.summary and article.tags
    assert article.summary.count("。") <= 1, "summary must be one sentence"
    assert article.demos and set(article.demos) <= set(DEMO_IDS)
    n = prose_chars(article.body)
    assert n >= PROSE_FLOOR, f"{slug}: {n} Chinese prose characters, floor is {PROSE_FLOOR}"
    assert sum(1 for s in article.sections if s.level == 2) >= 4, "organise the article under ## headings"
    anchors = [s.anchor for s in article.sections]
    assert len(anchors) == len(set(anchors))


@pytest.mark.parametrize("slug", SLUGS)
def test_code_blocks_run_and_match_shown_output(slug, tmp_path):
    article = load_article(ARTICLES / f"{slug}.md")
    blocks = code_blocks(article)
    assert sum(b.no_run for b in blocks) <= MAX_NO_RUN, "no-run blocks must be few"
    runnable = [b for b in blocks if b.runnable]
    assert runnable, f"{slug} has no runnable python block"
    env = {**os.environ, "PYTHONBREAKPOINT": "0", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)
    for block in blocks:
        if block.file:
            (tmp_path / block.file).write_text(block.code + "\n", encoding="utf-8")
            continue
        if not block.runnable:
            continue
        script = tmp_path / "_block.py"
        script.write_text(block.code + "\n", encoding="utf-8")
        proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL)
        where = f"{article.path}:{block.line}"
        assert proc.returncode == 0, f"{where} exited {proc.returncode}:\n{proc.stderr[-2000:]}"
        if block.expected_output is not None:
            got = "\n".join(l.rstrip() for l in proc.stdout.rstrip().split("\n"))
            want = "\n".join(l.rstrip() for l in block.expected_output.rstrip().split("\n"))
            assert got == want, f"{where}: printed output differs from the article's text block"
