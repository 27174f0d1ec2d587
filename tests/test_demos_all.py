"""Every demo in the registry, run the way a user runs it (`python -m demos run <id> --json`), passes
on this CPU machine in its default configuration; the catalogue lists exactly the registry's ids."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from demos.registry import DEMO_IDS

ROOT = Path(__file__).resolve().parent.parent


def demos_cli(*args, timeout):
    return subprocess.run([sys.executable, "-m", "demos", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_list_json_is_the_registry():
    proc = demos_cli("list", "--json", timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["id"] for r in rows] == list(DEMO_IDS)
    for row in rows:
        assert row["device"] in ("cpu", "cuda-preferred") and row["timeout_s"] > 0 and row["articles"], row


@pytest.mark.slow
@pytest.mark.parametrize("demo_id", DEMO_IDS)
def test_demo_passes_by_default(demo_id, tmp_path):
    proc = demos_cli("run", demo_id, "--json", "--runs-dir", str(tmp_path), timeout=900)
    assert proc.returncode == 0, f"{demo_id} did not pass:\n{proc.stderr[-4000:]}"
    result = json.loads(proc.stdout)
    assert result["demo"] == demo_id and result["passed"] is True
    assert result["checks"] and all(c["passed"] for c in result["checks"]), result["checks"]
    run_dir = next(tmp_path.iterdir())
    for name in result["artifacts"]:
        assert (run_dir / name).is_file() and (run_dir / name).stat().st_size > 0, f"artifact {name} missing"
