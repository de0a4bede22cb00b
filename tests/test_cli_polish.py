"""The CLI as a new user meets it: shipped checkpoints from any folder, help defaults, -v/-q anywhere,
--json, the x264 preset rename, short training summaries, 80-column output, --resume without --preset,
TensorBoard hparams, gen-audio seeds, eval with a manifest's exact beats, and early errors that cost no torch import."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch
from conftest import ROOT, CliResult, assert_user_error, call_cli, cli_env, run_cli

from synesthete.checkpoint import read_checkpoint
from synesthete.cli.options import setting_default
from synesthete.media import load_audio, load_video, write_wav
from synesthete.settings import load_settings
from synesthete.threads import SHORT_SPIN

TRAIN_ENV = {"SYNESTHETE_DEVICE": "cpu", "SYNESTHETE_TRAIN__PREVIEW_SAMPLES": "2", "COLUMNS": "80"}


def _fits(text: str, width: int = 80) -> None:
    """Every line fits ``width`` columns and nothing was cut with an ellipsis."""
    for line in text.splitlines():
        assert len(line) <= width, f"{len(line)} columns: {line!r}"
    assert "…" not in text, text


def _summary(stdout: str) -> dict[str, str]:
    """The rows of a key/value summary table printed by the CLI."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 2 and cells[0]:
            rows[cells[0]] = cells[1]
    return rows


