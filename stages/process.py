"""Running worker processes (a stage run out of process, torchrun ranks, vLLM engines) with their output
shown on the console and kept in a log file, and a failure reported with the exit status and the log's tail."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path


class WorkerError(RuntimeError):
    """A worker process exited with a non-zero status."""


def tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log (progress-bar redraws, separated by carriage returns, count as lines)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "<no log>"
    parts = [p for p in re.split(r"[\r\n]+", text) if p.strip()]
    return "\n".join(parts[-lines:])


def _describe(rc: int) -> str:
    if rc < 0:
        import signal

        try:
            return f"killed by signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit status {rc}"


def run_workers(jobs: list[tuple[list[str], dict, Path]], what: str, echo: bool = True) -> None:
    """Start every (command, environment, log file) at once and wait for all of them. Each one's output goes to
    its log file and (echo) to this process's stderr as it comes. Raises WorkerError naming `what`, the command,
    its exit status and the tail of its log if any of them fails; the others are stopped then."""
    procs = []
    for cmd, env, log in jobs:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        f = open(log, "wb")
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                             preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        t = threading.Thread(target=_pump, args=(p.stdout, f, echo), daemon=True)
        t.start()
        procs.append((cmd, p, f, t, log))
    failed = None
    try:
        while failed is None and any(p.poll() is None for _, p, *_ in procs):
            failed = next(((cmd, p.returncode, log) for cmd, p, f, t, log in procs if p.poll()), None)
            time.sleep(0.2)
        failed = failed or next(((cmd, p.returncode, log) for cmd, p, f, t, log in procs if p.returncode), None)
    finally:
        for _, p, f, t, _ in procs:  # on failure or interruption: no orphaned workers
            if p.poll() is None:
                _stop(p)
            t.join(timeout=5)
            f.close()
    if failed:
        cmd, rc, log = failed
        raise WorkerError(f"{what}: worker process failed ({_describe(rc)}): {' '.join(map(str, cmd))}\n"
                          f"last lines of {log}:\n{tail(log)}")


def _die_with_parent() -> None:
    """Linux: the worker gets SIGKILL when the process that started it dies (a killed pipeline leaves no
    worker running on its own)."""
    import ctypes
    import signal

    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _stop(p: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def _pump(src, log_file, echo: bool) -> None:
    while True:
        chunk = src.read1(65536) if hasattr(src, "read1") else src.read(65536)
        if not chunk:
            break
        log_file.write(chunk)
        log_file.flush()
        if echo:
            sys.stderr.buffer.write(chunk) if hasattr(sys.stderr, "buffer") else sys.stderr.write(chunk.decode(errors="replace"))
            sys.stderr.flush()
