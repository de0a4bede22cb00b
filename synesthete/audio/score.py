"""The score of a procedural clip: what plays when, before it sounds (``synth.synthesize`` renders it).

It reproduces the seed project's music (a sine bass in half notes at gain 0.6, a sawtooth melody in
quarter, eighth and whole notes at gain 0.3, notes from a scale on a random root, an ADSR envelope per
note) and adds what that music lacked for beat sync: a drum kit (kick, snare, hi-hat) on a tempo grid of
70-180 BPM, minor and pentatonic scales, optional chords, and human-auditable probes:
silent stretches and tracks that drop out for a while.

Every rhythm sits on one sixteenth-note grid (``Grid``), so beats are real: drum hits, bass and melody
onsets all land on it. All randomness comes from ``random.Random`` objects seeded from the clip seed and a
component name (``clip_rng``), never the global RNGs, so the same seed gives the same clip bit for bit, and
forcing one option (say ``drums=True``) leaves the other components of that seed unchanged. Song forms
(sections of parts) are in ``form.py``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from synesthete.settings import Settings

SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "pentatonic": (0, 2, 4, 7, 9),
}
ROOT_RANGE = (45, 56)  # MIDI root of the scale (A2..G#3); the melody plays an octave above, the bass an octave below
BASS_GAIN = 0.6  # the seed's mix
MELODY_GAIN = 0.3
STEPS_PER_BEAT = 4  # the grid is sixteenth notes
STEPS_PER_BAR = 16  # 4/4
LEGATO = 0.9  # a note's gate lasts this fraction of its grid length; the release rings on
PROBE_SECONDS = (0.25, 0.45)  # a silent stretch lasts this fraction of the clip
DROPOUT_SECONDS = (0.3, 0.6)  # a track drop-out lasts this fraction of the clip

# Melody rhythm in grid steps: eighth, quarter, whole notes (the seed's values), with their weights.
MELODY_STEPS = (2, 4, 16)
MELODY_WEIGHTS = (0.35, 0.5, 0.15)
MELODY_REST_PROB = 0.1
BASS_STEPS = 8  # half notes
# Bass chord progressions as scale degrees, one per bar.
PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 4), (0, 0, 3, 4), (5, 3, 0, 4))
# Drum patterns: hit positions on the 16-step bar.
KICK_PATTERNS = ((0, 8), (0, 4, 8, 12), (0, 6, 8), (0, 7, 10), (0, 10))
SNARE_PATTERNS = ((4, 12), (4, 12, 14), (8,), (4, 11, 12))
HAT_PATTERNS = (tuple(range(0, 16, 2)), tuple(range(16)), (2, 6, 10, 14), tuple(range(0, 16, 4)))

OVERRIDES = ("drums", "chords", "silence", "dropout", "tempo", "scale", "root", "form")
TRACKS = ("drums", "bass", "melody")


@dataclass
class Notes:
    """A track's notes as parallel lists: onset (s), gate (s), frequency (Hz), gain."""

    onsets: list[float] = field(default_factory=list)
    gates: list[float] = field(default_factory=list)
    freqs: list[float] = field(default_factory=list)
    gains: list[float] = field(default_factory=list)

    def add(self, onset: float, gate: float, freq: float, gain: float) -> None:
        """Append one note."""
        self.onsets.append(onset)
        self.gates.append(gate)
        self.freqs.append(freq)
        self.gains.append(gain)


def clip_rng(seed: int, name: str) -> random.Random:
    """An independent generator for one component of one clip (str seeds hash deterministically)."""
    return random.Random(f"synesthete-synth:{seed}:{name}")


def _midi_to_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69) / 12)


def _degree_to_semitones(scale: tuple[int, ...], degree: int) -> int:
    """Scale degree (any integer, 0 = root) to semitones above the root."""
    octave, index = divmod(degree, len(scale))
    return 12 * octave + scale[index]


def _snap(t: float, t0: float, step: float, lo: float, hi: float) -> float:
    """The grid time nearest ``t``, kept inside [lo, hi]."""
    k = round((t - t0) / step)
    snapped = t0 + k * step
    while snapped < lo:
        snapped += step
    while snapped > hi:
        snapped -= step
    return snapped


