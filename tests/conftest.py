"""Shared test helpers: run the real CLI (in this process or a subprocess), tiny settings, a hermetic environment,
and what several subjects share: tiny random-weight checkpoints (``ckpt_dir``, ``pipe``), short songs (``song``,
``songs``, ``tone``), the CLI render on them (``render``), CLI processes to signal (``running_cli``, ``wait_for``).

Test modules import these helpers one way only: ``from conftest import ...`` (pytest puts ``tests/`` on
``sys.path`` and loads this file as the module ``conftest``, so that import reuses it instead of running it
a second time as ``tests.conftest``).
"""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

# Tiny models on a 2-core machine: one thread per process is faster and steadier (idle OpenMP threads spin),
# and subprocesses (the CLI, torchrun ranks) inherit it so they never oversubscribe the cores. Under
# pytest-xdist each worker is such a process.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The CLI's rich consoles are made once, at import: a COLUMNS set then would fix their width for good. Without
# it they read COLUMNS at each print, so call_cli can set it per call as run_cli does for a subprocess.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from synesthete.settings import ENV_FILE_VARIABLE  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

ROOT = Path(__file__).resolve().parents[1]


# The float32 path on every machine: bf16 autocast (train.amp, render.amp) runs only where the CPU has native
# bf16, so with the defaults the suite's numbers would depend on the CPU it runs on. The bf16 path has tests of
# its own that mock the CPU flags (test_device.py, test_train.py) and so need no bf16 hardware.
FLOAT32 = {"SYNESTHETE_TRAIN__AMP": "false", "SYNESTHETE_RENDER__AMP": "false"}
# What the session adds to FLOAT32: paths.cache in the session's temporary folder (the DiT's ONNX export of each
# tiny checkpoint goes there, never into the developer's ~/.cache).
HERMETIC: dict[str, str] = dict(FLOAT32)


def _is_ours(key: str) -> bool:
    """A variable Settings reads (pydantic-settings matches the prefix case-insensitively)."""
    return key.upper().startswith("SYNESTHETE_")


@pytest.fixture(scope="session", autouse=True)
def hermetic_environment(tmp_path_factory):
    """Neither the developer's ``SYNESTHETE_*`` variables nor a ``.env`` reach Settings, nor the CPU's bf16.

    For the whole session (so module-scoped fixtures are covered too) every ``SYNESTHETE_*`` variable is
    removed from ``os.environ``, ``SYNESTHETE_ENV_FILE`` is set empty (read no env file) and ``FLOAT32`` is set
    (train and render in float32 whatever the CPU), and ``paths.cache`` is a temporary folder of the session
    (``HERMETIC``). Subprocesses inherit that. Tests change settings through
    ``monkeypatch.setenv`` or ``run_cli(env=...)``; a test that exercises ``.env`` itself passes
    ``run_cli(..., dotenv=True)``.
    """
    with pytest.MonkeyPatch.context() as mp:
        for key in [key for key in os.environ if _is_ours(key)]:
            mp.delenv(key)
        mp.setenv(ENV_FILE_VARIABLE, "")
        HERMETIC["SYNESTHETE_PATHS__CACHE"] = str(tmp_path_factory.mktemp("cache"))
        for key, value in HERMETIC.items():
            mp.setenv(key, value)
        yield


