"""The one Settings object every command shares.

Precedence, lowest first: field defaults < preset (``SYNESTHETE_PRESET`` / ``--preset``) <
``.env`` file < environment (``SYNESTHETE_SECTION__FIELD``) < CLI options.

The env file is ``.env`` in the working directory unless ``SYNESTHETE_ENV_FILE`` names another one; set to
the empty string it means none (the tests do that, so a developer's ``.env`` never leaks into them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from synesthete.errors import ConfigError

PresetName = Literal["tiny", "cpu", "gpu"]

# Seeds at or above this value are reserved for evaluation; the training stream never draws them.
HELDOUT_SEED_START = 1_000_000_000

# The largest seed (torch generators take 64-bit seeds; int64 leaves room for seed + k).
MAX_SEED = 2**63 - 1

# The largest output side (render.size): 4096 px is 4K; a render to memory is bounded by render.memory_gb too.
MAX_SIZE = 4096

# x264's speed presets (render.x264_preset): anything else fails inside the encoder, far from the setting.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")

# Names the env file Settings reads instead of ./.env; the empty string means none.
ENV_FILE_VARIABLE = "SYNESTHETE_ENV_FILE"


def env_file_path() -> Path | None:
    """The env file Settings reads: ``$SYNESTHETE_ENV_FILE`` if set (empty: none), else ``.env``."""
    value = os.environ.get(ENV_FILE_VARIABLE)
    if value is None:
        return Path(".env")
    return Path(value) if value else None


# Settings that moved or were renamed: (section, old field) -> (section, new field). Stored settings (checkpoints,
# runs' settings.json) are read through it (``upgrade_stored``); an old SYNESTHETE_* variable is refused with its
# new name. The DiT's architecture left the diffusion section for ``dit``, its sampling for ``sampling``.
DIT_FIELDS = ("window", "patch_size", "dim", "depth", "heads", "mlp_ratio", "audio_context", "audio_dim",
              "num_train_timesteps", "schedule", "prediction", "guidance_embed")
MOVED: dict[tuple[str, str], tuple[str, str]] = {
    ("render", "preset"): ("render", "x264_preset"),
    **{("diffusion", name): ("dit", name) for name in DIT_FIELDS},
    ("diffusion", "sampler"): ("sampling", "sampler"),
    ("diffusion", "sample_steps"): ("sampling", "steps"),
    ("diffusion", "guidance"): ("sampling", "guidance"),
    ("diffusion", "style_guidance"): ("sampling", "style_guidance"),
    ("diffusion", "clip_x0"): ("sampling", "clip_x0"),
}


def upgrade_stored(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored settings dict (a checkpoint's, a run's settings.json) in today's layout: every moved or renamed
    field (``MOVED``) put where it is now, unless the new place already has it; the rest as it was."""
    out = {key: dict(value) if isinstance(value, dict) else value for key, value in stored.items()}
    for (section, name), (new_section, new_name) in MOVED.items():
        old = out.get(section)
        if isinstance(old, dict) and name in old:
            value = old.pop(name)
            target = out.setdefault(new_section, {})
            if isinstance(target, dict):
                target.setdefault(new_name, value)
    return out

# Experiment knobs that were tried and not adopted, and removed: (section, field) -> the value that meant what
# synesthete does today (ANY: every value did, the knob acted only with another one). Stored settings and
# checkpoint configs that hold that value still load; any other value is refused, as is a SYNESTHETE_*
# variable naming one. docs/experiments/ and the model card keep what they measured.
ANY = "any value"
RETIRED: dict[tuple[str, str], Any] = {
    ("diffusion", "noise_correlation"): 0.0,
    ("diffusion", "predicted_context_steps"): 1,
    ("diffusion", "loss_weighting"): "none",
    ("diffusion", "min_snr_gamma"): ANY,
    ("diffusion", "guidance_low"): 0.0,
    ("diffusion", "guidance_high"): 1.0,
    ("diffusion", "guidance_rescale"): 0.0,
    ("diffusion", "context_noise"): 0.0,
}


def retired_problem(section: str, name: str, value: Any) -> str | None:
    """Why ``section.name = value`` of a stored settings dict cannot be honoured (a retired knob at a value other
    than today's behaviour), or None."""
    if (section, name) not in RETIRED:
        return None
    keep = RETIRED[(section, name)]
    if keep is ANY or value == keep:
        return None
    return (f"{section}.{name}={value!r} is a retired experiment (not adopted) that this synesthete no longer "
            f"runs; only {keep!r} is read")


