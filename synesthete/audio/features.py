"""Frame-aligned audio features: the one module that drives both the visualizers and the model.

For every video frame it gives absolute loudness (RMS), onset strength (spectral flux), spectral
centroid and ``n_bands`` band energies. Nothing is normalised per clip: silence must stay distinguishable
from sound, so every channel is a fixed, absolute mapping into roughly [0, 1].

The analysis runs at a fine hop (``audio.feature_hop``, 10 ms at 16 kHz) and is then pooled into video
frames: onsets by max (a 10 ms transient must survive), the rest by mean. Frame ``i`` is shown at time
``i / fps`` and describes the audio centred on that moment, ``[(i - 0.5) / fps, (i + 0.5) / fps)``, so an
onset lands on the frame *nearest* to it. (With ``[i / fps, (i + 1) / fps)`` the picture would react up
to a whole frame before the sound is heard, which AV-Align, strict to one frame, punishes:
docs/experiments/2026-11-25-sync-metrics.md.)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torchaudio
from torch import nn

from synesthete.settings import AudioSettings, Settings

# Fixed channel order of the feature vector; band channels follow as band_0 .. band_{n_bands-1}.
BASE_FEATURES = ("rms", "loudness", "onset", "centroid")
# Absolute scales, chosen so a normalised loud mix sits near 1 (see docs/audio_inputs.md).
RMS_SCALE = 4.0  # linear RMS of a loudness-normalised clip is about 0.1-0.25
DB_FLOOR = -70.0  # dB mapped to 0 in the loudness and band channels
ONSET_SCALE = 1 / 20.0  # mean positive log-mel flux (dB) of a drum hit is about 15-40 dB
LEVEL_QUANTILE = 0.9  # the share of an excerpt's audible frames at or under render.level once it is turned down


def feature_names(audio: AudioSettings) -> list[str]:
    """Names of the feature channels, in order."""
    return list(BASE_FEATURES) + [f"band_{i}" for i in range(audio.n_bands)]


def num_features(audio: AudioSettings) -> int:
    """Number of feature channels per frame."""
    return len(BASE_FEATURES) + audio.n_bands


def audible_level(settings: Settings) -> float:
    """The loudness feature's value at ``eval.silence_db`` (the channel maps DB_FLOOR..0 dB to 0..1): frames
    above it are audible, frames under it silent."""
    return (settings.eval.silence_db - DB_FLOOR) / -DB_FLOOR


def audible_frames(features: torch.Tensor, settings: Settings) -> torch.Tensor:
    """bool [T]: the frames of ``features`` [T, F] louder than ``eval.silence_db``."""
    return features[:, feature_names(settings.audio).index("loudness")] > audible_level(settings)


def level_gain(features: torch.Tensor, settings: Settings, target: float | None = None) -> float:
    """The gain (at most 1) that turns an excerpt down for the Brain: its loud frames (the ``LEVEL_QUANTILE``
    of its RMS feature over the frames louder than ``eval.silence_db``) to ``target`` (default
    ``render.level``, the level of the music it learned from). 1 for an excerpt at or under it, for silence,
    and with a target of 0.

    Mastered songs are louder than the procedural clips, and a Brain fed their level bursts out of its look
    (docs/experiments/2026-12-02-level.md). Render turns a song down before the analysis (the video keeps the
    song's own sound), and the data engine turns loud real excerpts down to about the same level
    (``data.make_music_clip``), so the Brain trains at the level it renders at."""
    target = settings.render.level if target is None else target
    audible = audible_frames(features, settings)
    if target <= 0 or not bool(audible.any()):
        return 1.0
    loud = float(torch.quantile(features[audible, feature_names(settings.audio).index("rms")].float(), LEVEL_QUANTILE))
    return min(1.0, target / loud) if loud > 0 else 1.0


def at_level(analyse: Callable[[float], torch.Tensor], settings: Settings,
             target: float | None = None) -> tuple[torch.Tensor, float]:
    """Features [T, F] of ``analyse(gain)`` at the level the Brain hears, and that gain: analysed as they are,
    and once more turned down (``level_gain``) when louder than ``target`` (default ``render.level``)."""
    features = analyse(1.0)
    gain = level_gain(features, settings, target)
    return (analyse(gain) if gain < 1 else features), gain


def frames_for(num_samples: int, sample_rate: int, fps: float) -> int:
    """Video frames that cover ``num_samples`` of audio (rounded to the nearest frame)."""
    return max(0, round(num_samples * fps / sample_rate))


class FeatureExtractor(nn.Module):
    """Waveform [B, N] (or [N]) at ``audio.sample_rate`` -> features [B, T, F] at ``fps``."""

    def __init__(self, audio: AudioSettings, fps: float) -> None:
        super().__init__()
        self.audio = audio
        self.fps = float(fps)
        self.hop = audio.feature_hop
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=audio.sample_rate, n_fft=audio.n_fft, hop_length=self.hop,
            n_mels=audio.n_mels, power=2.0, center=True, f_min=30.0, f_max=audio.sample_rate / 2,
        )
        # Power calibration: a full-scale sine reads 0 dB in its mel band (|X| = A * n_fft / 4).
        self.calibration = 1.0 / (audio.n_fft / 4) ** 2
        # Centroid from a plain magnitude spectrogram shares the STFT size.
        freqs = torch.linspace(0, audio.sample_rate / 2, audio.n_fft // 2 + 1)
        self.register_buffer("freqs", freqs, persistent=False)
        self.register_buffer("window", torch.hann_window(audio.n_fft), persistent=False)
        # Band energies: contiguous groups of mel bins.
        edges = torch.linspace(0, audio.n_mels, audio.n_bands + 1).round().long()
        assign = torch.zeros(audio.n_bands, audio.n_mels)
        for b in range(audio.n_bands):
            assign[b, edges[b] : max(edges[b + 1], edges[b] + 1)] = 1.0
        self.register_buffer("band_assign", assign / assign.sum(1, keepdim=True), persistent=False)

    @property
    def num_features(self) -> int:
        """Channels per frame."""
        return num_features(self.audio)

    def forward(self, wave: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """Compute features; ``num_frames`` defaults to the frames that cover the audio."""
        squeeze = wave.ndim == 1
        if squeeze:
            wave = wave.unsqueeze(0)
        wave = wave.float()  # [B, N]
        batch, n = wave.shape
        if num_frames is None:
            num_frames = frames_for(n, self.audio.sample_rate, self.fps)
        if n == 0 or num_frames == 0:
            out = wave.new_zeros(batch, num_frames, self.num_features)
            return out[0] if squeeze else out

        flux, centroid, bands = self._fine(wave)
        power_t = self._frame_power(wave, num_frames)
        idx = self._video_frames(flux.shape[-1], num_frames, wave.device)
        rms = power_t.sqrt()
        loudness = ((10 * torch.log10(power_t + 1e-10) - DB_FLOOR) / -DB_FLOOR).clamp(0, 1)
        onset = _pool(flux[:, None], idx, num_frames, "amax")[:, 0] * ONSET_SCALE
        cent = _pool(centroid[:, None], idx, num_frames, "mean")[:, 0]
        band_t = _pool(bands, idx, num_frames, "mean")
        band_db = ((10 * torch.log10(band_t + 1e-10) - DB_FLOOR) / -DB_FLOOR).clamp(0, 1)

        feats = torch.cat(
            [
                (rms * RMS_SCALE)[..., None],
                loudness[..., None],
                onset.clamp(0, 2)[..., None],
                cent[..., None],
                band_db.transpose(1, 2),
            ],
            dim=-1,
        )  # [B, T, F]
        return feats[0] if squeeze else feats

    def _fine(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The fine analysis (hop = feature_hop) of a wave [B, N]: onset flux [B, J], spectral centroid [B, J]
        and band energies [B, n_bands, J]."""
        n = wave.shape[-1]
        mel = self.mel(wave) * self.calibration  # [B, M, J]
        mel_db = (10 * torch.log10(mel + 1e-10)).clamp(min=DB_FLOOR)
        spec = torch.stft(
            wave, self.audio.n_fft, self.hop, window=self.window, center=True, return_complex=True
        ).abs()  # [B, K, J]

        flux = (mel_db[..., 1:] - mel_db[..., :-1]).clamp(min=0).mean(1)  # [B, J-1]
        flux = nn.functional.pad(flux, (1, 0))
        # Frames whose window runs past the end see the (reflected) padding, not music: no onsets there.
        j = torch.arange(mel.shape[-1], device=wave.device)
        flux = flux * (j * self.hop + self.audio.n_fft // 2 <= n).float()
        # Ignore "onsets" that rise out of silence by a hair: flux only counts in audible frames.
        audible = (mel_db.max(1).values > DB_FLOOR + 1).float()
        flux = flux * audible

        mag_sum = spec.sum(1)
        centroid = (spec * self.freqs[:, None]).sum(1) / (mag_sum + 1e-8) / (self.audio.sample_rate / 2)
        centroid = centroid * audible
        bands = torch.einsum("bm,xmj->xbj", self.band_assign, mel)  # [B, n_bands, J]
        return flux, centroid, bands

    def _frame_power(self, wave: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Mean power [B, T] exactly over each video frame's own samples [(i - 0.5) sr/fps, (i + 0.5) sr/fps)
        (absolute)."""
        n = wave.shape[-1]
        centres = torch.arange(num_frames + 1, device=wave.device) - 0.5
        bounds = (centres * self.audio.sample_rate / self.fps).round().long().clamp(min=0)
        energy = nn.functional.pad(wave.double().pow(2).cumsum(-1), (1, 0))  # [B, N + 1]
        ends = bounds.clamp(max=n)
        return ((energy[:, ends[1:]] - energy[:, ends[:-1]]) / (bounds[1:] - bounds[:-1]).clamp(min=1)).float()

    def _video_frames(self, fine_frames: int, num_frames: int, device: torch.device) -> torch.Tensor:
        """The video frame [J] each fine frame pools into. A centred window sees an onset up to n_fft/2 before
        its centre, so spectral frames are dated at their window's end: never early, at most one hop (10 ms)
        late."""
        j = torch.arange(fine_frames, device=device)
        idx = ((j * self.hop + self.audio.n_fft // 2) * self.fps / self.audio.sample_rate + 0.5).floor()
        return idx.long().clamp(max=num_frames - 1)


def _pool(x: torch.Tensor, idx: torch.Tensor, num_frames: int, reduce: str) -> torch.Tensor:
    """Fine frames [B, C, J] pooled into video frames [B, C, T] by ``reduce``, fine frame j into frame idx[j]."""
    out = x.new_zeros(x.shape[0], x.shape[1], num_frames)
    index = idx.expand(x.shape[0], x.shape[1], -1)
    return out.scatter_reduce(-1, index, x, reduce=reduce, include_self=False)


def compute_features(
    wave: torch.Tensor, audio: AudioSettings, fps: float, num_frames: int | None = None
) -> torch.Tensor:
    """One-shot helper: features [T, F] (or [B, T, F]) of ``wave`` at ``audio.sample_rate``."""
    return FeatureExtractor(audio, fps).to(wave.device)(wave, num_frames)


_EXTRACTORS: dict[tuple[str, float, str], FeatureExtractor] = {}  # one per (audio settings, fps, device)


def cached_extractor(audio: AudioSettings, fps: float, device: torch.device | str = "cpu") -> FeatureExtractor:
    """The process's FeatureExtractor for these audio settings, frame rate and device (built once)."""
    key = (audio.model_dump_json(), float(fps), str(device))
    if key not in _EXTRACTORS:
        _EXTRACTORS[key] = FeatureExtractor(audio, fps).to(device).eval()
    return _EXTRACTORS[key]