def cli_env(env: dict[str, str] | None = None, dotenv: bool = False) -> dict[str, str]:
    """The environment of a CLI subprocess: ``os.environ`` without ``SYNESTHETE_*`` variables but ``HERMETIC``,
    plus ``env``.

    It reads no env file unless ``dotenv`` (then ``.env`` in its working directory, as a user's would).
    """
    full_env = {k: v for k, v in os.environ.items() if not _is_ours(k)}
    full_env.update(HERMETIC)
    if not dotenv:
        full_env[ENV_FILE_VARIABLE] = ""
    full_env.update({"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
    full_env.update(env or {})
    return full_env


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300,
    dotenv: bool = False,
):
    """Run ``python -m synesthete ARGS`` and return the CompletedProcess (text, stdout+stderr captured).

    A new process costs seconds of CPU (importing torch and torchcodec): use it where the process itself is
    under test (signals, locks held by another process, the entry point, a real process's output), and
    ``call_cli`` for everything else.
    """
    return subprocess.run(
        [sys.executable, "-m", "synesthete", *args], capture_output=True, text=True, env=cli_env(env, dotenv),
        cwd=str(cwd or ROOT), timeout=timeout,
    )


@dataclass
class CliResult:
    """What ``call_cli`` returns: the fields of a CompletedProcess that tests read."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


# Python's default warning filters in a fresh process (python -W and PYTHONWARNINGS aside): what a user sees.
_SILENT_BY_DEFAULT = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


def _exit_code(code: object, stderr: io.StringIO) -> int:
    """The exit status of ``SystemExit(code)``, as the interpreter computes it."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=stderr)
    return 1


def call_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, dotenv: bool = False,
) -> CliResult:
    """Run ``synesthete ARGS`` in this process and return what a subprocess would show (see ``run_cli``).

    It calls ``synesthete.cli.main``, the console script's entry point, so the same boundary turns errors into
    one line and an exit code. The environment is exactly ``run_cli``'s (``cli_env``), the working directory
    ``cwd`` (default: the repository), stdout and stderr are captured apart. What a process would add is
    added: an exception that escapes ``main`` is printed as a traceback with exit code 1, and warnings that
    Python shows by default are written to stderr. What the command changes in this process is put back:
    environment, working directory, signal handlers, torch's thread count and the random generators.
    """
    from synesthete.cli import main
    from synesthete.console import console, err_console

    stdout, stderr = io.StringIO(), io.StringIO()
    target = cli_env(env, dotenv)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    num_threads = torch.get_num_threads()
    rng = (torch.get_rng_state(), random.getstate(), np.random.get_state())
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for key in [key for key in os.environ if key not in target]:
            mp.delenv(key)
        for key, value in target.items():
            if os.environ.get(key) != value:
                mp.setenv(key, value)
        mp.chdir(cwd or ROOT)
        mp.setattr(sys, "argv", ["synesthete", *args])
        width = int(target["COLUMNS"])
        assert console.width == err_console.width == width, "a fixed console width (set COLUMNS, not .width)"
        try:
            with redirect_stdout(stdout), redirect_stderr(stderr):
                try:
                    main(list(args))
                    code = 0
                except SystemExit as exc:
                    code = _exit_code(exc.code, stderr)
                except Exception:
                    traceback.print_exc()
                    code = 1
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
            torch.set_num_threads(num_threads)
            torch.set_rng_state(rng[0])
            random.setstate(rng[1])
            np.random.set_state(rng[2])
    for w in caught:
        if not issubclass(w.category, _SILENT_BY_DEFAULT):
            stderr.write(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line))
    return CliResult(list(args), code, stdout.getvalue(), stderr.getvalue())


def assert_user_error(proc, *fragments: str) -> None:
    """A user error: non-zero exit, no traceback, and the message names the fragments.

    An error of the CLI's own (exit code 1) is one line, ``error: ...``, the last that it printed (a usage
    error from click, exit code 2, has click's own box instead).
    """
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "Traceback" not in output, output
    if proc.returncode == 1:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert [line for line in lines if line.startswith("error:")] == lines[-1:], output
    for fragment in fragments:
        assert fragment.lower() in output.lower(), output


def tiny_checkpoints(folder: Path, settings=None) -> Path:
    """Random-weight vae.pt + diffusion.pt (the exported layout) of ``settings``' networks (default: the tiny
    preset), built from the current code, in ``folder``."""
    import torch

    from synesthete.checkpoint import make_checkpoint, save_checkpoint, vae_fingerprint
    from synesthete.models.dit import DiT
    from synesthete.models.vae import VAE
    from synesthete.settings import load_settings

    settings = settings if settings is not None else load_settings("tiny")
    torch.manual_seed(0)
    vae, dit = VAE.from_settings(settings), DiT.from_settings(settings)
    c = settings.vae.latent_channels
    save_checkpoint(make_checkpoint("vae", vae, settings), folder / "vae.pt")
    save_checkpoint(
        make_checkpoint(
            "diffusion", dit, settings, latent_stats={"mean": torch.zeros(c), "std": torch.ones(c)},
            vae_fingerprint=vae_fingerprint(vae.state_dict()),
        ),
        folder / "diffusion.pt",
    )
    return folder


@pytest.fixture
def tiny():
    """Tiny-preset settings (32x32 frames, 1 s clips, small networks)."""
    from synesthete.settings import load_settings

    return load_settings("tiny")


# ============================================================================================= tiny renders
# What many subjects share: tiny random-weight checkpoints, short songs, the CLI render on them, real processes
# to signal, and the checks on what the CLI prints.

TINY = ("--preset", "tiny", "--steps", "2")  # render options for the tiny checkpoints: 32x32 frames, 2 steps


def tone(seconds: float, sample_rate: int = 16000, freq: float = 220.0, amp: float = 0.3) -> torch.Tensor:
    """A sine of ``freq`` Hz, mono [N]."""
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    return amp * torch.sin(2 * torch.pi * freq * t)


