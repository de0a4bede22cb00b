"""Shared test helpers: run the real CLI in a subprocess, tiny settings, a hermetic environment.

Test modules import these helpers one way only: ``from conftest import ...`` (pytest puts ``tests/`` on
``sys.path`` and loads this file as the module ``conftest``, so that import reuses it instead of running it
a second time as ``tests.conftest``).
"""

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

from synesthete.settings import ENV_FILE_VARIABLE  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

ROOT = Path(__file__).resolve().parents[1]


def _is_ours(key: str) -> bool:
    """A variable Settings reads (pydantic-settings matches the prefix case-insensitively)."""
    return key.upper().startswith("SYNESTHETE_")


@pytest.fixture(scope="session", autouse=True)
def hermetic_environment():
    """Neither the developer's ``SYNESTHETE_*`` variables nor a ``.env`` reach Settings.

    For the whole session (so module-scoped fixtures are covered too) every ``SYNESTHETE_*`` variable is
    removed from ``os.environ`` and ``SYNESTHETE_ENV_FILE`` is set empty (read no env file). Subprocesses
    inherit that. Tests change settings through ``monkeypatch.setenv`` or ``run_cli(env=...)``; a test that
    exercises ``.env`` itself passes ``run_cli(..., dotenv=True)``.
    """
    with pytest.MonkeyPatch.context() as mp:
        for key in [key for key in os.environ if _is_ours(key)]:
            mp.delenv(key)
        mp.setenv(ENV_FILE_VARIABLE, "")
        yield


def cli_env(env: dict[str, str] | None = None, dotenv: bool = False) -> dict[str, str]:
    """The environment of a CLI subprocess: ``os.environ`` without ``SYNESTHETE_*`` variables, plus ``env``.

    It reads no env file unless ``dotenv`` (then ``.env`` in its working directory, as a user's would).
    """
    full_env = {k: v for k, v in os.environ.items() if not _is_ours(k)}
    if not dotenv:
        full_env[ENV_FILE_VARIABLE] = ""
    full_env.update({"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
    full_env.update(env or {})
    return full_env


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300,
    dotenv: bool = False,
):
    """Run ``python -m synesthete ARGS`` and return the CompletedProcess (text, stdout+stderr captured)."""
    return subprocess.run(
        [sys.executable, "-m", "synesthete", *args], capture_output=True, text=True, env=cli_env(env, dotenv),
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
