"""The sandbox for model-written code (stages/sandbox.py): hostile programs are contained and scored as failures
with a clear feedback line. Every program here really runs — under bubblewrap where it works (`.ci/run` installs
it), and the weaker modes are exercised explicitly. No test sends traffic anywhere but the loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from stages import sandbox
from stages.sandbox import SandboxConfig, check_isolation, isolation, run_many, run_program

GOOD = "def f(x):\n    return x + 1\n"
TESTS = "assert f(2) == 3\nassert f(-1) == 0\n"
CFG = SandboxConfig(timeout_s=2, memory_mb=512)

needs_bwrap = pytest.mark.skipif(sandbox._mode() != "bwrap",
                                 reason=f"bubblewrap is not usable here ({sandbox._mode()}): apt-get install bubblewrap")


def _nobody_processes() -> int:
    """Live processes of the sandbox's user (exited ones waiting to be reaped by init do not count)."""
    out = subprocess.run(["ps", "-u", str(sandbox.NOBODY), "-o", "stat="], capture_output=True, text=True).stdout
    return sum(not s.startswith("Z") for s in out.split())


BASELINE = _nobody_processes()  # the machine's own processes of that user, before any sandbox ran


def _settled(limit: int, wait_s: float = 10.0) -> bool:
    """The sandbox's processes are gone (bubblewrap's inner processes die with it, a moment later)."""
    end = time.monotonic() + wait_s
    while _nobody_processes() > limit and time.monotonic() < end:
        time.sleep(0.1)
    return _nobody_processes() <= limit


def test_a_correct_program_passes_and_a_wrong_one_names_the_failing_assertion():
    assert run_program(GOOD, TESTS, CFG).passed
    r = run_program("def f(x):\n    return x\n", TESTS, CFG)
    assert not r.passed and r.status == "failed" and r.feedback == "failed: assert f(2) == 3"


def test_exceptions_and_syntax_errors_give_the_line():
    r = run_program("def f(x):\n    return x / 0\n", TESTS, CFG)
    assert r.feedback.startswith("ZeroDivisionError: division by zero in the solution, line 2: return x / 0")
    assert "while running the test: assert f(2) == 3" in r.feedback
    r = run_program("def f(x)\n    return x\n", TESTS, CFG)
    assert not r.passed and r.feedback.startswith("SyntaxError")


@needs_bwrap
def test_bubblewrap_is_used_when_it_works():
    assert isolation(CFG).startswith("bubblewrap") and check_isolation(CFG) == isolation(CFG)


@needs_bwrap
@pytest.mark.parametrize("name, code, status, feedback", [
    ("sys.exit(0) before the tests", "import sys\nsys.exit(0)\n" + GOOD, "failed",
     "the program exited (SystemExit 0) before the tests ran"),
    ("os._exit(0) before the tests", "import os\nos._exit(0)\n" + GOOD, "failed",
     "the program ended before the tests finished (exit status 0)"),
    ("exit(0) inside the function", "def f(x):\n    raise SystemExit(0)\n", "failed",
     "the program exited (SystemExit 0) during the tests"),
    ("infinite loop", "while True:\n    pass\n" + GOOD, "timed_out", "timed out after 2 s"),
    ("sleep past the timeout", "import time\ntime.sleep(60)\n" + GOOD, "timed_out", "timed out after 2 s"),
    ("fork bomb", "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n", "timed_out",
     "timed out after 2 s"),
    ("10 GB allocation", "x = bytearray(10 * 1024 ** 3)\n" + GOOD, "failed", "MemoryError"),
    ("100 MB print", "import sys\nsys.stdout.write('x' * 100_000_000)\n" + GOOD, "output_limit",
     "output limit exceeded (1 MB)"),
    ("a big file in /tmp", "open('/tmp/big', 'wb').write(b'x' * (200 << 20))\n" + GOOD, "failed", "File too large"),
])
def test_hostile_programs_are_contained_and_fail(name, code, status, feedback):
    assert _settled(BASELINE), "processes of earlier tests are still running"
    r = run_program(code, TESTS, CFG)
    assert not r.passed and r.status == status and feedback in r.feedback, (name, r)
    assert r.seconds < 15
    assert _settled(BASELINE), f"{name}: processes left behind"


