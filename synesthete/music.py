"""Real music in the data engine: excerpts of the songs in ``data.music_dirs``, beside the procedural clips.

The visualizers draw ground truth for any audio (they need only the frame features and the wave), so a real
song is as good a training pair as a procedural one: the excerpt is cut, augmented, analysed and drawn in a
freshly drawn look exactly as a procedural clip is (``data.make_music_clip``).

* ``MusicLibrary`` finds the audio files under the folders (subfolders too), keeps those that decode and
  splits them by a hash of each file's bytes: about ``data.music_heldout`` of the files are held out for
  ``eval --music`` and never reach training, whatever the folder is called or where it is mounted.
* ``excerpt`` decodes one augmented excerpt of a song for a clip seed: a random offset, a gain, a spectral
  tilt (EQ) and a small speed change (tempo and pitch together, by decoding at a shifted sample rate). Only
  the excerpt is decoded (a seek), so a song library of any size costs no memory and no start-up decode.

Everything is a pure function of the seed and the file list: a resumed run re-makes the same excerpts.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from synesthete.errors import InputError
from synesthete.files import file_digest, find_music
from synesthete.media import audio_info, decodable_duration, load_audio

# Augmentation of an excerpt (see docs/data_engine.md). Gain is relative to the file's own level: mastered
# songs are loud, and a user's file may be quieter; the result is peak-limited to PEAK, never clipped.
GAIN_DB = (-6.0, 3.0)
TILT = 0.3  # spectral slope exponent: |X(f)| * (f / 1 kHz) ** u, u uniform in [-TILT, TILT] (about +-1.8 dB/octave)
SPEED = 0.06  # tempo and pitch scale uniform in [1 - SPEED, 1 + SPEED]
PEAK = 0.99
LEVEL_JITTER_DB = 3.0  # a loud excerpt is turned down to render.level +- this (uniform dB): data.make_music_clip


@dataclass(frozen=True)
class Song:
    """One audio file of the library: its path, decodable duration (s) and content hash (hex)."""

    path: Path
    duration: float
    digest: str

    @property
    def heldout_key(self) -> float:
        """A number in [0, 1) fixed by the file's bytes: the file is held out when it is below the share."""
        return int(self.digest[:12], 16) / float(16**12)


class MusicLibrary:
    """The decodable songs under some folders, split into train and held-out files by content hash."""

    def __init__(self, songs: list[Song], heldout_share: float, skipped: list[tuple[Path, str]] | None = None):
        self.heldout_share = heldout_share
        self.skipped = skipped or []
        self.split = {
            "train": [s for s in songs if s.heldout_key >= heldout_share],
            "heldout": [s for s in songs if s.heldout_key < heldout_share],
        }

    @classmethod
    def scan(cls, folders: list[Path], heldout_share: float, min_seconds: float) -> MusicLibrary:
        """Find, probe and hash the songs under ``folders``; files that do not decode are skipped (``skipped``).

        Songs shorter than ``min_seconds`` (one excerpt) are skipped too. A folder with nothing usable is an
        InputError naming it.
        """
        songs: list[Song] = []
        skipped: list[tuple[Path, str]] = []
        seen: set[str] = set()
        for folder in map(Path, folders):
            usable = 0
            files = find_music(folder)
            for path in files:
                try:
                    info = audio_info(path)
                    duration = decodable_duration(path, info.duration)
                except InputError as exc:
                    skipped.append((path, str(exc)))
                    continue
                if duration < min_seconds:
                    skipped.append((path, f"{path} is shorter ({duration:.1f} s) than one excerpt"))
                    continue
                usable += 1
                digest = file_digest(path)
                if digest in seen:  # the same song twice (a copy, a link): once is enough
                    continue
                seen.add(digest)
                songs.append(Song(path=path, duration=duration, digest=digest))
            if not usable:
                raise InputError(f"music folder {folder}: none of its {len(files)} audio files could be used "
                                 f"(first: {skipped[-1][1]})")
        return cls(songs, heldout_share, skipped)

    def songs(self, split: str) -> list[Song]:
        """The songs of ``split`` ('train' or 'heldout'), sorted by path."""
        return self.split[split]

    def pick(self, seed: int, split: str) -> Song:
        """The song of clip ``seed``: uniform over the split's files (a long song is not favoured)."""
        songs = self.split[split]
        if not songs:
            raise InputError(f"no {split} songs in the music folders ({self.describe()})")
        return songs[random.Random(f"synesthete-music-song:{seed}").randrange(len(songs))]

    def describe(self) -> str:
        """'N train and M held-out songs (K files skipped)'."""
        text = f"{len(self.split['train'])} train and {len(self.split['heldout'])} held-out songs"
        return text + (f" ({len(self.skipped)} files skipped)" if self.skipped else "")


