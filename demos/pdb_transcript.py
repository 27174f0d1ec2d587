"""pdb-transcript: scripted pdb sessions over the example program of the article python-pdb.md.

What it does: extracts `utils.py`, `pdb_demo.py` and `buggy.py` from the article's ```` ```python file=NAME ````
blocks (one program: the article's, never a copy kept here), writes them into a fresh folder and drives pdb
there with commands on stdin, in four sessions:

- break-in-add     `python -m pdb pdb_demo.py`, a breakpoint on add's first line, `a`, `p`, `w`, `u`;
- conditional      a conditional breakpoint in sum_squares' loop (`b utils.py:N, i == 3`), `condition`, `cl`;
- in-code          a copy of pdb_demo.py with `breakpoint()` inserted before `totals = []`, run as a script;
- post-mortem      `python -m pdb buggy.py`, `c` into the uncaught ZeroDivisionError, `p`, `w`, `u`.

Since piped commands are not echoed, each command is written back after its `(Pdb) ` prompt, so the
transcript (an artifact, also logged line by line) reads like a terminal session. The run folder's path
is replaced by `/path/to`, as in the article.

Checks: the values pdb prints at each stop equal the EXPECTED table (read off the article's program); the
table equals what a plain, debugger-free run of the program computes (`plain_run_values`, a line tracer); the
frames listed by `w` come in the expected order at the expected lines (found by marker text in the extracted
source, never hard-coded); no `***` error line in pdb's output.

Isolation: pdb reads ~/.pdbrc and ./.pdbrc. Every session runs with HOME set to an empty folder, in a fresh
folder holding only the program, under `python -E` (PYTHONBREAKPOINT and the other PYTHON* variables are
ignored, so `breakpoint()` means pdb.set_trace).

Variant `changed-program` (planted bug): add's body becomes `result = a + b + 1` before pdb runs, so pdb sees
values the table does not list and the value checks fail.

What it does not know: pdb's exact wording in other Python versions beyond the lines it parses (prompts,
`> file(line)func()` frame lines, `***` errors). Typical duration: about 1 s.

    python -m demos.pdb_transcript --out /tmp/pdb-run
"""
from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

from demos.harness import Report, main_for
from demos.spec import DemoSpec, Param

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTICLE = REPO_ROOT / "articles" / "python-pdb.md"
PROGRAM_FILES = ("utils.py", "pdb_demo.py", "buggy.py")
BREAKPOINT_COPY = "pdb_demo_breakpoint.py"
SHOWN_DIR = "/path/to"
PROMPT = "(Pdb) "
SESSION_TIMEOUT_S = 30
# changed-program: an off-by-one planted in utils.add.
MUTATION = ("result = a + b", "result = a + b + 1")

SPEC = DemoSpec(
    id="pdb-transcript",
    title="pdb 调试会话记录",
    summary="用脚本驱动 pdb 调试文章中的示例程序：代码内断点、python -m pdb、条件断点与事后调试，逐行校验所见的值与调用栈",
    articles=("python-pdb",),
    module="demos.pdb_transcript",
    params=(
        Param("variant", str, "none", "植入的错误", choices=("none", "changed-program"), advanced=True),
    ),
    device="cpu",
    processes=1,
    timeout_s=60.0,
    tags=("python", "debugging"),
)

# What pdb must print at each stop, read off the article's program (articles/python-pdb.md). A plain run
# recomputes every entry (plain_run_values); tests/test_pdb_transcript.py keeps article and table in step.
EXPECTED = {
    "add.args": "a = 3\nb = 4",           # `a` on add's first body line, first call add(x, y)
    "add.sum": "7",                       # `p a + b` there
    "add.result": "7",                    # `p result` one `n` later
    "main.xy": "(3, 4)",                  # `p x, y` one frame up, in main
    "loop.i3": "(3, 5)",                  # `p i, total` on sum_squares' loop body when i == 3
    "loop.i5": "(5, 30)",                 # ... when i == 5
    "main.locals": "(3, 4, 7, 55)",       # `p x, y, s, sq` at breakpoint() before `totals = []`
    "stdout": "s = 7\nsq = 55\ntotals = [7, 8, 9, 10]",   # pdb_demo.py's own output
    "pm.stdout": "a 2.0",                 # buggy.py's output before it fails
    "pm.error": "ZeroDivisionError: division by zero",
    "pm.values": "[]",                    # `p values` in average's frame, post mortem
    "pm.len": "0",                        # `p len(values)`
    "pm.name": "'b'",                     # `p name` one frame up, in report
}


