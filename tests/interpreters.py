"""The CPython interpreters that version-dependent article blocks and pdb transcripts are checked under.

The project's own interpreter counts for its version; other versions are looked up as pyenv installs
(~/.pyenv/versions/3.X.*/bin/python3.X, newest first), then as uv-managed ones (`uv python install 3.12 3.13`:
~/.local/share/uv/python/cpython-3.X.*/bin/python3.X), then as `python3.X` on PATH. Each candidate is
asked for its version before it is used, so a pyenv shim that is not configured is not mistaken for one.
A version with no interpreter is reported as missing; the tests then skip it and name it.
"""
from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
import sys

VERSIONS = ((3, 11), (3, 12), (3, 13))


def label(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


@functools.lru_cache(maxsize=None)
def find(version: tuple[int, int]) -> str | None:
    """Path of a CPython `version` (major, minor) interpreter, or None."""
    if sys.version_info[:2] == tuple(version):
        return sys.executable
    v = label(version)
    candidates = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{v}.*/bin/python{v}")), reverse=True)
    candidates += sorted(glob.glob(os.path.expanduser(f"~/.local/share/uv/python/cpython-{v}.*/bin/python{v}")),
                         reverse=True)
    on_path = shutil.which(f"python{v}")
    if on_path:
        candidates.append(on_path)
    for exe in candidates:
        try:
            out = subprocess.run([exe, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                                 text=True, timeout=30, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip() == str(tuple(version)):
            return exe
    return None
