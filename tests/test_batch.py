"""Batch render (``synesthete render a b c -o folder/``): output names, folders of songs, a bad file among good
ones, existing outputs, and inputs that are never overwritten.

Renders use tiny random-weight checkpoints (conftest's ``ckpt_dir``: 32x32 frames), real audio files and real
FFmpeg, through the real CLI in this process (``call_cli``): what is under test is the batch handling around the
model, not the pictures.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch
from conftest import TINY, assert_user_error, call_cli, ffmpeg, render, tone

from synesthete.media import load_video, write_video, write_wav

TINY_CLI = ("--steps", "2")  # the tiny checkpoints' own size; 2 sampler steps


# --------------------------------------------------------------------------------------------- names
def test_output_names_are_stable_and_distinct():
    from synesthete.files import output_names

    songs = [Path("a/one.mp3"), Path("b/two.wav"), Path("b/one.wav"), Path("c/two.wav"), Path("c/Three.flac")]
    assert output_names(songs) == ["one_mp3.mp4", "two.mp4", "one_wav.mp4", "two-2.mp4", "Three.mp4"]
    assert output_names(songs) == output_names(list(songs))  # the same inputs, the same names
    assert output_names([Path("x.wav")]) == ["x.mp4"]


def test_batch_output_names_never_name_an_input(tmp_path, monkeypatch):
    """1. The rule (files.output_names): an input of the batch in the output folder takes its name."""
    from synesthete.files import output_names

    monkeypatch.chdir(tmp_path)
    for folder in ("x", "y", "z"):
        Path(folder).mkdir()
    songs = [Path("x/a.wav"), Path("y/a.wav"), Path("x/a-2.mp4")]
    assert output_names(songs) == ["a.mp4", "a-2.mp4", "a-2-2.mp4"]  # the second is named as the third input
    assert output_names(songs, "x") == ["a.mp4", "a-3.mp4", "a-2-2.mp4"]
    assert output_names(songs, tmp_path / "x") == output_names(songs, "y/../x")  # the same folder, any spelling
    assert output_names(songs, "z") == output_names(songs)  # inputs elsewhere are not in the way
    assert output_names([Path("x/a.wav"), Path("x/a.mp3"), Path("x/a_wav.mp4")], "x") == \
        ["a_wav-2.mp4", "a_mp3.mp4", "a_wav-3.mp4"]
    assert output_names([Path("x/a.wav"), Path("x/A-2.MP4"), Path("y/a.wav")], "x") == \
        ["a.mp4", "A-2-2.mp4", "a-3.mp4"]  # without case


def test_expand_songs(tmp_path):
    from synesthete.files import expand_songs

    folder = tmp_path / "songs"
    folder.mkdir()
    for name in ("b.wav", "a.MP3", "notes.txt", ".hidden.wav", "cover.jpg"):
        (folder / name).write_bytes(b"x")
    (folder / "sub").mkdir()
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = tmp_path / "missing.ogg"
    found, problems = expand_songs([missing, folder, folder / "b.wav", empty])
    assert found == [missing, folder / "a.MP3", folder / "b.wav"]  # sorted, once each, missing kept to report
    assert [p for p, _ in problems] == [empty] and "no audio files" in problems[0][1]


# --------------------------------------------------------------------------------------------- the CLI
@pytest.mark.slow
def test_batch_render_skips_a_bad_file(ckpt_dir, songs, tmp_path):
    out = tmp_path / "videos"  # created by the render
    proc = call_cli("render", str(songs["wav"]), str(songs["corrupt"]), str(songs["ogg"]), "-o", str(out),
                   *TINY_CLI, "--checkpoint-dir", str(ckpt_dir))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "Traceback" not in output
    assert sorted(p.name for p in out.iterdir()) == ["one.mp4", "two.mp4"]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "bad.mp3" in errors[0] and "could not be decoded" in errors[0], proc.stderr
    assert "2 of 3 songs rendered" in proc.stdout
    for name in ("one.mp4", "two.mp4"):
        frames, fps = load_video(out / name)
        assert fps == 30 and frames.shape[0] == 30


@pytest.mark.slow
def test_batch_render_of_a_folder_refuses_existing_outputs(ckpt_dir, songs, tmp_path):
    folder = tmp_path / "songs"
    folder.mkdir()
    for name, src in (("x.wav", songs["wav"]), ("x.ogg", songs["ogg"]), ("y.wav", songs["wav"])):
        (folder / name).write_bytes(src.read_bytes())
    (folder / "readme.txt").write_text("not a song")
    out = tmp_path / "out"
    out.mkdir()
    (out / "y.mp4").write_bytes(b"keep me")
    args = ("render", str(folder), "-o", str(out), *TINY_CLI, "--checkpoint-dir", str(ckpt_dir))
    proc = call_cli(*args)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "already exists" in proc.stderr and "--overwrite" in proc.stderr
    assert (out / "y.mp4").read_bytes() == b"keep me"
    # Two songs share the stem x: their extensions tell them apart.
    assert sorted(p.name for p in out.iterdir()) == ["x_ogg.mp4", "x_wav.mp4", "y.mp4"]
    again = call_cli(*args, "--overwrite")
    assert again.returncode == 0, again.stdout + again.stderr
    assert load_video(out / "y.mp4")[0].shape[0] == 30
    assert sorted(p.name for p in out.iterdir()) == ["x_ogg.mp4", "x_wav.mp4", "y.mp4"]


def test_batch_render_needs_a_folder_output(ckpt_dir, songs, tmp_path):
    proc = call_cli("render", str(songs["wav"]), str(songs["ogg"]), "-o", str(tmp_path / "both.mp4"),
                   "--checkpoint-dir", str(ckpt_dir))
    assert_user_error(proc, "must be a folder")
    assert len([line for line in proc.stderr.splitlines() if line.strip()]) == 1, proc.stderr
    assert list(tmp_path.iterdir()) == []


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_batch_never_overwrites_a_song_it_has_yet_to_read(ckpt_dir, tmp_path):
    """1. `render x/a.wav y/a.wav x/a-2.mp4 -o x/ --overwrite` replaced the third input with the second song's
    video before reading it, and said "3 of 3 songs rendered". The `_wav` names collided the same way. A hard
    link to a song is refused as an output, not written through."""
    x, y = tmp_path / "x", tmp_path / "y"
    x.mkdir()
    y.mkdir()
    write_wav(x / "a.wav", tone(0.5, freq=220.0), 16000)
    write_wav(y / "a.wav", tone(0.5, freq=330.0), 16000)
    write_video(x / "a-2.mp4", torch.full((9, 3, 32, 32), 200, dtype=torch.uint8), 30,
                audio=tone(0.3, freq=440.0).unsqueeze(0), sample_rate=16000)
    write_wav(y / "b.wav", tone(0.5, freq=550.0), 16000)
    os.link(y / "b.wav", x / "b.mp4")  # the output name of y/b.wav is a hard link to it
    inputs = [x / "a.wav", y / "a.wav", x / "a-2.mp4", y / "b.wav"]
    before = {p: digest(p) for p in inputs}
    proc = render(ckpt_dir, *map(str, inputs), "-o", str(x), "--overwrite")
    assert {p: digest(p) for p in inputs} == before  # no input changed
    assert proc.returncode == 1, proc.stdout + proc.stderr  # y/b.wav was refused
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "b.mp4 is the input" in errors[0], proc.stderr
    assert "3 of 4 songs rendered" in proc.stdout
    assert sorted(p.name for p in x.iterdir()) == ["a-2-2.mp4", "a-2.mp4", "a-3.mp4", "a.mp4", "a.wav", "b.mp4"]
    assert load_video(x / "a-2-2.mp4")[0].shape[0] == 9  # the third song is the 0.3 s video, read intact

    folder = tmp_path / "f"
    folder.mkdir()
    for name, freq in (("a.wav", 220.0), ("a.mp3", 330.0)):
        write_wav(tmp_path / "tmp.wav", tone(0.5, freq=freq), 16000)
        ffmpeg("-i", str(tmp_path / "tmp.wav"), str(folder / name))
    write_video(folder / "a_wav.mp4", torch.zeros(6, 3, 32, 32, dtype=torch.uint8), 30,
                audio=tone(0.2).unsqueeze(0), sample_rate=16000)
    inputs = sorted(folder.iterdir())
    before = {p: digest(p) for p in inputs}
    proc = render(ckpt_dir, *map(str, inputs), "-o", str(folder), "--overwrite")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {p: digest(p) for p in inputs} == before
    assert sorted(p.name for p in folder.iterdir() if p.suffix == ".mp4") == \
        ["a_mp3.mp4", "a_wav-2.mp4", "a_wav-3.mp4", "a_wav.mp4"]


def test_folder_with_songs_only_in_subfolders_says_they_are_not_searched(ckpt_dir, tmp_path):
    folder = tmp_path / "album"
    (folder / "cd1").mkdir(parents=True)
    write_wav(folder / "cd1" / "t.wav", tone(0.2), 16000)
    out = tmp_path / "out"
    proc = render(ckpt_dir, str(folder), "-o", str(out))
    assert_user_error(proc, "holds no audio files", "subfolders are not searched", str(folder / "cd1"))
    # A folder is not counted as a song; a batch that wrote nothing leaves no new folder.
    assert "0 of 0 songs rendered; 1 folder gave none" in proc.stdout
    assert not out.exists()


def test_a_failed_batch_leaves_no_empty_folder(ckpt_dir, song, tmp_path):
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"ID3" + bytes(range(256)) * 20)
    out = tmp_path / "new" / "videos"
    proc = render(ckpt_dir, str(bad), str(tmp_path / "missing.wav"), "-o", str(out))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "0 of 2 songs rendered" in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mp3"]
    folder = tmp_path / "songs"
    folder.mkdir()
    write_wav(folder / "a.wav", tone(0.3), 16000)
    proc = render(ckpt_dir, str(folder), str(tmp_path / "empty-nothing"), "-o", str(out))
    assert "1 of 2 songs rendered" in proc.stdout and sorted(p.name for p in out.iterdir()) == ["a.mp4"]


def test_a_newline_in_a_file_name_keeps_its_row_and_line(ckpt_dir, tmp_path):
    good, bad = tmp_path / "good\nsong.wav", tmp_path / "bad\n[red]x.mp3"
    write_wav(good, tone(0.3), 16000)
    bad.write_bytes(b"not audio")
    proc = call_cli("render", good.name, bad.name, "-o", "out", *TINY, "--checkpoint-dir", str(ckpt_dir),
                    cwd=tmp_path)  # short names: no table cell folds
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "bad\\n[red]x.mp3 could not be decoded" in errors[0], proc.stderr
    assert "good\\nsong.wav" in proc.stdout and "bad\\n[red]x.mp3" in proc.stdout
    for line in (proc.stdout + proc.stderr).splitlines():  # no row, progress line or message split in two
        assert not line.strip(" │┃|").startswith(("song.", "[red]x.", "x.mp3")), proc.stdout + proc.stderr