# ----------------------------------------------------------------------------------------------- checkpoints
@pytest.mark.slow
def test_shipped_checkpoints_are_found_from_any_folder(tmp_path):
    settings = load_settings()
    wave = torch.sin(torch.arange(16000) / 16000 * 2 * torch.pi * 220)[None] * 0.3
    wave[:, ::4000] = 0.9  # a few clicks
    write_wav(tmp_path / "song.wav", wave, settings.audio.sample_rate)
    proc = run_cli("render", "song.wav", "-o", "out.mp4", "--steps", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    frames, fps = load_video(tmp_path / "out.mp4")
    assert fps == 30 and abs(frames.shape[0] - 30) <= 1 and frames.float().std() > 1
    assert load_audio(tmp_path / "out.mp4")[0].shape[-1] > 0
    assert _summary(proc.stdout)["checkpoints"] == str(ROOT / "checkpoints")

    shown = json.loads(run_cli("config", "--json", cwd=tmp_path).stdout)
    assert shown["paths"]["checkpoints"] == str(ROOT / "checkpoints")
    assert shown["paths"]["critic"] is None  # critic.pt beside them

    # A relative folder the user names stays relative to where the command runs.
    (tmp_path / "mine").mkdir()
    proc = call_cli("render", "song.wav", "-o", "other.mp4", "--checkpoint-dir", "mine", cwd=tmp_path)
    assert_user_error(proc, "mine/vae.pt")
    assert str(ROOT) not in proc.stderr
    proc = call_cli("config", "--json", cwd=tmp_path, env={"SYNESTHETE_PATHS__CHECKPOINTS": "mine"})
    assert json.loads(proc.stdout)["paths"]["checkpoints"] == "mine"


def test_an_installed_package_reads_the_checkpoints_it_carries(tmp_path):
    """The wheel puts checkpoints/*.pt into synesthete/checkpoints/ (pyproject force-include); a package laid
    out that way finds them there, from any working directory."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shipped = project["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    for pt in sorted((ROOT / "checkpoints").glob("*.pt")):
        assert shipped[f"checkpoints/{pt.name}"] == f"synesthete/checkpoints/{pt.name}"

    site = tmp_path / "site-packages"
    shutil.copytree(ROOT / "synesthete", site / "synesthete", ignore=shutil.ignore_patterns("__pycache__"))
    for source, target in shipped.items():
        (site / target).parent.mkdir(parents=True, exist_ok=True)
        (site / target).symlink_to(ROOT / source)
    code = "from synesthete.settings import load_settings; print(load_settings().paths.checkpoints)"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=elsewhere,
                          env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "SYNESTHETE_ENV_FILE": ""})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(site / "synesthete" / "checkpoints")


# ----------------------------------------------------------------------------------------------- call_cli
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


# ----------------------------------------------------------------------------------------------- help, -v, -q
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
        (("render",), {"--steps": "sampling.steps", "--guidance": "sampling.guidance",
                       "--lanes": "render.lanes", "--fps": "video.fps", "--size": "render.size",
                       "--device": "device", "--preset": "preset"}),
        (("train", "vae"), {"--max-steps": "vae.max_steps", "--lr": "vae.lr", "--seed": "train.seed"}),
        (("eval",), {"--steps": "sampling.steps", "--clips": "eval.clips"}),
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


def test_gen_audio_summary_names_the_seeds_it_used(tmp_path):
    proc = call_cli("gen-audio", "-n", "2", "-o", "g", "--audio-only", "--preset", "tiny", "--seed", "5", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    seeds = [json.loads(line)["seed"] for line in (tmp_path / "g" / "manifest.jsonl").read_text().splitlines()]
    rows = _summary(proc.stdout)
    assert rows["clip seeds"] == f"{seeds[0]}, {seeds[1]}" and rows["stream seed (--seed)"] == "5"
    assert seeds[0] != 5


# ----------------------------------------------------------------------------------------------- settings
def test_x264_preset_is_render_x264_preset():
    proc = call_cli("config", "--json", env={"SYNESTHETE_RENDER__X264_PRESET": "ultrafast"})
    assert proc.returncode == 0, proc.stderr
    render = json.loads(proc.stdout)["render"]
    assert render["x264_preset"] == "ultrafast" and "preset" not in render
    assert_user_error(call_cli("config", env={"SYNESTHETE_RENDER__PRESET": "slow"}),
                      "SYNESTHETE_RENDER__PRESET", "renamed to SYNESTHETE_RENDER__X264_PRESET")
    assert "SYNESTHETE_RENDER__X264_PRESET=veryfast" in (ROOT / ".env.example").read_text()


def test_config_table_fits_80_columns():
    narrow = call_cli("config", env={"COLUMNS": "80"})
    assert narrow.returncode == 0, narrow.stderr
    _fits(narrow.stdout)
    assert "diffusion.context_noise_max" in narrow.stdout and "SYNESTHETE_A__B" in narrow.stdout
    wide = call_cli("config", env={"COLUMNS": "200"})
    assert "SYNESTHETE_DIFFUSION__CONTEXT_NOISE_MAX" in wide.stdout
    _fits(wide.stdout, 200)


# ----------------------------------------------------------------------------------------------- train
def test_short_training_resume_hparams_and_80_columns(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    def train(*args: str):
        return call_cli("train", *args, cwd=tmp_path, env=TRAIN_ENV)

    proc = train("vae", "--preset", "tiny", "--max-steps", "4", "--run-name", "a")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _fits(proc.stdout + proc.stderr)
    assert "4/4" in proc.stderr and "loss" in proc.stderr  # the progress line, whole
    rows = _summary(proc.stdout)
    assert "loss (steps 1-2)" in rows and "loss (steps 3-4)" in rows  # 4 steps: two halves, no overlap
    assert re.fullmatch(r"\d+(\.\d+)? [kMG]", rows["parameters"]), rows["parameters"]

    run = tmp_path / "runs" / "a"
    events = EventAccumulator(str(run))
    events.Reload()
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["preset"].string_value == "tiny" and hparams["vae.max_steps"].number_value == 4

    # --resume takes the run's own settings (tiny): no --preset; a conflicting one is refused.
    assert_user_error(train("vae", "--resume", "runs/a", "--preset", "cpu"), "preset 'tiny'", "leave out --preset")
    proc = train("vae", "--resume", "runs/a", "--max-steps", "5")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "loss (step 5)" in _summary(proc.stdout)
    ckpt = read_checkpoint(run / "ckpt_latest.pt")
    assert ckpt["step"] == 5 and ckpt["settings"]["video"]["width"] == 32

    # --vae takes a run folder (its ckpt_latest.pt) as --resume does.
    proc = train("diffusion", "--preset", "tiny", "--vae", "runs/a", "--max-steps", "1", "--run-name", "d")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "loss (step 1)" in _summary(proc.stdout)
    before = sorted(p.name for p in (tmp_path / "runs" / "d").iterdir())
    # A resumed run that fails (another VAE) adds no empty events file to its folder.
    assert_user_error(train("diffusion", "--resume", "runs/d", "--vae", str(ROOT / "checkpoints")), "vae.pt")
    assert sorted(p.name for p in (tmp_path / "runs" / "d").iterdir()) == before
    assert_user_error(train("diffusion", "--preset", "tiny", "--vae", "runs"), "neither vae.pt nor ckpt_latest.pt")


# ----------------------------------------------------------------------------------------------- eval
@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """Two gen-audio clips (tiny preset, 3 s) with their manifest."""
    from synesthete.gen import generate_dataset

    out = tmp_path_factory.mktemp("sample")
    generate_dataset(load_settings("tiny", audio={"clip_seconds": 3.0}), num=2, out=out)
    return out


def test_eval_video_with_manifest_beats_json_and_out_file(sample, tmp_path):
    from synesthete.metrics import analyse

    entry = [json.loads(line) for line in (sample / "manifest.jsonl").read_text().splitlines()][1]
    video = sample / entry["mp4"]
    out = tmp_path / "r.json"
    proc = call_cli("eval", "--video", str(video), "--manifest", str(sample / "manifest.jsonl"), "--json",
                   "-o", str(out), "--preset", "tiny")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    printed = json.loads(proc.stdout)  # stdout is the JSON alone
    assert printed == json.loads(out.read_text())
    assert printed["tempo_bpm"] == entry["tempo"] and entry["wav"] in printed["beats"]
    frames, fps = load_video(video)
    wave, sr = load_audio(video, mono=True)
    tiny = load_settings("tiny")
    assert printed["metrics"]["bas"] == pytest.approx(analyse(frames, wave[0], sr, fps, tiny, beats=entry["beats"]).bas)

    estimated = call_cli("eval", "--video", str(video), "--json", "--preset", "tiny")
    assert json.loads(estimated.stdout)["beats"] == "estimated"
    table = call_cli("eval", "--video", str(video), "--manifest", str(sample), "--preset", "tiny",
                    env={"COLUMNS": "80"})
    assert "BAS (manifest beats)" in table.stdout and "tempo (manifest)" in table.stdout
    _fits(table.stdout)

    stranger = tmp_path / "stranger.mp4"
    shutil.copy(video, stranger)
    assert_user_error(call_cli("eval", "--video", str(stranger), "--manifest", str(sample / "manifest.jsonl")),
                      "lists no clip named stranger.mp4")
    # Named by its soundtrack: a render of clip 1 is scored against clip 1's beats.
    proc = call_cli("eval", "--video", str(stranger), "--audio", str(sample / entry["wav"]), "--manifest",
                   str(sample / "manifest.jsonl"), "--json", "--preset", "tiny")
    assert proc.returncode == 0 and json.loads(proc.stdout)["tempo_bpm"] == entry["tempo"], proc.stderr
    assert_user_error(call_cli("eval", "--manifest", str(sample / "manifest.jsonl")), "--manifest only applies")


def test_heldout_tables_fit_80_columns(tiny, monkeypatch):
    from synesthete.cli.tables import print_heldout
    from synesthete.console import console
    from synesthete.eval import evaluate_heldout

    result, _ = evaluate_heldout(tiny.updated(eval={"clips": 1}), models=None, progress=False)
    monkeypatch.setenv("COLUMNS", "80")  # an 80-column terminal (setting console.width would fix it for good)
    assert console.width == 80
    with console.capture() as captured:
        print_heldout(result)
    text = captured.get()
    _fits(text)
    assert "oracle, ½-beat shift" in text and "AV-Align" in text
