"""`synesthete gen-audio`: real files through real FFmpeg, the manifest, overwrite rules and bad options."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import assert_user_error, call_cli, summary_rows

from synesthete.cli import main
from synesthete.data import make_clip, seed_for
from synesthete.errors import InputError, OutputError
from synesthete.gen import generate_dataset
from synesthete.media import AAC_FRAME, load_audio, load_video


def _manifest(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


def test_gen_audio_cli_writes_decodable_clips(tmp_path):
    out = tmp_path / "sample"
    proc = call_cli("gen-audio", "-n", "2", "-o", str(out), "--seed", "3", "--preset", "tiny", "--duration", "1.0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "clip_00000.mp4", "clip_00000.wav", "clip_00001.mp4", "clip_00001.wav", "manifest.jsonl"
    ]
    from synesthete.settings import load_settings

    settings = load_settings("tiny", data={"seed": 3}, audio={"clip_seconds": 1.0})
    sr, fps = settings.audio.sample_rate, settings.video.fps
    n = round(1.0 * sr)
    entries = _manifest(out)
    assert [e["seed"] for e in entries] == [seed_for(i, settings) for i in range(2)]
    for entry in entries:
        for key in ("tempo", "scale", "beats", "onsets", "all_onsets", "visual", "visualizer", "wav", "mp4"):
            assert key in entry
        clip = make_clip(entry["seed"], settings)
        assert entry["tempo"] == clip["meta"]["tempo"] and entry["onsets"] == clip["meta"]["onsets"]

        frames, got_fps = load_video(out / entry["mp4"])
        assert got_fps == fps
        assert frames.shape == (round(1.0 * fps), 3, settings.video.height, settings.video.width)
        assert entry["frames"] == frames.shape[0]
        # Lossy H.264 (and 4:2:0 chroma on a 32x32 picture), but clearly the same picture.
        own = (frames.float() - clip["frames"].float()).abs().mean()
        other = (frames.float() - make_clip(entry["seed"] + 1, settings)["frames"].float()).abs().mean()
        assert own < 20 and own < 0.5 * other

        wav, wav_sr = load_audio(out / entry["wav"])
        assert wav_sr == sr and wav.shape == (1, n)
        assert (wav[0] - clip["audio"]).abs().max() <= 1.5 / 32767  # 16-bit PCM of the same wave

        muxed, muxed_sr = load_audio(out / entry["mp4"])
        assert muxed_sr == sr
        # AAC pads to whole 1024-sample frames; the first n samples are the clip's audio.
        assert n <= muxed.shape[1] <= math.ceil(n / AAC_FRAME) * AAC_FRAME + AAC_FRAME
        err = (muxed[0, :n] - clip["audio"]).pow(2).mean() / clip["audio"].pow(2).mean()
        assert err < 0.1


def test_env_override_and_audio_only_through_the_cli(tmp_path):
    out = tmp_path / "short"
    proc = call_cli(
        "gen-audio", "-n", "2", "-o", str(out), "--audio-only", "--preset", "tiny",
        env={"SYNESTHETE_AUDIO__CLIP_SECONDS": "0.5"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["clip_00000.wav", "clip_00001.wav", "manifest.jsonl"]
    wav, _ = load_audio(out / "clip_00001.wav")
    assert wav.shape == (1, 8000)
    assert _manifest(out)[1]["duration"] == 0.5


def test_any_even_size_and_no_silent_overwrite(tiny, tmp_path):
    out = tmp_path / "odd"
    summary = generate_dataset(tiny, num=1, out=out, width=100, height=60, fps=10)
    assert summary["clips"] == 1
    frames, fps = load_video(out / "clip_00000.mp4")
    assert frames.shape == (round(tiny.audio.clip_seconds * 10), 3, 60, 100) and fps == 10
    before = (out / "clip_00000.wav").read_bytes()
    with pytest.raises(OutputError, match="not empty"):
        generate_dataset(tiny.updated(data={"seed": 5}), num=1, out=out, audio_only=True)
    assert (out / "clip_00000.wav").read_bytes() == before
    generate_dataset(tiny.updated(data={"seed": 5}), num=1, out=out, audio_only=True, overwrite=True)
    assert (out / "clip_00000.wav").read_bytes() != before
    assert _manifest(out)[0]["seed"] == seed_for(0, tiny.updated(data={"seed": 5}))
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left behind


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["-n", "0"], "--num"),
        (["--duration", "0"], "clip_seconds"),
        (["--width", "33"], "even"),
        (["--height", "-2"], "positive"),
    ],
)
def test_bad_options_give_one_line(args, fragment, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["gen-audio", "-o", str(tmp_path / "x"), "--preset", "tiny", "-n", "1", *args])
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert exit_info.value.code == 1, output
    assert "Traceback" not in output and fragment in output
    assert len([line for line in captured.err.splitlines() if line.strip()]) == 1
    assert not (tmp_path / "x").exists()


def test_unwritable_path_and_existing_folder_through_the_cli(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    proc = call_cli("gen-audio", "-n", "1", "-o", str(blocker / "sub"), "--preset", "tiny", "--audio-only")
    assert_user_error(proc, "cannot create folder")
    proc = call_cli("gen-audio", "-n", "1", "-o", str(tmp_path), "--preset", "tiny", "--audio-only")
    assert_user_error(proc, "not empty", "--overwrite")


def test_library_errors_are_domain_errors(tiny, tmp_path):
    with pytest.raises(InputError):
        generate_dataset(tiny, num=-1, out=tmp_path / "a")
    with pytest.raises(InputError):
        generate_dataset(tiny, num=1, out=tmp_path / "a", width=31)
    assert torch.is_tensor(make_clip(0, tiny, with_frames=False)["audio"])


def test_gen_audio_form_writes_songs_with_sections(tmp_path):
    """--form: each clip is a song of sections, as long as asked; the manifest has its downbeats and sections."""
    out = tmp_path / "songs"
    proc = call_cli("gen-audio", "-n", "1", "-o", str(out), "--form", "--duration", "8", "--audio-only",
                    "--preset", "tiny")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (entry,) = _manifest(out)
    assert entry["duration"] == 8.0 and entry["sections"] and entry["downbeats"] and entry["form"] in proc.stdout
    wav, _ = load_audio(out / entry["wav"])
    assert wav.shape[1] == round(8.0 * entry["sample_rate"])


def test_gen_audio_summary_names_the_seeds_it_used(tmp_path):
    proc = call_cli("gen-audio", "-n", "2", "-o", "g", "--audio-only", "--preset", "tiny", "--seed", "5", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    seeds = [json.loads(line)["seed"] for line in (tmp_path / "g" / "manifest.jsonl").read_text().splitlines()]
    rows = summary_rows(proc.stdout)
    assert rows["clip seeds"] == f"{seeds[0]}, {seeds[1]}" and rows["stream seed (--seed)"] == "5"
    assert seeds[0] != 5
