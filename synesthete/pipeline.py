"""The Python API, diffusers-style: load the models once, then render songs and score videos.

    from synesthete import Synesthete

    pipe = Synesthete.from_pretrained()                  # the shipped checkpoints, on the best device
    result = pipe.render("song.mp3", "song.mp4", style="spectrum", seed=3)
    print(result.rtf, result.timings)                     # a RenderResult: typed figures, no display strings
    clip = pipe.render("song.mp3", start=30, duration=5)  # to memory: clip.frames is uint8 [T, 3, H, W]
    score = pipe.score("song.mp4")                        # a VideoScore: score.sync.av_align, score.picture...

``synesthete render`` and ``synesthete eval --video`` are thin layers over this: the CLI plans every render
(``Synesthete.plan``: all checks, no network) before it loads the models, then runs them (``Synesthete.run``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pydantic import ValidationError

from synesthete.checkpoint import Models, load_critic, load_models
from synesthete.device import resolve_device
from synesthete.errors import ConfigError, InputError, SynestheteError
from synesthete.locks import output_lock
from synesthete.models.critic import Critic
from synesthete.render import RenderJob, RenderResult, plan_render, run_render
from synesthete.settings import Settings, load_settings, validation_message

__all__ = ["PictureScores", "RenderJob", "RenderResult", "Synesthete", "SyncScores", "VideoScore"]

if TYPE_CHECKING:
    from synesthete.eval import PictureScores, SyncScores, VideoScore

_SCORES = frozenset({"PictureScores", "SyncScores", "VideoScore"})


def __getattr__(name: str) -> Any:
    """The score types, from ``synesthete.eval`` on first use: a render never needs that package (0.25 s)."""
    if name in _SCORES:
        from synesthete import eval as scoring

        return getattr(scoring, name)
    raise AttributeError(f"module 'synesthete.pipeline' has no attribute {name!r}")


# The settings behind ``render``'s keywords, to name them in an error (``steps=0``, not sampling.steps).
KEYWORDS = {"sampling.steps": "steps", "sampling.sampler": "sampler", "sampling.guidance": "guidance",
            "sampling.style_guidance": "style_guidance", "render.style": "style", "render.seed": "seed",
            "render.size": "size", "render.lanes": "lanes"}


def _updated(settings: Settings, error: type[SynestheteError], **sections: Any) -> Settings:
    """``settings.updated(**sections)``, with an invalid value raised as ``error`` (one line naming the keyword
    or setting), never as pydantic's ValidationError."""
    try:
        return settings.updated(**sections)
    except ValidationError as exc:
        what = "invalid option" if error is InputError else "invalid setting"
        raise error(f"{what}: {validation_message(exc, KEYWORDS if error is InputError else None)}") from None


def _options(
    style: str | None = None, seed: int | None = None, steps: int | None = None, sampler: str | None = None,
    guidance: float | None = None, style_guidance: float | None = None, size: int | None = None,
    lanes: int | None = None, sections: bool | None = None,
) -> dict[str, dict[str, Any]]:
    """A render's options as settings sections (``None``: the pipeline's setting)."""
    sampling = {"steps": steps, "sampler": sampler, "guidance": guidance, "style_guidance": style_guidance}
    render = {"style": style, "seed": seed, "size": size, "lanes": lanes, "sections": sections}
    return {k: {n: v for n, v in d.items() if v is not None} for k, d in (("sampling", sampling), ("render", render))
            if any(v is not None for v in d.values())}


def _load_settings() -> Settings:
    """The settings of defaults, ``.env`` and ``SYNESTHETE_*`` variables; an invalid one is a ConfigError."""
    try:
        return load_settings()
    except ValidationError as exc:
        raise ConfigError(f"invalid setting: {validation_message(exc)}") from None


