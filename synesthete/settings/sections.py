"""The settings sections: one pydantic model per part of Synesthete (audio, video, data, the networks and their
trainers, sampling, render, eval, paths), with their defaults, bounds and descriptions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Seeds at or above this value are reserved for evaluation; the training stream never draws them.
HELDOUT_SEED_START = 1_000_000_000

# The largest seed (torch generators take 64-bit seeds; int64 leaves room for seed + k).
MAX_SEED = 2**63 - 1

# The largest output side (render.size): 4096 px is 4K; a render to memory is bounded by render.memory_gb too.
MAX_SIZE = 4096

# x264's speed presets (render.x264_preset): anything else fails inside the encoder, far from the setting.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")


def default_checkpoint_dir() -> Path:
    """The checkpoints shipped with synesthete, wherever the command runs.

    An installed wheel carries them inside the package (``synesthete/checkpoints``); a source checkout (and
    the editable install ``uv run`` makes) has them in ``checkpoints/`` beside the ``synesthete/`` package.
    """
    package = Path(__file__).resolve().parent.parent
    for folder in (package / "checkpoints", package.parent / "checkpoints"):
        if (folder / "diffusion.pt").is_file():
            return folder
    return package.parent / "checkpoints"  # neither has them: the error names the checkout's folder


def _empty_is_none(value: Any) -> Any:
    """None for an empty string or ``null`` (how an environment variable or .env.example leaves a setting unset)."""
    if isinstance(value, str) and value.strip().lower() in ("", "null"):
        return None
    return value


class _Section(BaseModel):
    """Base for settings sections: unknown keys are errors, so typos are caught; NaN and inf are refused."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class AudioSettings(_Section):
    """Audio sample rate, clip length and the frame-aligned feature analysis."""

    sample_rate: int = Field(
        16000, ge=8000, le=192000, description="Sample rate (Hz) of synthesised clips and model features."
    )
    clip_seconds: float = Field(3.0, gt=0, description="Length (s) of one procedurally generated training clip.")
    n_fft: int = Field(512, gt=0, description="FFT size for the feature spectrogram.")
    feature_hop: int = Field(160, gt=0, description="Hop (samples) of the fine analysis before pooling to frames.")
    n_mels: int = Field(40, gt=0, description="Mel bands of the feature spectrogram.")
    n_bands: int = Field(8, gt=0, description="Band-energy channels in the per-frame feature vector.")


class VideoSettings(_Section):
    """Frame size and rate of the visualizers and the model."""

    width: int = Field(128, gt=0, description="Frame width in pixels.")
    height: int = Field(128, gt=0, description="Frame height in pixels.")
    fps: int = Field(30, gt=0, le=240, description="Frames per second.")


class DataSettings(_Section):
    """The infinite data engine: procedural music, optionally mixed with real songs."""

    seed: int = Field(0, ge=0, le=MAX_SEED, description="Base seed of the training stream.")
    heldout_seed_start: int = Field(HELDOUT_SEED_START, description="First seed of the held-out (eval-only) range.")
    epoch_size: int = Field(1000, gt=0, description="Clips that make up one nominal epoch.")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    drums_prob: float = Field(0.85, ge=0, le=1, description="Probability that a clip has a drum track.")
    chords_prob: float = Field(0.3, ge=0, le=1, description="Probability that the melody plays chords.")
    silence_prob: float = Field(0.25, ge=0, le=1, description="Probability of a silent stretch in a clip.")
    dropout_prob: float = Field(0.25, ge=0, le=1, description="Probability that tracks drop out for a while.")
    tempo_min: float = Field(70.0, gt=0, description="Slowest tempo (BPM) of the procedural music.")
    tempo_max: float = Field(180.0, gt=0, description="Fastest tempo (BPM) of the procedural music.")
    target_rms: float = Field(0.15, gt=0, le=0.5, description="RMS of the audible part of a clip after normalisation.")
    compose_prob: float = Field(0.3, ge=0, le=1, description="Probability that 2-3 visualizers are composed.")
    augment: bool = Field(True, description="Apply light augmentation (flip, hue shift) to frames.")
    visualizers: list[str] = Field(
        default_factory=list, description="Visualizer names to draw from; empty means all registered ones. A name "
        "listed n times is drawn n times as often (e.g. more of the hard families in a fine-tune)."
    )
    music_dirs: list[Path] = Field(
        default_factory=list, description="Folders of real songs (subfolders too) whose excerpts join the "
        "procedural clips in training (`train ... --music DIR`); empty means procedural music only.",
    )
    music_share: float = Field(
        0.5, ge=0, le=1, description="Share of the stream's clips cut from music_dirs (when it names folders)."
    )
    music_heldout: float = Field(
        0.2, ge=0, lt=1, description="Share of the songs, chosen by a hash of each file's bytes, held out of "
        "training for `eval --music`.",
    )


