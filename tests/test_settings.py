"""Settings: precedence, env overrides, typos, presets, ranges, .env.example, the env file, hermetic tests, and
setting errors in one line that never prints a value."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HERMETIC, ROOT, assert_user_error, call_cli, render, run_cli
from pydantic import ValidationError

from synesthete.errors import ConfigError
from synesthete.settings import ENV_FILE_VARIABLE, Settings, check_environment, env_example, load_settings


def test_defaults_match_the_seed():
    s = load_settings()
    assert (s.video.width, s.video.height, s.video.fps) == (128, 128, 30)
    assert s.audio.sample_rate == 16000 and s.audio.clip_seconds == 3.0
    assert s.clip_frames == 90 and s.latent_size == 8


def test_the_cache_folder_defaults_without_any_override(tmp_path, monkeypatch):
    # Without a value the cache is the user's cache folder, whether or not any other setting is overridden
    # (it was None for plain `load_settings()`, and the DiT's ONNX export then fell back to eager PyTorch).
    monkeypatch.delenv("SYNESTHETE_PATHS__CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    for s in (load_settings(), Settings(), load_settings(render={"crf": 18})):
        assert s.paths.cache == tmp_path / "synesthete"


def test_env_override_and_cli_override(monkeypatch):
    monkeypatch.setenv("SYNESTHETE_VAE__LR", "0.5")
    monkeypatch.setenv("SYNESTHETE_VIDEO__FPS", "24")
    s = load_settings()
    assert s.vae.lr == 0.5 and s.video.fps == 24
    # CLI overrides beat the environment; None means "option not given".
    s2 = load_settings(vae={"lr": 0.1, "batch_size": None})
    assert s2.vae.lr == 0.1 and s2.vae.batch_size == Settings().vae.batch_size


def test_preset_then_env(monkeypatch):
    tiny = load_settings("tiny")
    assert tiny.video.width == 32 and tiny.vae.latent_channels == 4
    monkeypatch.setenv("SYNESTHETE_PRESET", "tiny")
    monkeypatch.setenv("SYNESTHETE_VAE__LATENT_CHANNELS", "6")
    s = load_settings()
    assert s.preset == "tiny" and s.video.width == 32 and s.vae.latent_channels == 6


def test_wrong_type_names_the_field(monkeypatch):
    monkeypatch.setenv("SYNESTHETE_VAE__LR", "fast")
    with pytest.raises(ValidationError) as info:
        load_settings()
    assert "vae.lr" in str(info.value).replace("\n", " ")


def test_typo_in_env_is_caught():
    with pytest.raises(ValueError, match="vae.latnet"):
        check_environment({"SYNESTHETE_VAE__LATNET_CHANNELS": "4", "HOME": "/"})
    with pytest.raises(ValueError, match="'devce'"):
        check_environment({"SYNESTHETE_DEVCE": "cpu"})
    check_environment({"SYNESTHETE_VAE__LR": "1", "SYNESTHETE_DEVICE": "cpu"})


def test_a_moved_setting_in_the_environment_or_env_file_names_its_new_variable(tmp_path, monkeypatch):
    """The DiT's architecture moved to the dit section and its sampling to sampling: an old variable is refused
    in one line that names the new one, by the CLI's check and by load_settings (the Python API)."""
    old = r"^environment variable SYNESTHETE_DIFFUSION__SAMPLE_STEPS names no setting any more "
    old += r"\('diffusion\.sample_steps'\)"
    with pytest.raises(ValueError, match=old + ": moved to SYNESTHETE_SAMPLING__STEPS$"):
        check_environment({"SYNESTHETE_DIFFUSION__SAMPLE_STEPS": "4"}, env_file=None)
    (tmp_path / "old.env").write_text("SYNESTHETE_DIFFUSION__DIM=64\n")
    monkeypatch.setenv(ENV_FILE_VARIABLE, str(tmp_path / "old.env"))
    with pytest.raises(ValueError, match="moved to SYNESTHETE_DIT__DIM"):
        check_environment({})
    with pytest.raises(ConfigError, match="moved to SYNESTHETE_DIT__DIM"):
        load_settings()
    monkeypatch.setenv(ENV_FILE_VARIABLE, "")
    monkeypatch.setenv("SYNESTHETE_SAMPLING__STEPS", "4")
    monkeypatch.setenv("SYNESTHETE_DIT__DIM", "64")
    s = load_settings()
    assert (s.sampling.steps, s.dit.dim) == (4, 64)


