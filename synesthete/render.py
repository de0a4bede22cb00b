"""Song -> features -> windows of latents -> frames -> mp4, streamed so memory stays flat with song length.

A render is planned, then run: ``plan_render`` checks everything that needs no network (the excerpt, the
song, the output, the style) and gives a ``RenderJob``; ``run_render`` runs it with loaded models and gives a
``RenderResult``. ``synesthete.Synesthete`` (the Python API) and the CLI drive these; ``render_song`` plans,
loads the models and runs, for one song. The data path of a run:
0. With ``render.sections`` (the default), analyse the whole song (``audio.analysis.analyse_file``: tempo,
   beats, downbeats, sections; streamed, about 200x real time) and give each kind of section of the excerpt
   its look (``section_looks``): a style (``auto``: a family per kind) and a style exemplar drawn from the
   render seed, which is ``render.seed`` or, when that is empty, a hash of the song file (``song_seed``).
1. Decode the excerpt once, streamed (``media.AudioReader``: FFmpeg seeks to ``--start``), at the model's
   rate, mono, and compute the frame-aligned features chunk by chunk (48 bytes per video frame are kept:
   1 MB for a 10-minute song).
2. Generate latents window by window: each window of ``dit.window`` frames is denoised jointly, and
   continues from the previous window's last ``render.overlap`` latents, given as clean context, so windows
   join without seams or jumps. A section is a segment of lanes of its own that starts from its look's
   exemplar on the frame of its first downbeat, with no bridge from the section before: the picture cuts
   there (``window_layout``'s cuts). Without sections one look holds for the whole song.
3. Decode each window's new latents with the VAE and stream them, with the original audio (a second
   streamed decode at its own rate and channels, interleaved by an ``AudioMuxer``), into an H.264 + AAC mp4
   written to a temporary file and renamed at the end; or keep them, as uint8, for a render to memory.

CPU threads are chosen for a shared machine (``synesthete.threads``): OpenMP workers spin only briefly
before they sleep when they wait, and the render runs on the cores nobody else is using, re-checked as it goes.
"""

from __future__ import annotations

from synesthete import threads

threads.prepare_openmp()  # before torch loads its OpenMP runtime: only then is the wait policy read

import contextlib  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Any, Protocol  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from synesthete.audio.features import FeatureExtractor  # noqa: E402
from synesthete.console import err_console, make_progress  # noqa: E402
from synesthete.device import autocast, precision, resolve_device  # noqa: E402
from synesthete.errors import InputError, OutputError  # noqa: E402
from synesthete.settings import Settings  # noqa: E402

if TYPE_CHECKING:
    from synesthete.media import AudioInfo

EXEMPLAR_SEED = 20240917  # the fixed synthetic clip that drives the style exemplar
EXEMPLAR_SECONDS = 1.0
AAC_RATES = (44100, 48000)  # native rates kept as they are; anything else is resampled for the AAC track
FEATURE_MARGIN_FRAMES = 3  # extra frames of audio on each side of a chunk so edge features are exact


# --------------------------------------------------------------------------------------------- features
class SampleSource(Protocol):
    """What ``song_features`` reads: ``read(n)`` gives the next n samples [1, n] (fewer at the end)."""

    def read(self, n: int) -> torch.Tensor: ...


def song_features(source: SampleSource, duration: float, settings: Settings) -> torch.Tensor:
    """Frame-aligned features [T, F] of an excerpt of ``duration`` seconds, computed chunk by chunk.

    ``source`` streams the excerpt's mono audio at ``settings.audio.sample_rate`` from its first sample on
    (``media.AudioReader``). Each chunk of ``render.chunk_seconds`` is analysed with ``FEATURE_MARGIN_FRAMES``
    of audio on each side, so features at chunk edges equal those of a one-shot analysis; audio before the
    excerpt and after its end counts as silence. Only a chunk and its margins are held at a time.
    """
    fps = settings.video.fps
    sr = settings.audio.sample_rate
    extractor = FeatureExtractor(settings.audio, fps)
    total = max(1, round(duration * fps))
    end = round(duration * sr)  # samples in the excerpt
    chunk_frames = max(1, round(settings.render.chunk_seconds * fps))
    margin = FEATURE_MARGIN_FRAMES
    out = torch.zeros(total, extractor.num_features)

    def sample_at(frame: int) -> int:  # excerpt sample where frame boundary ``frame`` falls
        return round(frame * sr / fps)

    buffer, buffer_start, exhausted = torch.zeros(0), 0, False  # buffer holds samples [buffer_start, ...)
    for f0 in range(0, total, chunk_frames):
        f1 = min(total, f0 + chunk_frames)
        s0, s1 = sample_at(f0 - margin), sample_at(f1 + margin)  # this chunk's audio, margins included
        want = min(s1, end)
        while not exhausted and buffer_start + buffer.shape[-1] < want:
            block = source.read(want - buffer_start - buffer.shape[-1])
            if block.shape[-1] == 0:
                exhausted = True  # the file ended early (truncated): the rest is silence
                break
            buffer = torch.cat([buffer, block.reshape(-1).float()])
        grid = torch.zeros(s1 - s0)  # silence outside the excerpt
        lo, hi = max(s0, buffer_start), min(s1, buffer_start + buffer.shape[-1])
        if hi > lo:
            grid[lo - s0 : hi - s0] = buffer[lo - buffer_start : hi - buffer_start]
        feats = extractor(grid, num_frames=(f1 + margin) - (f0 - margin))  # [frames, F]
        out[f0:f1] = feats[margin : margin + (f1 - f0)]
        keep = max(buffer_start, sample_at(f1 - margin))  # the next chunk starts its margin here
        buffer, buffer_start = buffer[keep - buffer_start :], keep
    return out


# --------------------------------------------------------------------------------------------- latents
def _device(models: Any) -> torch.device:
    """The device the networks are on."""
    return next(models.dit.parameters()).device


