"""Seeking into compressed audio: an excerpt decoded from the middle equals the same span decoded from the start."""

from __future__ import annotations

import subprocess

import pytest
import torch
from conftest import assert_user_error, call_cli

from synesthete.audio.synth import synthesize
from synesthete.media import AudioReader, audio_info, load_audio, load_video, write_video, write_wav
from synesthete.render import song_features
from synesthete.settings import load_settings

SONG_SECONDS = 40.0
START, SPAN = 27.3, 6.0  # an excerpt well into the file, not on a whole second


class TensorSource:
    """An in-memory ``song_features`` source: the samples of a tensor [N], in order."""

    def __init__(self, wave: torch.Tensor) -> None:
        self.wave, self.pos = wave, 0

    def read(self, n: int) -> torch.Tensor:
        out = self.wave[self.pos : self.pos + n]
        self.pos += out.shape[-1]
        return out.unsqueeze(0)


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    """A 40 s procedural song with drums, encoded by the ffmpeg program to mp3 and ogg/vorbis at 44.1 kHz."""
    root = tmp_path_factory.mktemp("seek")
    settings = load_settings()
    wave, _ = synthesize(5, settings, duration=SONG_SECONDS, drums=True, silence=False, dropout=False)
    wav = root / "song.wav"
    write_wav(wav, torch.stack([wave, 0.7 * wave]), settings.audio.sample_rate)
    files = {}
    for ext, codec in (("mp3", "libmp3lame"), ("ogg", "libvorbis")):
        files[ext] = root / f"song.{ext}"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-ar", "44100", "-c:a", codec,
                        str(files[ext])], check=True)
    return files


def _excerpt(path, sample_rate, channels, backend=None):
    info = audio_info(path)
    with AudioReader(path, sample_rate, channels, start=START, duration=SPAN, stream_index=info.stream_index,
                     source_rate=info.sample_rate, backend=backend) as reader:
        return torch.cat(list(reader.blocks(7919)), dim=-1), reader.backend


@pytest.mark.parametrize("ext", ["mp3", "ogg"])
@pytest.mark.parametrize(("sample_rate", "channels"), [(16000, 1), (48000, 2), (44100, 2)])
def test_seeked_excerpt_has_the_samples_of_a_decode_from_the_start(songs, ext, sample_rate, channels):
    excerpt, backend = _excerpt(songs[ext], sample_rate, channels)
    assert backend == "ffmpeg"  # the ffmpeg program is a prerequisite: the seeking path is the one under test
    full, sr = load_audio(songs[ext], sample_rate=sample_rate, num_channels=channels)  # torchcodec, from the start
    assert sr == sample_rate
    first = round(START * sample_rate)
    reference = full[:, first : first + round(SPAN * sample_rate)]
    assert excerpt.shape == reference.shape
    assert excerpt.abs().max() > 0.05  # music, not silence
    # The preroll before the seek target lets the decoder settle: the samples match to float rounding.
    assert torch.allclose(excerpt, reference, atol=1e-4), float((excerpt - reference).abs().max())


@pytest.mark.parametrize("ext", ["mp3", "ogg"])
def test_seeked_excerpt_has_the_features_of_the_same_span_decoded_from_the_start(songs, ext):
    settings = load_settings().updated(render={"chunk_seconds": 2.0})  # several chunks, so their seams count
    sr = settings.audio.sample_rate
    info = audio_info(songs[ext])
    with AudioReader(songs[ext], sr, 1, start=START, duration=SPAN, stream_index=info.stream_index,
                     source_rate=info.sample_rate) as reader:
        seeked = song_features(reader, SPAN, settings)
    full, _ = load_audio(songs[ext], sample_rate=sr, mono=True)
    span = full[0, round(START * sr) : round((START + SPAN) * sr)]
    reference = song_features(TensorSource(span), SPAN, settings)
    assert seeked.shape == reference.shape == (round(SPAN * settings.video.fps), reference.shape[1])
    assert reference[:, 2].max() > 0.2  # the span has onsets (drums)
    assert torch.allclose(seeked, reference, atol=1e-4), float((seeked - reference).abs().max())
    # Chunked features equal a one-shot analysis of the span (margins at the chunk edges).
    from synesthete.audio.features import FeatureExtractor

    one_shot = FeatureExtractor(settings.audio, settings.video.fps)(span, num_frames=seeked.shape[0])
    assert torch.allclose(seeked[3:-3], one_shot[3:-3], atol=1e-3), float((seeked - one_shot)[3:-3].abs().max())


def test_torchcodec_fallback_reads_the_same_excerpt(songs):
    """Without the ffmpeg program torchcodec decodes each chunk (from the file's start). Its resampler starts
    afresh at each chunk, a fraction of a sample off the global grid: not the same samples, the same features."""
    settings = load_settings()
    seeked, _ = _excerpt(songs["ogg"], 16000, 1)
    fallback, backend = _excerpt(songs["ogg"], 16000, 1, backend="torchcodec")
    assert backend == "torchcodec" and fallback.shape == seeked.shape
    a = song_features(TensorSource(seeked[0]), SPAN, settings)
    b = song_features(TensorSource(fallback[0]), SPAN, settings)
    assert (a - b).abs().mean() < 0.01, float((a - b).abs().mean())


def test_reader_stops_at_the_end_of_the_file_and_refuses_what_has_no_audio(songs, tmp_path):
    with AudioReader(songs["mp3"], 16000, 1, start=SONG_SECONDS - 1.0, duration=5.0) as reader:
        tail = torch.cat(list(reader.blocks(4000)), dim=-1)
    assert 0.9 * 16000 <= tail.shape[-1] <= 1.1 * 16000  # what exists, then the end
    silent_video = tmp_path / "video.mp4"
    write_video(silent_video, torch.zeros(10, 3, 32, 32), 30)
    from synesthete.errors import InputError

    with pytest.raises(InputError, match="no audio stream"), AudioReader(silent_video, 16000, 1) as reader:
        reader.read(100)


@pytest.mark.slow
def test_render_an_excerpt_deep_into_a_compressed_song(songs, tmp_path):
    out = tmp_path / "excerpt.mp4"
    proc = call_cli("render", str(songs["ogg"]), "-o", str(out), "--start", str(START), "--duration", "1.5",
                   "--steps", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    frames, fps = load_video(out)
    assert frames.shape[0] == 45
    audio, sr = load_audio(out)
    assert sr == 44100 and audio.shape[0] == 2
    # The muxed audio is the excerpt's (AAC adds its priming delay and pads to whole frames).
    source, _ = load_audio(songs["ogg"], start=START, duration=1.5)
    n = min(audio.shape[-1], source.shape[-1]) - 4096
    best = max(float(torch.nn.functional.cosine_similarity(audio[0, lag : lag + n], source[0, :n], dim=0))
               for lag in range(0, 4096, 16))
    assert best > 0.9, best
    assert_user_error(call_cli("render", str(songs["ogg"]), "-o", str(tmp_path / "late.mp4"), "--start", "41"),
                      "past the end")
