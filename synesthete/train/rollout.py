"""Rollout lanes: training windows whose context is the network's own render (``diffusion.rollout_lanes``).

A render continues each window from the last frame the network itself made, and the look decays within a
second or two of such context on a real song, while training shows the network true frames (or a one-step
estimate of them: ``diffusion.predicted_context``). That gap is exposure bias. Each lane here walks one clip of
the pool window after window, as one of render's lanes walks a song::

    lane start      a random pool clip, frame 0; its anchor is a random frame of the clip (render's exemplar)
    each step       the lane's next window joins the batch: context = [anchor, the lane's last generated
                    frame], the frames after them to generate; the target is made from the true context
                    (``train.losses``), so the network learns to pull its own drift back to the look
    after the step  the EMA network samples that window as render does (``sampling.sample`` with the sampling
                    settings, clean context); its last frame is the next window's context, ``stride`` frames on
    clip end        the lane starts again on another clip

The lanes are not in the run checkpoint: a resumed run starts them afresh.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from synesthete import sampling
from synesthete.data import ClipPool, cut_window
from synesthete.device import autocast
from synesthete.settings import Settings

CONTEXT = 2  # a lane window's context frames: the anchor, then the lane's last generated frame (render's default)


@dataclass
class Lane:
    """One walk through a clip: the clip, where its next window starts, and its context latents [2, C, h, w]
    (the anchor, then the last frame the network made; at the start, the clip's own frame)."""

    clip: dict[str, torch.Tensor]
    start: int
    context: torch.Tensor


class RolloutLanes:
    """``count`` lanes (module docstring). ``encode`` maps uint8 frames [n, 3, H, W] to the run's normalised
    latents [n, C, h, w]."""

    def __init__(self, count: int, settings: Settings, encode: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.count, self.settings, self.encode = count, settings, encode
        self.lanes: list[Lane] = []

    def _start(self, pool: ClipPool, generator: torch.Generator) -> Lane:
        clip = pool.clips[int(torch.randint(0, len(pool.clips), (1,), generator=generator))]
        frames = clip["frames"]
        anchor = int(torch.randint(0, frames.shape[0], (1,), generator=generator))
        return Lane(clip, 0, self.encode(torch.stack([frames[anchor], frames[1]])))

    def windows(self, pool: ClipPool, window: int, audio_context: int,
                generator: torch.Generator) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """The lanes' next windows, as ``ClipPool.windows`` gives them (frames, features, styles and the anchor
        frames), and their context latents [count, 2, C, h, w]. Lanes at their clip's end start again."""
        if window <= CONTEXT:
            raise ValueError(f"rollout lanes need windows of more than {CONTEXT} frames, not {window}")
        while len(self.lanes) < self.count:
            self.lanes.append(self._start(pool, generator))
        for i, lane in enumerate(self.lanes):
            if lane.start + window > lane.clip["frames"].shape[0]:
                self.lanes[i] = self._start(pool, generator)
        cuts = [cut_window(lane.clip, lane.start, window, audio_context) for lane in self.lanes]
        frames = torch.stack([c[0] for c in cuts])
        # The anchor's uint8 frame is not kept: the batch's anchor slot gets the window's first frame.
        batch = (frames, torch.stack([c[1] for c in cuts]), torch.stack([lane.clip["style"] for lane in self.lanes]),
                 frames[:, 0])
        return batch, torch.stack([lane.context for lane in self.lanes])

    @torch.no_grad()
    def advance(self, network: nn.Module, features: torch.Tensor, styles: torch.Tensor,
                generator: torch.Generator) -> torch.Tensor:
        """Sample the lanes' current windows with ``network`` (features [count, W + 2ctx, F], styles [count, S],
        as ``windows`` gave them) from their context, as render samples a window; move each lane one stride on,
        its last generated frame now its context. Returns the sampled latents [count, W, C, h, w]."""
        cfg = network.config
        shape = (len(self.lanes), cfg.window, cfg.latent_channels, cfg.latent_height, cfg.latent_width)
        device = next(network.parameters()).device
        context = torch.zeros(shape, device=device)
        context[:, :CONTEXT] = torch.stack([lane.context for lane in self.lanes]).to(device)
        mask = torch.zeros(shape[:2], dtype=torch.bool, device=device)
        mask[:, :CONTEXT] = True
        with autocast(device, self.settings.train.amp):
            out = sampling.sample(network, features, shape, self.settings.sampling, generator=generator,
                                  style=styles.to(device), context=context, context_mask=mask).float()
        for lane, latents in zip(self.lanes, out, strict=True):
            lane.context = torch.stack([lane.context[0], latents[-1].to(lane.context.device)])
            lane.start += cfg.window - CONTEXT
        return out