def seed_look(style: list[str], seed: int, settings: Settings, label: str = "A") -> dict:
    """The look (visual parameters of ``style``: colours, shapes, counts) that the render ``seed`` picks; for a
    kind of section other than A (``label``, ``render.sections``), another look drawn from the same seed."""
    import random

    from synesthete.visual.compose import params_for

    key = f"synesthete-exemplar:{seed}" + ("" if label == "A" else f":{label}")
    return params_for(style, random.Random(key), settings)


SONG_SEEDS = 1_000_000  # seeds drawn from a song's hash are below this


def song_seed(song: str | Path) -> int:
    """The render seed a song draws when none is given: from a hash of the file's bytes (SHA-256), so each song
    gets its own looks and noise and the same file always the same."""
    from synesthete.music import file_digest

    return int(file_digest(Path(song))[:12], 16) % SONG_SEEDS


@torch.no_grad()
def style_exemplar(models: Any, settings: Settings, style: list[str], seed: int,
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
    from synesthete.audio.synth import synthesize
    from synesthete.data import feature_extractor
    from synesthete.visual import render_frames

    k = max(1, min(settings.render.overlap, models.dit.config.window - 1))
    if look is not None and [layer["name"] for layer in look["layers"]] != list(style):
        raise ValueError(f"the look is of {look['visualizer']!r}, not of the style {'+'.join(style)!r}")
    params = look if look is not None else seed_look(style, seed, settings)
    wave, _ = synthesize(EXEMPLAR_SEED, settings, duration=EXEMPLAR_SECONDS, drums=True, silence=False,
                         dropout=False)  # [N]
    frames = render_frames(feature_extractor(settings)(wave), wave, params, settings)[-k:]  # [k, 3, H, W]
    return models.encode(frames.to(_device(models)))


MIN_LANE_WINDOWS = 8  # a lane (render.lanes) runs at least this many windows: shorter songs get fewer lanes
DECODE_BATCH = 12  # latents the VAE decodes at a time once the lanes are done (more is no faster, and costs memory)


@dataclass(frozen=True)
class WindowLayout:
    """Where the windows of a render fall in the song's ``total`` frames (made by ``window_layout``).

    The song is cut at ``cuts`` (frames where a section starts, in a new look) into segments, ``segments[g]``
    lanes each (all lanes in one segment without cuts). Lane i, ``windows[i]`` windows long, covers
    ``lane_frames(i)`` frames from ``starts[i]``; the lanes are generated side by side, window m of every lane
    that has one in one batched sample. A lane's first window gives ``first`` = window - lead new frames (it
    continues ``lead`` context frames: its look's style exemplar, or none) and each later one ``stride`` =
    window - overlap. Between two lanes of a segment a bridge window makes the ``gap`` = window - 2 overlap
    frames in between: its context is the first lane's last ``overlap`` frames and the next one's first
    ``overlap``. A segment's first lane starts on its cut, with no bridge: the picture cuts there. A segment's
    last lane may run past the segment's end (``limit``); those frames are dropped.
    """

    total: int
    window: int
    overlap: int
    lead: int
    windows: tuple[int, ...]  # windows of each lane
    cuts: tuple[int, ...] = ()  # frames where a segment (a section, in its own look) starts, 0 < cut < total
    segments: tuple[int, ...] = ()  # lanes of each segment; () = all lanes in one

    @property
    def lanes(self) -> int:
        return len(self.windows)

    @property
    def stride(self) -> int:
        return self.window - self.overlap

    @property
    def first(self) -> int:
        return self.window - self.lead

    @property
    def gap(self) -> int:
        return self.window - 2 * self.overlap

    def lane_frames(self, lane: int) -> int:
        return self.first + (self.windows[lane] - 1) * self.stride

    @property
    def segment_lanes(self) -> tuple[int, ...]:
        return self.segments or (self.lanes,)

    def segment_of(self, lane: int) -> int:
        """The segment (0 before the first cut) that ``lane`` belongs to."""
        return int(np.searchsorted(np.cumsum(self.segment_lanes), lane, side="right"))

    def bridged(self, lane: int) -> bool:
        """Whether a bridge leads into ``lane`` (it is not the first lane of its segment)."""
        return lane > 0 and self.segment_of(lane - 1) == self.segment_of(lane)

    @property
    def starts(self) -> list[int]:
        out: list[int] = []
        for lane in range(self.lanes):
            if lane and self.bridged(lane):
                out.append(out[-1] + self.lane_frames(lane - 1) + self.gap)
            else:
                out.append(0 if lane == 0 else self.cuts[self.segment_of(lane) - 1])
        return out

    def limit(self, lane: int) -> int:
        """The frame after the last of ``lane``'s frames that the render shows (the next lane's bridge, the next
        cut, or the song's end)."""
        if lane + 1 < self.lanes:
            start = self.starts[lane + 1]
            return start - self.gap if self.bridged(lane + 1) else start
        return self.total

    @property
    def end(self) -> int:
        """The frame after the farthest lane's last (it may lie past ``total``)."""
        return max(start + self.lane_frames(i) for i, start in enumerate(self.starts))

    def joins(self) -> list[int]:
        """Frames i (0 < i < total) where a new window's frames begin, so the pair (i - 1, i) spans a join:
        between a lane's windows, and at both ends of every bridge (not at cuts: those are meant to be seen)."""
        out = []
        for i, start in enumerate(self.starts):
            if self.bridged(i):
                out += [start - self.gap, start]  # into the bridge, out of it into the lane
            out += [j for j in (start + self.first + m * self.stride for m in range(self.windows[i] - 1))
                    if j < self.limit(i)]
        return sorted(j for j in out if 0 < j < self.total)


def _lane_options(total: int, window: int, overlap: int, lead: int, lanes: int,
                  quiet: torch.Tensor | None) -> list[tuple[int, ...]]:
    """Candidate lane layouts (windows per lane) of a stretch of ``total`` frames with 1..``lanes`` lanes."""
    stride, first, gap = window - overlap, window - lead, window - 2 * overlap

    def covering(frames: int) -> int:  # windows of a lane that covers ``frames`` frames
        return 1 + max(0, math.ceil((frames - first) / stride))

    def even(lanes: int) -> int:  # windows per lane of ``lanes`` even lanes; 0 if they would be too short
        each = covering(math.ceil((total - (lanes - 1) * gap) / lanes))
        fits = each >= MIN_LANE_WINDOWS and (lanes - 1) * (first + (each - 1) * stride + gap) < total
        return each if lanes == 1 or fits else 0

    def place(lanes: int, each: int) -> tuple[int, ...]:  # boundaries moved out of silences, or dropped
        spacing = first + (each - 1) * stride + gap  # from one lane's start to the next, evenly
        reach = max(1, each // 4) * stride  # how far a boundary may move
        windows: list[int] = []
        start = 0  # of the lane being laid out
        for i in range(1, lanes):
            options = []
            for n in range(1, covering(total) + 1):
                nxt = start + first + (n - 1) * stride + gap  # the next lane's start after n windows of this one
                if abs(nxt - i * spacing) <= reach and nxt + first < total:
                    if quiet is None or not bool(quiet[max(0, nxt - gap) : nxt + 1].any()):
                        options.append((abs(nxt - i * spacing), n))
            if options:
                windows.append(min(options)[1])
                start += first + (windows[-1] - 1) * stride + gap
        return (*windows, covering(total - start))

    most = max(1, lanes) if overlap >= 1 and gap >= 1 else 1
    return [place(n, even(n)) for n in range(1, most + 1) if even(n)]


def window_layout(total: int, window: int, overlap: int, lanes: int = 1, exemplar: bool = True,
                  quiet: torch.Tensor | None = None, cuts: tuple[int, ...] | list[int] = ()) -> WindowLayout:
    """The layout of a render of ``total`` frames in windows of ``window`` frames continuing ``overlap`` context
    frames, in up to ``lanes`` lanes (``render.lanes``) of about equal length, each at least
    ``MIN_LANE_WINDOWS`` windows long.

    ``quiet`` (bool [T], ``settled_silence``) keeps bridges out of silences: a bridge joins two lanes that
    were generated apart, and the picture, at rest in a silence, would move there. Each lane boundary moves
    by up to a quarter of a lane from its even spot to where the bridge and both its joins fall in sound; a
    boundary with no such spot is dropped (one lane fewer, a longer one). Of such layouts for 1..``lanes``
    lanes, the one that takes the fewest batched samples wins (then the fewest lanes). Lanes need context to
    join through (overlap >= 1) and room for a bridge (window > 2 overlap); otherwise, or for a short song,
    there is one lane: windows one after another, as ``lanes=1`` gives.

    ``cuts`` (frames, ``render.sections``) split the song into segments that start in a look of their own:
    each is laid out as a song of its own, up to ``lanes`` lanes, no bridge across a cut. The longest segment
    decides how many batched samples the render takes; every other segment takes the fewest lanes that fit
    in as many.
    """
    overlap = max(0, min(overlap, window - 1))
    lead = overlap if exemplar else 0
    cuts = tuple(sorted({int(c) for c in cuts if 0 < c < total}))
    if not cuts:
        layouts = _lane_options(total, window, overlap, lead, lanes, quiet)
        best = min(layouts, key=lambda w: (max(w), len(w)))  # the fewest batched samples, then the fewest lanes
        return WindowLayout(total, window, overlap, lead, best)
    bounds = [0, *cuts, total]
    options = [_lane_options(b - a, window, overlap, lead, lanes, quiet[a:b] if quiet is not None else None)
               for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    rounds = max(min(max(w) for w in opts) for opts in options)
    chosen = [min((w for w in opts if max(w) <= rounds), key=len) for opts in options]
    return WindowLayout(total, window, overlap, lead, tuple(n for w in chosen for n in w), cuts,
                        tuple(len(w) for w in chosen))


def settled_silence(features: torch.Tensor, settings: Settings) -> torch.Tensor:
    """bool [T]: frames in a silence (loudness feature under ``eval.silence_db``) that has lasted
    ``eval.settle_seconds``, as the eval's silence response counts them: the visualizers are at rest there."""
    from synesthete.audio.features import DB_FLOOR, feature_names
    from synesthete.metrics.quality import settled

    level = (settings.eval.silence_db - DB_FLOOR) / -DB_FLOOR  # the loudness channel maps DB_FLOOR..0 dB to 0..1
    silent = (features[:, feature_names(settings.audio).index("loudness")] < level).cpu().numpy()  # [T]
    return torch.from_numpy(settled(silent, round(settings.eval.settle_seconds * settings.video.fps)))


def song_layout(features: torch.Tensor, settings: Settings, window: int, exemplar: bool,
                cuts: tuple[int, ...] | list[int] = ()) -> WindowLayout:
    """The layout ``iter_windows`` uses for a song's features [T, F] (bridges kept out of its silences), cut at
    ``cuts`` (frames where a section starts in its own look)."""
    quiet = settled_silence(features, settings) if settings.render.lanes > 1 else None
    return window_layout(features.shape[0], window, settings.render.overlap, settings.render.lanes, exemplar, quiet,
                         cuts)


@dataclass
class Look:
    """What a stretch of the render looks like: its style (visualizer families) and the style exemplar latents
    [k, C, h, w] it starts from (``style_exemplar``); ``label`` names the kind of section it is the look of."""

    style: list[str] | None
    exemplar: torch.Tensor | None
    label: str = "A"


@torch.no_grad()
def iter_windows(
    models: Any,
    features: torch.Tensor,
    settings: Settings,
    generator: torch.Generator | None = None,
    style: list[str] | None = None,
    exemplar: torch.Tensor | None = None,
    timings: dict[str, float] | None = None,
    generated: Callable[[int], None] | None = None,
    tuner: threads.ThreadTuner | None = None,
    layout: WindowLayout | None = None,
    looks: list[Look] | None = None,
) -> Iterator[torch.Tensor]:
    """Yield decoded frame blocks [n, 3, H, W] in [0, 1] covering all T frames of ``features`` [T, F], in order.

    Windows of W frames (the DiT's ``config.window``) advance by W - k (k = ``render.overlap``): each window
    after the first continues from the previous window's last k latents, given as clean context that is never
    denoised again, so consecutive windows join without a seam. The latent shape (channels, height, width)
    is the DiT's own (``models.dit.config``), so non-square latents work. ``style`` (visualizer families)
    holds for every window. With ``exemplar`` latents [k, C, h, w] (``style_exemplar``) the first window
    continues them too: they stand for the k frames before the song starts. Then the first a =
    ``render.anchor`` context frames of every window (at most k - 1) are the exemplar's last a frames, not the
    previous window's: a fixed reference of the look, against drift.

    The song is cut into ``render.lanes`` lanes (``window_layout``) whose windows run side by side in one
    batched sample each, every lane starting from the exemplar; then one batched sample makes the bridges,
    windows whose context is the end of one lane (first frames) and the start of the next (last frames), so
    the lanes join as windows do. Lane 0 is decoded and yielded as it goes; the later lanes' latents
    (2 KB a frame) wait until the bridges are made. ``generated(n)`` (if given) hears the number of the
    song's frames generated so far after every batched sample (progress). ``tuner`` (CPU) times each batched
    sample of the lanes as one unit and picks the thread count (``threads.ThreadTuner``). ``layout`` is the
    caller's ``song_layout`` of these features, if it already made one.

    A layout with cuts (sections, ``render.sections``) takes ``looks``, one per segment (``layout.cuts`` + 1):
    each segment's lanes are generated in its look's style, start from its look's exemplar and hold its
    anchor, in the same batched samples as the others; no bridge crosses a cut, so the picture cuts there
    from one look to the next. Without ``looks`` every segment has ``style`` and ``exemplar``.

    ``timings`` (if given) accumulates the seconds spent in the network ("network") and in the VAE decoder
    ("vae_decode"). Both run under bf16 autocast where the device has native bf16 and ``render.amp`` is on
    (``device.autocast``); latents and frames come out float32. Latents are scaled by
    ``Models.encode``/``Models.decode``.
    """
    from synesthete.sampling import sample
    from synesthete.styles import style_vector

    cfg = models.dit.config
    window, ctx = cfg.window, cfg.audio_context
    total = features.shape[0]
    layout = layout or song_layout(features, settings, window, exemplar is not None)
    overlap, stride, lead, lanes, starts = layout.overlap, layout.stride, layout.lead, layout.lanes, layout.starts
    if looks is None:
        looks = [Look(style, exemplar)] * len(layout.segment_lanes)
    if len(looks) != len(layout.segment_lanes):
        raise ValueError(f"{len(layout.segment_lanes)} segments of the song but {len(looks)} looks")
    look = [looks[layout.segment_of(lane)] for lane in range(lanes)]  # each lane's look
    has_exemplar = all(lk.exemplar is not None for lk in looks)
    # Anchored context frames hold the exemplar's last frames all song long; at least one frame stays the past.
    anchor = min(settings.render.anchor, overlap - 1) if has_exemplar else 0
    device = _device(models)
    # Pad with silence: ctx + lead frames before the song, and after it as far as the last lane reaches.
    padded = F.pad(features.to(device), (0, 0, ctx + lead, max(0, layout.end - total) + ctx))
    latent = (cfg.latent_channels, cfg.latent_height, cfg.latent_width)
    styled = all(lk.style for lk in looks)
    style_rows = [style_vector(lk.style).to(device) if styled else None for lk in look]  # [S] per lane

    def run(rows: list[int], firsts: list[int], context: torch.Tensor | None,
            mask: torch.Tensor | None) -> torch.Tensor:
        """One batched sample of the windows of lanes ``rows`` whose frame 0 is song frame ``firsts[b]`` ->
        latents [B, W, ...]."""
        feats = torch.stack([padded[q + lead : q + lead + window + 2 * ctx] for q in firsts])  # [B, W + 2ctx, F]
        if context is not None and anchor > 0:
            for b, lane in enumerate(rows):
                context[b, :anchor] = look[lane].exemplar[-anchor:].to(device)
        t0 = time.perf_counter()
        with autocast(device, settings.render.amp):
            out = sample(
                models.dit, feats, (len(firsts), window, *latent), settings.sampling, generator=generator,
                style=torch.stack([style_rows[lane] for lane in rows]) if styled else None,
                context=context, context_mask=mask,
            ).float()
        if timings is not None:
            timings["network"] = timings.get("network", 0.0) + time.perf_counter() - t0
        return out

    def decode(latents: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        with autocast(device, settings.render.amp):
            frames = models.decode(latents).float().cpu()  # [n, 3, H, W]
        if timings is not None:
            timings["vae_decode"] = timings.get("vae_decode", 0.0) + time.perf_counter() - t0
        return frames

    prev: list[torch.Tensor | None] = [None] * lanes  # latents [W, C, h, w] of each lane's previous window
    if lead:
        for lane in range(lanes):  # each lane's first window continues its look's exemplar
            prev[lane] = torch.zeros(window, *latent, device=device)
            prev[lane][stride:] = look[lane].exemplar[-overlap:].to(device)
    held: list[list[torch.Tensor]] = [[] for _ in range(lanes)]  # new latents of lanes 1.. (lane 0 is yielded)
    shown = layout.limit(0)  # lane 0's frames that the render shows
    emitted = made = 0
    for m in range(max(layout.windows)):
        active = [lane for lane in range(lanes) if layout.windows[lane] > m]  # lanes with a window m
        continuing = prev[active[0]] is not None
        context = mask = None
        if continuing and overlap > 0:
            context = torch.zeros(len(active), window, *latent, device=device)
            context[:, :overlap] = torch.stack([prev[lane][stride:] for lane in active])
            mask = torch.zeros(len(active), window, dtype=torch.bool, device=device)
            mask[:, :overlap] = True
        with tuner.unit() if tuner is not None else contextlib.nullcontext():
            latents = run(active, [starts[lane] - lead + m * stride for lane in active], context, mask)
        new = latents[:, overlap if continuing else 0 :]  # [B, n, C, h, w]
        for row, lane in enumerate(active):
            prev[lane] = latents[row].clone()  # not views: the round's whole batch would stay alive
            if lane:
                held[lane].append(new[row].clone())
        made = min(total, made + new.shape[0] * new.shape[1])
        if generated is not None:
            generated(made)
        n0 = min(new.shape[1], shown - emitted) if active[0] == 0 else 0
        if n0 > 0:
            yield decode(new[0, :n0])
            emitted += n0
    if lanes == 1:
        return
    bridged = [lane for lane in range(1, lanes) if layout.bridged(lane)]
    bridges = None
    if bridged:
        context = torch.zeros(len(bridged), window, *latent, device=device)
        for row, lane in enumerate(bridged):
            context[row, :overlap] = prev[lane - 1][window - overlap :]  # the end of the lane before
            context[row, window - overlap :] = torch.cat(held[lane])[:overlap]  # the start of this one
        mask = torch.zeros(len(bridged), window, dtype=torch.bool, device=device)
        mask[:, :overlap] = mask[:, window - overlap :] = True
        bridges = run(bridged, [starts[lane] - layout.gap - overlap for lane in bridged], context, mask)
    if generated is not None:
        generated(total)
    for lane in range(1, lanes):
        parts = held[lane]
        if layout.bridged(lane):
            parts = [bridges[bridged.index(lane), overlap : overlap + layout.gap], *parts]
        first = starts[lane] - (layout.gap if layout.bridged(lane) else 0)  # the song frame the parts begin at
        latents = torch.cat(parts)[: max(0, min(layout.limit(lane), total) - first)]
        held[lane] = []
        for block in latents.split(DECODE_BATCH):
            yield decode(block)
            emitted += block.shape[0]


def render_seed(settings: Settings) -> int:
    """The render seed of a render that has no song file to draw one from (eval, training previews): the
    setting, or 0 when it is empty."""
    return 0 if settings.render.seed is None else settings.render.seed


def _generator(seed: int, device: torch.device) -> torch.Generator:
    gen = torch.Generator(device=device if device.type != "mps" else "cpu")
    gen.manual_seed(seed)
    return gen


def generate_frames(
    models: Any,
    wave: torch.Tensor,
    settings: Settings,
    generator: torch.Generator | None = None,
    progress: bool = False,
    style: list[str] | None = None,
    look: dict | None = None,
) -> torch.Tensor:
    """Render mono audio [N] at ``settings.audio.sample_rate`` to frames [T, 3, H, W] in [0, 1], in memory.

    ``look`` (visual parameters of ``style``) draws the style exemplar in that look instead of the seed's
    (``style_exemplar``)."""
    fps = settings.video.fps
    extractor = FeatureExtractor(settings.audio, fps)
    features = extractor(wave.float().cpu())  # [T, F]
    device = _device(models)
    if generator is None:
        generator = _generator(render_seed(settings), device)
    exemplar = None
    if style and settings.render.exemplar:
        exemplar = style_exemplar(models, settings, style, render_seed(settings), look)
    blocks: list[torch.Tensor] = []
    tuner = threads.ThreadTuner() if device.type == "cpu" else None
    try:
        with make_progress(disable=not progress) as bar:
            task = bar.add_task("generating", total=features.shape[0], info="")
            blocks = list(iter_windows(models, features, settings, generator, style, exemplar,
                                       generated=lambda n: bar.update(task, completed=n), tuner=tuner))
    finally:
        if tuner is not None:
            tuner.restore()
    if not blocks:
        return torch.zeros(0, 3, settings.video.height, settings.video.width)
    return torch.cat(blocks)


# --------------------------------------------------------------------------------------------- progress
def _clock(seconds: float) -> str:
    """Seconds as m:ss (or h:mm:ss)."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def _progress_bar(disable: bool):
    """The render's progress line: its figures are computed here, from the start of the render."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

    bar = make_progress(disable=disable)  # the shared console and the --quiet switch
    return Progress(
        SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(bar_width=20), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), console=bar.console, disable=bar.disable, transient=False,
    )


class _Pace:
    """Progress figures from the start of the render: elapsed time, frames/s of generation, and the ETA.

    The rate is measured over all frames generated so far, from the moment generation began (reading the
    audio and loading the models come before it and are counted in the elapsed time, not in the rate).
    """

    def __init__(self, t_start: float, total: int, seconds: float) -> None:
        self.t_start, self.total, self.seconds = t_start, total, seconds
        self.t_gen: float | None = None

    def begin(self) -> None:
        self.t_gen = time.perf_counter()

    def line(self, done: int) -> str:
        now = time.perf_counter()
        elapsed = now - self.t_start
        gen = now - (self.t_gen or now)
        if done <= 0 or gen <= 0:
            return f"{_clock(elapsed)} elapsed"
        rate = done / gen
        eta = (self.total - done) / rate
        rtf = elapsed / (done / self.total * self.seconds)
        return f"{rate:.1f} frames/s · RTF {rtf:.2f} · {_clock(elapsed)} · ETA {_clock(eta)}"


# --------------------------------------------------------------------------------------------- render
@dataclass(frozen=True)
class RenderSection:
    """A section of the song in a render: [start, end) in song seconds, its label (A, B, ...; a repeated
    section shares its letter, and its look), the style it is drawn in, and the render frame it starts at."""

    start: float
    end: float
    label: str
    style: str
    frame: int


@dataclass
class RenderResult:
    """What one render made and how: the typed result of ``Synesthete.render`` (and ``render_song``).

    ``frames`` holds the video as uint8 [T, 3, H, W] (as ``media.load_video`` gives; ``media.to_unit`` makes
    floats in [0, 1]) when it was rendered to memory, and is ``None`` when it was written to ``output``.
    ``timings`` are seconds: "setup" (checking the song, loading the models when this call did), "analysis"
    (the song's beats and sections), "features", "network" (the DiT), "vae_decode", "encode_mux" (H.264 + AAC;
    0 in memory) and "other"; they add up to ``wall``. ``rtf`` (real-time factor) is ``wall`` over ``duration``.
    With ``render.sections``, ``sections`` are the song's sections in the excerpt, each with its look, and
    ``cuts`` the frames where the picture cuts to the next one (each on the downbeat that starts it).
    """

    output: Path | None
    frames: torch.Tensor | None
    fps: int
    num_frames: int
    width: int
    height: int
    start: float
    duration: float
    style: str
    seed: int
    sampler: str
    steps: int
    lanes: int  # lanes the song was generated in (``window_layout``: short songs get fewer than render.lanes)
    guidance: float
    style_guidance: float
    guidance_distilled: bool  # the DiT takes the audio scale as an input (one pass per step, not two)
    checkpoints: Path
    device: str
    precision: str  # "bf16" (autocast on hardware with native bf16) or "float32"
    threads: str | None  # how the CPU threads were chosen (``ThreadTuner.describe``); None off the CPU
    timings: dict[str, float]
    wall: float
    rtf: float
    seed_from_song: bool = False  # ``seed`` was drawn from the song's hash (no seed was given)
    tempo: float | None = None  # BPM, from the analysis (None without render.sections)
    sections: list[RenderSection] = field(default_factory=list)
    cuts: list[int] = field(default_factory=list)

    def __repr__(self) -> str:  # no tensor dump
        frames = "None" if self.frames is None else f"<{tuple(self.frames.shape)} {self.frames.dtype}>"
        return (f"RenderResult(output={self.output}, frames={frames}, fps={self.fps}, num_frames={self.num_frames}, "
                f"size={self.width}x{self.height}, style={self.style!r}, seed={self.seed}, "
                f"sampler={self.sampler!r}, steps={self.steps}, rtf={self.rtf:.3f})")


@dataclass
class RenderJob:
    """A render whose inputs are checked, ready to run (``plan_render``): no network is needed to make one."""

    song: Path
    out: Path | None  # None: render to memory
    start: float
    seconds: float  # length of the excerpt
    num_frames: int  # video frames it becomes: round(seconds x fps)
    info: AudioInfo  # of the song (its duration possibly cut to what decodes)
    style: list[str]  # the visualizer families, resolved (``auto`` drawn from the seed)
    options: dict[str, Any] = field(default_factory=dict)  # settings sections laid over the pipeline's
    seed: int = 0  # the render seed: render.seed, or drawn from the song's hash (``song_seed``)
    seed_from_song: bool = False


def plan_render(
    settings: Settings,
    song: str | Path,
    out: str | Path | None = None,
    start: float = 0.0,
    duration: float | None = None,
    overwrite: bool = False,
    options: dict[str, Any] | None = None,
    overwrite_flag: str = "overwrite=True",
) -> RenderJob:
    """Check everything about a render that needs no model: the excerpt, the song, the output, the style.

    So a bad option or file fails in one line before any heavy work. ``out`` None renders to memory (no
    output checks, but the frames must fit in ``render.memory_gb``: ``check_memory``). A truncated song (its
    header promises more than decodes) is rendered as far as it decodes, with a warning. ``options``
    (settings sections) are recorded in the job for ``run_render``. ``overwrite_flag`` is what the error
    for an existing output tells the caller to pass (the CLI's ``--overwrite``, the API's keyword).
    The job's seed is ``render.seed``, or, when that is empty, drawn from a hash of the song file
    (``song_seed``): the style ``auto`` and the looks come from it.
    """
    from synesthete.files import check_mp4, check_output
    from synesthete.media import audio_info, decodable_duration
    from synesthete.styles import resolve_style

    song = Path(song)
    out = check_mp4(out) if out is not None else None
    if not math.isfinite(start) or start < 0:
        raise InputError(f"--start must be a finite number >= 0 (got {start})")
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise InputError(f"--duration must be a finite number > 0 (got {duration})")
    info = audio_info(song)
    if info.duration <= 0:
        raise InputError(f"{song} has no audio samples (zero-length)")
    decodable = decodable_duration(song, info.duration)
    if decodable < info.duration - 0.25:  # a truncated file: its header promises more than it holds
        if decodable <= 0:
            raise InputError(f"{song} has no decodable audio (the file is truncated or damaged)")
        err_console.print(
            f"[yellow]warning:[/yellow] {song} is truncated: its header says {info.duration:.2f}s but only "
            f"{decodable:.2f}s decode; rendering the {decodable:.2f}s that exist", soft_wrap=True,
        )
        info.duration = decodable
    if start >= info.duration:
        raise InputError(f"--start {start:g}s is past the end of {song} ({info.duration:.2f}s)")
    seg = info.duration - start if duration is None else min(duration, info.duration - start)
    if out is not None:
        check_output(out, overwrite, inputs=(song,), flag=overwrite_flag)
    seed = settings.render.seed if settings.render.seed is not None else song_seed(song)
    style = resolve_style(settings.render.style, seed)  # validated before any heavy work
    if (settings.render.size or settings.video.width) % 2:
        raise OutputError(f"--size {settings.render.size} must be even for H.264 yuv420p")
    num_frames = max(1, round(seg * settings.video.fps))
    if out is None:
        check_memory(settings, num_frames)
    return RenderJob(song=song, out=out, start=start, seconds=seg, num_frames=num_frames,
                     info=info, style=style, options=dict(options or {}), seed=seed,
                     seed_from_song=settings.render.seed is None)


def memory_need(settings: Settings, num_frames: int) -> int:
    """Bytes the frames of a render to memory take: ``num_frames`` uint8 frames at the output size, held once
    (``_Memory`` fills one tensor in place; nothing is concatenated)."""
    width, height = _output_size(settings)
    return num_frames * 3 * height * width


def available_memory() -> int | None:
    """Bytes of memory the system can still give (Linux ``MemAvailable``); None where it cannot be asked."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(settings: Settings, num_frames: int) -> None:
    """Refuse a render to memory whose frames (``memory_need``) would pass ``render.memory_gb`` or the memory
    the system has available, before it starts: an OutputError that says what to do instead."""
    need = memory_need(settings, num_frames)
    limit = settings.render.memory_gb * 1e9
    free = available_memory()
    if need <= limit and (free is None or need <= free):
        return
    width, height = _output_size(settings)
    seconds = num_frames / settings.video.fps
    over = (f"more than render.memory_gb ({settings.render.memory_gb:g} GB)" if need > limit
            else f"more than the {free / 1e9:.2f} GB of memory available")
    raise OutputError(
        f"a render to memory of {seconds:.1f} s at {width}x{height} would hold {need / 1e9:.2f} GB of frames, "
        f"{over}: render to a file (out=...), a shorter excerpt (duration=...) or a smaller size, or raise "
        "render.memory_gb"
    )


class AudioMuxer:
    """Interleaves the song's audio into the output, up to the video frames written so far.

    ``until(frame)`` appends the samples that play before video frame ``frame`` (never past the excerpt's
    end), read from ``reader`` (an ``AudioReader`` of the excerpt at the output's rate and channels);
    where the file ends early, silence. ``finish(frames)`` appends the rest, so the audio track matches
    the video within one frame.
    """

    def __init__(self, reader: Any, writer: Any, fps: float, sample_rate: int, seconds: float) -> None:
        self.reader, self.writer = reader, writer
        self.fps, self.sample_rate = fps, sample_rate
        self.total = round(seconds * sample_rate)  # samples of the excerpt
        self.written = 0

    def until(self, frame: int) -> None:
        need = min(round(frame / self.fps * self.sample_rate), self.total) - self.written
        if need <= 0:
            return
        wave = self.reader.read(need)
        if wave.shape[-1] < need:
            wave = F.pad(wave, (0, need - wave.shape[-1]))
        self.writer.add_audio(wave)
        self.written += need

    def finish(self, frames: int) -> None:
        self.until(frames)


def _output_size(settings: Settings) -> tuple[int, int]:
    """(width, height) of the output: the model's frames, or ``render.size`` wide at the same aspect (even)."""
    size = settings.render.size or settings.video.width
    height = settings.video.height * size // settings.video.width if settings.render.size else settings.video.height
    return size, height + height % 2


def run_render(
    models: Any, settings: Settings, job: RenderJob, progress: bool = False, since: float | None = None,
    label: str = "rendering",
) -> RenderResult:
    """Run a planned render with loaded ``models`` and ``settings`` (``Models.fitted`` with the render's
    options): to ``job.out`` as an mp4, streamed, or to memory. Wall time and RTF count from ``since`` (a
    ``time.perf_counter()``; default now), so a caller that checked the song and loaded the models for this
    render alone counts that too. ``label`` names the progress line."""
    t_start = time.perf_counter() if since is None else since
    device = _device(models)
    tuner = threads.ThreadTuner() if device.type == "cpu" else None
    try:
        return _run(models, settings, job, device, tuner, t_start, progress, label)
    finally:
        if tuner is not None:
            tuner.restore()


class _Memory:
    """Where a render to memory puts its frames: one uint8 tensor [T, 3, H, W], filled in place as blocks come
    (blocks gathered and then concatenated would need the frames' memory twice at the end)."""

    def __init__(self, num_frames: int, height: int, width: int) -> None:
        self.data = torch.empty(num_frames, 3, height, width, dtype=torch.uint8)
        self.filled = 0

    def __enter__(self) -> _Memory:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def add(self, block: torch.Tensor) -> None:
        from synesthete.media import to_uint8

        block = to_uint8(block)
        n = min(block.shape[0], self.data.shape[0] - self.filled)
        self.data[self.filled : self.filled + n] = block[:n]
        self.filled += n

    def frames(self) -> torch.Tensor:
        return self.data[: self.filled]


class _Mp4:
    """Where a render to a file puts its frames: an H.264 stream, with the song's audio muxed in as it goes
    (``AudioMuxer``), in a temporary file renamed onto ``job.out`` when the block exits cleanly."""

    def __init__(self, job: RenderJob, settings: Settings, width: int, height: int) -> None:
        self.job, self.settings, self.width, self.height = job, settings, width, height

    def __enter__(self) -> _Mp4:
        from synesthete.media import AudioReader, VideoWriter

        job, settings = self.job, self.settings
        # The output audio: the song's own channels (stereo at most) at its own rate if AAC-friendly.
        channels = min(job.info.num_channels, 2)
        rate = job.info.sample_rate if job.info.sample_rate in AAC_RATES else settings.render.audio_sample_rate
        fps = settings.video.fps
        with contextlib.ExitStack() as stack:
            reader = stack.enter_context(AudioReader(job.song, rate, channels, **_reader_options(job, settings)))
            self.writer = stack.enter_context(VideoWriter(
                job.out, width=self.width, height=self.height, fps=fps, audio_sample_rate=rate,
                audio_channels=channels, crf=settings.render.crf, preset=settings.render.x264_preset,
            ))
            self.muxer = AudioMuxer(reader, self.writer, fps, rate, job.seconds)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            try:
                self.muxer.finish(self.job.num_frames)
            except BaseException:
                self._stack.__exit__(*sys.exc_info())
                raise
        self._stack.__exit__(*exc)  # the writer closes first (the encoder flushes, the file is renamed)

    def add(self, block: torch.Tensor) -> None:
        self.writer.add_frames(block)
        self.muxer.until(self.writer.frames_written)


def _reader_options(job: RenderJob, settings: Settings) -> dict[str, Any]:
    """How an ``AudioReader`` opens the job's excerpt (known stream and rate: no second probe)."""
    return {"start": job.start, "duration": job.seconds, "stream_index": job.info.stream_index,
            "source_rate": job.info.sample_rate, "chunk_seconds": settings.render.chunk_seconds}


def _run(models: Any, settings: Settings, job: RenderJob, device: torch.device, tuner: threads.ThreadTuner | None,
         t_start: float, progress: bool, label: str) -> RenderResult:
    """The streaming part of ``run_render``: features, then windows of frames into an mp4 or memory."""
    from synesthete.media import AudioReader
    from synesthete.sampling import guidance_distilled
    from synesthete.styles import style_name

    fps = settings.video.fps
    width, height = _output_size(settings)
    if job.out is None:
        check_memory(settings, job.num_frames)  # as plan_render did, now at the models' frame size
    timings = {"setup": time.perf_counter() - t_start, "analysis": 0.0, "features": 0.0, "network": 0.0,
               "vae_decode": 0.0, "encode_mux": 0.0}
    pace = _Pace(t_start, job.num_frames, job.seconds)
    done = 0
    with _progress_bar(disable=not progress) as bar:
        task = bar.add_task("audio", total=job.num_frames, info="reading the song")
        analysis = None
        if settings.render.sections:
            from synesthete.audio.analysis import analyse_file

            t0 = time.perf_counter()
            whole = job.info.duration
            analysis = analyse_file(job.song, progress=lambda sec: bar.update(
                task, info=f"analysing the song (beats, sections): {min(sec, whole):.0f} of {whole:.0f} s"))
            timings["analysis"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        with AudioReader(job.song, settings.audio.sample_rate, 1, **_reader_options(job, settings)) as reader:
            features = song_features(reader, job.seconds, settings)  # [T, F]
        timings["features"] = time.perf_counter() - t0
        if features.shape[0] != job.num_frames:
            raise RuntimeError(f"feature frames {features.shape[0]} != {job.num_frames}")

        generator = _generator(job.seed, device)
        plan = section_plan(analysis, job.start, job.seconds, fps, job.num_frames) if analysis is not None else []
        looks = section_looks(models, settings, job, plan, analysis)
        bar.update(task, description=label, completed=0, info=pace.line(0))
        pace.begin()
        made = 0

        def generated(n: int) -> None:  # frames the network has made, in all lanes
            nonlocal made
            made = n
            bar.update(task, completed=n, info=pace.line(n))

        cuts = [frame for frame, _ in plan[1:]]
        layout = song_layout(features, settings, models.dit.config.window, settings.render.exemplar, cuts)
        blocks = iter_windows(models, features, settings, generator, timings=timings, generated=generated,
                              tuner=tuner, layout=layout, looks=looks)
        sink = _Memory(job.num_frames, height, width) if job.out is None else _Mp4(job, settings, width, height)
        with sink:
            for block in blocks:
                t0 = time.perf_counter()
                if settings.render.size:
                    block = F.interpolate(block, size=(height, width), mode="bilinear", align_corners=False)
                sink.add(block)
                done += block.shape[0]
                if made >= job.num_frames and done < job.num_frames:  # the later lanes, decoded after the last batch
                    elapsed = _clock(time.perf_counter() - t_start)
                    bar.update(task, info=f"writing the later lanes: {done}/{made} frames · {elapsed} elapsed")
                timings["encode_mux"] += time.perf_counter() - t0
            t0 = time.perf_counter()
        timings["encode_mux"] += time.perf_counter() - t0  # the rest of the audio and the encoder's flush
    wall = time.perf_counter() - t_start
    timings["other"] = max(0.0, wall - sum(timings.values()))
    d = settings.sampling
    sections = [RenderSection(round(max(sec.start, job.start), 3), round(min(sec.end, job.start + job.seconds), 3),
                              sec.label, style_name(look.style), frame)
                for (frame, sec), look in zip(plan, looks, strict=True)] if plan else []
    styles = list(dict.fromkeys(sec.style for sec in sections)) or [style_name(job.style)]
    return RenderResult(
        output=job.out, frames=sink.frames() if isinstance(sink, _Memory) else None,
        fps=fps, num_frames=done, width=width, height=height, start=job.start, duration=job.seconds,
        style=" / ".join(styles), seed=job.seed, sampler=d.sampler, steps=d.steps,
        lanes=layout.lanes,
        guidance=d.guidance, style_guidance=d.style_guidance,
        guidance_distilled=guidance_distilled(models.dit),
        checkpoints=Path(settings.paths.checkpoints),
        device=str(device), precision=precision(device, settings.render.amp),
        threads=tuner.describe("batches") if tuner is not None else None, timings=timings, wall=wall,
        rtf=wall / job.seconds, seed_from_song=job.seed_from_song,
        tempo=analysis.tempo if analysis is not None else None, sections=sections, cuts=list(layout.cuts),
    )


MIN_SECTION_FRAMES = 15  # a section that would last fewer frames at an end of the excerpt keeps its neighbour's look


def section_plan(analysis: Any, start: float, seconds: float, fps: float, total: int) -> list[tuple[int, Any]]:
    """The song's sections (``SongAnalysis.sections``) that play in the excerpt [start, start + seconds), as
    (first frame, section): the one playing at the excerpt's start from frame 0, each later one from the frame
    nearest the downbeat it starts on. A sliver of a section at either end of the excerpt (under
    MIN_SECTION_FRAMES) goes to its neighbour instead of cutting twice in a moment."""
    out: list[tuple[int, Any]] = []
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


def section_looks(models: Any, settings: Settings, job: RenderJob, plan: list[tuple[int, Any]],
                  analysis: Any) -> list[Look]:
    """The look of each section of ``plan`` (one look for the song without sections): its style
    (``styles.section_styles``: with auto a family per kind of section) and its exemplar, in the look
    ``seed_look`` draws for its label from the job's seed. Sections of the same kind share one look."""
    from synesthete.styles import section_styles

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


def render_song(
    settings: Settings,
    song: str | Path,
    out: str | Path | None,
    start: float = 0.0,
    duration: float | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> RenderResult:
    """Render ``song`` to ``out`` (an mp4 with the song's audio, streamed; None: to memory) in one call:
    check the inputs, load the models of ``settings.paths.checkpoints``, render. Scripts that render more
    than one song load the models once with ``synesthete.Synesthete`` instead.

    The result's real-time factor counts from the start of this call (checks and model loading included).
    """
    from synesthete.checkpoint import load_models

    t_start = time.perf_counter()
    job = plan_render(settings, song, out, start, duration, overwrite)
    models = load_models(settings, settings.paths.checkpoints, resolve_device(settings.device))
    return run_render(models, models.fitted(settings), job, progress=progress, since=t_start)