class Synesthete:
    """Music in, video out: the trained VAE and DiT, loaded once, and the style critic that scores videos.

    ``Synesthete.from_pretrained()`` loads the models at once. ``Synesthete(settings)`` loads them on the
    first render (scoring needs only the critic, loaded on the first ``score``). Settings start from the
    defaults, ``.env`` and ``SYNESTHETE_*`` variables, as the CLI's do; once the models are loaded, their
    checkpoint decides the frame size and the audio analysis (``Models.fitted``); the window, the latent and the
    noise schedule are the DiT's config (``Models.config``).
    """

    def __init__(self, settings: Settings | None = None, models: Models | None = None) -> None:
        self._base = settings if settings is not None else _load_settings()
        self._models = models
        self._device: torch.device | None = None
        self._critic: Critic | None = None

    @classmethod
    def from_pretrained(
        cls, path: str | Path | None = None, device: str | None = None, *, settings: Settings | None = None,
        **overrides: dict[str, Any],
    ) -> Synesthete:
        """Load ``vae.pt`` and ``diffusion.pt`` from the folder ``path`` (None: the shipped checkpoints).

        ``device``: "auto" (MPS, then CUDA, then CPU; the default), "cpu", "cuda", "cuda:N" or "mps".
        ``settings`` (default: ``load_settings()``) and setting overrides by section, e.g.
        ``sampling={"steps": 4}`` or ``render={"crf": 18}``, give every render's defaults.
        """
        base = settings if settings is not None else _load_settings()
        base = _updated(base, ConfigError, device=device, paths={"checkpoints": path}, **overrides)
        return cls(base).load()

    # ------------------------------------------------------------------------------------- state
    @property
    def settings(self) -> Settings:
        """The settings renders start from: once loaded, fitted to the models (``Models.fitted``)."""
        if self._models is not None:
            return self._models.fitted(self._base)
        return self._base

    @property
    def device(self) -> torch.device:
        """The device the networks run on."""
        if self._device is None:
            if self._models is not None:
                self._device = next(self._models.dit.parameters()).device
            else:
                self._device = resolve_device(self._base.device)
        return self._device

    @property
    def models(self) -> Models:
        """The VAE and DiT (``checkpoint.Models``), loaded on first use."""
        return self.load()._models  # type: ignore[return-value]

    def load(self) -> Synesthete:
        """Load the models now if they are not yet (``checkpoint.load_models``); returns the pipeline."""
        if self._models is None:
            self._models = load_models(self._base, self._base.paths.checkpoints, self.device)
        return self

    # ------------------------------------------------------------------------------------- render
    def render(
        self,
        song: str | Path,
        out: str | Path | None = None,
        *,
        style: str | None = None,
        seed: int | None = None,
        steps: int | None = None,
        sampler: str | None = None,
        guidance: float | None = None,
        style_guidance: float | None = None,
        size: int | None = None,
        lanes: int | None = None,
        sections: bool | None = None,
        start: float = 0.0,
        duration: float | None = None,
        overwrite: bool = False,
        progress: bool = False,
    ) -> RenderResult:
        """Render ``song`` (any audio FFmpeg decodes) from ``start`` for ``duration`` seconds (None: to the end).

        With ``out`` (an .mp4) the video is streamed into that file with the song's audio, atomically (an
        existing file needs ``overwrite``), and the result holds no frames; without, ``result.frames`` is the
        video, uint8 [T, 3, H, W] at ``result.fps`` (refused before it starts if it would take more than
        ``render.memory_gb``: ``render.check_memory``). ``style`` (a visualizer family, '+'-joined families or
        'auto'), ``seed``, ``steps``, ``sampler`` ("ddpm", "ddim", "dpm++"), ``guidance`` (audio),
        ``style_guidance``, ``size`` (output width, 0: the model's), ``lanes`` (stretches generated side
        by side) and ``sections`` default to the settings. The same seed gives the same frames at a fixed
        thread count and lane count. ``progress`` shows the progress line. A bad file or option raises the
        project's own errors (``synesthete.errors``: InputError, OutputError, CheckpointError, ...), never
        pydantic's.

        As `synesthete render` does: ``sections`` (``render.sections``, on by default) follows the song's form:
        the whole song is analysed (``audio.analysis``), and the picture cuts to a new look on the downbeat
        that starts each section, a repeated section coming back in its earlier look (``result.sections``,
        ``result.cuts``); off, one look holds for the whole song. Without ``seed`` (and ``render.seed``
        empty) the seed, and with it the style ``auto`` and the looks, is drawn from a hash of the song file
        (``result.seed``): two songs get two looks, the same song always the same.
        """
        t_start = time.perf_counter()
        options = {"style": style, "seed": seed, "steps": steps, "sampler": sampler, "guidance": guidance,
                   "style_guidance": style_guidance, "size": size, "lanes": lanes, "sections": sections}
        if out is None:
            job = self.plan(song, None, start=start, duration=duration, **options)
            return self.run(job, progress=progress, since=t_start)
        with output_lock(out):  # a second render to the same file is refused while this one runs
            job = self.plan(song, out, start=start, duration=duration, overwrite=overwrite, **options)
            return self.run(job, progress=progress, since=t_start)

    def plan(self, song: str | Path, out: str | Path | None = None, *, start: float = 0.0,
             duration: float | None = None, overwrite: bool = False, overwrite_flag: str = "overwrite=True",
             **options: Any) -> RenderJob:
        """Check a render without running it (``render.plan_render``): the song, the excerpt, the output and
        the options (``render``'s keywords; a bad one is an InputError naming it). Needs no network, so the
        models need not be loaded yet. ``overwrite_flag`` is how an error tells the caller to overwrite."""
        sections = _options(**options)
        settings = _updated(self.settings, InputError, **sections) if sections else self.settings
        return plan_render(settings, song, out, start, duration, overwrite, options=sections,
                           overwrite_flag=overwrite_flag)

    def run(self, job: RenderJob, *, progress: bool = False, since: float | None = None,
            label: str = "rendering") -> RenderResult:
        """Run a planned render (loading the models first if needed). Wall time and RTF count from ``since``
        (a ``time.perf_counter()``; default: now). Does not lock the output (``render`` does)."""
        models = self.models
        settings = _updated(self.settings, InputError, **job.options) if job.options else self.settings
        return run_render(models, settings, job, progress=progress, since=since, label=label)

    # ------------------------------------------------------------------------------------- score
    @property
    def critic(self) -> Critic:
        """The style critic of the picture metrics, loaded on first use."""
        if self._critic is None:
            self._critic = load_critic(self._base.critic_path, self.device)
        return self._critic

    def score(self, video: str | Path, audio: str | Path | None = None, *,
              manifest: str | Path | None = None) -> VideoScore:
        """Score a video file as `synesthete eval --video` does: how it moves with its own audio track (or
        ``audio``), and its picture (style critic). ``manifest`` (a gen-audio manifest.jsonl) gives the exact
        beats of its clip instead of a tempo estimate."""
        from synesthete.eval import score_file

        score, _, _ = score_file(self._base, Path(video), Path(audio) if audio is not None else None,
                                 Path(manifest) if manifest is not None else None, self.critic)
        return score

    def __repr__(self) -> str:
        state = "loaded" if self._models is not None else "not loaded"
        return f"Synesthete(checkpoints={self._base.paths.checkpoints}, device={self.device}, models {state})"
