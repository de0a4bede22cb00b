"""Issue 22, "nothing lost on the new surface": batch render, the Python API, tampered checkpoints, full disks.

Each case of the probe that failed is reproduced with real files, real FFmpeg and tiny random-weight
checkpoints (32x32 frames), through the real CLI (in this process, ``call_cli``, or in a process of its own
where the process is under test) or the Python API. Full and read-only disks are real: a small tmpfs mounted
in a private mount namespace (``unshare``) for one CLI process; where that is not allowed, those tests skip.
"""

from __future__ import annotations

import hashlib
import os
import random
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, assert_user_error, call_cli, cli_env, tiny_checkpoints

from synesthete.errors import CheckpointError, ConfigError, InputError, OutputError, SynestheteError
from synesthete.media import load_video, write_video, write_wav
from synesthete.settings import load_settings

TINY = ("--preset", "tiny", "--steps", "2")


def tone(seconds: float, sample_rate: int = 16000, freq: float = 220.0) -> torch.Tensor:
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    return 0.3 * torch.sin(2 * torch.pi * freq * t)


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory) -> Path:
    return tiny_checkpoints(tmp_path_factory.mktemp("tiny_ckpt"))


@pytest.fixture(scope="module")
def song(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("song") / "song.wav"
    write_wav(path, tone(1.0), 16000)
    return path


@pytest.fixture(scope="module")
def pipe(ckpt_dir):
    from synesthete import Synesthete

    return Synesthete.from_pretrained(ckpt_dir, device="cpu", sampling={"steps": 2})


def render(ckpt_dir: Path, *args: str, env: dict[str, str] | None = None):
    return call_cli("render", *args, *TINY, "--checkpoint-dir", str(ckpt_dir), env=env)


def popen_cli(*args: str, sigint: bool = True) -> subprocess.Popen:
    """``python -m synesthete ARGS`` in its own process group; ``sigint`` False starts it with SIGINT ignored
    (as a shell's background job), True with the default handler (a terminal's foreground job)."""
    disposition = signal.SIG_DFL if sigint else signal.SIG_IGN
    return subprocess.Popen(
        [sys.executable, "-m", "synesthete", *args], cwd=str(ROOT), env=cli_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, disposition),
    )


