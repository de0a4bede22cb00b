"""Procedural music with an exact score: the audio half of every training pair.

``synthesize`` composes a clip (``score.py``: the grid, the draws, the probes and each track's notes;
``form.py``: song forms) and renders it here: each track is a sum of notes built as a ``[notes, samples]``
tensor and scattered into the output with ``index_add_`` (no per-sample Python loops), then the mix is
loudness-normalised and peak-limited. The drums' noise comes from a ``torch.Generator`` seeded from the clip
seed, never the global RNGs, so the same seed gives the same clip bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from synesthete.audio.form import FormSection, form_notes, playing_ranges, section_score, song_form
from synesthete.audio.score import (
    OVERRIDES,
    SCALES,
    STEPS_PER_BAR,
    STEPS_PER_BEAT,
    TRACKS,
    Grid,
    Notes,
    active_ranges,
    audible,
    clip_bass,
    clip_drums,
    clip_melody,
    clip_rng,
    cut_time,
    draw_choices,
    probes,
    track_mutes,
)
from synesthete.settings import Settings

DRUM_GAINS = {"kick": 1.0, "snare": 0.55, "hat": 0.18}
CUT_FADE = 0.02  # seconds of fade when a silence or drop-out cuts a ringing note (no click)
DRUM_SECONDS = {"kick": 0.3, "snare": 0.25, "hat": 0.08}  # segment length of one hit
KICK_CLICK = 0.5  # gain of the kick's 2 ms beater click (broadband, so the onset shows above the bass)
DRUM_TAPER = 0.3  # the last 30% of a drum segment fades linearly to zero (no click where it ends)
PEAK = 0.99  # the normalised mix never exceeds this peak


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
    notes: Notes, cuts: list[float], waveform: str, adsr: tuple[float, float, float, float], sr: int, n: int
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


@dataclass
class _Clip:
    """What a clip plays before it sounds: its draws, grid, probes and each track's notes (``_compose``)."""

    seed: int
    form: bool  # a song of sections (``sections``), not a plain clip
    tempo: float
    scale_name: str
    root: int
    options: dict
    duration: float
    grid: Grid
    sections: list[FormSection]
    present: list[str]  # the tracks that play at all
    silences: list
    dropouts: dict[str, list]
    mutes: dict[str, list[list[float]]]
    bass: Notes
    bass_adsr: tuple
    melody: Notes
    melody_adsr: tuple
    drum_onsets: dict[str, list[float]]
    patterns: dict

    @property
    def num_samples(self) -> int:
        return round(self.duration * self.grid.sr)


def _compose(seed: int, settings: Settings, duration: float | None, overrides: dict[str, Any]) -> _Clip:
    """The clip ``synthesize`` renders (its arguments, checked)."""
    unknown = set(overrides) - set(OVERRIDES)
    if unknown:
        raise TypeError(f"unknown synth override(s) {sorted(unknown)}; expected some of {OVERRIDES}")
    form = overrides.pop("form", None) or None
    if form is None:
        duration = settings.audio.clip_seconds if duration is None else float(duration)
    elif duration is not None:
        duration = float(duration)
    if duration is not None and duration <= 0:
        raise ValueError(f"duration must be positive, got {duration}")

    tempo, scale_name, root, options, bar_offset = draw_choices(seed, settings, overrides)
    step = 60.0 / tempo / STEPS_PER_BEAT
    t0 = -bar_offset * STEPS_PER_BAR * step  # grid time of the first step (a bar start, before the clip)
    sections: list[FormSection] = []
    if form is not None:
        for probe in ("silence", "dropout"):
            options[probe] = bool(overrides.get(probe, False))
        sections, duration = song_form(seed, form, t0, step, duration, settings, overrides)
    grid = Grid(t0=t0, step=step, num_steps=math.ceil((duration - t0) / step), sr=settings.audio.sample_rate)

    if form is None:
        present = [name for name in TRACKS if name != "drums" or options["drums"]]
    else:
        present = [name for name in TRACKS if any(name in sec.part.tracks for sec in sections)]
    silences, dropouts = probes(seed, options, present, duration, grid)
    mutes = {name: track_mutes(name, silences, dropouts) for name in TRACKS}

    def keep(onset: float, name: str) -> bool:
        return onset < duration and audible(onset, mutes[name])

    scale = SCALES[scale_name]
    if form is None:
        bass, bass_adsr = clip_bass(seed, grid, root, scale, keep)
        melody, melody_adsr = clip_melody(seed, grid, root, scale, options["chords"], keep)
        patterns, drum_onsets = clip_drums(seed, grid, options["drums"], keep)
    else:
        bass, bass_adsr, melody, melody_adsr, drum_onsets = form_notes(seed, sections, grid, root, scale, keep)
        patterns = {}
    return _Clip(seed, form is not None, tempo, scale_name, root, options, duration, grid, sections, present,
                 silences, dropouts, mutes, bass, bass_adsr, melody, melody_adsr, drum_onsets, patterns)