class ProgramError(Exception):
    """The article's program is missing, or lacks a line this demo steers by."""


def line_of(source: str, marker: str, name: str) -> int:
    """1-based number of the one line of `source` containing `marker` (stripped line == marker if it ends in '()')."""
    hits = [i for i, line in enumerate(source.split("\n"), start=1)
            if (line.strip() == marker if marker.endswith("()") else marker in line)]
    if len(hits) != 1:
        raise ProgramError(f"{name}: expected exactly one line with {marker!r}, found {len(hits)}; "
                           f"the article's program changed, update demos/pdb_transcript.py")
    return hits[0]


def extract_program(article_path: Path = ARTICLE) -> dict[str, str]:
    """{file name: source} from the article's ```python file=NAME blocks."""
    from kb.articles import code_blocks, load_article

    if not Path(article_path).exists():
        raise ProgramError(f"{article_path} does not exist: the demo runs the program listed in that article")
    files = {b.file: b.code.rstrip("\n") + "\n" for b in code_blocks(load_article(article_path)) if b.file}
    missing = [f for f in PROGRAM_FILES if f not in files]
    if missing:
        raise ProgramError(f"{article_path} has no ```python file=NAME block for {', '.join(missing)}")
    return {f: files[f] for f in PROGRAM_FILES}


def mutate(files: dict[str, str]) -> dict[str, str]:
    old, new = MUTATION
    line_of(files["utils.py"], old, "utils.py")
    return {**files, "utils.py": files["utils.py"].replace(old, new)}


def with_breakpoint(source: str) -> str:
    """pdb_demo.py with `breakpoint()` on its own line just before `totals = []`, same indentation."""
    lines = source.split("\n")
    at = line_of(source, "totals = []", "pdb_demo.py") - 1
    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    return "\n".join(lines[:at] + [indent + "breakpoint()"] + lines[at:])


@dataclass(frozen=True)
class Expect:
    step: int                  # index into the session's commands whose output is checked
    key: str                   # EXPECTED key
    mode: str = "exact"        # "exact": output == value; "lines": value's lines appear in order in the output


@dataclass(frozen=True)
class Frame:
    file: str                  # base name
    line: int
    func: str


@dataclass
class Session:
    name: str
    argv: list[str]            # after `python -E -B -u`
    commands: list[str]
    expects: list[Expect]
    frames: dict[int, list[Frame]] = field(default_factory=dict)   # step of a `w` -> program frames, outer first
    outputs: list[str] = field(default_factory=list)                # [before first prompt, after command 0, ...]
    returncode: int | None = None

    def output(self, step: int) -> str | None:
        return self.outputs[step + 1] if step + 1 < len(self.outputs) else None


