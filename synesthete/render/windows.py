"""The sampling of a render's windows: features [T, F] in, decoded frame blocks out, in song order.

``iter_windows`` runs the ``WindowLayout`` (``render.layout``) in two passes: the lanes pass samples window m
of every lane in one batched sample, round after round, and yields lane 0's frames as they come; the
bridges pass samples the windows between lanes in one batched sample, then yields the later lanes. A
``Look`` (style and exemplar) holds for each segment between cuts.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from synesthete import sampling
from synesthete.audio.features import audible_frames
from synesthete.checkpoint import Models
from synesthete.device import autocast
from synesthete.metrics.quality import settled
from synesthete.render.layout import WindowLayout, window_layout
from synesthete.settings import Settings
from synesthete.styles import style_vector
from synesthete.threads import ThreadTuner

DECODE_BATCH = 12  # latents the VAE decodes at a time once the lanes are done (more is no faster, and costs memory)


@dataclass
class Look:
    """What a stretch of the render looks like: its style (visualizer families) and the style exemplar latents
    [k, C, h, w] it starts from (``style_exemplar``); ``label`` names the kind of section it is the look of."""

    style: list[str] | None
    exemplar: torch.Tensor | None
    label: str = "A"


def network_device(models: Models) -> torch.device:
    """The device the networks are on."""
    return next(models.dit.parameters()).device


def noise_generator(seed: int, device: torch.device) -> torch.Generator:
    """The generator of a render's noise, seeded with the render seed (on the CPU for MPS)."""
    gen = torch.Generator(device=device if device.type != "mps" else "cpu")
    gen.manual_seed(seed)
    return gen


def settled_silence(features: torch.Tensor, settings: Settings) -> torch.Tensor:
    """bool [T]: frames in a silence (loudness feature under ``eval.silence_db``) that has lasted
    ``eval.settle_seconds``, as the eval's silence response counts them: the visualizers are at rest there."""
    silent = (~audible_frames(features, settings)).cpu().numpy()  # [T]
    return torch.from_numpy(settled(silent, round(settings.eval.settle_seconds * settings.video.fps)))


def song_layout(features: torch.Tensor, settings: Settings, window: int, exemplar: bool,
                cuts: tuple[int, ...] | list[int] = ()) -> WindowLayout:
    """The layout ``iter_windows`` uses for a song's features [T, F] (bridges kept out of its silences), cut at
    ``cuts`` (frames where a section starts in its own look)."""
    quiet = settled_silence(features, settings) if settings.render.lanes > 1 else None
    return window_layout(features.shape[0], window, settings.render.overlap, settings.render.lanes, exemplar, quiet,
                         cuts)