class VAESettings(_Section):
    """The spatial VAE ('the Eye') and its trainer."""

    latent_channels: int = Field(8, gt=0, description="Channels of the 8x8 spatial latent.")
    base_channels: int = Field(32, gt=0, description="Channels of the first encoder stage (doubling per stage).")
    max_channels: int = Field(128, gt=0, description="Cap on the channel count of any stage.")
    kl_weight: float = Field(1e-4, ge=0, description="Weight of the KL term beside the per-pixel MSE.")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate.")
    batch_size: int = Field(32, gt=0, description="Frames per optimisation step.")
    max_steps: int = Field(4000, gt=0, description="Optimisation steps of a run.")


class DiTSettings(_Section):
    """The architecture of a new Diffusion Transformer ('the Brain'): `train diffusion` builds its DiTConfig from
    this section; a trained DiT's architecture is in its checkpoint, which render and eval read."""

    window: int = Field(8, gt=0, description="Frames denoised jointly in one window.")
    patch_size: int = Field(2, gt=0, description="Latent patch size (tokens per frame = (8/patch)^2).")
    dim: int = Field(192, gt=0, description="Transformer width.")
    depth: int = Field(6, gt=0, description="Transformer blocks (each: spatial, temporal, cross attention, MLP).")
    heads: int = Field(4, gt=0, description="Attention heads.")
    mlp_ratio: float = Field(4.0, gt=0, description="MLP hidden size as a multiple of dim.")
    audio_context: int = Field(4, ge=0, description="Feature frames of context on each side of a video frame.")
    audio_dim: int = Field(128, gt=0, description="Width of the learned audio encoder.")
    num_train_timesteps: int = Field(1000, gt=0, description="Diffusion timesteps of the training schedule.")
    schedule: Literal["cosine", "linear"] = Field("cosine", description="Noise schedule (cosine ends near pure noise).")
    prediction: Literal["eps", "v"] = Field("v", description="What the network predicts.")
    guidance_embed: bool = Field(
        False, description="The DiT takes the audio guidance scale as an input: a guidance-distilled student "
        "(`train diffusion --teacher`), which sampling runs in one pass per step instead of two.",
    )


