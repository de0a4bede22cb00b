"""Song forms for the procedural music (``synthesize(..., form=...)``): sections of parts of 4 or 8 bars, each
part with its own instruments, patterns, chords and melody, a repeated part playing again note for note."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from synesthete.audio.score import (
    HAT_PATTERNS,
    KICK_PATTERNS,
    MELODY_WEIGHTS,
    PROGRESSIONS,
    SNARE_PATTERNS,
    STEPS_PER_BAR,
    TRACKS,
    Grid,
    Notes,
    active_ranges,
    bass_notes,
    clip_rng,
    drum_hits,
    melody_walk,
)
from synesthete.settings import Settings

# Song form (opt-in, ``form=``): an arrangement of parts, each PART_BARS long, in the order of a template whose
# letters name the parts; a letter that comes back is the same part again (a second chorus), note for note.
FORM_TEMPLATES = ("ABAB", "ABAC", "ABCB", "ABCA", "ABACA", "ABCAB", "ABABCB", "ABCBA")
PART_BARS = (4, 8)
# What a part plays, from sparse to full: distinct parts of a song get distinct arrangements, so every change
# of part changes the instrumentation (and the melody's density and register change with it).
ARRANGEMENTS = (("bass", "melody"), ("drums", "bass"), ("drums", "melody"), ("drums", "bass", "melody"), ("melody",))
# Melody note-length weights (eighth, quarter, whole) of a part: sparse, the seed's, dense.
MELODY_DENSITIES = ((0.1, 0.5, 0.4), MELODY_WEIGHTS, (0.7, 0.3, 0.0))


@dataclass(frozen=True)
class Part:
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
class FormSection:
    """One occurrence of a part: grid steps [k0, k1) (bar starts)."""

    part: Part
    k0: int
    k1: int


def _parts(seed: int, template: str, settings: Settings, overrides: dict[str, Any]) -> dict[str, Part]:
    """The parts a template names, each with its own arrangement (distinct parts, distinct arrangements)."""
    labels = list(dict.fromkeys(template))
    if len(labels) > len(ARRANGEMENTS):
        raise ValueError(f"a form has at most {len(ARRANGEMENTS)} distinct parts, got {template!r}")
    arrangements = clip_rng(seed, "form:arrangement").sample(ARRANGEMENTS, len(labels))
    parts = {}
    for label, tracks in zip(labels, arrangements, strict=True):
        p = clip_rng(seed, f"form:part:{label}")
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
        parts[label] = Part(label, bars, tracks, patterns, progression, bass_fifth, density, chords, octave)
    return parts


def song_form(seed: int, form: Any, grid_t0: float, step: float, duration: float | None, settings: Settings,
          overrides: dict[str, Any]) -> tuple[list[FormSection], float]:
    """The sections of a song form and the song's duration: the template's parts in order from bar 0 (which
    starts at ``grid_t0``, at or before the clip's start), repeated as far as ``duration`` needs; without a
    duration the song is the template once through, ending with its last part."""
    if form is True:
        template = clip_rng(seed, "form").choice(FORM_TEMPLATES)
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
        sections.append(FormSection(part, k, k + part.bars * STEPS_PER_BAR))
        k, i = k + part.bars * STEPS_PER_BAR, i + 1
    return sections, duration


def form_notes(seed: int, sections: list[FormSection], grid: Grid, root: int, scale: tuple,
                keep: Callable[[float, str], bool]) -> tuple[Notes, tuple, Notes, tuple, dict]:
    """Bass, melody and drums of a song form, section by section: (bass, ADSR, melody, ADSR, drum onsets).
    A part's melody is drawn from the part's own generator at each of its sections, so a repeat is the same
    melody; the instruments' sounds (ADSR) are the song's, drawn as a clip's are."""
    b, m = clip_rng(seed, "form:bass"), clip_rng(seed, "form:melody")
    bass_adsr = (b.uniform(0.004, 0.015), b.uniform(0.1, 0.3), b.uniform(0.5, 0.9), b.uniform(0.05, 0.15))
    melody_adsr = (m.uniform(0.003, 0.012), m.uniform(0.05, 0.2), m.uniform(0.4, 0.8), m.uniform(0.03, 0.12))
    bass, melody = Notes(), Notes()
    onsets: dict[str, list[float]] = {"kick": [], "snare": [], "hat": []}
    for sec in sections:
        p = sec.part
        if "bass" in p.tracks:
            bass_notes(bass, grid, sec.k0, sec.k1, p.progression, p.bass_fifth, root, scale, keep)
        if "melody" in p.tracks:
            walk = clip_rng(seed, f"form:melody:{p.label}")
            melody_walk(walk, melody, grid, sec.k0, sec.k1, root, scale, p.chords, MELODY_DENSITIES[p.density],
                         keep, octave=p.octave, within=True)
        if "drums" in p.tracks:
            drum_hits(onsets, grid, sec.k0, sec.k1, p.patterns, keep)
    return bass, bass_adsr, melody, melody_adsr, onsets


def playing_ranges(sections: list[FormSection], track: str, grid: Grid, duration: float,
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
        inside = [[ms - s, me - s] for ms, me in mutes if me > s and ms < e]
        out += [[a + s, b + s] for a, b in active_ranges(e - s, inside)]
    return out


def section_score(sections: list[FormSection], grid: Grid, duration: float) -> list[dict]:
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
