"""Every pdb terminal transcript of articles/python-pdb.md, replayed in real pdb.

Each ```console block of the article is one terminal session: a `$ python ...` line, then what the
terminal shows. The test takes the commands typed after each prompt (`(Pdb) `, `>>> `, `Clear all breaks? `;
a bare prompt mid-session is Enter, `^D` closes stdin), runs the same command line in a fresh folder that
holds the article's own program files (its ```python file=NAME blocks, plus ```text file=NAME blocks the
session names with `with=NAME`), feeds the commands on stdin, writes each command back after its prompt
(piped input is not echoed) and compares the result with the article's text line by line.

Normalised: the run folder is shown as /path/to, tabs are expanded to 8 columns, the interpreter's standard library as /usr/lib/python3.X,
trailing spaces are dropped; a shown line `...` or `...（说明）` (after indentation) stands for one or more
lines the article leaves out, and `...` inside a line for text the article leaves out (an install path). The session ends where the article's text ends: after the last command the
output is taken up to the next prompt (or to the end of the process, as after `q`); a bare prompt as the
last line means the transcript shows that prompt too.

Sessions run under every CPython of tests/interpreters.VERSIONS the block's marker admits
(```console max=3.12, min=3.13, ...), with HOME set to an empty folder (no ~/.pdbrc), `-u` (so stdout and
stderr keep their order), PYTHONPATH and PYTHONBREAKPOINT removed.
"""
import difflib
import os
import re
import subprocess
import sysconfig
from pathlib import Path

import pytest

import interpreters
from kb.articles import code_blocks, load_article

ARTICLE = Path(__file__).resolve().parent.parent / "articles" / "python-pdb.md"
PROMPT = re.compile(r"\(Pdb\) |\(\(Pdb\)\) |\(com\) |>>> |Clear all breaks\? ")
BARE_PROMPTS = ("(Pdb)", "((Pdb))", "(com)", ">>>")
EOF_KEY = "^D"
SESSION_TIMEOUT_S = 30


def _sessions():
    blocks = code_blocks(load_article(ARTICLE))
    files = {b.file: b.code for b in blocks if b.file}
    sessions = [b for b in blocks if b.lang == "console"]
    return files, sessions


FILES, SESSIONS = _sessions()
RUNS = [(b, v) for b in SESSIONS for v in interpreters.VERSIONS if b.admits(v)]


def parse_session(text: str) -> tuple[list[str], list[str], list[str], bool]:
    """(argv after `python`, commands, shown lines after the `$` line, ends_with_bare_prompt)."""
    lines = [l.rstrip() for l in text.rstrip("\n").split("\n")]
    assert lines[0].startswith("$ python "), f"a session starts with '$ python ...', not {lines[0]!r}"
    argv = lines[0].split()[2:]
    shown = lines[1:]
    commands = []
    ends_bare = shown[-1] in BARE_PROMPTS
    for i, line in enumerate(shown):
        if line in BARE_PROMPTS:
            if i == len(shown) - 1:
                break
            commands.append("")
            continue
        m = PROMPT.match(line)
        if m:
            commands.append(line[m.end():])
    return argv, commands, shown, ends_bare


def replay(exe: str, argv: list[str], commands: list[str], ends_bare: bool, folder: Path, home: Path) -> str:
    """Run `exe -u argv` in `folder` with `commands` on stdin; the output with commands written back."""
    sent = commands[:commands.index(EOF_KEY)] if EOF_KEY in commands else commands
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(HOME=str(home), TERM="dumb")
    proc = subprocess.run([exe, "-u", *argv], cwd=folder, env=env, input="".join(c + "\n" for c in sent),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=SESSION_TIMEOUT_S)
    out = proc.stdout
    pieces, pos = [], 0
    for n, m in enumerate(PROMPT.finditer(out)):
        pieces.append(out[pos:m.end()])
        pos = m.end()
        if n < len(commands):
            command = commands[n]
            # ^D is not echoed by a terminal; the program itself ends the line.
            pieces.append(command if command == EOF_KEY else command + "\n")
            if command == EOF_KEY:
                continue
        else:
            if not ends_bare:
                pieces[-1] = pieces[-1][:-len(m.group())]
            return "".join(pieces)
    return "".join(pieces) + out[pos:]


def normalise(text: str, folder: Path, exe: str) -> list[str]:
    for d in {str(folder), os.path.realpath(folder)}:
        text = text.replace(d, "/path/to")
    stdlib = subprocess.run([exe, "-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    version = Path(stdlib).name
    text = text.replace(stdlib, f"/usr/lib/{version}")
    text = re.sub(r"0x[0-9a-f]{6,16}", "0x...", text)
    return [l.expandtabs(8).rstrip() for l in text.rstrip("\n").split("\n")]


def _is_gap(line: str) -> bool:
    return line.strip() == "..." or line.strip().startswith("...（")


def matches(shown: list[str], real: list[str]) -> bool:
    """Line-by-line equality. A shown line that is `...` or `...（说明）` stands for one or more real lines;
    any other `...` inside a shown line stands for any text within that line."""
    pattern = "".join("(?:[^\n]*\n)+?" if _is_gap(l) else
                      "[^\n]*".join(map(re.escape, l.split("..."))) + "\n" for l in shown)
    return re.fullmatch(pattern, "".join(l + "\n" for l in real)) is not None


def test_every_transcript_is_a_complete_session():
    assert len(SESSIONS) >= 17, f"expected the article's 17+ pdb sessions, found {len(SESSIONS)}"
    for block in SESSIONS:
        argv, commands, _shown, _bare = parse_session(block.code)
        assert commands, f"python-pdb.md:{block.line}: a session without commands"


@pytest.mark.parametrize("block,version", RUNS,
                         ids=[f"line{b.line}-py{interpreters.label(v)}" for b, v in RUNS])
def test_transcript_replays_in_real_pdb(block, version, tmp_path):
    exe = interpreters.find(version)
    if exe is None:
        pytest.skip(f"no Python {interpreters.label(version)} interpreter installed (pyenv or PATH)")
    argv, commands, shown, ends_bare = parse_session(block.code)
    folder, home = tmp_path / "run", tmp_path / "home"
    folder.mkdir()
    home.mkdir()
    extra = [o.split("=", 1)[1] for o in block.info.split() if o.startswith("with=")]
    for name, code in FILES.items():
        if name.endswith(".py") or name in extra:
            (folder / name).write_text(code + "\n", encoding="utf-8")
    real = normalise(replay(exe, argv, commands, ends_bare, folder, home), folder, exe)
    assert matches(shown, real), (
        f"python-pdb.md:{block.line} under Python {interpreters.label(version)} differs from real pdb:\n"
        + "\n".join(difflib.unified_diff(shown, real, "shown", "real", lineterm="")))
