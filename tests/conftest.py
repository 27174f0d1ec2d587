import os
import sys
from pathlib import Path

import pytest

# Nothing in the suite may reach for the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ROOT = Path(__file__).resolve().parent.parent
ARTICLES = ROOT / "articles"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True)
def _isolated_kb_home(tmp_path, monkeypatch):
    """Every test gets its own KB_HOME so no test touches the user's index."""
    monkeypatch.setenv("KB_HOME", str(tmp_path / "kb-home"))


# The real PostgreSQL (pgserver) and Redis servers of the scale-out tests (tests/servers.py).
from servers import pg_server, pg_url, redis_url  # noqa: E402,F401