def test_a_retired_experiment_knob_in_the_environment_or_env_file_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"^environment variable SYNESTHETE_DIFFUSION__GUIDANCE_RESCALE: .*retired"):
        check_environment({"SYNESTHETE_DIFFUSION__GUIDANCE_RESCALE": "0.0"}, env_file=None)
    (tmp_path / "old.env").write_text("SYNESTHETE_DIFFUSION__NOISE_CORRELATION=0\n")
    with pytest.raises(ValueError, match="diffusion.noise_correlation was a retired"):
        check_environment({}, env_file=tmp_path / "old.env")


def test_shapes_are_validated():
    with pytest.raises(ValidationError, match="multiple of 16"):
        load_settings(video={"width": 120})
    with pytest.raises(ValidationError, match="divisible"):
        load_settings(dit={"dim": 100, "heads": 3})


def test_env_example_is_current():
    committed = (ROOT / ".env.example").read_text()
    assert committed == env_example(), "regenerate with: uv run synesthete config --env-example > .env.example"
    for name, field in Settings.model_fields.items():
        sub = getattr(field.annotation, "model_fields", None)
        names = [f"SYNESTHETE_{name.upper()}__{s.upper()}=" for s in sub] if sub else [f"SYNESTHETE_{name.upper()}="]
        for env_name in names:
            assert env_name in committed


@pytest.mark.slow
def test_config_command_json_and_errors():
    proc = run_cli("config", "--json", env={"SYNESTHETE_VIDEO__FPS": "25"})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["video"]["fps"] == 25 and data["preset"] == "cpu"
    assert_user_error(run_cli("config", env={"SYNESTHETE_VIDEO__FPS": "fast"}), "video.fps")
    assert_user_error(run_cli("config", env={"SYNESTHETE_VIDEO__FSP": "25"}), "video.fsp")
    assert_user_error(run_cli("config", "--preset", "huge"), "preset")


def test_env_file_variable_names_the_env_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("SYNESTHETE_VIDEO__FPS=25\n")
    (tmp_path / "other.env").write_text("SYNESTHETE_VIDEO__FPS=24\n")
    (tmp_path / "typo.env").write_text("SYNESTHETE_VAE__LATNET=1\n")
    monkeypatch.delenv(ENV_FILE_VARIABLE)  # unset: ./.env, as for a user
    assert Settings().video.fps == 25 and load_settings().video.fps == 25
    monkeypatch.setenv(ENV_FILE_VARIABLE, "other.env")
    assert Settings().video.fps == 24 and load_settings().video.fps == 24
    monkeypatch.setenv(ENV_FILE_VARIABLE, "typo.env")  # the CLI's check reads the same file
    with pytest.raises(ValueError, match="vae.latnet"):
        check_environment()
    monkeypatch.setenv(ENV_FILE_VARIABLE, "")  # empty: no env file at all
    assert Settings().video.fps == 30 and load_settings().video.fps == 30
    check_environment()


def test_tests_see_the_default_settings():
    """In process and in the CLI, settings are the field defaults, whatever the developer's .env and shell hold
    (but conftest's HERMETIC: the suite runs float32 whatever the CPU, and caches in a temporary folder)."""
    defaults = Settings.model_construct().model_dump(mode="json")  # field defaults only (model_validate reads env)
    assert defaults["train"]["amp"] and defaults["render"]["amp"]
    defaults["train"]["amp"] = defaults["render"]["amp"] = False
    defaults["paths"]["cache"] = HERMETIC["SYNESTHETE_PATHS__CACHE"]
    assert load_settings().model_dump(mode="json") == defaults
    proc = run_cli("config", "--json", cwd=Path.cwd())
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == defaults