def wait_for(predicate, proc: subprocess.Popen, what: str, limit: float = 180.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process ended (rc {proc.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


# --------------------------------------------------------------------------------------------- tmpfs
def _namespace() -> list[str] | None:
    """A command prefix that runs in a private mount namespace where tmpfs can be mounted, or None."""
    for prefix in (["unshare", "-m"], ["unshare", "-rm"]):
        try:
            proc = subprocess.run([*prefix, "sh", "-c", "mount -t tmpfs -o size=64k none /mnt"], capture_output=True,
                                  timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if proc.returncode == 0:
            return prefix
    return None


NAMESPACE = _namespace() if sys.platform.startswith("linux") else None
needs_tmpfs = pytest.mark.skipif(NAMESPACE is None, reason="cannot mount a tmpfs in a private mount namespace")


def cli_on_tmpfs(mount: Path, options: str, *args: str, env: dict[str, str] | None = None, before: str = "",
                 after: str = "") -> subprocess.CompletedProcess:
    """Run ``python -m synesthete ARGS`` with a tmpfs (``mount -o options``) at ``mount``, private to that process
    and gone with it: shell ``before`` runs first, ``after`` (to look at the tmpfs) prints after a line "@@"."""
    mount.mkdir(exist_ok=True)
    script = (f"mount -t tmpfs -o {options} none {shlex.quote(str(mount))} || exit 99\n{before}\n"
              f'"$@"; rc=$?\necho @@\n{after}\nexit $rc')
    return subprocess.run([*NAMESPACE, "sh", "-c", script, "sh", sys.executable, "-m", "synesthete", *args],
                          capture_output=True, text=True, env=cli_env(env), cwd=str(ROOT), timeout=600)


def one_error_line(proc, *fragments: str) -> None:
    """``assert_user_error`` with stdout split at the "@@" that ``cli_on_tmpfs`` prints after the command."""
    stdout = proc.stdout.split("@@")[0]
    result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, proc.stderr)
    assert_user_error(result, *fragments)


# ================================================================================= data loss
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


def test_a_decoder_that_dies_partway_is_an_error_not_silence(tmp_path):
    """2. FFmpeg dying mid-song (here: a real SIGINT to it) used to read as the end of the song."""
    from synesthete.media import AudioReader

    path = tmp_path / "long.wav"
    write_wav(path, tone(30.0), 16000)
    with AudioReader(path, 16000, 1) as reader:
        assert reader.read(16000).shape[-1] == 16000
        reader._proc.send_signal(signal.SIGINT)  # what a Ctrl-C to the process group does to it
        try:
            reader._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # FFmpeg finishing up can block on the full pipe nobody reads: end it
            reader._proc.kill()
            reader._proc.wait()
        with pytest.raises(InputError, match=r"long\.wav: the audio decoder \(FFmpeg\) failed at"):
            while reader.read(16000).shape[-1]:
                pass


@pytest.mark.slow
def test_render_whose_decoder_dies_fails_and_leaves_no_video(ckpt_dir, tmp_path):
    """2. The issue's reproduction: SIGINT to the process group of a render started with SIGINT ignored. Only
    the FFmpeg child dies; the last part of the song was silent, with exit 0."""
    path = tmp_path / "long.wav"
    write_wav(path, tone(60.0), 16000)
    out = tmp_path / "out.mp4"
    # FFmpeg, blocked on a full pipe, exits once the render reads on: a render that goes on makes it read soon.
    proc = popen_cli("render", str(path), "-o", str(out), *TINY, "--checkpoint-dir", str(ckpt_dir), sigint=False)
    try:
        # Encoded video in the temporary mp4: FFmpeg has been decoding for a while (a signal before it set up its
        # handler would find SIGINT ignored, as the render it inherits from has it).
        wait_for(lambda: any(p.stat().st_size > 20_000 for p in tmp_path.glob(".out.*.tmp.mp4")), proc,
                 "the first seconds of video")
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1, stdout + stderr
    assert "Traceback" not in stdout + stderr
    errors = [line for line in stderr.splitlines() if line.strip()]
    assert errors[-1].startswith(f"error: {path}: the audio decoder (FFmpeg) failed at"), stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.wav"]  # no video, no temporary file


# ================================================================================= tracebacks, exhaustion
@pytest.mark.parametrize(("field", "value", "message"), [
    ("dim", 100_000, "DiTConfig.dim=100000: must be in 1..4096"),
    ("depth", 10**6, "DiTConfig.depth=1000000: must be in 1..128"),
    ("dim", -8, "DiTConfig.dim=-8: must be in"),
    ("heads", "2", "DiTConfig.heads='2': must be an integer"),
    ("mlp_ratio", float("nan"), "must be a finite number"),
    ("schedule", "x" * 100_000, "must be one of cosine, linear"),
    ("depth", 100, "more than the 101,104 parameters the file holds"),  # within bounds, but not these weights
])
def test_tampered_checkpoint_config_is_refused_before_building(ckpt_dir, tmp_path, field, value, message):
    """3. A stored config asking for a huge network was built before any check: dim 100000 allocated 40 GB,
    depth 10^6 layers until the memory ran out, a negative dim gave a traceback."""
    from synesthete.checkpoint import load_models, read_checkpoint, save_checkpoint

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "vae.pt").write_bytes((ckpt_dir / "vae.pt").read_bytes())
    ckpt = read_checkpoint(ckpt_dir / "diffusion.pt")
    ckpt["config"] = {**ckpt["config"], field: value}
    save_checkpoint(ckpt, bad / "diffusion.pt")
    with pytest.raises(CheckpointError, match="diffusion.pt") as info:
        load_models(load_settings("tiny"), bad, "cpu")
    assert message in str(info.value) and "\n" not in str(info.value) and len(str(info.value)) < 400


def test_tampered_checkpoint_is_one_line_from_the_cli(ckpt_dir, song, tmp_path):
    from synesthete.checkpoint import read_checkpoint, save_checkpoint

    bad = tmp_path / "bad"
    bad.mkdir()
    ckpt = read_checkpoint(ckpt_dir / "vae.pt")
    ckpt["config"] = {**ckpt["config"], "base_channels": -1}
    save_checkpoint(ckpt, bad / "vae.pt")
    (bad / "diffusion.pt").write_bytes((ckpt_dir / "diffusion.pt").read_bytes())
    proc = render(bad, str(song), "-o", str(tmp_path / "out.mp4"))
    assert_user_error(proc, "vae.pt", "VAEConfig.base_channels=-1")


def test_seeds_past_64_bits_are_one_line(ckpt_dir, song, pipe, tmp_path):
    """4. `--seed 2**64` overflowed gen.manual_seed: a traceback from the CLI and the API."""
    huge = str(2**64)
    assert_user_error(render(ckpt_dir, str(song), "-o", str(tmp_path / "x.mp4"), "--seed", huge), "render.seed")
    env = {"SYNESTHETE_PATHS__RUNS": str(tmp_path / "runs")}
    assert_user_error(call_cli("train", "vae", "--preset", "tiny", "--seed", huge, env=env), "train.seed")
    assert_user_error(call_cli("gen-audio", "-n", "1", "-o", str(tmp_path / "d"), "--seed", huge), "data.seed")
    with pytest.raises(InputError, match=r"^invalid option: seed: Input should be less than or equal to"):
        pipe.render(song, seed=2**64)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "d").exists()
    assert pipe.render(song, seed=2**63 - 1, duration=0.2).frames.shape[0] == 6  # the largest seed works


@needs_tmpfs
@pytest.mark.slow
@pytest.mark.parametrize(("when", "file"), [("at the first checkpoint", "ckpt_latest.pt"),
                                            ("from the start", "settings.json")])
def test_training_onto_a_full_disk_is_one_line(tmp_path, when, file):
    """5. `train` onto a full disk gave two tracebacks (Errno 28, then torch's zip writer); now one line, as
    render gives, and no run folder or temporary file is left. A disk full from the start failed on the pid
    in the run folder's lock file, then on settings.json."""
    full = tmp_path / "full"
    fill = f"mkdir {full}/runs; dd if=/dev/zero of={full}/fill bs=4k 2>/dev/null" if when == "from the start" else ""
    proc = cli_on_tmpfs(full, "size=150k", "train", "vae", "--preset", "tiny", "--max-steps", "2",
                        env={"SYNESTHETE_PATHS__RUNS": str(full / "runs")}, before=fill,
                        after=f"ls -A {full}/runs 2>/dev/null")
    one_error_line(proc, file, "no space left on device")
    assert proc.stdout.split("@@")[1].split() == []  # the run folder it made is gone, with no temporary file


@needs_tmpfs
@pytest.mark.slow
def test_rendering_onto_a_full_disk_is_one_line_and_keeps_the_old_file(ckpt_dir, tmp_path):
    """5, 9. A full disk showed torchcodec's C++ source path (or a traceback) before "No space left on device"."""
    song = tmp_path / "s.wav"
    write_wav(song, tone(6.0), 16000)  # about 100 kB of video and AAC
    full = tmp_path / "full"
    proc = cli_on_tmpfs(full, "size=40k", "render", str(song), "-o", str(full / "x.mp4"), "--overwrite", *TINY,
                        "--checkpoint-dir", str(ckpt_dir), before=f"printf keep > {full}/x.mp4",
                        after=f"ls -A {full}; cat {full}/x.mp4 2>/dev/null")
    one_error_line(proc, "x.mp4", "no space left on device")
    assert ".cpp" not in proc.stderr and "__w" not in proc.stderr
    assert proc.stdout.split("@@")[1].split() == ["x.mp4", "keep"]  # the old file, and no temporary file


@needs_tmpfs
@pytest.mark.slow
def test_read_only_file_system_is_named_in_a_batch(song, tmp_path):
    """Cosmetic: a read-only file system was reported as "permission denied"."""
    ro = tmp_path / "ro"
    proc = cli_on_tmpfs(ro, "ro,size=64k", "render", str(song), str(song), "-o", str(ro / "videos"))
    one_error_line(proc, "cannot write to", "read-only file system")
    assert "permission denied" not in proc.stderr.lower()


def test_size_is_bounded(ckpt_dir, song, pipe, tmp_path):
    """6. `render(size=100000)` to memory tried to allocate 720 GB; `--size 100000` got a raw encoder error."""
    with pytest.raises(InputError, match="^invalid option: size: Input should be less than or equal to 4096$"):
        pipe.render(song, size=100_000)
    assert_user_error(render(ckpt_dir, str(song), "-o", str(tmp_path / "x.mp4"), "--size", "100000"),
                      "render.size", "4096")
    assert not (tmp_path / "x.mp4").exists()


# ================================================================================= the wrong exception
@pytest.mark.parametrize(("options", "keyword"), [
    ({"steps": 0}, "steps"), ({"steps": -1}, "steps"), ({"guidance": float("nan")}, "guidance"),
    ({"guidance": float("inf")}, "guidance"), ({"style_guidance": float("nan")}, "style_guidance"),
    ({"style_guidance": float("-inf")}, "style_guidance"), ({"lanes": 0}, "lanes"), ({"seed": -1}, "seed"),
    ({"sampler": "bogus"}, "sampler"),
])
def test_api_option_errors_are_the_projects_own(pipe, song, options, keyword):
    """7. They were pydantic's multi-line ValidationError (with a URL), which `except SynestheteError` missed."""
    with pytest.raises(SynestheteError) as info:
        pipe.render(song, **options)
    assert isinstance(info.value, InputError)
    message = str(info.value)
    assert message.startswith(f"invalid option: {keyword}: ") and "\n" not in message and "http" not in message


def test_api_setting_errors_are_config_errors(ckpt_dir, monkeypatch):
    from synesthete import Synesthete

    with pytest.raises(ConfigError, match=r"^invalid setting: sampling\.steps: "):
        Synesthete.from_pretrained(ckpt_dir, device="cpu", sampling={"steps": 0})
    monkeypatch.setenv("SYNESTHETE_RENDER__CRF", "99")
    with pytest.raises(ConfigError, match=r"^invalid setting: render\.crf: "):
        Synesthete()


@pytest.mark.slow
def test_existing_output_names_the_callers_own_overwrite(ckpt_dir, pipe, song, tmp_path):
    """7. The API's message for an existing output said `--overwrite`; its keyword is `overwrite=True`."""
    out = tmp_path / "song.mp4"
    out.write_bytes(b"keep")
    with pytest.raises(OutputError, match=r"use overwrite=True to replace it\)$"):
        pipe.render(song, out)
    assert_user_error(render(ckpt_dir, str(song), "-o", str(out)), "use --overwrite to replace it")
    other = tmp_path / "other.wav"
    write_wav(other, tone(0.2), 16000)
    proc = render(ckpt_dir, str(song), str(other), "-o", str(tmp_path))  # song.mp4 exists: a batch
    assert proc.returncode == 1 and "use --overwrite to replace it" in proc.stderr, proc.stderr
    assert out.read_bytes() == b"keep"


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stopped_batch_says_what_it_rendered_and_what_not(ckpt_dir, tmp_path, signum):
    """8. Ctrl-C exited 130 with no line at all; SIGTERM said nothing of the songs that finished."""
    first, long, last = tmp_path / "first.wav", tmp_path / "long.wav", tmp_path / "last.wav"
    write_wav(first, tone(0.5), 16000)
    write_wav(long, tone(120.0), 16000)
    write_wav(last, tone(0.5), 16000)
    out = tmp_path / "out"
    proc = popen_cli("render", str(first), str(long), str(last), "-o", str(out), "--preset", "tiny",
                     "--steps", "100", "--checkpoint-dir", str(ckpt_dir))
    try:
        wait_for(lambda: (out / "first.mp4").exists() and any(p.name.startswith(".long.") for p in out.iterdir()),
                 proc, "the first video and the second's temporary file")
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == (130 if signum == signal.SIGINT else 143), stdout + stderr
    assert "Traceback" not in stdout + stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    why = "interrupted (Ctrl-C)" if signum == signal.SIGINT else "terminated (SIGTERM)"
    assert lines[-1].startswith(f"error: {why}: stopped"), stderr
    assert f"1 of 3 songs rendered ({out / 'first.mp4'}); not rendered: {long}, {last}" in lines[-1], stderr
    assert sorted(p.name for p in out.iterdir()) == ["first.mp4"]


def test_x264_preset_is_checked_as_a_setting(ckpt_dir, song, tmp_path):
    """9. `SYNESTHETE_RENDER__X264_PRESET=nosuch` reached the encoder, whose error never named the setting."""
    proc = render(ckpt_dir, str(song), "-o", str(tmp_path / "x.mp4"), env={"SYNESTHETE_RENDER__X264_PRESET": "nosuch"})
    assert_user_error(proc, "render.x264_preset", "veryfast")
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.slow
def test_mp3_with_junk_after_its_id3_tag_renders(ckpt_dir, tmp_path):
    """9. torchcodec stopped at a block of junk after the ID3 tag ("SingleStreamDecoder.cpp ... Header missing")
    where `ffmpeg -i` decodes the file with exit 0: decode what FFmpeg decodes."""
    clean = tmp_path / "clean.mp3"
    ffmpeg("-f", "lavfi", "-i", "sine=f=440:d=3", "-ar", "44100", "-b:a", "128k", "-id3v2_version", "3",
           "-metadata", "title=x", str(clean))
    data = clean.read_bytes()
    assert data[:3] == b"ID3"
    end = 10 + (data[6] << 21 | data[7] << 14 | data[8] << 7 | data[9])  # the tag's syncsafe size
    junk = random.Random(0).randbytes(200_000)
    song = tmp_path / "junk.mp3"
    song.write_bytes(data[:end] + junk + data[end:])
    assert subprocess.run(["ffmpeg", "-v", "quiet", "-i", str(song), "-f", "null", "-"]).returncode == 0
    out = tmp_path / "out.mp4"
    proc = render(ckpt_dir, str(song), "-o", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ".cpp" not in proc.stderr
    assert abs(load_video(out)[0].shape[0] - 90) <= 3


def test_codec_errors_lose_their_cpp_source_location():
    from synesthete.media import codec_message

    raw = ("encodeVideoFrame, /__w/torchcodec/torchcodec/src/torchcodec/_core/Encoder.cpp:1504, Error in "
           "av_interleaved_write_frame: No space left on device")
    assert codec_message(RuntimeError(raw)) == "No space left on device"
    raw = ("decodeAVFrame, /__w/torchcodec/src/torchcodec/_core/SingleStreamDecoder.cpp:1436, Could not push "
           "packet to decoder: Invalid data found when processing input")
    assert codec_message(RuntimeError(raw)) == raw.split(", ", 2)[2]


def test_render_to_memory_is_estimated_and_refused_above_the_limit(ckpt_dir, song):
    """10. A 2-hour song at 128 px to memory needed about 21 GB (frames gathered, then concatenated)."""
    from synesthete import Synesthete
    from synesthete.render import check_memory, memory_need

    settings = load_settings()  # 128x128 frames at 30 fps
    two_hours = 2 * 3600 * 30
    assert memory_need(settings, two_hours) == two_hours * 3 * 128 * 128  # held once: 10.6 GB, not 21
    with pytest.raises(OutputError, match=r"7200\.0 s at 128x128 would hold 10\.62 GB of frames, more than "
                                          r"render\.memory_gb \(4 GB\): render to a file"):
        check_memory(settings, two_hours)
    check_memory(settings, 30 * 60)  # a minute is fine
    small = Synesthete.from_pretrained(ckpt_dir, device="cpu", render={"memory_gb": 1e-5})
    with pytest.raises(OutputError, match=r"would hold 0\.00 GB of frames, more than render\.memory_gb"):
        small.render(song)  # 30 frames of 32x32: 92 kB, above 10 kB
    assert small.render(song, duration=0.1, steps=1).frames.shape == (3, 3, 32, 32)  # 9 kB


def test_render_to_memory_holds_its_frames_once():
    """10. Frames go into one tensor, allocated at the start: no blocks joined at the end."""
    from synesthete.render.output import MemorySink

    sink = MemorySink(10, 4, 6)
    for n in (4, 4, 2):
        sink.add(torch.rand(n, 3, 4, 6))
    frames = sink.frames()
    assert frames.shape == (10, 3, 4, 6) and frames.dtype == torch.uint8
    assert frames.untyped_storage().data_ptr() == sink.data.untyped_storage().data_ptr()
    assert frames.untyped_storage().nbytes() == 10 * 3 * 4 * 6


# ================================================================================= cosmetic
def test_style_messages(song, pipe):
    with pytest.raises(InputError) as info:
        pipe.render(song, style="+")
    assert str(info.value).startswith("unknown style '+': it has no family name before or after a '+'")
    with pytest.raises(InputError) as info:
        pipe.render(song, style="z" * 100_000)
    assert len(str(info.value)) < 400 and "(100002 characters)" in str(info.value)


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


def test_symlink_loop_and_broken_link_are_named(ckpt_dir, tmp_path):
    loop = tmp_path / "loop.wav"
    loop.symlink_to(loop)
    broken = tmp_path / "broken.wav"
    broken.symlink_to(tmp_path / "gone.wav")
    assert_user_error(render(ckpt_dir, str(loop), "-o", str(tmp_path / "a.mp4")), "symbolic link loop")
    assert_user_error(render(ckpt_dir, str(broken), "-o", str(tmp_path / "b.mp4")), "broken symbolic link",
                      "gone.wav")


@pytest.mark.slow
def test_train_diffusion_with_a_vae_of_another_size_suggests_what_exists(ckpt_dir, tmp_path):
    """`train diffusion` suggested `--size`, an option it does not have."""
    env = {"SYNESTHETE_PATHS__RUNS": str(tmp_path / "runs"), "SYNESTHETE_DEVICE": "cpu"}
    proc = call_cli("train", "diffusion", "--preset", "cpu", "--vae", str(ckpt_dir / "vae.pt"), "--max-steps", "1",
                    env=env)
    assert_user_error(proc, "encodes 32x32 frames", "SYNESTHETE_VIDEO__WIDTH=32")
    assert "--size" not in proc.stderr