def build_sessions(files: dict[str, str]) -> list[Session]:
    """The four scripted sessions; every line number comes from a marker in the extracted source."""
    u, d, b = files["utils.py"], files["pdb_demo.py"], files["buggy.py"]
    bp = with_breakpoint(d)
    add_line, loop_line = line_of(u, "result = a + b", "utils.py"), line_of(u, "total += i * i", "utils.py")
    call_main, call_add = line_of(d, "main()", "pdb_demo.py"), line_of(d, "s = add(x, y)", "pdb_demo.py")
    return [
        Session("break-in-add", ["-m", "pdb", "pdb_demo.py"],
                [f"b utils.py:{add_line}", "c", "a", "p a + b", "w", "n", "p result", "u", "p x, y", "q"],
                [Expect(2, "add.args"), Expect(3, "add.sum"), Expect(6, "add.result"), Expect(8, "main.xy")],
                {4: [Frame("pdb_demo.py", call_main, "<module>"), Frame("pdb_demo.py", call_add, "main"),
                     Frame("utils.py", add_line, "add")]}),
        Session("conditional", ["-m", "pdb", "pdb_demo.py"],
                [f"b utils.py:{loop_line}, i == 3", "c", "p i, total", "condition 1 i == 5", "c", "p i, total",
                 "cl 1", "c", "q"],
                [Expect(2, "loop.i3"), Expect(5, "loop.i5"), Expect(7, "stdout", "lines")]),
        Session("in-code", [BREAKPOINT_COPY],
                ["p x, y, s, sq", "w", "c"],
                [Expect(0, "main.locals"), Expect(2, "stdout")],
                {1: [Frame(BREAKPOINT_COPY, line_of(bp, "main()", BREAKPOINT_COPY), "<module>"),
                     Frame(BREAKPOINT_COPY, line_of(bp, "totals = []", BREAKPOINT_COPY), "main")]}),
        Session("post-mortem", ["-m", "pdb", "buggy.py"],
                ["c", "p values", "p len(values)", "w", "u", "p name", "q"],
                [Expect(0, "pm.stdout", "lines"), Expect(0, "pm.error", "lines"), Expect(1, "pm.values"),
                 Expect(2, "pm.len"), Expect(5, "pm.name")],
                {3: [Frame("buggy.py", line_of(b, 'report({"a"', "buggy.py"), "<module>"),
                     Frame("buggy.py", line_of(b, "print(name, average(values))", "buggy.py"), "report"),
                     Frame("buggy.py", line_of(b, "return total / len(values)", "buggy.py"), "average")]}),
    ]