class _Sampler:
    """What both passes share: the padded features, each lane's look, and one batched sample or decode."""

    def __init__(self, models: Models, features: torch.Tensor, settings: Settings,
                 generator: torch.Generator | None, layout: WindowLayout, looks: list[Look],
                 timings: dict[str, float] | None) -> None:
        if len(looks) != len(layout.segment_lanes):
            raise ValueError(f"{len(layout.segment_lanes)} segments of the song but {len(looks)} looks")
        cfg = models.dit.config
        self.models, self.settings, self.generator, self.layout, self.timings = (
            models, settings, generator, layout, timings)
        self.window, self.total = cfg.window, features.shape[0]
        self.look = [looks[layout.segment_of(lane)] for lane in range(layout.lanes)]  # each lane's look
        # Anchored context frames hold the exemplar's last frames all song long; at least one frame stays the past.
        has_exemplar = all(lk.exemplar is not None for lk in looks)
        self.anchor = min(settings.render.anchor, layout.overlap - 1) if has_exemplar else 0
        self.device = network_device(models)
        # Pad with silence: ctx + lead frames before the song, and after it as far as the last lane reaches.
        ctx = cfg.audio_context
        self.feature_span = self.window + 2 * ctx
        self.padded = F.pad(features.to(self.device),
                            (0, 0, ctx + layout.lead, max(0, layout.end - self.total) + ctx))
        self.latent = (cfg.latent_channels, cfg.latent_height, cfg.latent_width)
        self.styled = all(lk.style for lk in looks)
        self.style_rows = [style_vector(lk.style).to(self.device) if self.styled else None
                           for lk in self.look]  # [S] per lane

    def sample(self, rows: list[int], firsts: list[int], context: torch.Tensor | None,
               mask: torch.Tensor | None) -> torch.Tensor:
        """One batched sample of the windows of lanes ``rows`` whose frame 0 is song frame ``firsts[b]`` ->
        latents [B, W, ...]."""
        lead, device = self.layout.lead, self.device
        feats = torch.stack([self.padded[q + lead : q + lead + self.feature_span] for q in firsts])  # [B, W + 2ctx, F]
        if context is not None and self.anchor > 0:
            for b, lane in enumerate(rows):
                context[b, : self.anchor] = self.look[lane].exemplar[-self.anchor :].to(device)
        t0 = time.perf_counter()
        with autocast(device, self.settings.render.amp):
            out = sampling.sample(
                self.models.dit, feats, (len(firsts), self.window, *self.latent), self.settings.sampling,
                generator=self.generator,
                style=torch.stack([self.style_rows[lane] for lane in rows]) if self.styled else None,
                context=context, context_mask=mask,
            ).float()
        self._count("network", t0)
        return out

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents [n, C, h, w] -> frames [n, 3, H, W] on the CPU."""
        t0 = time.perf_counter()
        with autocast(self.device, self.settings.render.amp):
            frames = self.models.decode(latents).float().cpu()  # [n, 3, H, W]
        self._count("vae_decode", t0)
        return frames

    def _count(self, key: str, t0: float) -> None:
        if self.timings is not None:
            self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - t0

    def context(self, past: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Clean context [B, W, ...] whose first ``overlap`` frames are the last ones of each window in ``past``
        [W, ...], and its mask [B, W]."""
        overlap = self.layout.overlap
        context = torch.zeros(len(past), self.window, *self.latent, device=self.device)
        context[:, :overlap] = torch.stack([p[self.layout.stride :] for p in past])
        mask = torch.zeros(len(past), self.window, dtype=torch.bool, device=self.device)
        mask[:, :overlap] = True
        return context, mask

    def exemplar_windows(self) -> list[torch.Tensor | None]:
        """Each lane's "previous window" before its first: the look's exemplar in its last ``overlap`` frames,
        or None without an exemplar (the first window then starts from nothing)."""
        if not self.layout.lead:
            return [None] * self.layout.lanes
        prev: list[torch.Tensor | None] = []
        for lane in range(self.layout.lanes):
            window = torch.zeros(self.window, *self.latent, device=self.device)
            window[self.layout.stride :] = self.look[lane].exemplar[-self.layout.overlap :].to(self.device)
            prev.append(window)
        return prev


_Lanes = tuple[list[torch.Tensor], list[list[torch.Tensor]]]  # each lane's last window, later lanes' new latents


def _lanes_pass(s: _Sampler, generated: Callable[[int], None] | None,
                tuner: ThreadTuner | None) -> Generator[torch.Tensor, None, _Lanes]:
    """Window m of every lane that has one, in one batched sample per m, each window continuing its lane's
    previous one (the first, the look's exemplar). Yields lane 0's shown frames as they come; returns each
    lane's last window and the new latents of lanes 1.. (held for the bridges pass)."""
    layout = s.layout
    overlap, stride, lead, starts = layout.overlap, layout.stride, layout.lead, layout.starts
    prev = s.exemplar_windows()  # latents [W, C, h, w] of each lane's previous window
    held: list[list[torch.Tensor]] = [[] for _ in range(layout.lanes)]  # new latents of lanes 1..
    shown = layout.limit(0)  # lane 0's frames that the render shows
    emitted = made = 0
    for m in range(max(layout.windows)):
        active = [lane for lane in range(layout.lanes) if layout.windows[lane] > m]  # lanes with a window m
        continuing = prev[active[0]] is not None
        context = mask = None
        if continuing and overlap > 0:
            context, mask = s.context([prev[lane] for lane in active])
        with tuner.unit() if tuner is not None else contextlib.nullcontext():
            latents = s.sample(active, [starts[lane] - lead + m * stride for lane in active], context, mask)
        new = latents[:, overlap if continuing else 0 :]  # [B, n, C, h, w]
        for row, lane in enumerate(active):
            prev[lane] = latents[row].clone()  # not views: the round's whole batch would stay alive
            if lane:
                held[lane].append(new[row].clone())
        made = min(s.total, made + new.shape[0] * new.shape[1])
        if generated is not None:
            generated(made)
        n0 = min(new.shape[1], shown - emitted) if active[0] == 0 else 0
        if n0 > 0:
            yield s.decode(new[0, :n0])
            emitted += n0
    return prev, held