def check_retired(stored: dict[str, Any]) -> None:
    """Raise a ValueError for the first retired knob of a stored settings dict (a checkpoint's) whose value
    asks for something other than today's behaviour."""
    for (section, name) in RETIRED:
        values = stored.get(section)
        if isinstance(values, dict) and name in values:
            problem = retired_problem(section, name, values[name])
            if problem:
                raise ValueError(problem)


def default_checkpoint_dir() -> Path:
    """The checkpoints shipped with synesthete, wherever the command runs.

    An installed wheel carries them inside the package (``synesthete/checkpoints``); a source checkout (and
    the editable install ``uv run`` makes) has them in ``checkpoints/`` beside the ``synesthete/`` package.
    """
    package = Path(__file__).resolve().parent
    for folder in (package / "checkpoints", package.parent / "checkpoints"):
        if (folder / "diffusion.pt").is_file():
            return folder
    return package.parent / "checkpoints"  # neither has them: the error names the checkout's folder


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
        default_factory=list, description="Visualizer names to draw from; empty means all registered ones."
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
        return self


class SamplingSettings(_Section):
    """How render, eval and training previews sample a trained DiT (its noise schedule is its own)."""

    sampler: Literal["ddpm", "ddim", "dpm++"] = Field(
        "dpm++", description="Sampler used by render/eval/training previews (dpm++: DPM-Solver++(2M))."
    )
    steps: int = Field(10, gt=0, description="Sampler steps (the seed used DDPM with 50).")
    guidance: float = Field(2.0, ge=0, le=20, description="Classifier-free guidance scale on the audio.")
    style_guidance: float = Field(
        1.0, ge=0, le=20, description="Classifier-free guidance scale on the style (1 = no extra pass)."
    )
    clip_x0: float = Field(
        10.0, ge=0, description="Sampling clamps the predicted clean latent to +-this (0 = off); guards eps "
        "prediction near the zero-SNR end of the schedule, a no-op for unit-variance latents otherwise.",
    )


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

    @property
    def preset(self) -> str:
        """Old name of ``x264_preset`` (read-only), kept while code still reads ``render.preset``."""
        return self.x264_preset

    @field_validator("seed", mode="before")
    @classmethod
    def _empty_seed_is_none(cls, value: Any) -> Any:
        """An empty value (or ``null``, as .env.example writes it) means: drawn from the song."""
        if isinstance(value, str) and value.strip().lower() in ("", "null"):
            return None
        return value


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
        "render seed's look, as `render --style` draws it (the visualizers themselves score about 5x the floor "
        "then, drawing the same songs in that look).",
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
    critic: Path | None = Field(
        None, description="Style critic of the picture metrics; empty: critic.pt in the checkpoints folder."
    )

    @field_validator("checkpoints", "critic", mode="before")
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


# Model-size presets: named overrides applied under the environment and the CLI.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "video": {"width": 32, "height": 32},
        "audio": {"clip_seconds": 1.0},
        "vae": {"base_channels": 8, "max_channels": 16, "latent_channels": 4, "batch_size": 8, "max_steps": 40},
        "dit": {"window": 4, "dim": 32, "depth": 2, "heads": 2, "audio_dim": 32, "num_train_timesteps": 100},
        "diffusion": {"batch_size": 4, "max_steps": 40, "latent_stat_clips": 4, "max_context": 2},
        "sampling": {"steps": 4},
        "train": {
            "checkpoint_every": 20, "log_every": 5, "image_every": 20, "eval_every": 1000, "warmup_steps": 0,
            "preview_samples": 4, "clip_pool": 8,
        },
        "eval": {"clips": 2, "clip_seconds": 2.0, "long_seconds": 3.0, "probe_seconds": 2.0, "sheet_frames": 4},
        "critic": {
            "size": 32, "width": 16, "feature_dim": 32, "lr": 3e-3, "batch_size": 32, "max_steps": 40,
            "heldout_clips": 8,
        },
    },
    "cpu": {},
    "gpu": {
        "vae": {"base_channels": 64, "max_channels": 256, "batch_size": 128, "max_steps": 20000},
        "dit": {"dim": 384, "depth": 12, "heads": 6, "audio_dim": 256},
        "diffusion": {"batch_size": 64, "max_steps": 100000},
        "data": {"num_workers": 4},
        "train": {"clip_pool": 256, "fresh_clips": 8},
    },
}

