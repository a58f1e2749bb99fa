"""SIGUSR1's stacks (ingest/stacks.py) in a process of its own: a burst of them, in a
command that never loads asyncio, is told and survived."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from ingest import stacks

SLEEPER = """
import sys, time
from ingest import stacks
stacks.install()
print("ready", flush=True)
time.sleep(2)
print("asyncio" in sys.modules, flush=True)
"""


def test_a_burst_of_sigusr1_is_told_and_survived_without_asyncio() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SLEEPER], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    for _ in range(5):
        proc.send_signal(signal.SIGUSR1)
        time.sleep(0.002)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.strip() == "False", "the stacks loaded asyncio"
    assert stacks.END in err and "--- thread MainThread" in err, err
    assert "Traceback" not in err, err
