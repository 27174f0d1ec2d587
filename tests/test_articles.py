"""The twelve articles: front matter, length, and every runnable code block with its shown output.

The Python-language articles (slugs python-*) use only the standard library, so their blocks run under
every CPython in tests/interpreters.VERSIONS that is installed (3.11, 3.12, 3.13), each block under the
versions its fence marker admits (```python min=3.12 / max=3.12), compared with the output shown for that
version (an unmarked ```text block, or a ```text min=/max= block for the versions that print otherwise).
The other articles need torch and run under the project's interpreter only, each block in a process forked
from one that imported numpy and torch once (tests/block_runner.py), which saves a torch import per block.
"""
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

from kb.articles import DEMO_IDS, code_blocks, load_article, prose_chars
import interpreters

ARTICLES = Path(__file__).resolve().parent.parent / "articles"
SLUGS = [
    "edm-diffusion-framework", "diffusion-sde", "python-list-tuple", "python-generators",
    "python-mutable-immutable", "python-gc", "python-pdb", "python-inheritance-mro",
    "python-object-reference", "pytorch-ddp", "tensorflow-tf-export", "pytorch-autograd",
]
STDLIB_SLUGS = [s for s in SLUGS if s.startswith("python-")]
PROSE_FLOOR = 2500
MAX_NO_RUN = 3
HERE = tuple(sys.version_info[:2])
RUNS = [(slug, v) for slug in SLUGS for v in (interpreters.VERSIONS if slug in STDLIB_SLUGS else (HERE,))]


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
def test_chinese_quotation_marks(slug):
    """Quotes around Chinese text are “…”, never ASCII "…" (code, math and inline code excepted)."""
    from kb.articles import prose_text
    import re

    text = prose_text(load_article(ARTICLES / f"{slug}.md").body)
    bad = re.findall(r'"[^"\n]*[\u4e00-\u9fff][^"\n]*"', text)
    assert not bad, f"{slug}: ASCII quotes around Chinese text: {bad[:5]}"


@pytest.mark.parametrize("slug", SLUGS)
def test_version_markers_are_reachable(slug):
    """Every version marker admits at least one checked version, and every admitted version of a block
    that shows output has an output for it."""
    for block in code_blocks(load_article(ARTICLES / f"{slug}.md")):
        if block.lang not in ("python", "console"):
            continue
        admitted = [v for v in interpreters.VERSIONS if block.admits(v)]
        assert admitted, f"{slug}:{block.line}: the marker {block.info!r} admits none of {interpreters.VERSIONS}"
        if block.runnable and block.outputs:
            for v in admitted:
                assert block.expected_for(v) is not None, f"{slug}:{block.line}: no shown output for {v}"


BLOCK_TIMEOUT_S = 120
RUNNER = Path(__file__).resolve().parent / "block_runner.py"


def _fresh_runner(exe, cwd, env):
    """Each block in a fresh interpreter."""
    def run(script):
        proc = subprocess.run([exe, str(script)], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=BLOCK_TIMEOUT_S, stdin=subprocess.DEVNULL)
        return proc.returncode, proc.stdout, proc.stderr
    return run


def _fork_runner(exe, cwd, env):
    """Each block in its own process forked from one that imported torch and numpy once (block_runner.py):
    the torch articles' blocks would otherwise spend most of their time importing torch."""
    proc = subprocess.Popen([exe, str(RUNNER), "numpy", "torch"], cwd=cwd, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def run(script):
        proc.stdin.write(f"{script}\n")
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], BLOCK_TIMEOUT_S)
        if not ready:
            proc.kill()
            raise AssertionError(f"{script}: no result within {BLOCK_TIMEOUT_S} s")
        line = proc.stdout.readline()
        assert line.strip(), f"block runner ended early (exit {proc.wait()})"
        out = Path(f"{script}.out").read_text(encoding="utf-8")
        err = Path(f"{script}.err").read_text(encoding="utf-8")
        return int(line), out, err

    def close():
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    run.close = close
    return run


def _normalised(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.rstrip().split("\n"))


@pytest.mark.parametrize("slug,version", RUNS, ids=[f"{s}-py{interpreters.label(v)}" for s, v in RUNS])
def test_code_blocks_run_and_match_shown_output(slug, version, tmp_path):
    exe = interpreters.find(version)
    if exe is None:
        pytest.skip(f"no Python {interpreters.label(version)} interpreter installed (pyenv or PATH)")
    article = load_article(ARTICLES / f"{slug}.md")
    blocks = code_blocks(article)
    assert sum(b.no_run for b in blocks) <= MAX_NO_RUN, "no-run blocks must be few"
    runnable = [b for b in blocks if b.runnable]
    assert runnable, f"{slug} has no runnable python block"
    env = {**os.environ, "PYTHONBREAKPOINT": "0", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)
    run_block = _fork_runner(exe, tmp_path, env) if slug not in STDLIB_SLUGS else _fresh_runner(exe, tmp_path, env)
    ran = 0
    try:
        for block in blocks:
            if block.file and block.lang == "python":
                (tmp_path / block.file).write_text(block.code + "\n", encoding="utf-8")
                continue
            if block.file or not block.runnable or not block.admits(version):
                continue
            script = tmp_path / "example.py"
            script.write_text(block.code + "\n", encoding="utf-8")
            returncode, stdout, stderr = run_block(script)
            ran += 1
            where = f"{article.path}:{block.line} (Python {interpreters.label(version)})"
            assert returncode == 0, f"{where} exited {returncode}:\n{stderr[-2000:]}"
            want = block.expected_for(version)
            if want is not None:
                got = _normalised(stdout)
                assert got == _normalised(want), (f"{where}: printed output differs from the article's text block"
                                                  f"\n--- shown\n{want}\n--- printed\n{got}")
    finally:
        close = getattr(run_block, "close", None)
        if close:
            close()
    assert ran, f"{slug}: no block ran under Python {interpreters.label(version)}"