def _mix(clip: _Clip) -> torch.Tensor:
    """The clip's tracks rendered and summed (not yet normalised). Notes that started before the clip ring
    into it."""
    sr, n, mutes = clip.grid.sr, clip.num_samples, clip.mutes
    noise = torch.Generator().manual_seed(clip_rng(clip.seed, "noise").getrandbits(63))
    bass, melody = clip.bass, clip.melody
    wave = _render_tonal(bass, [cut_time(t, mutes["bass"]) for t in bass.onsets], "sine", clip.bass_adsr, sr, n)
    cuts = [cut_time(t, mutes["melody"]) for t in melody.onsets]
    wave += _render_tonal(melody, cuts, "saw", clip.melody_adsr, sr, n)
    for kind, onsets in clip.drum_onsets.items():
        if onsets:
            wave += _render_drum(kind, onsets, [cut_time(t, mutes["drums"]) for t in onsets], noise, sr, n)
    return wave


def _stretches(ranges: list) -> list[list[float]]:
    """[start, end] stretches rounded for JSON."""
    return [[round(s, 6), round(e, 6)] for s, e in ranges]


def _score(clip: _Clip) -> dict:
    """The clip's exact score: only onsets inside the clip are scored."""
    sr, n, grid, options = clip.grid.sr, clip.num_samples, clip.grid, clip.options

    def exact(times: list[float]) -> list[float]:
        """Onset times (already whole samples) inside the clip, rounded for JSON."""
        return [round(t, 6) for t in times if 0 <= round(t * sr) < n]

    onsets = {kind: exact(times) for kind, times in clip.drum_onsets.items()}
    onsets["bass"] = exact(clip.bass.onsets)
    onsets["melody"] = sorted(set(exact(clip.melody.onsets)))
    if not clip.form:
        active = {name: active_ranges(clip.duration, clip.mutes[name]) if name in clip.present else []
                  for name in TRACKS}
    else:
        active = {name: playing_ranges(clip.sections, name, grid, clip.duration, clip.mutes[name]) for name in TRACKS}
    patterns = clip.patterns
    score = {
        "seed": int(clip.seed),
        "duration": n / sr,
        "sample_rate": sr,
        "tempo": round(clip.tempo, 4),
        "scale": clip.scale_name,
        "root": clip.root,
        "chords": options["chords"] if not clip.form else any(sec.part.chords for sec in clip.sections),
        "drums": options["drums"] if not clip.form else "drums" in clip.present,
        "patterns": {kind: list(p) for kind, p in patterns.items()} if patterns and options["drums"] else {},
        "beats": exact([grid.time_of(k) for k in range(0, grid.num_steps, STEPS_PER_BEAT)]),
        "onsets": onsets,
        "all_onsets": sorted({t for times in onsets.values() for t in times}),
        "active": {name: _stretches(ranges) for name, ranges in active.items()},
        "silences": _stretches(clip.silences),
        "dropouts": {name: _stretches(r) for name, r in clip.dropouts.items()},
    }
    if clip.form:
        score["beats_per_bar"] = STEPS_PER_BAR // STEPS_PER_BEAT
        score["downbeats"] = exact([grid.time_of(k) for k in range(0, grid.num_steps, STEPS_PER_BAR)])
        score["sections"] = section_score(clip.sections, grid, clip.duration)
        score["form"] = "".join(sec["label"] for sec in score["sections"])
    return score


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
    clip = _compose(seed, settings, duration, overrides)
    wave = _normalise(_mix(clip), clip.silences, settings.data.target_rms, clip.grid.sr)
    return wave, _score(clip)
