"""Procedural music with an exact score: the audio half of every training pair.

It reproduces the seed project's music (a sine bass in half notes at gain 0.6, a sawtooth melody in
quarter, eighth and whole notes at gain 0.3, notes from a scale on a random root, an ADSR envelope per
note) and adds what that music lacked for beat sync: a drum kit (kick, snare, hi-hat) on a tempo grid of
70-180 BPM, minor and pentatonic scales, optional chords, and human-auditable probes:
silent stretches and tracks that drop out for a while.

Every rhythm sits on one sixteenth-note grid, so beats are real: drum hits, bass and melody onsets all
land on it. Each track is a sum of notes built as a ``[notes, samples]`` tensor and scattered into the
output with ``index_add_`` (no per-sample Python loops). All randomness comes from ``random.Random`` and
``torch.Generator`` objects seeded from the clip seed and a component name, never the global RNGs, so
the same seed gives the same clip bit for bit, and forcing one option (say ``drums=True``) leaves the
other components of that seed unchanged.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from synesthete.settings import Settings

# Scales as semitone offsets from the root.
SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "pentatonic": (0, 2, 4, 7, 9),
}
ROOT_RANGE = (45, 56)  # MIDI root of the scale (A2..G#3); the melody plays an octave above, the bass an octave below
BASS_GAIN = 0.6  # the seed's mix
MELODY_GAIN = 0.3
DRUM_GAINS = {"kick": 1.0, "snare": 0.55, "hat": 0.18}
STEPS_PER_BEAT = 4  # the grid is sixteenth notes
STEPS_PER_BAR = 16  # 4/4
LEGATO = 0.9  # a note's gate lasts this fraction of its grid length; the release rings on
CUT_FADE = 0.02  # seconds of fade when a silence or drop-out cuts a ringing note (no click)
PROBE_SECONDS = (0.25, 0.45)  # a silent stretch lasts this fraction of the clip
DROPOUT_SECONDS = (0.3, 0.6)  # a track drop-out lasts this fraction of the clip
DRUM_SECONDS = {"kick": 0.3, "snare": 0.25, "hat": 0.08}  # segment length of one hit
KICK_CLICK = 0.5  # gain of the kick's 2 ms beater click (broadband, so the onset shows above the bass)
DRUM_TAPER = 0.3  # the last 30% of a drum segment fades linearly to zero (no click where it ends)
PEAK = 0.99  # the normalised mix never exceeds this peak

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

# Song form (opt-in, ``form=``): an arrangement of parts, each PART_BARS long, in the order of a template whose
# letters name the parts; a letter that comes back is the same part again (a second chorus), note for note.
FORM_TEMPLATES = ("ABAB", "ABAC", "ABCB", "ABCA", "ABACA", "ABCAB", "ABABCB", "ABCBA")
PART_BARS = (4, 8)
# What a part plays, from sparse to full: distinct parts of a song get distinct arrangements, so every change
# of part changes the instrumentation (and the melody's density and register change with it).
ARRANGEMENTS = (("bass", "melody"), ("drums", "bass"), ("drums", "melody"), ("drums", "bass", "melody"), ("melody",))
# Melody note-length weights (eighth, quarter, whole) of a part: sparse, the seed's, dense.
MELODY_DENSITIES = ((0.1, 0.5, 0.4), MELODY_WEIGHTS, (0.7, 0.3, 0.0))


@dataclass
class _Notes:
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


def _rng(seed: int, name: str) -> random.Random:
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


# ------------------------------------------------------------------------------------------------ rendering
def _place(num_samples: int, starts: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """Sum note segments [K, L] starting at sample ``starts`` [K] (may be negative) into a wave [N]."""
    length = segments.shape[1]
    buf = segments.new_zeros(num_samples + 2 * length)
    inside = (starts + length > 0) & (starts < num_samples)  # segments that overlap the clip at all
    starts, segments = starts[inside], segments[inside]
    if starts.numel() == 0:
        return buf[length : length + num_samples]
    idx = (starts + length)[:, None] + torch.arange(length)[None, :]  # [K, L]
    buf.index_add_(0, idx.flatten(), segments.flatten())
    return buf[length : length + num_samples]


def _note_times(onsets: list[float], sr: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Start samples [K] of notes and the local time axis [L] of their segments."""
    starts = torch.tensor([round(t * sr) for t in onsets], dtype=torch.long)
    return starts, torch.arange(length, dtype=torch.float32) / sr