def _bridges_pass(s: _Sampler, lanes: _Lanes, generated: Callable[[int], None] | None) -> Iterator[torch.Tensor]:
    """One batched sample of the bridges, each between the end of a lane (first frames of its context) and the
    start of the next one of its segment (last frames); then yields lanes 1.. in order, each after the
    bridge into it, cut to the frames the render shows."""
    prev, held = lanes
    layout, window = s.layout, s.window
    overlap, starts = layout.overlap, layout.starts
    bridged = [lane for lane in range(1, layout.lanes) if layout.bridged(lane)]
    bridges = None
    if bridged:
        context = torch.zeros(len(bridged), window, *s.latent, device=s.device)
        for row, lane in enumerate(bridged):
            context[row, :overlap] = prev[lane - 1][window - overlap :]  # the end of the lane before
            context[row, window - overlap :] = torch.cat(held[lane])[:overlap]  # the start of this one
        mask = torch.zeros(len(bridged), window, dtype=torch.bool, device=s.device)
        mask[:, :overlap] = mask[:, window - overlap :] = True
        bridges = s.sample(bridged, [starts[lane] - layout.gap - overlap for lane in bridged], context, mask)
    if generated is not None:
        generated(s.total)
    for lane in range(1, layout.lanes):
        parts = held[lane]
        if layout.bridged(lane):
            parts = [bridges[bridged.index(lane), overlap : overlap + layout.gap], *parts]
        first = starts[lane] - (layout.gap if layout.bridged(lane) else 0)  # the song frame the parts begin at
        latents = torch.cat(parts)[: max(0, min(layout.limit(lane), s.total) - first)]
        held[lane] = []
        yield from (s.decode(block) for block in latents.split(DECODE_BATCH))


@torch.no_grad()
def iter_windows(
    models: Models,
    features: torch.Tensor,
    settings: Settings,
    generator: torch.Generator | None = None,
    style: list[str] | None = None,
    exemplar: torch.Tensor | None = None,
    timings: dict[str, float] | None = None,
    generated: Callable[[int], None] | None = None,
    tuner: ThreadTuner | None = None,
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
    batched sample each, every lane starting from the exemplar (the lanes pass); then one batched sample makes
    the bridges, windows whose context is the end of one lane (first frames) and the start of the next (last
    frames), so the lanes join as windows do (the bridges pass). Lane 0 is decoded and yielded as it goes; the
    later lanes' latents (2 KB a frame) wait until the bridges are made. ``generated(n)`` (if given) hears
    the number of the song's frames generated so far after every batched sample (progress). ``tuner`` (CPU)
    times each batched sample of the lanes as one unit and picks the thread count (``threads.ThreadTuner``).
    ``layout`` is the caller's ``song_layout`` of these features, if it already made one.

    A layout with cuts (sections, ``render.sections``) takes ``looks``, one per segment (``layout.cuts`` + 1):
    each segment's lanes are generated in its look's style, start from its look's exemplar and hold its
    anchor, in the same batched samples as the others; no bridge crosses a cut, so the picture cuts there
    from one look to the next. Without ``looks`` every segment has ``style`` and ``exemplar``.

    ``timings`` (if given) accumulates the seconds spent in the network ("network") and in the VAE decoder
    ("vae_decode"). Both run under bf16 autocast where the device has native bf16 and ``render.amp`` is on
    (``device.autocast``); latents and frames come out float32. Latents are scaled by
    ``Models.encode``/``Models.decode``.
    """
    layout = layout or song_layout(features, settings, models.dit.config.window, exemplar is not None)
    if looks is None:
        looks = [Look(style, exemplar)] * len(layout.segment_lanes)
    sampler = _Sampler(models, features, settings, generator, layout, looks, timings)
    lanes = yield from _lanes_pass(sampler, generated, tuner)
    if layout.lanes > 1:
        yield from _bridges_pass(sampler, lanes, generated)