def uses_music(seed: int, share: float) -> bool:
    """Whether stream clip ``seed`` is a real-music excerpt (a fixed hash of the seed, so resumes agree)."""
    return share > 0 and random.Random(f"synesthete-music-share:{seed}").random() < share


def tilt(wave: torch.Tensor, exponent: float, sample_rate: int) -> torch.Tensor:
    """Spectral tilt: scale each frequency by (f / 1 kHz) ** exponent (floored at 50 Hz), at the same RMS."""
    if exponent == 0 or wave.numel() < 2:
        return wave
    spec = torch.fft.rfft(wave.double())
    freqs = torch.fft.rfftfreq(wave.numel(), 1.0 / sample_rate, dtype=torch.float64).clamp(min=50.0)
    out = torch.fft.irfft(spec * (freqs / 1000.0) ** exponent, n=wave.numel())
    before, after = wave.double().pow(2).mean().sqrt(), out.pow(2).mean().sqrt()
    return (out * (before / after) if after > 0 else out).to(wave.dtype)


def excerpt(song: Song, seed: int, seconds: float, sample_rate: int, augment: bool = True) -> tuple[torch.Tensor, dict]:
    """A mono excerpt [N] of ``song`` for clip ``seed``, ``seconds`` long at ``sample_rate``, and what was done.

    The speed change decodes ``seconds * speed`` seconds of the song at ``sample_rate / speed`` Hz and plays
    them at ``sample_rate``: tempo and pitch scale by ``speed`` together, in one resampling by FFmpeg.
    """
    rng = random.Random(f"synesthete-music-excerpt:{seed}")
    speed = rng.uniform(1 - SPEED, 1 + SPEED) if augment else 1.0
    gain_db = rng.uniform(*GAIN_DB) if augment else 0.0
    slope = rng.uniform(-TILT, TILT) if augment else 0.0
    n = round(seconds * sample_rate)
    src = seconds * speed
    rate = max(1, round(sample_rate / speed))  # n samples over src seconds, played back at sample_rate
    latest = max(0.0, song.duration - src - 0.1)
    offset = rng.uniform(0.0, latest)
    wave, _ = load_audio(song.path, sample_rate=rate, mono=True, start=offset, duration=src + 0.05)
    wave = wave[0, :n]
    if wave.numel() < n:
        wave = torch.nn.functional.pad(wave, (0, n - wave.numel()))
    wave = tilt(wave, slope, sample_rate) * 10 ** (gain_db / 20)
    peak = float(wave.abs().max()) if n else 0.0
    if peak > PEAK:
        wave = wave * (PEAK / peak)
    meta = {"file": song.path.name, "digest": song.digest[:16], "offset": round(offset, 3), "speed": round(speed, 4),
            "gain_db": round(gain_db, 2), "tilt": round(slope, 3)}
    if not math.isfinite(peak):
        raise InputError(f"{song.path} gave non-finite samples at {offset:.1f} s")
    return wave.contiguous(), meta
