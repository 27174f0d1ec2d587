"""demos.mutate: the catalogue applies where it says (never to checking code), the original tree is never
written, a survivor and a false alarm are reported as such, and the CI subset is all killed / all passing."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from demos import mutate
from demos.mutate import CatalogueError, Mutation
from demos.mutations import CATALOGUE
from demos.registry import DEMO_IDS

ROOT = Path(__file__).resolve().parent.parent
MINIMUM_BUGS = {"edm-sampling": 10, "sde-vs-ode": 10, "ddp-launch": 6, "pdb-transcript": 6}


def test_catalogue_is_complete_and_applies():
    keys = [m.key for m in CATALOGUE]
    assert len(keys) == len(set(keys)), "duplicate catalogue ids"
    for m in CATALOGUE:
        mutate.validate(m)  # raises CatalogueError with the entry's key
    for demo in DEMO_IDS:
        bugs = [m for m in CATALOGUE if m.demo == demo and m.kind == "bug"]
        benign = [m for m in CATALOGUE if m.demo == demo and m.kind == "benign"]
        assert len(bugs) >= MINIMUM_BUGS.get(demo, 3), f"{demo}: {len(bugs)} planted bugs"
        assert benign, f"{demo}: no benign variant"
        assert any(m.fast for m in CATALOGUE if m.demo == demo), f"{demo}: nothing in the CI subset"


def test_patches_never_touch_checking_code():
    for where in ("run", "_run", "main"):
        m = Mutation("x", "mro", "bug", "", "demos/mro.py", where, "report.check(", "print(")
        with pytest.raises(CatalogueError, match="checking code"):
            mutate.validate(m)
    harness = Mutation("x", "mro", "bug", "", "demos/harness.py", "Report.check", "passed = bool(passed)",
                       "passed = True")
    with pytest.raises(CatalogueError, match="checking machinery"):
        mutate.validate(harness)


def test_patch_must_lie_inside_its_function_exactly_once():
    outside = Mutation("x", "mro", "bug", "", "demos/mro.py", "dfs_order", "head in other[1:]", "True")
    with pytest.raises(CatalogueError, match="not found in dfs_order"):
        mutate.validate(outside)
    twice = Mutation("x", "mro", "bug", "", "demos/mro.py", "bfs_order", "queue", "q")
    with pytest.raises(CatalogueError, match="occurs 4 times in bfs_order"):
        mutate.validate(twice)
    source = (ROOT / "demos/mro.py").read_text(encoding="utf-8")
    renamed = mutate.apply_patch(source, Mutation("x", "mro", "benign", "", "demos/mro.py", "bfs_order",
                                                  "queue", "todo", rename=True))
    assert renamed.count("todo") == 4 and renamed.count("queue") == source.count("queue") - 4
    block = Mutation("x", "pdb-transcript", "bug", "", "articles/python-pdb.md", "utils.py",
                     "total += i * i", "total += i")
    patched = mutate.apply_patch((ROOT / block.file).read_text(encoding="utf-8"), block)
    assert "total += i\n" in patched


def test_survivor_and_false_alarm_are_reported(tmp_path):
    """A 'bug' that changes nothing observable survives; a benign entry that breaks a check is a false alarm."""
    before = (ROOT / "demos/mro.py").read_text(encoding="utf-8")
    survivor = Mutation("noop", "mro", "bug", "rename only", "demos/mro.py", "merge", "seqs", "pending",
                        rename=True)
    alarm = Mutation("alarm", "mro", "benign", "breaks C3", "demos/mro.py", "merge", "head in other[1:]",
                     "head in other[2:]")
    outcomes = [mutate.run_one(survivor, timeout_s=60), mutate.run_one(alarm, timeout_s=60)]
    assert [o.verdict for o in outcomes] == ["SURVIVED", "FALSE-ALARM"], outcomes
    assert (ROOT / "demos/mro.py").read_text(encoding="utf-8") == before, "the original tree was written to"
    rows = mutate.summarize(outcomes)
    assert rows == [{"demo": "mro", "bugs": 1, "killed": 0, "kill_rate": 0.0, "survivors": ["mro/noop"],
                     "benign": 1, "false_alarms": 1, "catalogue_errors": 0, "timeouts": 0,
                     "seconds": rows[0]["seconds"]}]


@pytest.mark.timeout(600)
def test_fast_subset_all_killed_no_false_alarm():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "demos.mutate", "--fast", "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=580)
    report = json.loads(proc.stdout)
    bad = [(o["key"], o["verdict"], o["failed_checks"], o["error"]) for o in report["outcomes"]
           if o["verdict"] not in ("killed", "ok")]
    assert bad == [] and proc.returncode == 0, bad
    fast = [m for m in CATALOGUE if m.fast]
    assert report["total"]["bugs"] == sum(m.kind == "bug" for m in fast) == report["total"]["killed"]
    assert report["total"]["false_alarms"] == 0 and report["total"]["benign"] >= 1
    killed_by_check = [o for o in report["outcomes"] if o["verdict"] == "killed" and o["failed_checks"]]
    assert len(killed_by_check) == report["total"]["bugs"], "every fast bug must fail a named check, not crash"