@pytest.mark.slow
def test_a_dotenv_and_stray_variables_do_not_leak_into_tests(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("SYNESTHETE_VIDEO__FPS=25\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV_FILE_VARIABLE)
    monkeypatch.setenv("SYNESTHETE_DIT__DEPTH", "3")
    monkeypatch.setenv("synesthete_vae__lr", "0.5")  # pydantic-settings matches the prefix in any case
    s = load_settings()
    assert (s.video.fps, s.dit.depth, s.vae.lr) == (25, 3, 0.5), "outside the tests they do change settings"
    # A pytest session started here, in this environment, still sees the defaults (conftest's fixture).
    test = f"{Path(__file__).resolve()}::test_tests_see_the_default_settings"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", test],
        cwd=tmp_path, env=dict(os.environ), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout + proc.stderr


# --------------------------------------------------------------------------------------------- one-line errors
def test_settings_ranges_are_validated():
    assert_user_error(call_cli("config", env={"SYNESTHETE_AUDIO__SAMPLE_RATE": "1"}), "audio.sample_rate")
    assert_user_error(call_cli("config", env={"SYNESTHETE_SAMPLING__GUIDANCE": "inf"}), "sampling.guidance")
    assert_user_error(call_cli("config", env={"SYNESTHETE_AUDIO__CLIP_SECONDS": "nan"}), "audio.clip_seconds")
    assert_user_error(call_cli("gen-audio", "-n", "1", "--duration", "nan", "-o", "/nonexistent/x"), "clip_seconds")


def test_dotenv_foreign_keys_are_ignored(tmp_path):
    (tmp_path / ".env").write_text("OPENAI_API_KEY=sk-secret-123\nFOO=1\nSYNESTHETE_VIDEO__FPS=25\n")
    proc = call_cli("config", "--json", cwd=tmp_path, dotenv=True)
    assert proc.returncode == 0, proc.stderr
    assert '"fps": 25' in proc.stdout  # the SYNESTHETE_ key of the same file is still read
    assert "sk-secret" not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_setting_errors_never_print_values(tmp_path):
    secret = "sk-secret-456"
    (tmp_path / ".env").write_text(f"SYNESTHETE_VIDEO__FPS={secret}\n")

    def check(proc, fragment: str) -> None:  # -v shows tracebacks on purpose, but never a value
        output = proc.stdout + proc.stderr
        assert proc.returncode == 1 and fragment in output and secret not in output, output

    assert_user_error(run_cli("config", cwd=tmp_path, dotenv=True), "video.fps")
    check(run_cli("-v", "config", cwd=tmp_path, dotenv=True), "video.fps")
    # An unknown SYNESTHETE_ key in .env stays an error, named by its key only.
    (tmp_path / ".env").write_text(f"SYNESTHETE_VAE__LATNET={secret}\n")
    assert_user_error(run_cli("config", cwd=tmp_path, dotenv=True), "SYNESTHETE_VAE__LATNET")
    check(run_cli("-v", "config", cwd=tmp_path, dotenv=True), "SYNESTHETE_VAE__LATNET")
    check(run_cli("-v", "config", env={"SYNESTHETE_VIDEO": secret}), "video")


def test_bad_env_file_and_json_section_are_one_line(tmp_path):
    (tmp_path / ".env").write_bytes(b"SYNESTHETE_DEVICE=cpu\nA=\xff\xfe\n")
    assert_user_error(call_cli("config", cwd=tmp_path, dotenv=True), ".env", "utf-8")
    assert_user_error(call_cli("config", env={"SYNESTHETE_VIDEO": "notjson"}), "video", "json")
    (tmp_path / ".env").write_text("SYNESTHETE_VIDEO=notjson\n")
    assert_user_error(call_cli("config", cwd=tmp_path, dotenv=True), "video", "json")


def test_x264_preset_is_render_x264_preset():
    proc = call_cli("config", "--json", env={"SYNESTHETE_RENDER__X264_PRESET": "ultrafast"})
    assert proc.returncode == 0, proc.stderr
    render = json.loads(proc.stdout)["render"]
    assert render["x264_preset"] == "ultrafast" and "preset" not in render
    assert_user_error(call_cli("config", env={"SYNESTHETE_RENDER__PRESET": "slow"}),
                      "SYNESTHETE_RENDER__PRESET", "renamed to SYNESTHETE_RENDER__X264_PRESET")
    assert "SYNESTHETE_RENDER__X264_PRESET=veryfast" in (ROOT / ".env.example").read_text()


def test_x264_preset_is_checked_as_a_setting(ckpt_dir, song, tmp_path):
    """9. `SYNESTHETE_RENDER__X264_PRESET=nosuch` reached the encoder, whose error never named the setting."""
    proc = render(ckpt_dir, str(song), "-o", str(tmp_path / "x.mp4"), env={"SYNESTHETE_RENDER__X264_PRESET": "nosuch"})
    assert_user_error(proc, "render.x264_preset", "veryfast")
    assert not (tmp_path / "x.mp4").exists()