class DiffusionSettings(_Section):
    """The trainer of the Diffusion Transformer (`train diffusion`): objective, context, EMA, optimisation."""

    cfg_dropout: float = Field(0.1, ge=0, le=1, description="Probability of dropping the audio in training (CFG).")
    style_dropout: float = Field(
        0.1, ge=0, le=1, description="Probability of dropping the style in training (own CFG, independent of audio)."
    )
    max_context: int = Field(
        4, ge=0, description="Most clean context frames a training window continues from (k uniform in 0..this)."
    )
    context_noise_max: float = Field(
        0.15, ge=0, lt=1, description="Training noises the clean context frames to a timestep uniform in 0..this "
        "share of the schedule and tells the DiT the level (noise augmentation against autoregressive drift; "
        "0 = always clean).",
    )
    predicted_context: float = Field(
        0.5, ge=0, le=1, description="Share of the training windows with context whose context frames are the "
        "EMA network's own one-step prediction from a noised copy, not the true latents (noised to a timestep "
        "uniform in predicted_context_t): the DiT learns to pull its renders' drift back to the style instead of "
        "continuing it (exposure bias). 0 = always the true latents.",
    )
    predicted_context_t: tuple[float, float] = Field(
        (0.1, 0.7), description="Range (shares of the schedule) of the noise level the predicted context is "
        "made from: higher gives blurrier, blob-like context.",
    )
    anchor_prob: float = Field(
        0.5, ge=0, le=1, description="Share of the training windows with 2 or more context frames whose first "
        "context frame is another moment of the same clip (an anchor), as render's anchored context is "
        "(render.anchor): the DiT learns to take the look from it and the motion from the frames after it.",
    )
    bridge_prob: float = Field(
        0.2, ge=0, le=1, description="Share of the training windows that also get clean context frames at their "
        "end (1..max_context of them, at least one frame left to generate): the DiT learns to fill a gap "
        "between a past and a future, as render's bridges between lanes need (render.lanes).",
    )
    hinge_weight: float = Field(1.0, ge=0, description="Weight of the shuffled-audio hinge penalty.")
    hinge_margin: float = Field(0.05, ge=0, description="Margin by which shuffled audio must raise the loss.")
    ema_decay: float = Field(0.999, ge=0, le=1, description="EMA decay of the sampling weights.")
    lr: float = Field(3e-4, gt=0, description="AdamW learning rate.")
    batch_size: int = Field(16, gt=0, description="Windows per optimisation step.")
    max_steps: int = Field(20000, gt=0, description="Optimisation steps of a run.")
    distill_guidance: tuple[float, float] = Field(
        (1.0, 3.0), description="Audio guidance scales (low, high) that distillation draws from, one per "
        "window: the student learns its teacher's guided prediction at each (`train diffusion --teacher`).",
    )
    distill_style_guidance: float = Field(
        1.0, ge=0, le=20, description="Style guidance scale baked into a distilled student (`train diffusion "
        "--teacher`): its target is its teacher's output guided on the style as well, one more teacher pass per "
        "step, so sampling needs no style pass for it. 1: none.",
    )
    distill_style_guidance_families: dict[str, float] = Field(
        default_factory=dict, description="Per-family style guidance scales baked into a distilled student in "
        "place of distill_style_guidance for that family's windows (a window of several families gets their "
        'mean, weighted as its style is), e.g. {"pulse": 3}: more guidance where a thin look breaks on loud '
        "music, no more where it costs the picture.",
    )
    distill_steps: int = Field(
        0, ge=0, le=500, description="Step distillation (`train diffusion --teacher`): the student learns in one "
        "DDIM step what its teacher does in `distill_substeps`, on the trailing grid of this many sampling steps; "
        "the student's config records them (`distilled_steps`) and samples with DDIM at this many unless sampling "
        "says otherwise (the teacher with `distill_substeps` times as many); 0: guidance distillation only.",
    )
    distill_substeps: int = Field(
        2, ge=2, le=10, description="Step distillation: the teacher's DDIM steps per student step (2: progressive "
        "distillation; more: a target nearer the teacher's many-step sampler, one teacher pass more each).",
    )
    latent_stat_clips: int = Field(
        16, gt=0, description="Training clips encoded at the start to measure the per-channel latent mean/std."
    )
    loss_buckets: int = Field(4, gt=0, description="Timestep buckets of the per-timestep loss diagnostic.")

    @model_validator(mode="after")
    def _check_distill_guidance(self) -> DiffusionSettings:
        low, high = self.distill_guidance
        if not 0 <= low <= high <= 20:
            raise ValueError(f"diffusion.distill_guidance={self.distill_guidance} must be (low, high) with "
                             "0 <= low <= high <= 20")
        for family, scale in self.distill_style_guidance_families.items():
            if not 0 <= scale <= 20:
                raise ValueError(f"diffusion.distill_style_guidance_families: {family}'s scale {scale} must be "
                                 "in 0..20")
        return self


