"""What a render looks like: the render seed, the looks it draws, their style exemplars, and the sections.

A look is a style (visualizer families) and visual parameters (colours, shapes, counts) drawn from the render
seed (``seed_look``), which is ``render.seed`` or a hash of the song file (``song_seed``). Its exemplar
(``style_exemplar``) is a few latents of the look that the first window continues. With ``render.sections``
the song's sections (``section_plan``) each get the look of their kind (``section_looks``).
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from synesthete.audio.analysis import Section, SongAnalysis
from synesthete.audio.synth import synthesize
from synesthete.checkpoint import Models
from synesthete.data import feature_extractor
from synesthete.music import file_digest
from synesthete.render.records import RenderJob
from synesthete.render.windows import Look, network_device
from synesthete.settings import Settings
from synesthete.styles import section_styles
from synesthete.visual import render_frames
from synesthete.visual.compose import params_for

EXEMPLAR_SEED = 20240917  # the fixed synthetic clip that drives the style exemplar
EXEMPLAR_SECONDS = 1.0
SONG_SEEDS = 1_000_000  # seeds drawn from a song's hash are below this
MIN_SECTION_FRAMES = 15  # a section that would last fewer frames at an end of the excerpt keeps its neighbour's look


def seed_look(style: list[str], seed: int, settings: Settings, label: str = "A") -> dict:
    """The look (visual parameters of ``style``: colours, shapes, counts) that the render ``seed`` picks; for a
    kind of section other than A (``label``, ``render.sections``), another look drawn from the same seed."""
    key = f"synesthete-exemplar:{seed}" + ("" if label == "A" else f":{label}")
    return params_for(style, random.Random(key), settings)


def song_seed(song: str | Path) -> int:
    """The render seed a song draws when none is given: from a hash of the file's bytes (SHA-256), so each song
    gets its own looks and noise and the same file always the same."""
    return int(file_digest(Path(song))[:12], 16) % SONG_SEEDS


def render_seed(settings: Settings) -> int:
    """The render seed of a render that has no song file to draw one from (eval, training previews): the
    setting, or 0 when it is empty."""
    return 0 if settings.render.seed is None else settings.render.seed


@torch.no_grad()
def style_exemplar(models: Models, settings: Settings, style: list[str], seed: int,
                   look: dict | None = None) -> torch.Tensor:
    """Latents [k, C, h, w] (standardised, ``Models.encode``) of k frames in ``style``, the first window's clean
    context.

    The style's visualizers, with parameters drawn from ``seed`` (so the seed picks a look: colours, shapes,
    counts), are driven by a fixed synthetic clip with drums, never by the song, and the last k =
    ``render.overlap`` frames are encoded by the VAE. The network was trained to continue clean frames,
    so it starts the song in this look and carries it on; the exemplar frames themselves are never shown.
    ``look`` (visual parameters of ``style``, ``visual.compose.params_for``; a clip's ``meta["visual"]``)
    gives the look instead of the seed: eval renders a held-out clip in the look its oracle was drawn in.
    """
    k = max(1, min(settings.render.overlap, models.dit.config.window - 1))
    if look is not None and [layer["name"] for layer in look["layers"]] != list(style):
        raise ValueError(f"the look is of {look['visualizer']!r}, not of the style {'+'.join(style)!r}")
    params = look if look is not None else seed_look(style, seed, settings)
    wave, _ = synthesize(EXEMPLAR_SEED, settings, duration=EXEMPLAR_SECONDS, drums=True, silence=False,
                         dropout=False)  # [N]
    frames = render_frames(feature_extractor(settings)(wave), wave, params, settings)[-k:]  # [k, 3, H, W]
    return models.encode(frames.to(network_device(models)))


def section_plan(analysis: SongAnalysis, start: float, seconds: float, fps: float,
                 total: int) -> list[tuple[int, Section]]:
    """The song's sections (``SongAnalysis.sections``) that play in the excerpt [start, start + seconds), as
    (first frame, section): the one playing at the excerpt's start from frame 0, each later one from the frame
    nearest the downbeat it starts on. A sliver of a section at either end of the excerpt (under
    MIN_SECTION_FRAMES) goes to its neighbour instead of cutting twice in a moment."""
    out: list[tuple[int, Section]] = []
    for sec in analysis.sections:
        if sec.end <= start or sec.start >= start + seconds:
            continue
        frame = 0 if not out else round((sec.start - start) * fps)
        if out and frame <= 0:
            out[0] = (0, sec)  # it starts with the excerpt
        elif frame < total:
            out.append((frame, sec))
    if len(out) > 1 and out[1][0] < MIN_SECTION_FRAMES:
        out = [(0, out[1][1]), *out[2:]]
    if len(out) > 1 and total - out[-1][0] < MIN_SECTION_FRAMES:
        out = out[:-1]
    return out


def section_looks(models: Models, settings: Settings, job: RenderJob, plan: list[tuple[int, Section]],
                  analysis: SongAnalysis | None) -> list[Look]:
    """The look of each section of ``plan`` (one look for the song without sections): its style
    (``styles.section_styles``: with auto a family per kind of section) and its exemplar, in the look
    ``seed_look`` draws for its label from the job's seed. Sections of the same kind share one look."""
    if not plan:
        exemplar = style_exemplar(models, settings, job.style, job.seed) if settings.render.exemplar else None
        return [Look(job.style, exemplar)]
    styles = section_styles(settings.render.style, job.seed, [sec.label for sec in analysis.sections])
    made: dict[str, Look] = {}
    for _, sec in plan:
        if sec.label not in made:
            style = styles[sec.label]
            exemplar = None
            if settings.render.exemplar:
                look = seed_look(style, job.seed, settings, sec.label)
                exemplar = style_exemplar(models, settings, style, job.seed, look=look)
            made[sec.label] = Look(style, exemplar, sec.label)
    return [made[sec.label] for _, sec in plan]