def isolated_env(home: Path) -> dict[str, str]:
    """The caller's environment minus everything that steers Python or pdb, with HOME at an empty folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(HOME=str(home), LC_ALL="C.UTF-8")
    return env


def run_session(session: Session, workdir: Path, home: Path) -> Session:
    """Drive one pdb session; its output is split at each prompt, the run folder shown as /path/to."""
    proc = subprocess.run([sys.executable, "-E", "-B", "-u", *session.argv], cwd=workdir, env=isolated_env(home),
                          input="\n".join(session.commands) + "\n", stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=SESSION_TIMEOUT_S)
    out = proc.stdout
    for d in {str(workdir), os.path.realpath(workdir)}:
        out = out.replace(d, SHOWN_DIR)
    session.outputs = out.split(PROMPT)
    session.returncode = proc.returncode
    return session


def transcript(session: Session) -> str:
    """The session as a terminal shows it: each command echoed after its prompt; extra prompts read EOF."""
    text = f"$ python {' '.join(session.argv)}\n" + session.outputs[0]
    for i, piece in enumerate(session.outputs[1:]):
        cmd = session.commands[i] if i < len(session.commands) else "<EOF>"
        text += PROMPT + cmd + "\n" + piece.lstrip("\n")
    return text.rstrip("\n") + "\n"


_FRAME = re.compile(r"^(?P<cur>[> ]) (?P<path>\S+?)\((?P<line>\d+)\)(?P<func>[^()\s]+)\(\)")


def parse_frames(where_output: str, program_files: set[str]) -> tuple[list[Frame], Frame | None]:
    """Frames of the program in a `w` listing (outer first; pdb's and runpy's own are dropped), and the current one."""
    frames, current = [], None
    for line in where_output.split("\n"):
        m = _FRAME.match(line)
        if not m:
            continue
        frame = Frame(Path(m["path"]).name, int(m["line"]), m["func"])
        if m["path"].startswith(SHOWN_DIR + "/") and frame.file in program_files:
            frames.append(frame)
            if m["cur"] == ">":
                current = frame
    return frames, current


def frame_order(sessions: list[Session], program_files: set[str]) -> tuple[bool, list[str]]:
    """Every `w` listing shows the expected program frames, outer first, the last one current."""
    def fmt(frames):
        return " → ".join(f"{f.file}:{f.line} {f.func}" for f in frames) or "none"

    rows, all_ok = [], True
    for s in sessions:
        for step, want in s.frames.items():
            got, current = parse_frames(s.output(step) or "", program_files)
            ok = got == want and current == want[-1]
            all_ok &= ok
            rows.append(f"{s.name}: {fmt(got)}" + ("" if ok else
                        f" (expected {fmt(want)}, current {fmt([current] if current else [])})"))
    return bool(rows) and all_ok, rows


def matches(output: str | None, expected: str, mode: str) -> bool:
    if output is None:
        return False
    got = output.strip("\n").split("\n")
    if mode == "exact":
        return got == expected.split("\n")
    it = iter(got)
    return all(any(line == want for line in it) for want in expected.split("\n"))


def plain_run_values(program_dir: Path) -> dict[str, str]:
    """EXPECTED's keys, computed by running the program without pdb under a line tracer (sys.settrace)."""
    import runpy

    u = (program_dir / "utils.py").read_text()
    d = (program_dir / "pdb_demo.py").read_text()
    b = (program_dir / "buggy.py").read_text()
    stops = {("utils.py", line_of(u, "result = a + b", "utils.py")): "add",
             ("utils.py", line_of(u, "return result", "utils.py")): "add.return",
             ("utils.py", line_of(u, "total += i * i", "utils.py")): "loop",
             ("pdb_demo.py", line_of(d, "totals = []", "pdb_demo.py")): "main"}
    seen: dict[str, object] = {}

    def tracer(frame, event, arg):
        if event == "line":
            where = stops.get((Path(frame.f_code.co_filename).name, frame.f_lineno))
            loc = frame.f_locals
            if where == "add" and "add.args" not in seen:
                seen["add.args"] = f"a = {loc['a']!r}\nb = {loc['b']!r}"
                seen["add.sum"] = repr(loc["a"] + loc["b"])
                seen["main.xy"] = repr((frame.f_back.f_locals["x"], frame.f_back.f_locals["y"]))
            elif where == "add.return" and "add.result" not in seen:
                seen["add.result"] = repr(loc["result"])
            elif where == "loop" and loc["i"] in (3, 5):
                seen[f"loop.i{loc['i']}"] = repr((loc["i"], loc["total"]))
            elif where == "main":
                seen["main.locals"] = repr((loc["x"], loc["y"], loc["s"], loc["sq"]))
        return tracer

    saved_path, saved_utils = list(sys.path), sys.modules.pop("utils", None)
    sys.path.insert(0, str(program_dir))
    try:
        out = io.StringIO()
        previous = sys.gettrace()  # a coverage tool's tracer, say: put it back afterwards
        sys.settrace(tracer)
        try:
            with redirect_stdout(out):
                runpy.run_path(str(program_dir / "pdb_demo.py"), run_name="__main__")
        finally:
            sys.settrace(previous)
        seen["stdout"] = out.getvalue().rstrip("\n")
        out = io.StringIO()
        try:
            with redirect_stdout(out):
                runpy.run_path(str(program_dir / "buggy.py"), run_name="__main__")
        except Exception as exc:  # the failure is what post-mortem debugging looks at
            tb = exc.__traceback__
            while tb.tb_next:
                tb = tb.tb_next
            seen["pm.error"] = f"{type(exc).__name__}: {exc}"
            seen["pm.values"] = repr(tb.tb_frame.f_locals["values"])
            seen["pm.len"] = repr(len(tb.tb_frame.f_locals["values"]))
            seen["pm.name"] = repr(tb.tb_frame.f_back.f_locals["name"])
        seen["pm.stdout"] = out.getvalue().rstrip("\n")
    finally:
        sys.path[:] = saved_path
        sys.modules.pop("utils", None)
        if saved_utils is not None:
            sys.modules["utils"] = saved_utils
    return {k: seen.get(k, "<never reached>") for k in EXPECTED}