def drums(seconds: float, seed: int = 3) -> torch.Tensor:
    """A procedural clip with drums, mono [N] at 16 kHz."""
    from synesthete.audio.synth import synthesize
    from synesthete.settings import load_settings

    wave, _ = synthesize(seed, load_settings("tiny"), duration=seconds, drums=True, silence=False, dropout=False)
    return wave


def ffmpeg(*args: str) -> None:
    """Run FFmpeg quietly (``-y``); it must succeed."""
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="session")
def ckpt_dir(tmp_path_factory) -> Path:
    """Tiny random-weight vae.pt + diffusion.pt (the exported layout, preset tiny: 32x32 frames), built from the
    current code once for the session. Tests read them; one that needs other weights copies them."""
    return tiny_checkpoints(tmp_path_factory.mktemp("tiny_ckpt"))


@pytest.fixture(scope="session")
def song(tmp_path_factory) -> Path:
    """A 1 s tone (220 Hz) as a 16 kHz wav."""
    from synesthete.media import write_wav

    path = tmp_path_factory.mktemp("song") / "song.wav"
    write_wav(path, tone(1.0), 16000)
    return path


@pytest.fixture(scope="session")
def songs(tmp_path_factory) -> dict[str, Path]:
    """Real input files: 1 s wav and ogg songs (with drums), a corrupt mp3, a 0-sample wav, a video with no audio."""
    from torchcodec.encoders import AudioEncoder

    from synesthete.media import write_video, write_wav

    root = tmp_path_factory.mktemp("songs")
    files = {"wav": root / "one.wav", "ogg": root / "two.ogg", "corrupt": root / "bad.mp3",
             "empty": root / "empty.wav", "noaudio": root / "mute.mp4"}
    write_wav(files["wav"], drums(1.0), 16000)
    AudioEncoder(drums(1.0, seed=5).unsqueeze(0), sample_rate=16000).to_file(str(files["ogg"]))
    files["corrupt"].write_bytes(b"ID3" + bytes(range(256)) * 20)
    write_wav(files["empty"], torch.zeros(1, 0), 16000)
    write_video(files["noaudio"], torch.zeros(10, 3, 32, 32), 30)
    return files


@pytest.fixture(scope="session")
def pipe(ckpt_dir):
    """``Synesthete`` on the tiny checkpoints, 2 sampler steps (renders take what they ask for: it is not changed)."""
    from synesthete import Synesthete

    return Synesthete.from_pretrained(ckpt_dir, device="cpu", sampling={"steps": 2})


def render(ckpt_dir: Path, *args: str, env: dict[str, str] | None = None) -> CliResult:
    """`synesthete render ARGS` on the tiny checkpoints in ``ckpt_dir`` (``TINY``), in this process."""
    return call_cli("render", *args, *TINY, "--checkpoint-dir", str(ckpt_dir), env=env)


def temps(folder: Path) -> list[Path]:
    """The temporary files (``files.atomic_path``) in ``folder``."""
    return sorted(p for p in folder.iterdir() if ".tmp" in p.name)


@contextmanager
def running_cli(*args: str, env: dict[str, str] | None = None, sigint: bool = True) -> Iterator[subprocess.Popen]:
    """``python -m synesthete ARGS`` in the background for the ``with`` block, in its own process group (a kill
    reaches only it); a process still running when the block ends (a failed check) is killed with its group.

    ``sigint`` False starts it with SIGINT ignored (as a shell's background job), True with the default handler
    (a terminal's foreground job; Python keeps an inherited ignored SIGINT ignored, and ``pytest &`` has one).
    """
    disposition = signal.SIG_DFL if sigint else signal.SIG_IGN
    proc = subprocess.Popen(
        [sys.executable, "-m", "synesthete", *args], cwd=str(ROOT), env=cli_env(env), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, disposition),
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def wait_for(predicate, proc: subprocess.Popen, what: str, limit: float = 180.0) -> None:
    """Poll until ``predicate()`` holds; fail (and kill ``proc``'s group) if ``proc`` ends first or ``limit``
    seconds pass."""
    deadline = time.monotonic() + limit
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process ended (rc {proc.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def counting(fn, calls: list):
    """``fn``, recording the positional arguments of every call in ``calls``."""
    def wrapped(*args, **kwargs):
        calls.append(args)
        return fn(*args, **kwargs)

    return wrapped


def fits(text: str, width: int = 80) -> None:
    """Every line fits ``width`` columns and nothing was cut with an ellipsis."""
    for line in text.splitlines():
        assert len(line) <= width, f"{len(line)} columns: {line!r}"
    assert "…" not in text, text


def summary_rows(stdout: str) -> dict[str, str]:
    """The rows of a key/value summary table printed by the CLI."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 2 and cells[0]:
            rows[cells[0]] = cells[1]
    return rows