class Settings(BaseSettings):
    """Every knob of Synesthete, in nested sections."""

    model_config = SettingsConfigDict(
        env_prefix="SYNESTHETE_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        dotenv_filtering="only_existing",  # .env keys without the SYNESTHETE_ prefix are not ours: ignore them
        extra="forbid",
        validate_assignment=True,
    )

    preset: PresetName = Field("cpu", description="Model-size preset: tiny (tests), cpu (shipped), gpu (scale).")
    device: str = Field("auto", description="auto (MPS, then CUDA, then CPU), cpu, cuda, cuda:N or mps.")
    audio: AudioSettings = Field(default_factory=AudioSettings)
    video: VideoSettings = Field(default_factory=VideoSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    vae: VAESettings = Field(default_factory=VAESettings)
    dit: DiTSettings = Field(default_factory=DiTSettings)
    diffusion: DiffusionSettings = Field(default_factory=DiffusionSettings)
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    critic: CriticSettings = Field(default_factory=CriticSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    render: RenderSettings = Field(default_factory=RenderSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    paths: PathSettings = Field(default_factory=PathSettings)

    def __init__(self, **values: Any) -> None:
        # The env file is looked up on every construction (not fixed in model_config) so that
        # SYNESTHETE_ENV_FILE can switch it; an explicit _env_file argument still wins.
        values.setdefault("_env_file", env_file_path())
        super().__init__(**values)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        """Fill in preset values for every field the caller did not give explicitly."""
        if not isinstance(data, dict):
            return data
        preset = data.get("preset", "cpu")
        overrides = PRESETS.get(preset, {})
        for section, values in overrides.items():
            given = data.get(section)
            if isinstance(given, BaseModel):
                given = given.model_dump(exclude_unset=True)
            merged = dict(values)
            merged.update(given or {})
            data[section] = merged
        return data

    @model_validator(mode="after")
    def _check_shapes(self) -> Settings:
        """Reject shapes the networks or the encoder cannot use."""
        for name in ("width", "height"):
            value = getattr(self.video, name)
            if value % 16:
                raise ValueError(f"video.{name}={value} must be a multiple of 16 (the VAE downsamples 16x)")
        for name in ("width", "height"):
            latent = getattr(self.video, name) // 16
            if latent % self.dit.patch_size:
                raise ValueError(f"dit.patch_size={self.dit.patch_size} must divide the latent {name} {latent}")
        if self.dit.dim % self.dit.heads:
            raise ValueError(f"dit.dim={self.dit.dim} must be divisible by dit.heads")
        if self.sampling.steps > self.dit.num_train_timesteps:
            raise ValueError(
                f"sampling.steps={self.sampling.steps} must be at most "
                f"dit.num_train_timesteps={self.dit.num_train_timesteps}"
            )
        return self

    def updated(self, **sections: dict[str, Any]) -> Settings:
        """A copy with some fields changed, e.g. ``s.updated(vae={"lr": 1e-3}, device="cpu")``.

        ``None`` values are ignored, so CLI options that were not given can be passed straight through.
        """
        data = self.model_dump()
        for key, value in sections.items():
            if isinstance(value, dict):
                data[key].update({k: v for k, v in value.items() if v is not None})
            elif value is not None:
                data[key] = value
        return type(self).model_validate(data)

    @property
    def latent_size(self) -> int:
        """Side of the square spatial latent (frame size / 16)."""
        return self.video.width // 16

    @property
    def critic_path(self) -> Path:
        """The style critic checkpoint the picture metrics use."""
        return self.paths.critic if self.paths.critic is not None else Path(self.paths.checkpoints) / "critic.pt"

    @property
    def clip_frames(self) -> int:
        """Video frames in one training clip."""
        return round(self.audio.clip_seconds * self.video.fps)


def validation_message(exc: Any, names: dict[str, str] | None = None) -> str:
    """One line for a pydantic ValidationError: each field (``names`` renames dotted fields, e.g. the API's
    keywords) and what is wrong with it. Never the value: it may be a secret from .env."""
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__") or "settings"
        parts.append(f"{(names or {}).get(field, field)}: {err.get('msg')}")
    return "; ".join(parts)


def load_settings(preset: str | None = None, **overrides: Any) -> Settings:
    """Build Settings from defaults, preset, .env and environment, then apply CLI overrides.

    Raises pydantic's ValidationError on bad values; the CLI turns that into one line per field.
    """
    from pydantic_settings import SettingsError

    for key in sorted({**os.environ, **_dotenv_keys(env_file_path())}):  # a moved or retired name: say so
        problem = old_variable_problem(key)
        if problem:
            raise ConfigError(problem)
    kwargs: dict[str, Any] = {}
    if preset is not None:
        kwargs["preset"] = preset
    try:
        settings = Settings(**kwargs)
    except SettingsError as exc:  # its message names the field and the source, never the value
        raise ConfigError(f"invalid setting: {exc} (a whole section must be a JSON object)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{env_file_path()} is not valid UTF-8 text: fix or remove it") from None
    if overrides:
        settings = settings.updated(**overrides)
    return settings


def _dotenv_keys(env_file: str | Path | None) -> dict[str, str]:
    """The ``SYNESTHETE_*`` keys of ``env_file`` (values dropped); a ConfigError when it is not UTF-8."""
    import io

    from dotenv import dotenv_values

    if env_file is None or not Path(env_file).is_file():
        return {}
    try:
        text = Path(env_file).read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{env_file} is not valid UTF-8 text (byte {exc.start}): fix or remove it") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {env_file}: {exc.strerror or exc}") from None
    keys = dotenv_values(stream=io.StringIO(text))
    return {key: "" for key in keys if key.upper().startswith("SYNESTHETE_")}


def old_variable_problem(key: str) -> str | None:
    """One line for a ``SYNESTHETE_SECTION__FIELD`` variable that names a setting which moved (``MOVED``) or was
    retired (``RETIRED``), or None."""
    parts = key[len("SYNESTHETE_"):].lower().split("__") if key.upper().startswith("SYNESTHETE_") else []
    if len(parts) != 2:
        return None
    if tuple(parts) in MOVED:
        section, name = MOVED[(parts[0], parts[1])]
        how = "renamed" if section == parts[0] else "moved"
        return (f"environment variable {key} names no setting any more ('{parts[0]}.{parts[1]}'): {how} to "
                f"SYNESTHETE_{section.upper()}__{name.upper()}")
    if tuple(parts) in RETIRED:
        return (f"environment variable {key}: {parts[0]}.{parts[1]} was a retired experiment (not adopted) and is "
                "no setting any more: remove it")
    return None


def check_environment(environ: dict[str, str] | None = None, env_file: str | Path | None | Any = ...) -> None:
    """Fail on a ``SYNESTHETE_*`` variable (environment or env file) that names no setting.

    pydantic-settings ignores those; keys without the prefix are someone else's and are never looked at.
    Messages name the key, never its value. ``env_file`` defaults to :func:`env_file_path` (``.env``).
    """
    environ = dict(os.environ if environ is None else environ)
    environ.update(_dotenv_keys(env_file_path() if env_file is ... else env_file))
    sections = {name: field.annotation for name, field in Settings.model_fields.items()}
    for key in sorted(environ):
        if not key.upper().startswith("SYNESTHETE_") or key.upper() == ENV_FILE_VARIABLE:
            continue
        parts = key[len("SYNESTHETE_"):].lower().split("__")
        head = parts[0]
        if head not in sections:
            raise ValueError(f"environment variable {key} names no setting ('{head}' is not a setting or section)")
        annotation = sections[head]
        if len(parts) > 1:
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                raise ValueError(f"environment variable {key}: '{head}' has no fields")
            old = old_variable_problem(key)
            if old:
                raise ValueError(old)
            if len(parts) != 2 or parts[1] not in annotation.model_fields:
                raise ValueError(f"environment variable {key} names no setting ('{head}.{'.'.join(parts[1:])}')")


def env_example() -> str:
    """The text of ``.env.example``: every setting as ``SYNESTHETE_...=default`` with its description."""
    import json

    lines = [
        "# Synesthete settings. Copy to .env (or export) and uncomment what you change.",
        "# Precedence: defaults < preset < .env < environment < command-line options.",
        "# Regenerate with: uv run synesthete config --env-example > .env.example",
        "",
    ]
    defaults = Settings.model_construct()
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines.append(f"# --- {name}: {(annotation.__doc__ or '').strip()}")
            section = annotation.model_construct()  # the declared defaults, before validators resolve any
            for sub, subfield in annotation.model_fields.items():
                value = getattr(section, sub)
                if value is None:
                    text = ""
                else:
                    text = json.dumps(value, default=str) if not isinstance(value, str | Path) else str(value)
                lines.append(f"# {subfield.description}")
                lines.append(f"# SYNESTHETE_{name.upper()}__{sub.upper()}={text}")
            lines.append("")
        else:
            value = getattr(defaults, name, field.default)
            lines.append(f"# {field.description}")
            lines.append(f"# SYNESTHETE_{name.upper()}={value}")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"
