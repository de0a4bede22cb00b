"""The thin Typer app: parse options, build Settings, call one library function, print a summary.

Domain errors (``SynestheteError``), invalid settings and Ctrl-C become one red line and a non-zero exit
here, at the boundary. Heavy modules (torch models, torchcodec) are imported inside the commands so that
``synesthete --help`` stays fast.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from synesthete import __version__
from synesthete.console import console, err_console
from synesthete.errors import SynestheteError, Terminated

app = typer.Typer(
    name="synesthete",
    help="Learn to turn music into video: generate data, train the Eye and the Brain, render and score.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
train_app = typer.Typer(
    help="Train the VAE ('the Eye') or the Diffusion Transformer ('the Brain').", no_args_is_help=True
)
app.add_typer(train_app, name="train")

_state: dict[str, Any] = {"verbose": False}

Preset = Annotated[str | None, typer.Option("--preset", help="Model-size preset: tiny, cpu or gpu.")]
Device = Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")]
Seed = Annotated[int | None, typer.Option("--seed", help="Random seed.")]
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
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show full tracebacks for errors.")] = False,
) -> None:
    """Synesthete: music in, video out."""
    _state["verbose"] = verbose


def build_settings(preset: str | None = None, **overrides: Any):
    """Settings from defaults, preset, .env and environment, then the CLI's overrides (``None`` = not given)."""
    from synesthete.settings import check_environment, load_settings

    check_environment()
    return load_settings(preset=preset, **overrides)


def _check_export(export: Path | None) -> None:
    """Fail before training when the --export folder cannot be written (not after hours of training)."""
    if export is not None:
        from synesthete.media import check_folder

        check_folder(export, "--export")


def _refuse_inputs(outputs: tuple[Path | None, ...], inputs: tuple[Path | None, ...]) -> None:
    """Refuse an output that is one of the inputs (same file, through symlinks and hard links)."""
    from synesthete.media import check_not_input

    for out in outputs:
        if out is not None:
            check_not_input(out, inputs)


