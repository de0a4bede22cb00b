"""The CLI as a user meets it: the entry point (in this process as in a real one), early errors that cost no
torch import, help that shows the settings' defaults, -v/-q anywhere, tables that fit 80 columns."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import CliResult, assert_user_error, call_cli, cli_env, fits, run_cli

from synesthete.cli.options import setting_default
from synesthete.threads import SHORT_SPIN


# --------------------------------------------------------------------------------------------- the entry point
@pytest.mark.slow
def test_call_cli_shows_what_a_real_process_shows(tmp_path):
    """Most tests run the CLI in-process (conftest.call_cli, through the console script's entry point): it
    gives what a real process gives, exit code, stdout and stderr, for one-line errors, a -v traceback, a
    usage error and a settings error (the program name aside: the console script's, not ``python -m``)."""
    cases = [
        (("-v", "render", "nope.wav", "-o", "x.mp4"), None),
        (("gen-audio", "--bogus"), None),
        (("config",), {"SYNESTHETE_VIDEO__FPS": "fast"}),
        (("config", "--preset", "huge"), None),
    ]
    for args, env in cases:
        real, here = run_cli(*args, cwd=tmp_path, env=env), call_cli(*args, cwd=tmp_path, env=env)
        assert real.returncode in (1, 2) and here.returncode == real.returncode, (args, real.stderr, here.stderr)
        assert here.stdout == real.stdout, args
        assert here.stderr == real.stderr.replace("python -m synesthete", "synesthete"), args
        assert ("Traceback" in real.stderr) == ("-v" in args)
        if args[0] != "-v" and real.returncode == 1:
            assert len(real.stderr.splitlines()) == 1, real.stderr  # the one red line
    assert list(tmp_path.iterdir()) == []


def test_call_cli_prints_an_escaping_exception_as_python_would(monkeypatch):
    import synesthete.cli.entry

    def crash(args):
        raise RuntimeError("a bug, not a user error")

    monkeypatch.setattr(synesthete.cli.entry, "app", crash)
    proc = call_cli("config")
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.rstrip().endswith("RuntimeError: a bug, not a user error")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("render", "nope.wav", "-o", "x.mp4"), "nope.wav does not exist"),
        (("render", "song.wav", "-o", "taken.mp4"), "taken.mp4 already exists"),
        (("render", "song.wav", "-o", "x.avi"), "must be an .mp4 file"),
        (("eval", "--video", "nope.mp4"), "nope.mp4 does not exist"),
        (("gen-audio", "-n", "0", "-o", "clips"), "--num must be at least 1"),
    ],
)
def test_early_errors_do_not_import_torch(tmp_path, args, message):
    """A missing input, a taken output or a bad option is one line before torch is imported (a real process,
    ``python -X importtime``: importing torch would cost it about 2.5 s of CPU; it takes about 0.25 s)."""
    (tmp_path / "song.wav").write_bytes(b"RIFF")  # checked for existence only: never decoded
    (tmp_path / "taken.mp4").write_bytes(b"keep me")
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "synesthete", *args], capture_output=True, text=True,
        env=cli_env(), cwd=str(tmp_path), timeout=120,
    )
    report = [line for line in proc.stderr.splitlines() if line.startswith("import time:")]
    imported = {line.rsplit("|", 1)[-1].strip() for line in report}
    assert "synesthete.cli" in imported, proc.stderr  # the import report is there
    assert not [m for m in imported if m.split(".")[0] in ("torch", "torchcodec", "numpy")], sorted(imported)
    stderr = "\n".join(line for line in proc.stderr.splitlines() if not line.startswith("import time:"))
    assert_user_error(CliResult(list(args), proc.returncode, proc.stdout, stderr), message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.wav", "taken.mp4"]
    assert (tmp_path / "taken.mp4").read_bytes() == b"keep me"


def test_the_cli_and_its_help_import_no_torch_and_the_entry_prepares_openmp():
    """Importing the CLI (every command module) and `synesthete --help` load no torch, and the entry point, not
    the import, sets the short OpenMP spin (``threads.prepare_openmp``), before any command could load torch."""
    code = (
        "import os, sys\n"
        "from synesthete.cli import main\n"
        "from synesthete.cli.app import app\n"
        "spin = os.environ.get('GOMP_SPINCOUNT')\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchcodec', 'numpy'))\n"
        "print(spin, os.environ.get('GOMP_SPINCOUNT'), heavy, file=sys.stderr)\n"
    )
    env = {k: v for k, v in cli_env().items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout and "gen-audio" in proc.stdout
    assert proc.stderr.strip() == f"None {SHORT_SPIN} []", proc.stderr


# --------------------------------------------------------------------------------------------- help, -v, -q
def _option_line(help_text: str, option: str) -> str:
    """The help of one option, with the lines it wraps onto (up to the next option)."""
    lines = help_text.splitlines()
    index = next(i for i, line in enumerate(lines) if re.search(rf"│[ *]+{option}\b", line))
    end = index + 1
    while end < len(lines) and not re.search(r"│[ *]+-", lines[end]) and "╰" not in lines[end]:
        end += 1
    return " ".join(lines[index:end])


@pytest.mark.parametrize(
    ("command", "options"),
    [
        (("render",), {"--guidance": "sampling.guidance",
                       "--lanes": "render.lanes", "--fps": "video.fps", "--size": "render.size",
                       "--device": "device", "--preset": "preset"}),
        (("train", "vae"), {"--max-steps": "vae.max_steps", "--lr": "vae.lr", "--seed": "train.seed"}),
        (("eval",), {"--clips": "eval.clips"}),
    ],
)
def test_help_shows_the_settings_defaults_and_flags_take_no_value(command, options):
    proc = call_cli(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    for option, dotted in options.items():
        assert f"[default: {setting_default(dotted)}]" in _option_line(proc.stdout, option), option
    assert "<bool>" not in proc.stdout
    if command == ("render",):  # no number: an empty render.seed is drawn from the song
        assert "hash of the song" in _option_line(proc.stdout, "--seed")
        assert "[default: on]" in _option_line(proc.stdout, "--sections")
        assert "step-distilled" in _option_line(proc.stdout, "--sampler")
    if command != ("train", "vae"):  # no number: a step-distilled Brain samples with the steps it learned
        assert "step-distilled" in _option_line(proc.stdout, "--steps")
    assert re.search(r"--overwrite\s+Replace", proc.stdout) or command == ("train", "vae")
    assert "--verbose" in proc.stdout and "--quiet" in proc.stdout


def test_verbose_and_quiet_work_before_and_after_the_subcommand(tmp_path):
    for args in (("render", "nope.wav", "-o", "x.mp4", "-v"), ("-v", "render", "nope.wav", "-o", "x.mp4"),
                 ("render", "-v", "nope.wav", "-o", "x.mp4")):
        proc = call_cli(*args, cwd=tmp_path)
        assert proc.returncode == 1 and "Traceback" in proc.stderr and "nope.wav does not exist" in proc.stderr
    assert_user_error(call_cli("render", "nope.wav", "-o", "x.mp4", cwd=tmp_path), "nope.wav does not exist")

    loud = call_cli("gen-audio", "-n", "1", "-o", "a", "--audio-only", "--preset", "tiny", cwd=tmp_path)
    assert loud.returncode == 0 and "clip seeds" in loud.stdout and "gen-audio" in loud.stderr
    for args in (("gen-audio", "-n", "1", "-o", "b", "--audio-only", "--preset", "tiny", "-q"),
                 ("-q", "gen-audio", "-n", "1", "-o", "c", "--audio-only", "--preset", "tiny")):
        proc = call_cli(*args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "" and proc.stderr == ""  # no progress bar, no summary
        assert (tmp_path / args[args.index("-o") + 1] / "clip_00000.wav").exists()


# --------------------------------------------------------------------------------------------- 80 columns
def test_config_table_fits_80_columns():
    narrow = call_cli("config", env={"COLUMNS": "80"})
    assert narrow.returncode == 0, narrow.stderr
    fits(narrow.stdout)
    assert "diffusion.context_noise_max" in narrow.stdout and "SYNESTHETE_A__B" in narrow.stdout
    wide = call_cli("config", env={"COLUMNS": "200"})
    assert "SYNESTHETE_DIFFUSION__CONTEXT_NOISE_MAX" in wide.stdout
    fits(wide.stdout, 200)