def _cut_envelope(starts: torch.Tensor, cuts: list[float], t: torch.Tensor, sr: int) -> torch.Tensor:
    """Per-note gain [K, L] that fades a note out when a silence or drop-out begins after its onset."""
    cut_local = torch.tensor(cuts, dtype=torch.float32)[:, None] - starts[:, None].float() / sr
    return ((cut_local - t[None, :]) / CUT_FADE).clamp(0, 1)


def _adsr(t: torch.Tensor, gate: torch.Tensor, adsr: tuple[float, float, float, float]) -> torch.Tensor:
    """ADSR envelope [K, L] of notes held for ``gate`` [K, 1] seconds, at local times ``t`` [L]."""
    attack, decay, sustain, release = adsr
    t = t[None, :]
    rise = (t / attack).clamp(max=1.0)
    fall = 1.0 - (1.0 - sustain) * ((t - attack) / decay).clamp(0, 1)
    held = torch.where(t < attack, rise, fall)
    # After the gate the level at the gate decays linearly to zero over the release.
    level_at_gate = torch.where(
        gate < attack, gate / attack, 1.0 - (1.0 - sustain) * ((gate - attack) / decay).clamp(0, 1)
    )
    tail = level_at_gate * (1.0 - (t - gate) / release).clamp(0, 1)
    return torch.where(t < gate, held, tail)


def _render_tonal(
    notes: _Notes, cuts: list[float], waveform: str, adsr: tuple[float, float, float, float], sr: int, n: int
) -> torch.Tensor:
    """A tonal track (sine or sawtooth notes with ADSR), grouped by gate so each group is one tensor op."""
    out = torch.zeros(n)
    gates = sorted(set(notes.gates))
    for gate in gates:
        pick = [i for i, g in enumerate(notes.gates) if g == gate]
        length = math.ceil((gate + adsr[3]) * sr) + 1
        starts, t = _note_times([notes.onsets[i] for i in pick], sr, length)
        freqs = torch.tensor([notes.freqs[i] for i in pick], dtype=torch.float32)[:, None]
        gains = torch.tensor([notes.gains[i] for i in pick], dtype=torch.float32)[:, None]
        cycles = freqs * t[None, :]  # [K, L]
        if waveform == "sine":
            tone = torch.sin(2 * math.pi * cycles)
        else:  # sawtooth
            tone = 2.0 * torch.frac(cycles) - 1.0
        env = _adsr(t, torch.full((len(pick), 1), gate), adsr) * _cut_envelope(starts, [cuts[i] for i in pick], t, sr)
        out += _place(n, starts, tone * env * gains)
    return out


def _render_drum(kind: str, onsets: list[float], cuts: list[float], gen: torch.Generator, sr: int, n: int):
    """One drum voice: kick (pitch-swept sine + click), snare (tone + noise) or hat (high-passed noise)."""
    length = DRUM_SECONDS[kind]
    starts, t = _note_times(onsets, sr, math.ceil(length * sr))
    k = len(onsets)
    if kind == "kick":
        f_start, f_end, tau = 160.0, 50.0, 0.03
        phase = 2 * math.pi * (f_end * t + (f_start - f_end) * tau * (1 - torch.exp(-t / tau)))
        body = torch.sin(phase) * torch.exp(-t / 0.12)
        click = torch.randn(k, t.shape[0], generator=gen) * KICK_CLICK * torch.exp(-t / 0.002)  # the beater
        seg = body[None, :] + click
    elif kind == "snare":
        noise = torch.randn(k, t.shape[0], generator=gen)
        seg = 0.5 * torch.sin(2 * math.pi * 185.0 * t) * torch.exp(-t / 0.06) + noise * torch.exp(-t / 0.07)
    else:
        noise = torch.randn(k, t.shape[0] + 1, generator=gen)
        seg = torch.diff(noise, dim=1) * 0.5 * torch.exp(-t / 0.015)
    taper = ((length - t) / (DRUM_TAPER * length)).clamp(0, 1)
    seg = seg * taper * _cut_envelope(starts, cuts, t, sr) * DRUM_GAINS[kind]
    return _place(n, starts, seg)


