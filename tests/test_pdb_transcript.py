"""pdb-transcript: scripted pdb over the article's program; exact values, frame order, .pdbrc isolation."""
import subprocess
import sys

import pytest

from demos import pdb_transcript as pt
from demos import registry
from demos.harness import Report

CHECKS = ["values_break-in-add", "values_conditional", "values_in-code", "values_post-mortem", "frame_order",
          "no_pdb_errors", "table_matches_plain_run"]


def _run(out, **params) -> Report:
    report = Report(out, quiet=True)
    pt.run(report, **params)
    return report


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    report = _run(tmp_path_factory.mktemp("clean"))
    return report, (report.out / "pdb_transcript.txt").read_text(encoding="utf-8")


def test_spec_registered():
    spec = registry.get("pdb-transcript")
    assert spec is pt.SPEC
    assert spec.validate({}) == {"variant": "none"}
    assert spec.param("variant").choices == ("none", "changed-program") and spec.param("variant").advanced


def test_article_program_matches_expectations(tmp_path):
    """The expectation table agrees with the article's program run WITHOUT pdb (a plain, traced run)."""
    files = pt.extract_program()
    assert sorted(files) == sorted(pt.PROGRAM_FILES)
    for name, source in files.items():
        (tmp_path / name).write_text(source)
    assert pt.plain_run_values(tmp_path) == pt.EXPECTED
    assert "utils" not in sys.modules or "sum_squares" not in vars(sys.modules["utils"]), \
        "the plain run must not leave the program's utils module behind"


def test_default_run_passes_with_exact_values(clean):
    report, text = clean
    assert [(c.name, c.passed) for c in report.checks] == [(n, True) for n in CHECKS], report.checks
    assert report.metrics == {"sessions": 4, "commands": 29, "values_checked": 14}
    # Exact excerpts of the transcript: command echoed after the prompt, pdb's answer on the next line(s).
    for excerpt in ["(Pdb) b utils.py:2\nBreakpoint 1 at /path/to/utils.py:2\n",
                    "(Pdb) a\na = 3\nb = 4\n(Pdb) p a + b\n7\n",
                    "(Pdb) p i, total\n(3, 5)\n(Pdb) condition 1 i == 5\nNew condition set for breakpoint 1.\n",
                    "(Pdb) p i, total\n(5, 30)\n",
                    "$ python pdb_demo_breakpoint.py\n> /path/to/pdb_demo_breakpoint.py(10)main()\n-> totals = []\n"
                    "(Pdb) p x, y, s, sq\n(3, 4, 7, 55)\n",
                    "ZeroDivisionError: division by zero\nUncaught exception. Entering post mortem debugging\n",
                    "(Pdb) p values\n[]\n(Pdb) p len(values)\n0\n",
                    "(Pdb) u\n> /path/to/buggy.py(8)report()\n-> print(name, average(values))\n(Pdb) p name\n'b'\n"]:
        assert excerpt in text, excerpt
    assert str(report.out) not in text, "the run folder is shown as /path/to"
    assert [line for line in text.split("\n") if line.startswith("=== session")] == [
        "=== session break-in-add (exit code 0)", "=== session conditional (exit code 0)",
        "=== session in-code (exit code 0)", "=== session post-mortem (exit code 0)"]


def test_changed_program_fails_the_value_checks(tmp_path):
    report = _run(tmp_path, variant="changed-program")
    assert report.failed_checks() == ["values_break-in-add", "values_conditional", "values_in-code",
                                      "table_matches_plain_run"]
    detail = {c.name: c.detail for c in report.checks}
    assert "'p result' → 8 (expected 7)" in detail["values_break-in-add"]
    assert "'p x, y, s, sq' → (3, 4, 8, 55) (expected (3, 4, 7, 55))" in detail["values_in-code"]
    assert "result = a + b + 1" in (tmp_path / "pdb-work" / "utils.py").read_text()


HOSTILE_PDBRC = "alias p print('hijacked')\nb utils.py:3\nc\nq\n"


