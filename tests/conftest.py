"""Shared test helpers: run the real CLI in a subprocess, tiny settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Tiny models on a 2-core machine: one thread per process is faster and steadier (idle OpenMP threads spin),
# and subprocesses (the CLI, torchrun ranks) inherit it so they never oversubscribe the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300):
    """Run ``python -m synesthete ARGS`` and return the CompletedProcess (text, stdout+stderr captured)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SYNESTHETE_")}
    full_env.update({"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "synesthete", *args], capture_output=True, text=True, env=full_env,
        cwd=str(cwd or ROOT), timeout=timeout,
    )


def assert_user_error(proc, *fragments: str) -> None:
    """A user error: non-zero exit, no traceback, and the message names the fragments."""
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "Traceback" not in output, output
    for fragment in fragments:
        assert fragment.lower() in output.lower(), output


@pytest.fixture
def tiny():
    """Tiny-preset settings (32x32 frames, 1 s clips, small networks)."""
    from synesthete.settings import load_settings

    return load_settings("tiny")
