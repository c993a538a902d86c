"""Run archspec in a child process with hard limits, and measure what it used.

Why a child process: the inputs these tests feed are built to exhaust memory or hang. Run in the
test process, a regression would take the whole test session (and a shared machine) down with it.
The child gets an RLIMIT_DATA cap (heap and anonymous mappings; RLIMIT_AS would not do, importing
torch maps several GB of address space) and a wall-clock timeout, and reports its own peak
resident memory (VmHWM, read at exit: `getrusage` would count the forked copy of the test process
before `exec`), so a test can assert a bound on it.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# Runs in the child: report VmHWM at exit, then run archspec's CLI (or test code) as __main__.
_WRAPPER = """
import atexit, runpy, sys
report_to, code = sys.argv[1], sys.argv[2]

def report():
    with open("/proc/self/status") as status:
        peak = next((line.split()[1] for line in status if line.startswith("VmHWM:")), "")
    with open(report_to, "w") as out:
        out.write(peak)

atexit.register(report)
sys.argv = ["archspec", *sys.argv[3:]]
if code:
    exec(compile(code, "<test>", "exec"), {"__name__": "__main__"})
else:
    runpy.run_module("archspec", run_name="__main__", alter_sys=True)
"""


@dataclass
class Outcome:
    returncode: int | None  # None: killed at the timeout
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float | None  # None where /proc is missing or the child was killed


def run_bounded(args: list[str], *, memory_mb: int = 1536, timeout_s: float = 60, cwd: Path | None = None,
                python_code: str | None = None) -> Outcome:
    """Run ``archspec ARGS`` (or `python_code`) in a child under a memory cap and a timeout."""
    limit = memory_mb << 20

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "COLUMNS": "120"}
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "peak"
        out_path, err_path = Path(tmp) / "out", Path(tmp) / "err"
        command = [sys.executable, "-c", _WRAPPER, str(report), python_code or "", *args]
        start = time.monotonic()
        with open(out_path, "w") as out, open(err_path, "w") as err:
            proc = subprocess.Popen(command, stdout=out, stderr=err, cwd=cwd, env=env, preexec_fn=cap)
            try:
                code: int | None = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                code = None
        seconds = time.monotonic() - start
        peak = report.read_text().strip() if report.exists() else ""
        return Outcome(code, out_path.read_text(), err_path.read_text(), seconds,
                       int(peak) / 1024 if peak else None)


def assert_one_line_error(outcome: Outcome, *, contains: str = "") -> str:
    """Exit code 2, no traceback, and the first stderr line is `error: <location>: <message>`."""
    assert outcome.returncode == 2, (outcome.returncode, outcome.stderr[-2000:])
    assert "Traceback" not in outcome.stderr and "frame #" not in outcome.stderr, outcome.stderr[-2000:]
    first = outcome.stderr.strip().splitlines()[0]
    assert first.startswith("error: "), first
    assert contains in first, first
    return first
