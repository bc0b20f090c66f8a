"""Run a Python script as `python SCRIPT ARGS` would, in a fork of the test process instead of a new interpreter.

A new interpreter spends ~2.5 s importing torch before a benchmark script reaches its argument checks; the fork has
it imported already (~0.1 s). The script runs as __main__ with its own argv, working directory, sys.path[0] and file
descriptors 1 and 2, and the child leaves with os._exit, so nothing of it reaches the test process: what comes back
is the exit status and what it wrote, as from subprocess.run. Only for scripts that stop early (argument errors):
a script that runs torch's thread pools or stays long belongs in a subprocess."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_script(script: str | Path, args=(), cwd=None, timeout: float = 120) -> subprocess.CompletedProcess:
    script = str(Path(script).resolve())
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the test process
            code = 1
            try:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                sys.stdout = open(1, "w", closefd=False)
                sys.stderr = open(2, "w", closefd=False)
                if cwd is not None:
                    os.chdir(cwd)
                sys.argv = [script, *map(str, args)]
                sys.path.insert(0, os.path.dirname(script))
                import runpy

                try:
                    runpy.run_path(script, run_name="__main__")
                    code = 0
                except SystemExit as e:
                    if e.code is None:
                        code = 0
                    elif isinstance(e.code, int):
                        code = e.code
                    else:
                        print(e.code, file=sys.stderr)
                        code = 1
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code & 0xFF)
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise subprocess.TimeoutExpired([script, *args], timeout)
            time.sleep(0.01)
        rc = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess([script, *args], rc, out.read().decode(errors="replace"),
                                           err.read().decode(errors="replace"))
