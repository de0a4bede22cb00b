"""Media I/O: real H.264 + AAC through torchcodec and FFmpeg, atomic writes, clear decode errors."""

from __future__ import annotations

import math

import pytest
import torch

from synesthete.errors import InputError, OutputError, Terminated
from synesthete.files import atomic_path, check_output
from synesthete.media import AAC_FRAME, VideoWriter, audio_info, load_audio, load_video, write_video, write_wav


def _tone(seconds: float, sr: int, channels: int = 1) -> torch.Tensor:
    t = torch.arange(round(seconds * sr)) / sr
    return torch.stack([0.3 * torch.sin(2 * math.pi * (220 + 110 * c) * t) for c in range(channels)])


def test_mp4_roundtrip_frames_and_audio(tmp_path):
    frames = torch.zeros(30, 3, 64, 48)
    frames[:, 0, 10:20, 10:20] = torch.linspace(0, 1, 30)[:, None, None]  # a red square fading in
    wave = _tone(1.0, 16000)
    path = tmp_path / "clip.mp4"
    write_video(path, frames, 30, wave, 16000)
    video, fps = load_video(path)
    assert video.shape == (30, 3, 64, 48) and fps == 30
    # The square is brighter at the end than at the start (content survives encoding).
    assert video[-1, 0, 12:18, 12:18].float().mean() > video[0, 0, 12:18, 12:18].float().mean() + 100
    audio, sr = load_audio(path)
    assert sr == 16000
    assert 16000 <= audio.shape[-1] <= 16000 + 2 * AAC_FRAME  # AAC pads to whole frames
    info = audio_info(path)
    assert abs(info.duration - 1.0) < 0.1


def test_wav_roundtrip_and_resample(tmp_path):
    wave = _tone(0.5, 8000, channels=2)
    path = tmp_path / "a.wav"
    write_wav(path, wave, 8000)
    back, sr = load_audio(path)
    assert sr == 8000 and back.shape == wave.shape
    assert torch.allclose(back, wave, atol=1 / 16000)
    mono, sr = load_audio(path, sample_rate=16000, mono=True)
    assert sr == 16000 and mono.shape[0] == 1 and abs(mono.shape[1] - 8000) <= 2
    excerpt, _ = load_audio(path, start=0.1, duration=0.2)
    assert abs(excerpt.shape[1] - 1600) <= 2


def test_decode_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_audio(tmp_path / "missing.wav")
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"not audio at all" * 64)
    with pytest.raises(InputError, match="could not be decoded"):
        load_audio(bad)
    silent_video = tmp_path / "v.mp4"
    write_video(silent_video, torch.zeros(4, 3, 16, 16), 30)
    with pytest.raises(InputError, match="no audio stream"):
        load_audio(silent_video)
    with pytest.raises(InputError):
        load_video(bad)


def test_interrupted_writer_leaves_nothing(tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(out, 32, 32, 30, audio_sample_rate=16000) as writer:
            writer.add_frames(torch.rand(10, 3, 32, 32))
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, Terminated])
def test_interruption_during_the_flush_is_not_an_encoding_failure(tmp_path, interruption):
    """Ctrl-C or SIGTERM landing while the encoder flushes propagates as itself (the CLI's exit 130/143), not as
    "encoding failed", and leaves nothing behind."""
    out = tmp_path / "out.mp4"
    with pytest.raises(interruption):
        with VideoWriter(out, 32, 32, 30) as writer:
            writer.add_frames(torch.rand(10, 3, 32, 32))
            flush = writer._encoder.close

            def flush_then_signal():  # the real flush, then the signal handler's exception
                flush()
                raise interruption

            writer._encoder.close = flush_then_signal
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_keeps_previous_file(tmp_path):
    target = tmp_path / "ckpt.pt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half-writ")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]


def test_check_output(tmp_path):
    existing = tmp_path / "x.mp4"
    existing.write_bytes(b"1")
    with pytest.raises(OutputError, match="already exists"):
        check_output(existing, overwrite=False)
    assert check_output(existing, overwrite=True) == existing
    with pytest.raises(OutputError, match="even"):
        VideoWriter(tmp_path / "odd.mp4", 31, 32, 30)


@pytest.mark.slow
def test_torchcodec_loads_without_torchdynamo_which_still_loads_when_used(tmp_path):
    """Decoding and encoding do not import TorchDynamo (seconds of start-up); torch.compile still finds it."""
    import subprocess
    import sys

    script = (
        "import sys, torch\n"
        "from synesthete.media import load_audio, write_video\n"
        f"write_video({str(tmp_path / 'a.mp4')!r}, torch.rand(4, 3, 32, 32), 4, 0.1 * torch.randn(1, 16000), 16000)\n"
        f"wave, rate = load_audio({str(tmp_path / 'a.mp4')!r})\n"
        "assert rate == 16000 and wave.shape[-1] >= 16000, wave.shape\n"
        "print('dynamo' if 'torch._dynamo' in sys.modules else 'no dynamo')\n"
        "f = torch.compile(lambda x: x * 2, backend='eager')\n"
        "print(float(f(torch.ones(1))), hasattr(torch._dynamo, 'reset'))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[:2] == ["no dynamo", "2.0 True"], out.stdout