def _stretch(
    rng: random.Random, duration: float, frac: tuple[float, float], t0: float, step: float, sr: int
) -> list[float]:
    """A grid-aligned [start, end] stretch of about ``frac`` of the clip, away from the very start."""
    length = rng.uniform(*frac) * duration
    start = rng.uniform(0.15 * duration, max(0.15 * duration, duration - length))
    start = _snap(start, t0, step, 0.0, duration)
    end = min(_snap(start + length, t0, step, start + step, duration), duration)
    return [round(start * sr) / sr, round(end * sr) / sr]  # whole samples, like the onsets


def track_mutes(track: str, silences: list[list[float]], dropouts: dict[str, list[list[float]]]) -> list[list[float]]:
    return sorted(silences + dropouts.get(track, []))


def audible(onset: float, mutes: list[list[float]]) -> bool:
    return not any(s <= onset < e for s, e in mutes)


def cut_time(onset: float, mutes: list[list[float]]) -> float:
    """When a note starting at ``onset`` must stop: the start of the next mute after it (or never)."""
    return min((s for s, _ in mutes if s > onset), default=math.inf)


def active_ranges(duration: float, mutes: list[list[float]]) -> list[list[float]]:
    """Complement of the mute stretches inside [0, duration]."""
    ranges, t = [], 0.0
    for s, e in sorted(mutes):
        if s > t:
            ranges.append([t, s])
        t = max(t, e)
    if t < duration:
        ranges.append([t, duration])
    return ranges


@dataclass(frozen=True)
class Grid:
    """The clip's step grid: ``num_steps`` sixteenth-note steps of ``step`` seconds from ``t0`` (a bar start
    at or before the clip's start), on whole samples."""

    t0: float
    step: float
    num_steps: int
    sr: int

    def time_of(self, k: int) -> float:
        return round((self.t0 + k * self.step) * self.sr) / self.sr  # grid times fall on whole samples


def draw_choices(seed: int, settings: Settings, overrides: dict[str, Any]) -> tuple[float, str, int, dict, float]:
    """(tempo, scale name, root, options, bar offset) for ``seed``, with ``overrides`` applied. Every draw
    happens whatever the overrides, so forcing one option changes nothing else."""
    data = settings.data
    g = clip_rng(seed, "global")
    tempo = g.uniform(data.tempo_min, data.tempo_max)
    scale_name = g.choice(sorted(SCALES))
    root = g.randint(*ROOT_RANGE)
    options = {
        "drums": g.random() < data.drums_prob,
        "chords": g.random() < data.chords_prob,
        "silence": g.random() < data.silence_prob,
        "dropout": g.random() < data.dropout_prob,
    }
    bar_offset = g.random()  # the clip starts at a random point of a bar
    for key in ("drums", "chords", "silence", "dropout"):
        if key in overrides:
            options[key] = bool(overrides[key])
    tempo = float(overrides.get("tempo", tempo))
    scale_name = overrides.get("scale", scale_name)
    root = int(overrides.get("root", root))
    if tempo <= 0:
        raise ValueError(f"tempo must be positive, got {tempo}")
    if scale_name not in SCALES:
        raise ValueError(f"unknown scale {scale_name!r}; expected one of {sorted(SCALES)}")
    return tempo, scale_name, root, options, bar_offset


def probes(
    seed: int, options: dict, present: list[str], duration: float, grid: Grid
) -> tuple[list[tuple[float, float]], dict[str, list]]:
    """The probes: a silent stretch (``silences``), and one or two tracks that drop out for a while."""
    silences = (
        [_stretch(clip_rng(seed, "silence"), duration, PROBE_SECONDS, grid.t0, grid.step, grid.sr)]
        if options["silence"] else []
    )
    dropouts: dict[str, list] = {}
    if options["dropout"]:
        d = clip_rng(seed, "dropout")
        count = 2 if len(present) == 3 and d.random() < 0.3 else 1
        for name in d.sample(present, count):
            dropouts[name] = [_stretch(d, duration, DROPOUT_SECONDS, grid.t0, grid.step, grid.sr)]
    return silences, dropouts


def clip_bass(seed: int, grid: Grid, root: int, scale: tuple, keep: Callable[[float, str], bool]) -> tuple:
    """Half notes on the progression's degree (the fifth on the second half of some bars): (notes, ADSR)."""
    b = clip_rng(seed, "bass")
    progression = b.choice(PROGRESSIONS)
    bass_fifth = b.random() < 0.5
    adsr = (b.uniform(0.004, 0.015), b.uniform(0.1, 0.3), b.uniform(0.5, 0.9), b.uniform(0.05, 0.15))
    bass = Notes()
    bass_notes(bass, grid, 0, grid.num_steps, progression, bass_fifth, root, scale, keep)
    return bass, adsr


