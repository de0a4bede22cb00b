"""The thin Typer app: parse options, build Settings, call one library function, print a summary.

Domain errors (``SynestheteError``), invalid settings and Ctrl-C become one red line and a non-zero exit
here, at the boundary. Heavy modules (torch models, torchcodec) are imported inside the commands so that
``synesthete --help`` stays fast.

Options that are also settings default to ``None`` ("not given"), so that ``.env`` and ``SYNESTHETE_*``
variables still apply; their help shows the setting's default value instead.
"""

from __future__ import annotations

from synesthete import threads

threads.prepare_openmp()  # before anything loads torch's OpenMP runtime: only then is the wait policy read

import json  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from enum import StrEnum  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated, Any  # noqa: E402

import typer  # noqa: E402
from pydantic import ValidationError  # noqa: E402
from rich.table import Table  # noqa: E402
from typer.core import TyperOption  # noqa: E402

from synesthete import __version__  # noqa: E402
from synesthete.console import console, err_console, is_quiet, set_quiet  # noqa: E402
from synesthete.errors import CheckpointError, ConfigError, InputError, SynestheteError, Terminated  # noqa: E402

# Typer 0.29 prints "<bool>" as the type of every on/off flag (--overwrite, --help): flags take no value,
# so their help shows none.
_display_type_rich = TyperOption.display_type_rich


def _flag_has_no_type(self: TyperOption, ctx: Any) -> str | None:
    return None if self.is_flag else _display_type_rich(self, ctx)


TyperOption.display_type_rich = _flag_has_no_type  # type: ignore[method-assign]