class SamplingSettings(_Section):
    """How render, eval and training previews sample a trained DiT (its noise schedule is its own)."""

    sampler: Literal["auto", "ddpm", "ddim", "dpm++"] = Field(
        "auto", description="Sampler used by render/eval/training previews: auto = the Brain's own (DDIM for a "
        "step-distilled one, the sampler it was distilled for; else dpm++: DPM-Solver++(2M)).",
    )
    steps: int | None = Field(
        None, gt=0, description="Sampler steps; empty = the Brain's own (the steps a step-distilled one learned, "
        "else 10).",
    )
    guidance: float = Field(3.0, ge=0, le=20, description="Classifier-free guidance scale on the audio.")
    style_guidance: float = Field(
        1.0, ge=0, le=20, description="Classifier-free guidance scale on the style (1 = no extra pass)."
    )
    clip_x0: float = Field(
        10.0, ge=0, description="Sampling clamps the predicted clean latent to +-this (0 = off); guards eps "
        "prediction near the zero-SNR end of the schedule, a no-op for unit-variance latents otherwise.",
    )

    @field_validator("steps", mode="before")
    @classmethod
    def _empty_steps_is_none(cls, value: Any) -> Any:
        """An empty value (or ``null``, as .env.example writes it) means: the Brain's own."""
        return _empty_is_none(value)


class CriticSettings(_Section):
    """The style critic: a small CNN that names the visualizer families in a frame (picture metrics)."""

    size: int = Field(64, gt=0, description="Frames are resized to size x size before the critic.")
    width: int = Field(32, gt=0, description="Channels of the first stage (doubling per stage, 4 stages).")
    feature_dim: int = Field(128, gt=0, description="Width of the penultimate features (FSD, cut rate).")
    lr: float = Field(2e-3, gt=0, description="AdamW learning rate.")
    batch_size: int = Field(64, gt=0, description="Frames per optimisation step.")
    max_steps: int = Field(1500, gt=0, description="Optimisation steps of a run.")
    h264_prob: float = Field(
        0.5, ge=0, le=1, description="Share of training clips round-tripped through H.264 at a random CRF."
    )
    junk_prob: float = Field(
        0.15, ge=0, le=1, description="Share of each batch replaced by unrecognisable frames (blur, blobs) "
        "labelled with no family, so soft colour fields do not score as a style."
    )
    heldout_clips: int = Field(48, gt=0, description="Held-out clips of the accuracy table and cut threshold.")


class TrainSettings(_Section):
    """What both trainers share: logging, checkpoints, precision, distribution."""

    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed for weights, noise and the data stream.")
    run_name: str = Field("", description="Run folder name under paths.runs; empty means a timestamp.")
    checkpoint_every: int = Field(500, gt=0, description="Steps between checkpoints.")
    log_every: int = Field(10, gt=0, description="Steps between TensorBoard scalar logs.")
    image_every: int = Field(250, gt=0, description="Steps between TensorBoard image logs.")
    eval_every: int = Field(1000, gt=0, description="Steps between held-out sync metrics (diffusion).")
    grad_accum: int = Field(1, gt=0, description="Micro-batches accumulated per optimisation step.")
    grad_clip: float = Field(1.0, gt=0, description="Gradient-norm clip.")
    warmup_steps: int = Field(200, ge=0, description="Linear learning-rate warm-up steps.")
    amp: bool = Field(True, description="bf16 autocast in training where the hardware has native bf16 (CUDA, "
                      "x86 CPUs with AVX512-BF16 or AMX); float32 elsewhere.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Cosine schedule floor, as a fraction of the peak LR.")
    keep_every: int = Field(
        0, ge=0, description="Also keep ckpt_<step>.pt every this many steps (0: only ckpt_latest.pt)."
    )
    preview_samples: int = Field(8, gt=0, description="Held-out frames (VAE) or windows (diffusion) in image logs.")
    clip_pool: int = Field(
        64, gt=0, description="Recent clips kept in memory; every batch draws frames or windows from all of them."
    )
    fresh_clips: int = Field(4, gt=0, description="New clips from the data engine per optimisation step (per rank).")
    overfit: bool = Field(False, description="Debug: keep training on the first step's clips, never refreshing.")
    eval_clips: int = Field(2, gt=0, description="Held-out clips (eval.clip_seconds long) scored every eval_every.")