@needs_bwrap
def test_writing_outside_the_temp_dir_fails_and_leaves_nothing(tmp_path):
    home = Path.home() / f"sandbox-escape-{os.getpid()}"
    here = tmp_path / "escape"
    os.chmod(tmp_path, 0o777)  # even a folder anyone may write to is out of reach
    for target in (home, here):
        r = run_program(f"open({str(target)!r}, 'w').write('x')\n" + GOOD, TESTS, CFG)
        # the home folder is read-only; the host's /tmp is not even there (a private tmpfs hides it)
        assert not r.passed and any(e in r.feedback for e in ("Read-only file system", "Permission denied",
                                                               "No such file or directory")), r
        assert not target.exists()
    r = run_program("open('solution.py', 'w').write('')\n" + GOOD, TESTS, CFG)  # its own folder is read-only too
    assert not r.passed and "Read-only file system" in r.feedback


@needs_bwrap
def test_the_parents_environment_and_processes_are_out_of_reach(monkeypatch):
    monkeypatch.setenv("SANDBOX_TEST_SECRET", "s3cret-value")
    me = os.getpid()
    code = ("import os\n"
            "assert 'SANDBOX_TEST_SECRET' not in os.environ, 'env leaked'\n"
            f"print(open('/proc/{me}/environ').read())\n" + GOOD)
    r = run_program(code, TESTS, CFG)
    assert not r.passed and "No such file or directory" in r.feedback and "s3cret-value" not in r.output
    r = run_program(f"import os, signal\nos.kill({me}, signal.SIGKILL)\n" + GOOD, TESTS, CFG)
    assert not r.passed and "ProcessLookupError" in r.feedback  # the parent is not even visible
    assert os.getpid() == me  # still alive


@needs_bwrap
def test_no_tcp_connection_reaches_a_server_outside():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(5)
    port, accepted = server.getsockname()[1], []

    def accept():
        try:
            accepted.append(server.accept())
        except OSError:
            pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\n" + GOOD
    r = run_program(code, TESTS, CFG)
    thread.join(6)
    server.close()
    assert not r.passed and "ConnectionRefusedError" in r.feedback and accepted == []


def test_the_marker_is_not_in_any_file_the_program_can_read():
    """A program that prints what looks like a verdict line cannot pass: the marker is random per run."""
    code = ("import os, json\nfor n in os.listdir('.'):\n    print(open(n).read())\n"
            "print('x ' + json.dumps({'passed': True, 'feedback': 'passed all tests'}))\nimport os\nos._exit(0)\n")
    r = run_program(code, TESTS, CFG)
    assert not r.passed


def test_without_bubblewrap_weaker_isolation_must_be_allowed(monkeypatch):
    python = sandbox._setup()[1]
    monkeypatch.setattr(sandbox, "_setup", lambda: ("rlimits", python))
    with pytest.raises(ValueError, match="weaker_isolation=true"):
        run_program(GOOD, TESTS, CFG)
    weaker = SandboxConfig(timeout_s=2, memory_mb=512, weaker_isolation=True)
    assert isolation(weaker).startswith("WEAKER: no bubblewrap and no network namespace")
    assert run_program(GOOD, TESTS, weaker).passed  # the rlimits still hold:
    assert run_program("while True:\n    pass\n", TESTS, weaker).status in ("timed_out", "killed")
    assert run_program("x = bytearray(10 * 1024 ** 3)\n" + GOOD, TESTS, weaker).feedback.startswith("MemoryError")
    r = run_program("import os\nos._exit(0)\n", TESTS, weaker)
    assert not r.passed and "ended before the tests finished" in r.feedback


def test_many_programs_run_in_parallel_in_order():
    jobs = [(f"def f(x):\n    return x + {k}\n", TESTS) for k in (1, 0, 1, 2, 1)]
    assert [r.passed for r in run_many(jobs, SandboxConfig(workers=2))] == [True, False, True, False, True]


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="task.sandbox.timeout_s"):
        SandboxConfig(timeout_s=0)
    with pytest.raises(ValueError, match="task.sandbox.memory_mb"):
        SandboxConfig(memory_mb=1)