app = typer.Typer(
    name="synesthete",
    help="Learn to turn music into video: generate data, train the Eye and the Brain, render and score.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
train_app = typer.Typer(
    help="Train the VAE ('the Eye'), the Diffusion Transformer ('the Brain') or the style critic.",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")

_state: dict[str, Any] = {"verbose": False}


# ----------------------------------------------------------------------------------------------- help text
def setting_default(dotted: str) -> Any:
    """The declared default of a setting, e.g. ``"sampling.steps"`` -> 10 (no Settings is built)."""
    from synesthete.settings import Settings

    section, _, name = dotted.partition(".")
    field = Settings.model_fields[section]
    if name:
        field = field.annotation.model_fields[name]
    return field.get_default(call_default_factory=True)


def _help(text: str, dotted: str | None = None, shown: Any = None) -> str:
    """``text`` followed by ``[default: ...]``: the setting ``dotted``'s default, or ``shown``."""
    value = shown if dotted is None else setting_default(dotted)
    return f"{text} [dim]\\[default: {value}][/dim]"


# ----------------------------------------------------------------------------------------------- common options
def _set_verbose(value: bool) -> None:
    if value:
        _state["verbose"] = True


def _set_quiet(value: bool) -> None:
    if value:
        set_quiet(True)


# Accepted before the subcommand and after it (`synesthete -v render ...`, `synesthete render ... -v`).
Verbose = Annotated[
    bool,
    typer.Option("--verbose", "-v", callback=_set_verbose, expose_value=False, is_eager=True,
                 help="Show full tracebacks for errors."),
]
Quiet = Annotated[
    bool,
    typer.Option("--quiet", "-q", callback=_set_quiet, expose_value=False, is_eager=True,
                 help="No progress bars or summary tables: errors, warnings and the output asked for only."),
]
Preset = Annotated[
    str | None,
    typer.Option("--preset", help=_help("Model-size preset: tiny (tests), cpu (shipped) or gpu.", "preset")),
]
Device = Annotated[
    str | None,
    typer.Option("--device", help=_help("auto (MPS, then CUDA, then CPU), cpu, cuda, cuda:N or mps.", "device")),
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]


def _version(value: bool) -> None:
    if value:
        console.print(f"synesthete {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Synesthete: music in, video out."""


@train_app.callback()
def _train(verbose: Verbose = False, quiet: Quiet = False) -> None:
    """Train the VAE ('the Eye'), the Diffusion Transformer ('the Brain') or the style critic."""


# ----------------------------------------------------------------------------------------------- settings
def build_settings(preset: str | None = None, **overrides: Any):
    """Settings from defaults, preset, .env and environment, then the CLI's overrides (``None`` = not given)."""
    from synesthete.settings import check_environment, load_settings

    check_environment()
    return load_settings(preset=preset, **overrides)


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``top`` laid over it, section by section."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


# Not part of a run's settings: where and on what this machine runs it (and the run folder: a resumed run
# keeps writing into the folder it is resumed from unless --run-name says otherwise).
_MACHINE = {"device": None, "paths": None, "train": ("run_name",)}


def stored_settings(stored: dict[str, Any]) -> dict[str, Any]:
    """The settings a checkpoint stores, as today's Settings take them: renamed fields mapped, unknown
    (older) ones dropped, and the machine's own (device, paths, run name) left out."""
    from synesthete.settings import Settings, upgrade_stored

    out: dict[str, Any] = {}
    for key, value in upgrade_stored(stored).items():
        field = Settings.model_fields.get(key)
        if field is None or (key in _MACHINE and _MACHINE[key] is None):
            continue
        fields = getattr(field.annotation, "model_fields", None)
        if fields is None or not isinstance(value, dict):
            out[key] = value
            continue
        section = {}
        for sub, subvalue in value.items():
            if sub in fields and sub not in (_MACHINE.get(key) or ()):
                section[sub] = subvalue
        out[key] = section
    return out


def resume_settings(resume: Path, preset: str | None = None, **overrides: Any):
    """The settings of a resumed run: its checkpoint's own, under .env, the environment and the CLI's overrides.

    So `--resume runs/x` needs no `--preset`; a `--preset` other than the run's is an error. The preset of
    the environment is not applied (the run's settings are complete).
    """
    from pydantic_settings import DotEnvSettingsSource, EnvSettingsSource

    from synesthete.checkpoint import read_checkpoint
    from synesthete.settings import Settings, check_environment, env_file_path
    from synesthete.train.loop import resolve_resume

    check_environment()
    path = resolve_resume(resume)
    stored = read_checkpoint(path).get("settings") or {}
    if not isinstance(stored, dict) or not stored:
        raise CheckpointError(f"{path} stores no settings: it was not written by `synesthete train`")
    base = stored_settings(stored)
    if preset is not None and preset != base.get("preset"):
        raise ConfigError(
            f"{path} was trained with preset '{base.get('preset')}': --resume continues it with its own "
            "settings, so leave out --preset"
        )
    env_file = env_file_path()
    dotenv = DotEnvSettingsSource(Settings, env_file=env_file)() if env_file else {}
    local = _merge(dotenv, EnvSettingsSource(Settings)())  # the environment over the env file
    local.pop("preset", None)
    settings = Settings.model_validate(_merge(base, local))
    return settings.updated(**overrides) if overrides else settings


def _train_settings(preset: str | None, resume: Path | None, **overrides: Any):
    if resume is None:
        return build_settings(preset, **overrides)
    return resume_settings(resume, preset, **overrides)


def model_file(path: Path | None, name: str, option: str) -> Path | None:
    """A checkpoint option's file: ``path`` itself, or in a folder its ``name`` (an export such as
    checkpoints/) or its ckpt_latest.pt (a run folder)."""
    if path is None or not Path(path).is_dir():
        return path
    for candidate in (Path(path) / name, Path(path) / "ckpt_latest.pt"):
        if candidate.is_file():
            return candidate
    raise CheckpointError(f"{option} {path} is a folder with neither {name} nor ckpt_latest.pt")


def _check_export(export: Path | None) -> None:
    """Fail before training when the --export folder cannot be written (not after hours of training)."""
    if export is not None:
        from synesthete.files import check_folder

        check_folder(export, "--export")


def _refuse_inputs(outputs: tuple[Path | None, ...], inputs: tuple[Path | None, ...]) -> None:
    """Refuse an output that is one of the inputs (same file, through symlinks and hard links)."""
    from synesthete.files import check_not_input

    for out in outputs:
        if out is not None:
            check_not_input(out, inputs)


# ----------------------------------------------------------------------------------------------- summaries
def format_count(n: int) -> str:
    """A parameter count for people: 7,620,000 -> "7.62 M"."""
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return str(n)


def print_summary(title: str, summary: dict[str, Any]) -> None:
    """Print a key/value summary table (not under --quiet); long values wrap instead of being cut."""
    if is_quiet():
        return
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in summary.items():
        if key == "parameters" and isinstance(value, int):
            value = format_count(value)
        elif isinstance(value, float):
            value = f"{value:.4g}"
        table.add_row(str(key), str(value))
    console.print(table)


# ----------------------------------------------------------------------------------------------- config
@app.command()
def config(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of a table.")] = False,
    env_example: Annotated[
        bool, typer.Option("--env-example", help="Print a .env.example documenting every setting.")
    ] = False,
    preset: Preset = None,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Show the effective settings (defaults < preset < .env < environment)."""
    if env_example:
        from synesthete.settings import env_example as render_env_example

        sys.stdout.write(render_env_example())
        return
    settings = build_settings(preset)
    data = settings.model_dump(mode="json")
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    rows = []
    for key, value in data.items():
        if isinstance(value, dict):
            rows += [(f"{key}.{sub}", json.dumps(v), f"SYNESTHETE_{key.upper()}__{sub.upper()}")
                     for sub, v in value.items()]
        else:
            rows.append((key, json.dumps(value), f"SYNESTHETE_{key.upper()}"))

    def make(with_env: bool) -> Table:
        table = Table(title="Effective settings", title_justify="left")
        table.add_column("setting", style="bold", no_wrap=True)
        table.add_column("value", overflow="fold")
        if with_env:
            table.add_column("env var", style="dim", no_wrap=True)
        else:
            table.caption = "env var of a.b: SYNESTHETE_A__B (e.g. SYNESTHETE_VIDEO__FPS)"
            table.caption_justify = "left"
        for name, value, env in rows:
            table.add_row(name, value, *([env] if with_env else []))
        return table

    # The env var column is the widest: drop it (its rule is in the caption) when the terminal is narrow.
    table = make(with_env=True)
    names = max(len(r[0]) for r in rows)
    envs = max(len(r[2]) for r in rows)
    if names + envs + 24 > console.width:  # borders and padding, and some room for the values
        table = make(with_env=False)
    console.print(table)


# ----------------------------------------------------------------------------------------------- gen-audio
@app.command("gen-audio")
def gen_audio(
    num: Annotated[int, typer.Option("--num", "-n", help="Number of clips.")] = 16,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("data/sample"),
    seed: Annotated[
        int | None,
        typer.Option("--seed", help=_help("Seed of the stream: clip i gets its own seed from it (see the manifest).",
                                          "data.seed")),
    ] = None,
    duration: Annotated[
        float | None, typer.Option("--duration", help=_help("Clip length in seconds.", "audio.clip_seconds"))
    ] = None,
    width: Annotated[int | None, typer.Option("--width", help=_help("Frame width (even).", "video.width"))] = None,
    height: Annotated[int | None, typer.Option("--height", help=_help("Frame height (even).", "video.height"))] = None,
    fps: Annotated[int | None, typer.Option("--fps", help=_help("Frames per second.", "video.fps"))] = None,
    audio_only: Annotated[bool, typer.Option("--audio-only", help="Write only .wav files and the manifest.")] = False,
    form: Annotated[
        bool,
        typer.Option("--form", help="Whole songs of sections (parts of 4 or 8 bars with their own instruments, "
                                    "some repeated), as long as their form unless --duration says; the manifest "
                                    "adds downbeats and sections."),
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Write into a non-empty folder.")] = False,
    preset: Preset = None,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Write a sample dataset: .wav + .mp4 (H.264 + AAC) per clip and a manifest.jsonl."""
    from synesthete.gen import generate_dataset

    settings = build_settings(preset, data={"seed": seed}, audio={"clip_seconds": None if form else duration})
    summary = generate_dataset(
        settings, num=num, out=out, audio_only=audio_only, overwrite=overwrite,
        width=width, height=height, fps=fps, form=form, duration=duration if form else None,
    )
    print_summary("gen-audio", summary)


# ----------------------------------------------------------------------------------------------- train
def _max_steps(kind: str):
    return Annotated[int | None, typer.Option("--max-steps", help=_help("Optimisation steps.", f"{kind}.max_steps"))]


def _batch_size(kind: str):
    return Annotated[
        int | None, typer.Option("--batch-size", help=_help("Batch size per optimisation step.", f"{kind}.batch_size"))
    ]


def _lr(kind: str):
    return Annotated[float | None, typer.Option("--lr", help=_help("Learning rate.", f"{kind}.lr"))]


TrainSeed = Annotated[
    int | None, typer.Option("--seed", help=_help("Seed of the weights, noise and data stream.", "train.seed"))
]
RunName = Annotated[
    str | None,
    typer.Option("--run-name", help=_help("Run folder name under runs/.", shown="<kind>-<timestamp>")),
]
Resume = Annotated[
    Path | None,
    typer.Option("--resume", help="Run folder or checkpoint to continue, with the settings it was trained with "
                                  "(options given here still apply; no --preset needed)."),
]
Export = Annotated[
    Path | None, typer.Option("--export", help="After training, export compact weights into this folder.")
]
Music = Annotated[
    list[Path] | None,
    typer.Option("--music", help=_help("A folder of real songs (subfolders too) whose excerpts join the procedural "
                                       "clips; repeat for more folders.", "data.music_dirs")),
]


def _music_dirs(music: list[Path] | None) -> list[Path] | None:
    """``--music`` folders, checked before torch is imported (a missing or empty folder is one line at once)."""
    if not music:
        return None
    from synesthete.files import find_music

    for folder in music:
        find_music(folder)
    return list(music)


def _scan_music(settings: Any) -> None:
    """Scan the music folders of ``data.music_dirs`` now (undecodable folders fail before any network is built)
    and say what training will draw from; the scan is kept for the data engine (``data.music_library``)."""
    if not settings.data.music_dirs:
        return
    from synesthete.data import music_library

    library = music_library(settings)
    console.print(f"music: {library.describe()}, {settings.data.music_share:.0%} of the clips")
    if library.skipped:
        err_console.print(f"[yellow]note:[/yellow] skipped {len(library.skipped)} files; first: "
                          f"{library.skipped[0][1]}")


GradAccum = Annotated[
    int | None, typer.Option("--grad-accum", help=_help("Micro-batches per optimisation step.", "train.grad_accum"))
]


@train_app.command("vae")
def train_vae_cmd(
    max_steps: _max_steps("vae") = None,
    batch_size: _batch_size("vae") = None,
    lr: _lr("vae") = None,
    seed: TrainSeed = None,
    device: Device = None,
    run_name: RunName = None,
    resume: Resume = None,
    export: Export = None,
    grad_accum: GradAccum = None,
    music: Music = None,
    preset: Preset = None,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Train the spatial VAE on frames from the infinite data engine."""
    settings = _train_settings(
        preset, resume, device=device,
        vae={"max_steps": max_steps, "batch_size": batch_size, "lr": lr},
        train={"seed": seed, "run_name": run_name, "grad_accum": grad_accum},
        data={"music_dirs": _music_dirs(music)},
    )
    _check_export(export)
    _scan_music(settings)
    from synesthete.train.vae import train_vae  # torch: after the checks

    summary = train_vae(settings, resume=resume, export=export)
    if summary:  # empty on torchrun ranks other than 0
        print_summary("train vae", summary)


@train_app.command("diffusion")
def train_diffusion_cmd(
    max_steps: _max_steps("diffusion") = None,
    batch_size: _batch_size("diffusion") = None,
    lr: _lr("diffusion") = None,
    seed: TrainSeed = None,
    device: Device = None,
    run_name: RunName = None,
    resume: Resume = None,
    export: Export = None,
    grad_accum: GradAccum = None,
    vae: Annotated[
        Path | None,
        typer.Option("--vae", help=_help("VAE: a checkpoint, an export folder (its vae.pt) or a run folder "
                                         "(its ckpt_latest.pt).", shown="vae.pt of the shipped checkpoints")),
    ] = None,
    init: Annotated[
        Path | None,
        typer.Option("--init", help="Start a new run from these diffusion weights: a checkpoint, an export folder "
                                    "or a run folder (e.g. checkpoints/)."),
    ] = None,
    teacher: Annotated[
        Path | None,
        typer.Option("--teacher", help="Guidance distillation: the student learns these diffusion weights' "
                                       "audio-guided output and samples in one pass per step instead of two "
                                       "(starts from them unless --init says otherwise)."),
    ] = None,
    music: Music = None,
    preset: Preset = None,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Train the audio-conditioned Diffusion Transformer on frozen-VAE latents."""
    vae = model_file(vae, "vae.pt", "--vae")
    init = model_file(init, "diffusion.pt", "--init")
    teacher = model_file(teacher, "diffusion.pt", "--teacher")
    settings = _train_settings(
        preset, resume, device=device,
        diffusion={"max_steps": max_steps, "batch_size": batch_size, "lr": lr},
        train={"seed": seed, "run_name": run_name, "grad_accum": grad_accum},
        data={"music_dirs": _music_dirs(music)},
    )
    _check_export(export)
    _scan_music(settings)
    from synesthete.train.diffusion import train_diffusion  # torch: after the checks

    summary = train_diffusion(settings, vae_path=vae, resume=resume, export=export, init=init, teacher=teacher)
    if summary:  # empty on torchrun ranks other than 0
        print_summary("train diffusion", summary)


@train_app.command("critic")
def train_critic_cmd(
    max_steps: _max_steps("critic") = None,
    batch_size: _batch_size("critic") = None,
    lr: _lr("critic") = None,
    seed: TrainSeed = None,
    device: Device = None,
    run_name: RunName = None,
    resume: Resume = None,
    export: Export = None,
    grad_accum: GradAccum = None,
    music: Music = None,
    preset: Preset = None,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Train the style critic that names the visualizer families in a frame (for the picture metrics)."""
    settings = _train_settings(
        preset, resume, device=device,
        critic={"max_steps": max_steps, "batch_size": batch_size, "lr": lr},
        train={"seed": seed, "run_name": run_name, "grad_accum": grad_accum},
        data={"music_dirs": _music_dirs(music)},
    )
    _check_export(export)
    _scan_music(settings)
    from synesthete.train.critic import train_critic  # torch: after the checks

    summary = train_critic(settings, resume=resume, export=export)
    if summary:  # empty on torchrun ranks other than 0
        print_summary("train critic", summary)


# ----------------------------------------------------------------------------------------------- render
CheckpointDir = Annotated[
    Path | None,
    typer.Option("--checkpoint-dir",
                 help=_help("Folder with vae.pt and diffusion.pt.", shown="the shipped checkpoints")),
]
Steps = Annotated[int | None, typer.Option("--steps", help=_help("Sampler steps.", "sampling.steps"))]
RenderSeed = Annotated[
    int | None,
    typer.Option("--seed", help=_help("Noise seed, and the seed of the looks (and of the style 'auto').",
                                      shown="drawn from a hash of the song file; 0 in eval")),
]


class OnOff(StrEnum):
    """A switch option's two values."""

    on = "on"
    off = "off"


@app.command()
def render(
    songs: Annotated[
        list[Path],
        typer.Argument(help="Songs: any audio FFmpeg decodes (wav, mp3, ogg, flac, m4a, a video), or folders of "
                            "audio files.", metavar="SONG", show_default=False),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Output mp4 for one song; a folder (created if missing) for several songs "
                                         "or a folder of songs: each becomes <song name>.mp4 in it."),
    ],
    fps: Annotated[
        int | None, typer.Option("--fps", help=_help("Output frame rate (the model's own only).", "video.fps"))
    ] = None,
    seed: RenderSeed = None,
    guidance: Annotated[
        float | None,
        typer.Option("--guidance", help=_help("Classifier-free guidance scale on the audio.", "sampling.guidance")),
    ] = None,
    style: Annotated[
        str | None,
        typer.Option("--style", help=_help("Visualizer family, '+'-joined families, 'auto' (from the seed: a "
                                           "family per kind of section) or 'list'.", "render.style")),
    ] = None,
    sections: Annotated[
        OnOff | None,
        typer.Option("--sections", case_sensitive=False,
                     help=_help("Follow the song's form: a new look on the downbeat that starts each section, a "
                                "repeated section in its earlier look (see `synesthete analyze`); off: one look "
                                "for the whole song.", shown="on")),
    ] = None,
    style_guidance: Annotated[
        float | None,
        typer.Option("--style-guidance", help=_help("Classifier-free guidance scale on the style.",
                                                    "sampling.style_guidance")),
    ] = None,
    steps: Steps = None,
    sampler: Annotated[
        str | None,
        typer.Option("--sampler", help=_help("ddpm (ancestral), ddim or dpm++ (DPM-Solver++(2M)).",
                                             "sampling.sampler")),
    ] = None,
    lanes: Annotated[
        int | None,
        typer.Option("--lanes", min=1, help=_help("Stretches of the song generated side by side (faster; 1 = one "
                                                  "window after another).", "render.lanes")),
    ] = None,
    start: Annotated[float, typer.Option("--start", help="Start of the excerpt (s).")] = 0.0,
    duration: Annotated[
        float | None, typer.Option("--duration", help=_help("Length of the excerpt (s).", shown="to the end"))
    ] = None,
    size: Annotated[
        int | None,
        typer.Option("--size", help=_help("Upscale output to SIZExSIZE (e.g. 512); 0 keeps the model's size.",
                                          "render.size")),
    ] = None,
    checkpoint_dir: CheckpointDir = None,
    device: Device = None,
    overwrite: Overwrite = False,
    preset: Preset = None,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Turn songs into videos, with each song muxed in. Several songs load the models once."""
    if style is not None:  # synesthete.styles imports torch: without --style, the checks below come before it
        from synesthete.styles import LIST

        if style.strip().lower() == LIST:
            styles()
            return
    settings = build_settings(
        preset, device=device,
        video={"fps": fps},
        sampling={"guidance": guidance, "steps": steps, "sampler": sampler, "style_guidance": style_guidance},
        render={"seed": seed, "size": size, "style": style, "lanes": lanes,
                "sections": None if sections is None else sections == OnOff.on},
        paths={"checkpoints": checkpoint_dir},
    )
    if len(songs) == 1 and not songs[0].is_dir() and not out.is_dir():
        _render_one(settings, songs[0], out, start, duration, overwrite)
    else:
        _render_many(settings, songs, out, start, duration, overwrite)


def _render_one(settings: Any, song: Path, out: Path, start: float, duration: float | None, overwrite: bool) -> None:
    """One song to one mp4: every check before the models load, then the render and its summary."""
    import time

    from synesthete.files import new_folders
    from synesthete.locks import output_lock

    with new_folders(out.parent), output_lock(out):  # a second render to the same file is refused meanwhile
        t_start = time.perf_counter()
        _check_render_files(song, out, overwrite)
        from synesthete import tables
        from synesthete.pipeline import Synesthete

        pipe = Synesthete(settings)
        job = pipe.plan(song, out, start=start, duration=duration, overwrite=overwrite, overwrite_flag="--overwrite")
        result = pipe.run(job, progress=True, since=t_start)  # loads the models
    print_summary("render", tables.render_summary(result))


def _check_render_files(song: Path, out: Path, overwrite: bool) -> None:
    """The file checks of ``plan_render`` that need no decoding, run before torch is imported: a missing song,
    an existing output (without --overwrite) or an output that is not an .mp4 is one line in a fraction of a
    second. The same functions (``synesthete.files``) make the same checks again in ``plan_render``."""
    from synesthete.files import check_input, check_mp4, check_output

    check_mp4(out)
    check_input(song)
    check_output(out, overwrite, inputs=(song,))


def _render_many(settings: Any, songs: list[Path], folder: Path, start: float, duration: float | None,
                 overwrite: bool) -> None:
    """Songs (and folders of songs) into ``folder``, the models loaded once. A song that cannot be rendered is
    one red line and is skipped; the others still render. Exit 1 if any failed, after a summary table.

    No output is named after an input of the batch (``files.output_names``), nor written onto one (the same
    file through a link): a song is never replaced before the batch has read it. A batch that writes nothing
    leaves no new folder; one stopped by Ctrl-C or SIGTERM says which songs it rendered and which not.
    """
    from synesthete.errors import OutputError
    from synesthete.files import check_folder, check_output, expand_songs, new_folders, output_names
    from synesthete.locks import output_lock

    if folder.suffix.lower() == ".mp4" or (folder.exists() and not folder.is_dir()):
        what = "several songs" if len(songs) > 1 else f"a folder of songs ({songs[0]})"
        raise OutputError(f"-o {folder}: with {what}, -o must be a folder (each song becomes <song name>.mp4 in it)")
    check_folder(folder, "-o")
    found, empty = expand_songs(songs)
    names = output_names(found, folder)  # before the folder exists: no input can be in a folder not yet made
    with new_folders(folder):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create folder {folder}: {exc.strerror or exc}") from exc
        from synesthete import tables  # torch: after the checks of -o
        from synesthete.pipeline import Synesthete

        rows: list[tuple[Path, Path | None, Any]] = [(path, None, message) for path, message in empty]
        for _, message in empty:
            _error_line(message)
        pipe = Synesthete(settings)
        jobs = []
        for song, name in zip(found, names, strict=True):  # every check first, before the models load
            try:
                jobs.append(pipe.plan(song, folder / name, start=start, duration=duration, overwrite=overwrite,
                                      overwrite_flag="--overwrite"))
            except SynestheteError as exc:
                rows.append((song, None, _song_error(song, exc)))
        if jobs:
            pipe.load()  # a checkpoint error stops the whole batch (one red line, exit 1)
        pending = [job.song for job in jobs]
        try:
            for i, job in enumerate(jobs, 1):
                try:
                    with output_lock(job.out):
                        # Written meanwhile by someone else? A link to a song of the batch?
                        check_output(job.out, overwrite, inputs=tuple(found))
                        result = pipe.run(job, progress=True, label=f"{i}/{len(jobs)} {_shown(job.song.name)}")
                    rows.append((job.song, job.out, result))
                except SynestheteError as exc:
                    rows.append((job.song, None, _song_error(job.song, exc)))
                pending.remove(job.song)
        except (KeyboardInterrupt, Terminated):
            _state["stopped"] = _batch_stopped(rows, pending, len(found))
            raise
    order = {path: k for k, path in enumerate([p for p, _ in empty] + found)}
    rows.sort(key=lambda row: order.get(row[0], len(order)))
    if not is_quiet():
        tables.print_batch(rows)
    if any(isinstance(result, str) for *_, result in rows):
        raise typer.Exit(1)


def _batch_stopped(rows: list[tuple[Path, Path | None, Any]], pending: list[Path], total: int) -> str:
    """What a batch stopped by a signal did: the videos it wrote, and the songs it did not render."""
    def listed(paths: list[Path], most: int = 5) -> str:
        shown = ", ".join(str(p) for p in paths[:most])
        return shown + (f" and {len(paths) - most} more" if len(paths) > most else "")

    made = [out for _, out, result in rows if out is not None and not isinstance(result, str)]
    text = f"{len(made)} of {total} songs rendered"
    if made:
        text += f" ({listed(made)})"
    if pending:
        text += f"; not rendered: {listed(pending)}"
    return text


def _shown(text: str) -> str:
    """``text`` (a file name) as rich prints it literally, on one line."""
    from rich.markup import escape

    from synesthete.files import one_line

    return escape(one_line(text))


def _error_line(message: str) -> None:
    """One red error line (control characters in it, such as a newline in a file name, escaped)."""
    err_console.print(f"[red]error:[/red] {_shown(message)}", soft_wrap=True)


def _song_error(song: Path, exc: SynestheteError) -> str:
    """Report a song that cannot be rendered in one red line (a traceback too under -v); returns the message."""
    message = str(exc)
    if str(song) not in message:
        message = f"{song}: {message}"
    if _state.get("verbose"):
        err_console.print_exception()
    _error_line(message)
    return message


@app.command()
def styles(verbose: Verbose = False, quiet: Quiet = False) -> None:
    """List the styles `render --style` takes: each visualizer family, joinable with '+'."""
    from synesthete.styles import describe

    table = Table(title="styles (join families with '+', e.g. spectrum+kaleido; 'auto' draws one from the seed)",
                  title_justify="left")
    table.add_column("style", style="bold")
    table.add_column("what it draws")
    for name, text in describe().items():
        table.add_row(name, text)
    console.print(table)


# ----------------------------------------------------------------------------------------------- analyze
@app.command()
def analyze(
    song: Annotated[
        Path, typer.Argument(help="A song: any audio FFmpeg decodes.", metavar="SONG", show_default=False)
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON on stdout: tempo, sections, and every beat and downbeat time.")
    ] = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write a PNG of the novelty curve with the section boundaries.")
    ] = None,
    overwrite: Overwrite = False,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Tell what synesthete hears in a song: tempo, beats, downbeats and sections (repeats share a letter)."""
    from synesthete.errors import OutputError
    from synesthete.files import check_input, check_output

    check_input(song)  # before torch is imported: a missing file is one line at once
    if plot is not None:
        if plot.suffix.lower() != ".png":
            raise OutputError(f"--plot {plot}: the plot must be a .png file")
        check_output(plot, overwrite, inputs=(song,))
    from synesthete import tables
    from synesthete.audio.analysis import analyse_song

    result = analyse_song(song, progress=not as_json)
    if plot is not None:
        from synesthete.metrics.plot import plot_analysis

        plot_analysis(plot, result, title=song.name)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(times=True), indent=2) + "\n")
    elif not is_quiet():
        tables.print_analysis(song, result)
    if plot is not None:
        (err_console if as_json else console).print(f"wrote {plot}")


# ----------------------------------------------------------------------------------------------- eval
@app.command("eval")
def eval_cmd(
    video: Annotated[Path | None, typer.Option("--video", help="Score this video file instead of the model.")] = None,
    audio: Annotated[Path | None, typer.Option("--audio", help="Audio for --video (default: its own track).")] = None,
    manifest: Annotated[
        Path | None,
        typer.Option("--manifest", help="A gen-audio manifest.jsonl: --video is scored against the exact beats of "
                                        "its clip (found by the --audio or --video file name) instead of a tempo "
                                        "estimate."),
    ] = None,
    clips: Annotated[
        int | None, typer.Option("--clips", "-k", help=_help("Held-out clips to score.", "eval.clips"))
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the results as JSON on stdout instead of tables.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Also write the results as JSON to this file.")
    ] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG of onsets vs motion.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Published AV-Align peak rule, no noise floor.")] = False,
    checkpoint_dir: CheckpointDir = None,
    steps: Steps = None,
    seed: RenderSeed = None,
    sheet: Annotated[
        Path | None, typer.Option("--sheet", help="Write a contact sheet PNG (model above oracle per clip).")
    ] = None,
    critic: Annotated[
        Path | None,
        typer.Option("--critic", help=_help("Style critic checkpoint (or a folder with critic.pt).",
                                            shown="critic.pt in --checkpoint-dir")),
    ] = None,
    long_seconds: Annotated[
        float | None,
        typer.Option("--long-seconds", help=_help("Long render for style stability (0 skips).", "eval.long_seconds")),
    ] = None,
    probe_seconds: Annotated[
        float | None,
        typer.Option("--probe-seconds", help=_help("Aperiodic probe render for the seam score (0 skips).",
                                                   "eval.probe_seconds")),
    ] = None,
    family_table: Annotated[
        bool, typer.Option("--families", help="Judge every visualizer family on its own: renders of held-out "
                                              "excerpts in each family's look beside the visualizers' drawing "
                                              "of the same audio (procedural songs, and real ones with --music).")
    ] = False,
    music: Annotated[
        list[Path] | None,
        typer.Option("--music", help="A folder of real songs (subfolders too): --families also scores its "
                                     "held-out files (data.music_heldout of them, chosen by a hash of their "
                                     "bytes); repeat for more folders."),
    ] = None,
    device: Device = None,
    overwrite: Overwrite = False,
    preset: Preset = None,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Score audio-visual sync and the picture of the model (default) or of any video file (--video)."""
    critic = model_file(critic, "critic.pt", "--critic")
    settings = build_settings(
        preset, device=device,
        eval={"clips": clips, "strict": strict or None, "long_seconds": long_seconds, "probe_seconds": probe_seconds},
        sampling={"steps": steps},
        render={"seed": seed},
        paths={"checkpoints": checkpoint_dir, "critic": critic},
        data={"music_dirs": _music_dirs(music)},
    )
    _refuse_inputs((out, plot, sheet), (video, audio, manifest))
    if music or family_table:
        if video is not None or plot is not None:
            raise InputError("--families and --music score the checkpoints per family: leave out --video and --plot")
        from synesthete import tables
        from synesthete.family_eval import run_family_eval

        result, written = run_family_eval(settings, json_out=out, sheet=sheet, overwrite=overwrite)
        if as_json:
            from synesthete.evaluate import json_safe

            sys.stdout.write(json.dumps(json_safe(result), indent=2) + "\n")
        else:
            tables.print_families(result)
        for path in written:
            (err_console if as_json else console).print(f"wrote {path}")
        return
    if video is not None:  # before torch is imported: a missing file is one line at once
        from synesthete.files import check_input

        check_input(video, "a video file")
        if audio is not None:
            check_input(audio)
    from synesthete import tables
    from synesthete.evaluate import json_safe, run_eval

    result, written = run_eval(settings, video=video, audio=audio, json_out=out, plot=plot, overwrite=overwrite,
                               sheet=sheet, manifest=manifest)
    for note in result.get("notes", []):
        err_console.print(f"[yellow]note:[/yellow] {note}")
    if as_json:  # the JSON alone on stdout; "wrote ..." lines go to stderr
        sys.stdout.write(json.dumps(json_safe(result), indent=2) + "\n")
    elif result["kind"] == "video":
        tables.print_video(result)
    else:
        tables.print_heldout(result)
        tables.print_picture(result["picture"])
    for path in written:
        (err_console if as_json else console).print(f"wrote {path}")


# ----------------------------------------------------------------------------------------------- entry
def _format_validation_error(exc: ValidationError) -> str:
    from synesthete.settings import validation_message

    return "invalid setting: " + validation_message(exc)


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM (kill, timeout, CI cancellation) unwinds like Ctrl-C, so temporary files are removed."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the clean-up
    raise Terminated


def _ctrl_c(exc: SystemExit) -> bool:
    """True when ``exc`` is Typer's exit 130 for a plain Ctrl-C (KeyboardInterrupt). Training's own stop
    (a KeyboardInterrupt subclass) has said what it did already."""
    seen: BaseException | None = exc
    for _ in range(4):
        seen = seen.__cause__ or seen.__context__ if seen is not None else None
        if type(seen) is KeyboardInterrupt:
            return True
    return False


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app and turn user errors into one line and exit code 1."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    _state["verbose"] = False
    _state.pop("stopped", None)
    set_quiet(False)
    try:
        # Standalone mode: click prints usage errors itself (exit 2); Typer turns Ctrl-C into exit 130.
        app(args=argv)
    except SynestheteError as exc:
        _fail(str(exc), exc)
    except ValidationError as exc:
        _fail(_format_validation_error(exc), exc)
    except ValueError as exc:
        if str(exc).startswith("environment variable"):
            _fail(str(exc), exc)
        raise
    except SystemExit as exc:
        if exc.code == 130 and _ctrl_c(exc):
            _interrupted()
        raise
    except KeyboardInterrupt:
        _interrupted()
        raise SystemExit(130) from None
    except Terminated:
        _stopped("terminated (SIGTERM)")
        raise SystemExit(143) from None
    finally:
        set_quiet(False)


def _interrupted() -> None:
    _stopped("interrupted (Ctrl-C)")


def _stopped(why: str) -> None:
    """The one line of a command stopped by a signal: what it did (a batch: which songs), if it said."""
    stopped = _state.get("stopped")
    _error_line(f"{why}: stopped; unfinished files were removed" + (f"; {stopped}" if stopped else ""))


def _fail(message: str, exc: BaseException) -> None:
    # A settings error's traceback would print the offending value (maybe a secret from .env): never show it.
    if _state.get("verbose") and not isinstance(exc, ValidationError):
        err_console.print_exception()
    _error_line(message)
    raise SystemExit(1) from None


if __name__ == "__main__":
    main()