def test_hostile_pdbrc_and_environment_change_nothing(clean, tmp_path, monkeypatch):
    _, clean_text = clean
    home, out = tmp_path / "home", tmp_path / "run"
    home.mkdir()
    out.mkdir()
    (home / ".pdbrc").write_text(HOSTILE_PDBRC)
    (out / ".pdbrc").write_text(HOSTILE_PDBRC)
    (out / "pdb-work").mkdir()
    (out / "pdb-work" / ".pdbrc").write_text(HOSTILE_PDBRC)  # left over in the work folder: must be wiped
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PYTHONBREAKPOINT", "0")  # would make breakpoint() a no-op
    monkeypatch.chdir(out)  # the runner's way: cwd is the run folder, --out .
    report = _run(out)
    assert report.failed_checks() == []
    assert (out / "pdb_transcript.txt").read_text(encoding="utf-8") == clean_text


@pytest.mark.parametrize("where", ["cwd", "home"])
def test_hostile_pdbrc_does_bite_where_pdb_looks(tmp_path, where):
    """Control for the test above: the same .pdbrc in pdb's cwd or HOME does take over a session."""
    files = pt.extract_program()
    work, home = pt.prepare(tmp_path, files)
    (work if where == "cwd" else home).joinpath(".pdbrc").write_text(HOSTILE_PDBRC)
    session = pt.run_session(pt.build_sessions(files)[0], work, home)
    assert session.outputs == ["Breakpoint 1 at /path/to/utils.py:3\n"], \
        "the rc file's `c` and `q` ran before any scripted command was read"


def _where(session_name: str, listing: str) -> pt.Session:
    s = pt.Session(session_name, [], ["w"], [],
                   {0: [pt.Frame("pdb_demo.py", 18, "<module>"), pt.Frame("pdb_demo.py", 7, "main"),
                        pt.Frame("utils.py", 2, "add")]})
    s.outputs = ["", listing]
    return s


def test_frame_order_check_accepts_the_right_order_and_rejects_others():
    right = ("  /usr/lib/python3.11/bdb.py(600)run()\n-> exec(cmd, globals, locals)\n  <string>(1)<module>()\n"
             "  /path/to/pdb_demo.py(18)<module>()\n-> main()\n  /path/to/pdb_demo.py(7)main()\n-> s = add(x, y)\n"
             "> /path/to/utils.py(2)add()\n-> result = a + b\n")
    files = {"pdb_demo.py", "utils.py"}
    assert pt.frame_order([_where("ok", right)], files) == (
        True, ["ok: pdb_demo.py:18 <module> → pdb_demo.py:7 main → utils.py:2 add"])
    # Current frame moved up with `u`: same frames, but '>' on main.
    moved = right.replace("  /path/to/pdb_demo.py(7)", "> /path/to/pdb_demo.py(7)").replace("> /path/to/utils", "  /path/to/utils")
    assert pt.frame_order([_where("up", moved)], files)[0] is False
    swapped = ("  /path/to/pdb_demo.py(7)main()\n  /path/to/pdb_demo.py(18)<module>()\n> /path/to/utils.py(2)add()\n")
    ok, rows = pt.frame_order([_where("swapped", swapped)], files)
    assert ok is False and "expected pdb_demo.py:18 <module> → pdb_demo.py:7 main → utils.py:2 add" in rows[0]
    assert pt.frame_order([_where("none", "(no listing)")], files)[0] is False


def test_matches_modes():
    assert pt.matches("7\n", "7", "exact")
    assert not pt.matches("7\n8\n", "7", "exact")
    assert pt.matches("a\nx\nb\nc\n", "a\nb", "lines")
    assert not pt.matches("b\na\n", "a\nb", "lines"), "lines must appear in order"
    assert not pt.matches(None, "7", "exact")


def test_markers_are_found_or_refused_clearly(tmp_path):
    source = "def f():\n    x = 1\n    return x\n"
    assert pt.line_of(source, "return x", "f.py") == 3
    with pytest.raises(pt.ProgramError, match=r"f.py: expected exactly one line with 'y = 2', found 0"):
        pt.line_of(source, "y = 2", "f.py")
    with pytest.raises(pt.ProgramError, match="does not exist"):
        pt.extract_program(tmp_path / "python-pdb.md")


def test_command_line_writes_result(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "demos.pdb_transcript", "--out", str(tmp_path), "--json"],
                          capture_output=True, text=True, timeout=60, cwd=pt.REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    assert '"passed": true' in (tmp_path / "result.json").read_text()
    assert "(Pdb) p i, total" in proc.stdout, "transcript lines are streamed on stdout"