def prepare(folder: Path, files: dict[str, str]) -> tuple[Path, Path]:
    """A fresh work folder holding only the program (plus the breakpoint() copy) and an empty HOME."""
    work, home = folder / "pdb-work", folder / "pdb-home"
    for d in (work, home):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    for name, source in files.items():
        (work / name).write_text(source, encoding="utf-8")
    (work / BREAKPOINT_COPY).write_text(with_breakpoint(files["pdb_demo.py"]), encoding="utf-8")
    return work, home


def run(report: Report, variant: str = "none") -> None:
    files = extract_program()
    report.log(f"extracted {', '.join(files)} from {ARTICLE.relative_to(REPO_ROOT)}")
    if variant == "changed-program":
        files = mutate(files)
        report.log(f"variant changed-program: utils.py now has {MUTATION[1]!r}")
    work, home = prepare(report.out, files)
    report.device = "cpu"

    sessions = [run_session(s, work, home) for s in build_sessions(files)]
    path = report.artifact("pdb_transcript.txt")
    with open(path, "w", encoding="utf-8") as fh:
        for s in sessions:
            text = f"=== session {s.name} (exit code {s.returncode})\n" + transcript(s)
            fh.write(text + "\n")
            for line in text.rstrip("\n").split("\n"):
                report.log(line)

    for s in sessions:
        rows = []
        for e in s.expects:
            got = s.output(e.step)
            ok = matches(got, EXPECTED[e.key], e.mode)
            want = EXPECTED[e.key].replace("\n", "⏎")
            if got is None:
                shown = "<never answered>"
            elif e.mode == "lines" and ok:
                shown = f"… {want} …"
            else:
                shown = got.strip("\n").replace("\n", "⏎")[:120]
            rows.append((ok, f"{s.commands[e.step]!r} → {shown}" + ("" if ok else f" (expected {want})")))
        report.check(f"values_{s.name}", all(ok for ok, _ in rows), "; ".join(r for _, r in rows)
                     + " (oracle: the EXPECTED table, read off the article's program)")

    ok, rows = frame_order(sessions, set(files) | {BREAKPOINT_COPY})
    report.check("frame_order", ok, "; ".join(rows) + " (oracle: frame lines found by marker text in the "
                 "extracted source)")

    errors = [f"{s.name}: {line.strip()}" for s in sessions for piece in s.outputs for line in piece.split("\n")
              if line.lstrip().startswith("***")]
    unanswered = [f"{s.name}: {len(s.commands) - (len(s.outputs) - 1)} command(s) never read"
                  for s in sessions if len(s.outputs) - 1 < len(s.commands)]
    report.check("no_pdb_errors", not errors and not unanswered,
                 ("; ".join(errors + unanswered) or f"no *** line, every command answered, in {len(sessions)} sessions")
                 + " (oracle: pdb marks every error with ***; one prompt per command)")

    plain = plain_run_values(work)
    diff = [f"{k}: plain run {plain[k]!r}, table {v!r}" for k, v in EXPECTED.items() if plain[k] != v]
    report.check("table_matches_plain_run", not diff,
                 ("; ".join(diff) or f"all {len(EXPECTED)} expected values recomputed without pdb")
                 + " (oracle: a debugger-free run of the program under a sys.settrace line tracer)")
    report.metric("sessions", len(sessions))
    report.metric("commands", sum(len(s.commands) for s in sessions))
    report.metric("values_checked", sum(len(s.expects) for s in sessions))


def main(argv=None):
    raise SystemExit(main_for(SPEC, run, argv))


if __name__ == "__main__":
    main()
