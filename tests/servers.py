"""Real servers for the scale-out tests, one of each per pytest session: PostgreSQL 16 + pgvector from the
`pgserver` wheel (started in a temporary folder, reached over its Unix socket) and Debian's `redis-server`
on a free loopback port. Both are stopped at the end of the session. Where either is missing, the tests
that need it are skipped with the reason; .ci/run installs both so they run in CI.

Not a test module: conftest.py imports the fixtures from here.
"""
from __future__ import annotations

import itertools
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from kb.load_bench import stop_server

_db_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """(server, admin URL) of a PostgreSQL 16 with pgvector, for the whole session."""
    try:
        import pgserver
        import psycopg  # noqa: F401
        import pgvector  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"PostgreSQL tests need pgserver, psycopg and pgvector ({exc}); `make install` installs them")
    # Its own short folder, not pytest's: the Unix socket path must stay under ~100 bytes, and pytest's
    # numbered temporary folders can be cleaned by another pytest process of the same user mid-session.
    folder = Path(tempfile.mkdtemp(prefix="kb-test-pg-"))
    try:
        server = pgserver.get_server(folder, cleanup_mode="stop")
    except Exception as exc:  # no initdb for this platform, no shared memory, ...
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"pgserver cannot start PostgreSQL here: {type(exc).__name__}: {exc}")
    yield server, server.get_uri()
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server):
    """The URL of a fresh, empty database on the session's server (one per test)."""
    import psycopg
    server, admin = pg_server
    name = f"kb_test_{next(_db_numbers)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return admin.replace("/postgres?", f"/{name}?")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """redis://127.0.0.1:PORT/0 of a redis-server started for this session (no persistence)."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run does)")
    try:
        import celery  # noqa: F401
        import redis
    except ImportError as exc:
        pytest.skip(f"the Celery tests need celery and redis ({exc})")
    folder = tmp_path_factory.mktemp("redis")
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(folder), "--protected-mode", "yes"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    deadline = time.monotonic() + 15
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.skip(f"redis-server did not start on port {port}")
            time.sleep(0.05)
    client.close()
    yield url
    stop_server(proc, timeout_s=10)