def bass_notes(bass: Notes, grid: Grid, k0: int, k1: int, progression: tuple, bass_fifth: bool, root: int,
                scale: tuple, keep: Callable[[float, str], bool]) -> None:
    """Half notes on grid steps [k0, k1) (k0 a bar start): the progression from its first chord at k0."""
    for k in range(k0, k1, BASS_STEPS):
        degree = progression[((k - k0) // STEPS_PER_BAR) % len(progression)]
        if bass_fifth and (k % STEPS_PER_BAR) == BASS_STEPS:
            degree += 4
        midi = root - 12 + _degree_to_semitones(scale, degree)
        if keep(grid.time_of(k), "bass"):
            bass.add(grid.time_of(k), BASS_STEPS * grid.step * LEGATO, _midi_to_hz(midi), BASS_GAIN)


def clip_melody(
    seed: int, grid: Grid, root: int, scale: tuple, chords: bool, keep: Callable[[float, str], bool]
) -> tuple:
    """A random walk on the scale in eighth, quarter and whole notes, optionally as triads: (notes, ADSR)."""
    m = clip_rng(seed, "melody")
    adsr = (m.uniform(0.003, 0.012), m.uniform(0.05, 0.2), m.uniform(0.4, 0.8), m.uniform(0.03, 0.12))
    melody = Notes()
    melody_walk(m, melody, grid, 0, grid.num_steps, root, scale, chords, MELODY_WEIGHTS, keep)
    return melody, adsr


def melody_walk(m: random.Random, melody: Notes, grid: Grid, k0: int, k1: int, root: int, scale: tuple,
                 chords: bool, weights: tuple, keep: Callable[[float, str], bool], octave: int = 0,
                 within: bool = False) -> None:
    """A random walk on the scale from step k0 to k1, drawn from ``m``. ``within`` (a song form's sections) ends
    the last note's gate at k1 instead of letting it run its length, and pairs the eighth notes, so that every
    note but the second of a pair starts on a beat, as a tune's do (a clip's walk may go off the beat)."""
    degree, k = m.randrange(len(scale)), k0
    while k < k1:
        steps = m.choices(MELODY_STEPS, weights)[0]
        if within and (k - k0) % STEPS_PER_BEAT:
            steps = STEPS_PER_BEAT - (k - k0) % STEPS_PER_BEAT  # the second eighth of a pair: back on the beat
        rest = m.random() < MELODY_REST_PROB
        degree = max(-3, min(10, degree + m.choice((-2, -1, -1, 0, 1, 1, 2))))
        if not rest and keep(grid.time_of(k), "melody"):
            length = min(steps, k1 - k) if within else steps
            voices = (degree, degree + 2, degree + 4) if chords and steps >= 4 else (degree,)
            for voice in voices:
                midi = root + 12 + octave + _degree_to_semitones(scale, voice)
                melody.add(grid.time_of(k), length * grid.step * LEGATO, _midi_to_hz(midi),
                           MELODY_GAIN / len(voices) ** 0.5)
        k += steps


def clip_drums(seed: int, grid: Grid, on: bool, keep: Callable[[float, str], bool]) -> tuple[dict, dict]:
    """One kick, snare and hat pattern per clip, repeated every bar: (patterns, onsets per kind)."""
    d = clip_rng(seed, "drums")
    patterns = {"kick": d.choice(KICK_PATTERNS), "snare": d.choice(SNARE_PATTERNS), "hat": d.choice(HAT_PATTERNS)}
    onsets: dict[str, list[float]] = {"kick": [], "snare": [], "hat": []}
    if on:
        drum_hits(onsets, grid, 0, grid.num_steps, patterns, keep)
    return patterns, onsets


def drum_hits(onsets: dict[str, list[float]], grid: Grid, k0: int, k1: int, patterns: dict,
               keep: Callable[[float, str], bool]) -> None:
    """The bar ``patterns`` on grid steps [k0, k1), appended to ``onsets`` per kind."""
    for k in range(k0, k1):
        for kind, pattern in patterns.items():
            if k % STEPS_PER_BAR in pattern and keep(grid.time_of(k), "drums"):
                onsets[kind].append(grid.time_of(k))