# ------------------------------------------------------------------------------------------------ the score
def _mutes(track: str, silences: list[list[float]], dropouts: dict[str, list[list[float]]]) -> list[list[float]]:
    return sorted(silences + dropouts.get(track, []))


def _audible(onset: float, mutes: list[list[float]]) -> bool:
    return not any(s <= onset < e for s, e in mutes)


def _cut_time(onset: float, mutes: list[list[float]]) -> float:
    """When a note starting at ``onset`` must stop: the start of the next mute after it (or never)."""
    return min((s for s, _ in mutes if s > onset), default=math.inf)


def _active(duration: float, mutes: list[list[float]]) -> list[list[float]]:
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
class _Grid:
    """The clip's step grid: ``num_steps`` sixteenth-note steps of ``step`` seconds from ``t0`` (a bar start
    at or before the clip's start), on whole samples."""

    t0: float
    step: float
    num_steps: int
    sr: int

    def time_of(self, k: int) -> float:
        return round((self.t0 + k * self.step) * self.sr) / self.sr  # grid times fall on whole samples


def _choices(seed: int, settings: Settings, overrides: dict[str, Any]) -> tuple[float, str, int, dict, float]:
    """(tempo, scale name, root, options, bar offset) for ``seed``, with ``overrides`` applied. Every draw
    happens whatever the overrides, so forcing one option changes nothing else."""
    data = settings.data
    g = _rng(seed, "global")
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


def _probes(
    seed: int, options: dict, present: list[str], duration: float, grid: _Grid
) -> tuple[list[tuple[float, float]], dict[str, list]]:
    """The probes: a silent stretch (``silences``), and one or two tracks that drop out for a while."""
    silences = (
        [_stretch(_rng(seed, "silence"), duration, PROBE_SECONDS, grid.t0, grid.step, grid.sr)]
        if options["silence"] else []
    )
    dropouts: dict[str, list] = {}
    if options["dropout"]:
        d = _rng(seed, "dropout")
        count = 2 if len(present) == 3 and d.random() < 0.3 else 1
        for name in d.sample(present, count):
            dropouts[name] = [_stretch(d, duration, DROPOUT_SECONDS, grid.t0, grid.step, grid.sr)]
    return silences, dropouts


def _bass(seed: int, grid: _Grid, root: int, scale: tuple, keep: Callable[[float, str], bool]) -> tuple:
    """Half notes on the progression's degree (the fifth on the second half of some bars): (notes, ADSR)."""
    b = _rng(seed, "bass")
    progression = b.choice(PROGRESSIONS)
    bass_fifth = b.random() < 0.5
    adsr = (b.uniform(0.004, 0.015), b.uniform(0.1, 0.3), b.uniform(0.5, 0.9), b.uniform(0.05, 0.15))
    bass = _Notes()
    _bass_notes(bass, grid, 0, grid.num_steps, progression, bass_fifth, root, scale, keep)
    return bass, adsr