class RenderSettings(_Section):
    """Song to video."""

    overlap: int = Field(
        2, ge=0, description="Clean context frames: each window continues from the previous window's last frames."
    )
    style: str = Field(
        "auto", description="Visualizer family or '+'-joined families; auto draws one from the seed (one per kind "
        "of section with render.sections).",
    )
    sections: bool = Field(
        True, description="Follow the song's form (`synesthete analyze`): a new look (colours, shapes; with style "
        "auto also a new family) on the downbeat that starts each section, and a repeated section in its earlier "
        "look; false: one look for the whole song.",
    )
    exemplar: bool = Field(
        True, description="Start the first window from a style exemplar: frames of the style drawn by its "
        "visualizer on a fixed synthetic clip, given as clean context and never shown.",
    )
    anchor: int = Field(
        1, ge=0, description="Of the overlap context frames, how many hold the style exemplar's last frames for "
        "the whole song instead of the previous window's frames: a fixed reference of the look that keeps long "
        "renders from drifting off style (0 = all context frames are the previous window's; needs exemplar).",
    )
    lanes: int = Field(
        4, ge=1, description="Stretches of the song generated side by side, one batched forward for all (a small "
        "network runs far more frames per second in a batch); each starts from the style exemplar, and a bridge "
        "window, continuing one and leading into the next, fills the gap between them. Songs too short for "
        "lanes of MIN_LANE_WINDOWS windows get fewer. 1 = one window after another.",
    )
    size: int = Field(
        0, ge=0, le=MAX_SIZE, description="Output size in pixels (square upscale); 0 keeps the model's size."
    )
    level: float = Field(
        0.79, ge=0, description="The loudness the Brain hears at most: an excerpt whose loud frames (the 90th "
        "percentile of the RMS feature over its audible frames) are louder is turned down to it before the "
        "analysis (the music it learned from sits there; mastered songs are louder). 0 = as it is. The video "
        "keeps the song's own sound.",
    )
    crf: int = Field(20, ge=0, le=51, description="H.264 quality (lower is better).")
    x264_preset: Literal[X264_PRESETS] = Field(  # type: ignore[valid-type]
        "veryfast", description="x264 speed/size preset of the H.264 output (ultrafast ... veryslow); "
        "not to be confused with --preset, the model size.",
    )
    audio_sample_rate: int = Field(48000, gt=0, description="Sample rate of the AAC track in the output.")
    chunk_seconds: float = Field(10.0, gt=0, description="Audio decoded per streaming step.")
    seed: int | None = Field(
        None, ge=0, le=MAX_SEED, description="Noise seed of the render, and the seed its looks are drawn from; empty: "
        "drawn from a hash of the song file's bytes (each song its own look, the same song always the same; the "
        "render summary says which), and 0 where there is no file (eval, training previews).",
    )
    memory_gb: float = Field(
        4.0, gt=0, description="Most memory (GB) the frames of a render to memory (the Python API without an "
        "output file) may take; a longer render is refused before it starts: render to a file, or an excerpt.",
    )
    amp: bool = Field(True, description="bf16 autocast of the networks in render and eval where the hardware "
                      "has native bf16 (CUDA, x86 CPUs with AVX512-BF16 or AMX); float32 elsewhere.")
    engine: Literal["auto", "eager", "onnxruntime"] = Field(
        "auto", description="What runs the DiT's forward in render and eval: auto = ONNX Runtime on a CPU on the "
        "float32 path when it is installed (`uv sync --extra onnx`; 1.5x faster there), else eager PyTorch; "
        "onnxruntime = ONNX Runtime or an error; eager = PyTorch always.",
    )

    @property
    def preset(self) -> str:
        """Old name of ``x264_preset`` (read-only), kept while code still reads ``render.preset``."""
        return self.x264_preset

    @field_validator("seed", mode="before")
    @classmethod
    def _empty_seed_is_none(cls, value: Any) -> Any:
        """An empty value (or ``null``, as .env.example writes it) means: drawn from the song."""
        return _empty_is_none(value)


