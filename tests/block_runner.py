"""Runs article code blocks, each in its own forked process, from one parent that imported torch once.

Usage (the article test starts it): python block_runner.py MODULE... ; then one script path per line on
stdin. For each script the runner forks; the child runs the script as `__main__` (runpy, so
multiprocessing's spawn finds it) with stdout/stderr sent to SCRIPT.out / SCRIPT.err, and exits with the
script's status (1 and a traceback on an exception). The parent writes the status on a line of stdout.
Only the import is shared: no block sees another block's state, as with a fresh interpreter, and the
parent runs no torch operation before forking (no thread pool to inherit).
"""
import importlib
import os
import runpy
import sys
import traceback


def run_child(script: str) -> int:
    out = os.open(script + ".out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    err = os.open(script + ".err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(out, 1)
    os.dup2(err, 2)
    sys.argv = [script]
    sys.path[0] = os.path.dirname(script)
    try:
        runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def main() -> None:
    for name in sys.argv[1:]:
        importlib.import_module(name)
    for line in sys.stdin:
        script = line.strip()
        if not script:
            continue
        pid = os.fork()
        if pid == 0:
            os._exit(run_child(script))
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)


if __name__ == "__main__":
    main()