def _bass_notes(bass: _Notes, grid: _Grid, k0: int, k1: int, progression: tuple, bass_fifth: bool, root: int,
                scale: tuple, keep: Callable[[float, str], bool]) -> None:
    """Half notes on grid steps [k0, k1) (k0 a bar start): the progression from its first chord at k0."""
    for k in range(k0, k1, BASS_STEPS):
        degree = progression[((k - k0) // STEPS_PER_BAR) % len(progression)]
        if bass_fifth and (k % STEPS_PER_BAR) == BASS_STEPS:
            degree += 4
        midi = root - 12 + _degree_to_semitones(scale, degree)
        if keep(grid.time_of(k), "bass"):
            bass.add(grid.time_of(k), BASS_STEPS * grid.step * LEGATO, _midi_to_hz(midi), BASS_GAIN)


def _melody(
    seed: int, grid: _Grid, root: int, scale: tuple, chords: bool, keep: Callable[[float, str], bool]
) -> tuple:
    """A random walk on the scale in eighth, quarter and whole notes, optionally as triads: (notes, ADSR)."""
    m = _rng(seed, "melody")
    adsr = (m.uniform(0.003, 0.012), m.uniform(0.05, 0.2), m.uniform(0.4, 0.8), m.uniform(0.03, 0.12))
    melody = _Notes()
    _melody_walk(m, melody, grid, 0, grid.num_steps, root, scale, chords, MELODY_WEIGHTS, keep)
    return melody, adsr


def _melody_walk(m: random.Random, melody: _Notes, grid: _Grid, k0: int, k1: int, root: int, scale: tuple,
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


def _drums(seed: int, grid: _Grid, on: bool, keep: Callable[[float, str], bool]) -> tuple[dict, dict]:
    """One kick, snare and hat pattern per clip, repeated every bar: (patterns, onsets per kind)."""
    d = _rng(seed, "drums")
    patterns = {"kick": d.choice(KICK_PATTERNS), "snare": d.choice(SNARE_PATTERNS), "hat": d.choice(HAT_PATTERNS)}
    onsets: dict[str, list[float]] = {"kick": [], "snare": [], "hat": []}
    if on:
        _drum_hits(onsets, grid, 0, grid.num_steps, patterns, keep)
    return patterns, onsets


def _drum_hits(onsets: dict[str, list[float]], grid: _Grid, k0: int, k1: int, patterns: dict,
               keep: Callable[[float, str], bool]) -> None:
    """The bar ``patterns`` on grid steps [k0, k1), appended to ``onsets`` per kind."""
    for k in range(k0, k1):
        for kind, pattern in patterns.items():
            if k % STEPS_PER_BAR in pattern and keep(grid.time_of(k), "drums"):
                onsets[kind].append(grid.time_of(k))


@dataclass(frozen=True)
class _Part:
    """One part of a song form: what it plays and how (drawn once, so a repeat plays it again)."""

    label: str
    bars: int
    tracks: tuple[str, ...]
    patterns: dict
    progression: tuple[int, ...]
    bass_fifth: bool
    density: int  # index into MELODY_DENSITIES
    chords: bool
    octave: int  # the melody's register, semitones above the default


@dataclass(frozen=True)
class _Section:
    """One occurrence of a part: grid steps [k0, k1) (bar starts)."""

    part: _Part
    k0: int
    k1: int


def _parts(seed: int, template: str, settings: Settings, overrides: dict[str, Any]) -> dict[str, _Part]:
    """The parts a template names, each with its own arrangement (distinct parts, distinct arrangements)."""
    labels = list(dict.fromkeys(template))
    if len(labels) > len(ARRANGEMENTS):
        raise ValueError(f"a form has at most {len(ARRANGEMENTS)} distinct parts, got {template!r}")
    arrangements = _rng(seed, "form:arrangement").sample(ARRANGEMENTS, len(labels))
    parts = {}
    for label, tracks in zip(labels, arrangements, strict=True):
        p = _rng(seed, f"form:part:{label}")
        bars = p.choice(PART_BARS)
        patterns = {"kick": p.choice(KICK_PATTERNS), "snare": p.choice(SNARE_PATTERNS), "hat": p.choice(HAT_PATTERNS)}
        progression, bass_fifth = p.choice(PROGRESSIONS), p.random() < 0.5
        density, chords = p.randrange(len(MELODY_DENSITIES)), p.random() < settings.data.chords_prob
        octave = p.choice((0, 12))
        if "drums" in overrides:  # forced on or off in every part
            on = bool(overrides["drums"])
            tracks = tuple(t for t in TRACKS if t in tracks or (on and t == "drums"))
            tracks = tuple(t for t in tracks if on or t != "drums") or ("melody",)
        if "chords" in overrides:
            chords = bool(overrides["chords"])
        parts[label] = _Part(label, bars, tracks, patterns, progression, bass_fifth, density, chords, octave)
    return parts


def _form(seed: int, form: Any, grid_t0: float, step: float, duration: float | None, settings: Settings,
          overrides: dict[str, Any]) -> tuple[list[_Section], float]:
    """The sections of a song form and the song's duration: the template's parts in order from bar 0 (which
    starts at ``grid_t0``, at or before the clip's start), repeated as far as ``duration`` needs; without a
    duration the song is the template once through, ending with its last part."""
    if form is True:
        template = _rng(seed, "form").choice(FORM_TEMPLATES)
    elif isinstance(form, str) and form.isalpha() and form.isupper():
        template = form
    else:
        raise ValueError(f"form must be True or a template of capital letters such as 'ABAB', got {form!r}")
    parts = _parts(seed, template, settings, overrides)
    bar = STEPS_PER_BAR * step
    if duration is None:
        duration = grid_t0 + sum(parts[label].bars for label in template) * bar
    sections, k, i = [], 0, 0
    while grid_t0 + k * step < duration:
        part = parts[template[i % len(template)]]
        sections.append(_Section(part, k, k + part.bars * STEPS_PER_BAR))
        k, i = k + part.bars * STEPS_PER_BAR, i + 1
    return sections, duration


def _form_notes(seed: int, sections: list[_Section], grid: _Grid, root: int, scale: tuple,
                keep: Callable[[float, str], bool]) -> tuple[_Notes, tuple, _Notes, tuple, dict]:
    """Bass, melody and drums of a song form, section by section: (bass, ADSR, melody, ADSR, drum onsets).
    A part's melody is drawn from the part's own generator at each of its sections, so a repeat is the same
    melody; the instruments' sounds (ADSR) are the song's, drawn as a clip's are."""
    b, m = _rng(seed, "form:bass"), _rng(seed, "form:melody")
    bass_adsr = (b.uniform(0.004, 0.015), b.uniform(0.1, 0.3), b.uniform(0.5, 0.9), b.uniform(0.05, 0.15))
    melody_adsr = (m.uniform(0.003, 0.012), m.uniform(0.05, 0.2), m.uniform(0.4, 0.8), m.uniform(0.03, 0.12))
    bass, melody = _Notes(), _Notes()
    onsets: dict[str, list[float]] = {"kick": [], "snare": [], "hat": []}
    for sec in sections:
        p = sec.part
        if "bass" in p.tracks:
            _bass_notes(bass, grid, sec.k0, sec.k1, p.progression, p.bass_fifth, root, scale, keep)
        if "melody" in p.tracks:
            walk = _rng(seed, f"form:melody:{p.label}")
            _melody_walk(walk, melody, grid, sec.k0, sec.k1, root, scale, p.chords, MELODY_DENSITIES[p.density],
                         keep, octave=p.octave, within=True)
        if "drums" in p.tracks:
            _drum_hits(onsets, grid, sec.k0, sec.k1, p.patterns, keep)
    return bass, bass_adsr, melody, melody_adsr, onsets


def _normalise(wave: torch.Tensor, silences: list, target_rms: float, sr: int) -> torch.Tensor:
    """The audible part reaches ``target_rms``, then the peak is limited by scaling (never clipping)."""
    n = wave.numel()
    audible = torch.ones(n, dtype=torch.bool)
    for s, e in silences:
        audible[round(s * sr) : round(e * sr)] = False
    rms = wave[audible].pow(2).mean().sqrt() if audible.any() else wave.new_zeros(())
    if rms > 0:
        wave = wave * (target_rms / rms)
    peak = wave.abs().max() if n else wave.new_zeros(())
    if peak > PEAK:
        wave = wave * (PEAK / peak)
    return wave


def synthesize(
    seed: int, settings: Settings, duration: float | None = None, **overrides: Any
) -> tuple[torch.Tensor, dict]:
    """Music for ``seed``: a loudness-normalised wave [N] at ``audio.sample_rate`` and its exact score.

    ``overrides`` force options for probes and eval: ``drums``, ``chords``, ``silence``, ``dropout`` (bool),
    ``tempo`` (BPM), ``scale`` (a name in SCALES), ``root`` (MIDI), and ``form``: True (a template drawn from
    the seed) or a template such as "ABAB" makes a song of sections, an arrangement of parts of 4 or 8 bars
    with their own instrumentation, patterns, chords and melody, a repeated letter repeating its part. A
    form's song lasts the template once through unless ``duration`` is given (then the template repeats as
    far as needed); its score adds ``downbeats`` and ``sections``. It has no silent stretch or drop-out unless
    ``silence`` or ``dropout`` asks for one, and ``drums`` or ``chords``, if given, apply to every part.
    Without ``form`` nothing of this is drawn: a seed's clip is what it always was, bit for bit.
    """
    unknown = set(overrides) - set(OVERRIDES)
    if unknown:
        raise TypeError(f"unknown synth override(s) {sorted(unknown)}; expected some of {OVERRIDES}")
    form = overrides.pop("form", None) or None
    sr = settings.audio.sample_rate
    if form is None:
        duration = settings.audio.clip_seconds if duration is None else float(duration)
    elif duration is not None:
        duration = float(duration)
    if duration is not None and duration <= 0:
        raise ValueError(f"duration must be positive, got {duration}")

    tempo, scale_name, root, options, bar_offset = _choices(seed, settings, overrides)
    scale = SCALES[scale_name]
    step = 60.0 / tempo / STEPS_PER_BEAT
    t0 = -bar_offset * STEPS_PER_BAR * step  # grid time of the first step (a bar start, before the clip)
    sections: list[_Section] = []
    if form is not None:
        for probe in ("silence", "dropout"):
            options[probe] = bool(overrides.get(probe, False))
        sections, duration = _form(seed, form, t0, step, duration, settings, overrides)
    n = round(duration * sr)
    grid = _Grid(t0=t0, step=step, num_steps=math.ceil((duration - t0) / step), sr=sr)

    if form is None:
        present = [name for name in TRACKS if name != "drums" or options["drums"]]
    else:
        present = [name for name in TRACKS if any(name in sec.part.tracks for sec in sections)]
    silences, dropouts = _probes(seed, options, present, duration, grid)
    mutes = {name: _mutes(name, silences, dropouts) for name in TRACKS}

    def keep(onset: float, name: str) -> bool:
        return onset < duration and _audible(onset, mutes[name])

    if form is None:
        bass, bass_adsr = _bass(seed, grid, root, scale, keep)
        melody, melody_adsr = _melody(seed, grid, root, scale, options["chords"], keep)
        patterns, drum_onsets = _drums(seed, grid, options["drums"], keep)
    else:
        bass, bass_adsr, melody, melody_adsr, drum_onsets = _form_notes(seed, sections, grid, root, scale, keep)
        patterns = {}

    # Render. Notes that started before the clip ring into it; only onsets inside it are scored.
    noise = torch.Generator().manual_seed(_rng(seed, "noise").getrandbits(63))
    wave = _render_tonal(bass, [_cut_time(t, mutes["bass"]) for t in bass.onsets], "sine", bass_adsr, sr, n)
    cuts = [_cut_time(t, mutes["melody"]) for t in melody.onsets]
    wave += _render_tonal(melody, cuts, "saw", melody_adsr, sr, n)
    for kind, onsets in drum_onsets.items():
        if onsets:
            wave += _render_drum(kind, onsets, [_cut_time(t, mutes["drums"]) for t in onsets], noise, sr, n)
    wave = _normalise(wave, silences, settings.data.target_rms, sr)

    def exact(times: list[float]) -> list[float]:
        """Onset times (already whole samples) inside the clip, rounded for JSON."""
        return [round(t, 6) for t in times if 0 <= round(t * sr) < n]

    onsets = {kind: exact(times) for kind, times in drum_onsets.items()}
    onsets["bass"] = exact(bass.onsets)
    onsets["melody"] = sorted(set(exact(melody.onsets)))
    beats = exact([grid.time_of(k) for k in range(0, grid.num_steps, STEPS_PER_BEAT)])
    if form is None:
        active = {name: _active(duration, mutes[name]) if name in present else [] for name in TRACKS}
    else:
        active = {name: _playing(sections, name, grid, duration, mutes[name]) for name in TRACKS}
    score = {
        "seed": int(seed),
        "duration": n / sr,
        "sample_rate": sr,
        "tempo": round(tempo, 4),
        "scale": scale_name,
        "root": root,
        "chords": options["chords"] if form is None else any(sec.part.chords for sec in sections),
        "drums": options["drums"] if form is None else "drums" in present,
        "patterns": {kind: list(p) for kind, p in patterns.items()} if patterns and options["drums"] else {},
        "beats": beats,
        "onsets": onsets,
        "all_onsets": sorted({t for times in onsets.values() for t in times}),
        "active": {name: [[round(s, 6), round(e, 6)] for s, e in ranges] for name, ranges in active.items()},
        "silences": [[round(s, 6), round(e, 6)] for s, e in silences],
        "dropouts": {name: [[round(s, 6), round(e, 6)] for s, e in r] for name, r in dropouts.items()},
    }
    if form is not None:
        score["beats_per_bar"] = STEPS_PER_BAR // STEPS_PER_BEAT
        score["downbeats"] = exact([grid.time_of(k) for k in range(0, grid.num_steps, STEPS_PER_BAR)])
        score["sections"] = _section_score(sections, grid, duration)
        score["form"] = "".join(sec["label"] for sec in score["sections"])
    return wave, score


def _playing(sections: list[_Section], track: str, grid: _Grid, duration: float,
             mutes: list[list[float]]) -> list[list[float]]:
    """[start, end] stretches of a form's song where ``track`` plays: its parts' sections, less its mutes."""
    ranges: list[list[float]] = []
    for sec in sections:
        if track in sec.part.tracks:
            s, e = max(0.0, grid.time_of(sec.k0)), min(duration, grid.time_of(sec.k1))
            if ranges and abs(ranges[-1][1] - s) < 1e-9:
                ranges[-1][1] = e
            elif e > s:
                ranges.append([s, e])
    out = []
    for s, e in ranges:  # less the mutes: the active stretches of [s, e] that no mute covers
        out += [[a + s, b + s] for a, b in _active(e - s, [[ms - s, me - s] for ms, me in mutes if me > s and ms < e])]
    return out


def _section_score(sections: list[_Section], grid: _Grid, duration: float) -> list[dict]:
    """The form's sections inside the song, as the score lists them: start and end (s), label, bars, tracks."""
    out = []
    for sec in sections:
        start, end = max(0.0, grid.time_of(sec.k0)), min(duration, grid.time_of(sec.k1))
        if end <= start:
            continue
        p = sec.part
        if out and out[-1]["label"] == p.label:  # the template came round to the part it ended on: one section
            out[-1]["end"], out[-1]["bars"] = round(end, 6), out[-1]["bars"] + p.bars
            continue
        out.append({
            "start": round(start, 6), "end": round(end, 6), "label": p.label, "bars": p.bars,
            "tracks": list(p.tracks), "chords": p.chords, "octave": p.octave,
            "melody": ("sparse", "normal", "dense")[p.density],
            "patterns": {kind: list(x) for kind, x in p.patterns.items()} if "drums" in p.tracks else {},
        })
    return out