def print_summary(title: str, summary: dict[str, Any]) -> None:
    """Print a key/value summary table."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        table.add_row(str(key), str(value))
    console.print(table)


# ----------------------------------------------------------------------------------------------- config
@app.command()
def config(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    env_example: Annotated[
        bool, typer.Option("--env-example", help="Print a .env.example documenting every setting.")
    ] = False,
    preset: Preset = None,
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
    table = Table(title="Effective settings", title_justify="left")
    table.add_column("setting", style="bold")
    table.add_column("value")
    table.add_column("env var", style="dim")
    for key, value in data.items():
        if isinstance(value, dict):
            for sub, subval in value.items():
                table.add_row(f"{key}.{sub}", json.dumps(subval), f"SYNESTHETE_{key.upper()}__{sub.upper()}")
        else:
            table.add_row(key, json.dumps(value), f"SYNESTHETE_{key.upper()}")
    console.print(table)


# ----------------------------------------------------------------------------------------------- gen-audio
@app.command("gen-audio")
def gen_audio(
    num: Annotated[int, typer.Option("--num", "-n", help="Number of clips.")] = 16,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("data/sample"),
    seed: Seed = None,
    duration: Annotated[float | None, typer.Option("--duration", help="Clip length in seconds.")] = None,
    width: Annotated[int | None, typer.Option("--width", help="Frame width (even).")] = None,
    height: Annotated[int | None, typer.Option("--height", help="Frame height (even).")] = None,
    fps: Annotated[int | None, typer.Option("--fps", help="Frames per second.")] = None,
    audio_only: Annotated[bool, typer.Option("--audio-only", help="Write only .wav files and the manifest.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Write into a non-empty folder.")] = False,
    preset: Preset = None,
) -> None:
    """Write a sample dataset: .wav + .mp4 (H.264 + AAC) per clip and a manifest.jsonl."""
    from synesthete.gen import generate_dataset

    settings = build_settings(preset, data={"seed": seed}, audio={"clip_seconds": duration})
    summary = generate_dataset(
        settings, num=num, out=out, audio_only=audio_only, overwrite=overwrite,
        width=width, height=height, fps=fps,
    )
    print_summary("gen-audio", summary)


# ----------------------------------------------------------------------------------------------- train
MaxSteps = Annotated[int | None, typer.Option("--max-steps", help="Optimisation steps.")]
BatchSize = Annotated[int | None, typer.Option("--batch-size", help="Batch size per step.")]
Lr = Annotated[float | None, typer.Option("--lr", help="Learning rate.")]
RunName = Annotated[str | None, typer.Option("--run-name", help="Run folder name under runs/.")]
Resume = Annotated[Path | None, typer.Option("--resume", help="Checkpoint (or run folder) to resume from.")]
Export = Annotated[
    Path | None, typer.Option("--export", help="After training, export compact weights into this folder.")
]
GradAccum = Annotated[int | None, typer.Option("--grad-accum", help="Micro-batches per optimisation step.")]


@train_app.command("vae")
def train_vae_cmd(
    max_steps: MaxSteps = None,
    batch_size: BatchSize = None,
    lr: Lr = None,
    seed: Seed = None,
    device: Device = None,
    run_name: RunName = None,
    resume: Resume = None,
    export: Export = None,
    grad_accum: GradAccum = None,
    preset: Preset = None,
) -> None:
    """Train the spatial VAE on frames from the infinite data engine."""
    from synesthete.train.vae import train_vae

    settings = build_settings(
        preset, device=device,
        vae={"max_steps": max_steps, "batch_size": batch_size, "lr": lr},
        train={"seed": seed, "run_name": run_name, "grad_accum": grad_accum},
    )
    _check_export(export)
    summary = train_vae(settings, resume=resume, export=export)
    if summary:  # empty on torchrun ranks other than 0
        print_summary("train vae", summary)


@train_app.command("diffusion")
def train_diffusion_cmd(
    max_steps: MaxSteps = None,
    batch_size: BatchSize = None,
    lr: Lr = None,
    seed: Seed = None,
    device: Device = None,
    run_name: RunName = None,
    resume: Resume = None,
    export: Export = None,
    grad_accum: GradAccum = None,
    vae: Annotated[Path | None, typer.Option("--vae", help="VAE checkpoint (default: checkpoints/vae.pt).")] = None,
    init: Annotated[
        Path | None,
        typer.Option("--init", help="Start a new run from these diffusion weights (e.g. checkpoints/diffusion.pt)."),
    ] = None,
    preset: Preset = None,
) -> None:
    """Train the audio-conditioned Diffusion Transformer on frozen-VAE latents."""
    from synesthete.train.diffusion import train_diffusion

    settings = build_settings(
        preset, device=device,
        diffusion={"max_steps": max_steps, "batch_size": batch_size, "lr": lr},
        train={"seed": seed, "run_name": run_name, "grad_accum": grad_accum},
    )
    _check_export(export)
    summary = train_diffusion(settings, vae_path=vae, resume=resume, export=export, init=init)
    if summary:  # empty on torchrun ranks other than 0
        print_summary("train diffusion", summary)


@train_app.command("critic")
def train_critic_cmd(
    max_steps: MaxSteps = None,
    batch_size: BatchSize = None,
    lr: Lr = None,
    seed: Seed = None,
    device: Device = None,
    run_name: RunName = None,
    resume: Resume = None,
    export: Export = None,
    grad_accum: GradAccum = None,
    preset: Preset = None,
) -> None:
    """Train the style critic that names the visualizer families in a frame (for the picture metrics)."""
    from synesthete.train.critic import train_critic

    settings = build_settings(
        preset, device=device,
        critic={"max_steps": max_steps, "batch_size": batch_size, "lr": lr},
        train={"seed": seed, "run_name": run_name, "grad_accum": grad_accum},
    )
    summary = train_critic(settings, resume=resume, export=export)
    if summary:  # empty on torchrun ranks other than 0
        print_summary("train critic", summary)


# ----------------------------------------------------------------------------------------------- render
@app.command()
def render(
    song: Annotated[Path, typer.Argument(help="Any audio FFmpeg decodes (wav, mp3, ogg, flac, m4a, a video).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output mp4.")],
    fps: Annotated[int | None, typer.Option("--fps", help="Output frame rate.")] = None,
    seed: Seed = None,
    guidance: Annotated[float | None, typer.Option("--guidance", help="Classifier-free guidance scale.")] = None,
    style: Annotated[
        str | None,
        typer.Option("--style", help="Visualizer family, '+'-joined families, 'auto' (from the seed) or 'list'."),
    ] = None,
    style_guidance: Annotated[
        float | None, typer.Option("--style-guidance", help="Classifier-free guidance scale on the style.")
    ] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Sampler steps.")] = None,
    sampler: Annotated[str | None, typer.Option("--sampler", help="ddim or ddpm.")] = None,
    start: Annotated[float, typer.Option("--start", help="Start of the excerpt (s).")] = 0.0,
    duration: Annotated[float | None, typer.Option("--duration", help="Length of the excerpt (s).")] = None,
    size: Annotated[int | None, typer.Option("--size", help="Upscale output to SIZExSIZE (e.g. 512).")] = None,
    checkpoint_dir: Annotated[
        Path | None, typer.Option("--checkpoint-dir", help="Folder with vae.pt and diffusion.pt.")
    ] = None,
    device: Device = None,
    overwrite: Overwrite = False,
    preset: Preset = None,
) -> None:
    """Turn a song into a video, with the song muxed in."""
    from synesthete.render import render_song
    from synesthete.styles import LIST

    if style is not None and style.strip().lower() == LIST:
        styles()
        return
    settings = build_settings(
        preset, device=device,
        video={"fps": fps},
        diffusion={"guidance": guidance, "sample_steps": steps, "sampler": sampler, "style_guidance": style_guidance},
        render={"seed": seed, "size": size, "style": style},
        paths={"checkpoints": checkpoint_dir},
    )
    from synesthete.locks import output_lock

    with output_lock(out):  # a second render to the same file is refused while this one runs
        summary = render_song(settings, song, out, start=start, duration=duration, overwrite=overwrite)
    print_summary("render", summary)


@app.command()
def styles() -> None:
    """List the styles `render --style` takes: each visualizer family, joinable with '+'."""
    from synesthete.styles import describe

    table = Table(title="styles (join families with '+', e.g. spectrum+kaleido; 'auto' draws one from the seed)",
                  title_justify="left")
    table.add_column("style", style="bold")
    table.add_column("what it draws")
    for name, text in describe().items():
        table.add_row(name, text)
    console.print(table)


# ----------------------------------------------------------------------------------------------- eval
@app.command("eval")
def eval_cmd(
    video: Annotated[Path | None, typer.Option("--video", help="Score this video file instead of the model.")] = None,
    audio: Annotated[Path | None, typer.Option("--audio", help="Audio for --video (default: its own track).")] = None,
    clips: Annotated[int | None, typer.Option("--clips", "-k", help="Held-out clips to score.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the results as JSON.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG of onsets vs motion.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Published AV-Align peak rule, no noise floor.")] = False,
    checkpoint_dir: Annotated[
        Path | None, typer.Option("--checkpoint-dir", help="Folder with vae.pt and diffusion.pt.")
    ] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Sampler steps.")] = None,
    seed: Seed = None,
    sheet: Annotated[
        Path | None, typer.Option("--sheet", help="Write a contact sheet PNG (model above oracle per clip).")
    ] = None,
    critic: Annotated[
        Path | None, typer.Option("--critic", help="Style critic checkpoint (default: critic.pt in --checkpoint-dir).")
    ] = None,
    long_seconds: Annotated[
        float | None, typer.Option("--long-seconds", help="Long render for style stability (0 skips).")
    ] = None,
    probe_seconds: Annotated[
        float | None, typer.Option("--probe-seconds", help="Aperiodic probe render for the seam score (0 skips).")
    ] = None,
    device: Device = None,
    overwrite: Overwrite = False,
    preset: Preset = None,
) -> None:
    """Score audio-visual sync and the picture of the model (default) or of any video file (--video)."""
    from synesthete.evaluate import run_eval

    settings = build_settings(
        preset, device=device,
        eval={"clips": clips, "strict": strict or None, "long_seconds": long_seconds, "probe_seconds": probe_seconds},
        diffusion={"sample_steps": steps},
        render={"seed": seed},
        paths={"checkpoints": checkpoint_dir, "critic": critic},
    )
    _refuse_inputs((json_out, plot, sheet), (video, audio))
    run_eval(settings, video=video, audio=audio, json_out=json_out, plot=plot, overwrite=overwrite, sheet=sheet)


# ----------------------------------------------------------------------------------------------- entry
def _format_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__") or "settings"
        parts.append(f"{field}: {err.get('msg')}")
    return "invalid setting: " + "; ".join(parts)


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM (kill, timeout, CI cancellation) unwinds like Ctrl-C, so temporary files are removed."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the clean-up
    raise Terminated


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app and turn user errors into one line and exit code 1."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        # Standalone mode: click prints usage errors itself (exit 2) and turns Ctrl-C into "Aborted!".
        app(args=argv)
    except SynestheteError as exc:
        _fail(str(exc), exc)
    except ValidationError as exc:
        _fail(_format_validation_error(exc), exc)
    except ValueError as exc:
        if str(exc).startswith("environment variable"):
            _fail(str(exc), exc)
        raise
    except KeyboardInterrupt:
        err_console.print("[red]error:[/red] interrupted")
        raise SystemExit(130) from None
    except Terminated:
        err_console.print("[red]error:[/red] terminated (SIGTERM): stopped; unfinished files were removed")
        raise SystemExit(143) from None


def _fail(message: str, exc: BaseException) -> None:
    # A settings error's traceback would print the offending value (maybe a secret from .env): never show it.
    if _state.get("verbose") and not isinstance(exc, ValidationError):
        err_console.print_exception()
    err_console.print(f"[red]error:[/red] {message}", soft_wrap=True)
    raise SystemExit(1) from None


if __name__ == "__main__":
    main()