class EvalSettings(_Section):
    """Sync metrics and the eval command."""

    clips: int = Field(8, gt=0, description="Held-out clips scored by `synesthete eval`.")
    clip_seconds: float = Field(6.0, gt=0, description="Length of each held-out eval clip.")
    strict: bool = Field(False, description="Follow the published AV-Align peak rule exactly (no noise floor).")
    peak_threshold: float = Field(0.05, ge=0, description="Relative prominence below which video peaks are ignored.")
    bas_sigma_frames: float = Field(3.0, gt=0, description="Sigma of the Beat Alignment Score, in frames.")
    bas_smooth_frames: float = Field(
        1.0, ge=0, description="Gaussian smoothing (frames) of the motion curve before picking visual beats."
    )
    flow_levels: int = Field(3, gt=0, description="Pyramid levels of the optical flow (reference: Farneback, 3).")
    flow_window: int = Field(15, gt=0, description="Odd window (pixels) of the optical flow's local fit.")
    flow_iterations: int = Field(3, gt=0, description="Warp-and-refine iterations per pyramid level.")
    flow_max_side: int = Field(256, gt=0, description="Frames are downscaled to this side before the flow.")
    flow_batch: int = Field(64, gt=0, description="Frame pairs per optical-flow batch (bounds memory).")
    silence_db: float = Field(-50.0, description="Frame RMS (dBFS) below which the audio counts as silent.")
    settle_seconds: float = Field(
        0.25, ge=0, description="Silence must last this long before flicker and silence response count it."
    )
    quality_frames: int = Field(16, gt=0, description="Held-out frames per clip for VAE PSNR/SSIM.")
    clip_look: bool = Field(
        True, description="Render each held-out clip's style exemplar in the clip's own look (the visual "
        "parameters its oracle was drawn with: colours, shapes, counts), as the FSD floor assumes; false: the "
        "render seed's look, as `render --style` draws it (then even the visualizers themselves score well above "
        "the floor, drawing the same songs in that look).",
    )
    long_seconds: float = Field(
        60.0, ge=0, description="Length of the long held-out render that measures style stability (0 = skip)."
    )
    probe_seconds: float = Field(
        20.0, ge=0, description="Length of the aperiodic probe render (noise, random hits) for seams (0 = skip)."
    )
    sheet_frames: int = Field(8, gt=0, description="Frames per row of the --sheet contact sheet.")
    family_clips: int = Field(
        2, gt=0, description="Excerpts per family and source in `eval --families` / `eval --music`."
    )


class PathSettings(_Section):
    """Where things are read and written."""

    checkpoints: Path | None = Field(
        None, validate_default=True,
        description="Folder with vae.pt, diffusion.pt and critic.pt; empty: the checkpoints shipped with "
        "synesthete (the repository's checkpoints/ folder, or the installed package's copy), found wherever "
        "the command runs. A relative path is relative to the working directory.",
    )
    runs: Path = Field(Path("runs"), description="Folder for TensorBoard events and run checkpoints.")
    cache: Path | None = Field(
        None, validate_default=True,
        description="Folder for files made from the checkpoints once and reused (the DiT exported for ONNX "
        "Runtime); empty: $XDG_CACHE_HOME/synesthete, or ~/.cache/synesthete.",
    )
    critic: Path | None = Field(
        None, description="Style critic of the picture metrics; empty: critic.pt in the checkpoints folder."
    )

    @field_validator("checkpoints", "critic", "cache", mode="before")
    @classmethod
    def _empty_is_default(cls, value: Any) -> Any:
        """An empty value (or ``null``, as .env.example writes it) means the default, not the current folder."""
        if isinstance(value, str) and value.strip().lower() in ("", "null"):
            return None
        return value

    @field_validator("checkpoints", mode="after")
    @classmethod
    def _shipped_checkpoints(cls, value: Path | None) -> Path:
        return default_checkpoint_dir() if value is None else value

    @field_validator("cache", mode="after")
    @classmethod
    def _user_cache(cls, value: Path | None) -> Path:
        if value is not None:
            return value
        base = os.environ.get("XDG_CACHE_HOME", "").strip()
        return (Path(base) if base else Path.home() / ".cache") / "synesthete"
