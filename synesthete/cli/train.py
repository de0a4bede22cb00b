"""`synesthete train vae|diffusion|critic`: their options, the checks before training, and the summary after."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from synesthete.cli.app import Quiet, Verbose, print_summary
from synesthete.cli.options import Device, Preset, check_export, model_file, music_dirs, with_default
from synesthete.cli.settings_merge import train_settings
from synesthete.console import console, err_console
from synesthete.settings import Settings

train_app = typer.Typer(
    help="Train the VAE ('the Eye'), the Diffusion Transformer ('the Brain') or the style critic.",
    no_args_is_help=True,
)


@train_app.callback()
def _train(verbose: Verbose = False, quiet: Quiet = False) -> None:
    """Train the VAE ('the Eye'), the Diffusion Transformer ('the Brain') or the style critic."""


# ----------------------------------------------------------------------------------------------- options
def _max_steps(kind: str):
    return Annotated[
        int | None, typer.Option("--max-steps", help=with_default("Optimisation steps.", f"{kind}.max_steps"))
    ]


def _batch_size(kind: str):
    return Annotated[
        int | None,
        typer.Option("--batch-size", help=with_default("Batch size per optimisation step.", f"{kind}.batch_size")),
    ]


def _lr(kind: str):
    return Annotated[float | None, typer.Option("--lr", help=with_default("Learning rate.", f"{kind}.lr"))]


TrainSeed = Annotated[
    int | None, typer.Option("--seed", help=with_default("Seed of the weights, noise and data stream.", "train.seed"))
]
RunName = Annotated[
    str | None,
    typer.Option("--run-name", help=with_default("Run folder name under runs/.", shown="<kind>-<timestamp>")),
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
    typer.Option("--music", help=with_default("A folder of real songs (subfolders too) whose excerpts join the "
                                              "procedural clips; repeat for more folders.", "data.music_dirs")),
]
GradAccum = Annotated[
    int | None,
    typer.Option("--grad-accum", help=with_default("Micro-batches per optimisation step.", "train.grad_accum")),
]


def _prepare(kind: str, preset: str | None, resume: Path | None, export: Path | None, device: str | None,
             music: list[Path] | None, *, steps: dict[str, Any], train: dict[str, Any]) -> Settings:
    """A training command's settings (``kind``'s max_steps, batch_size and lr from ``steps``), with every check
    that needs no torch made (the --export folder, the --music folders), and the music scanned."""
    settings = train_settings(preset, resume, device=device, **{kind: steps}, train=train,
                              data={"music_dirs": music_dirs(music)})
    check_export(export)
    _scan_music(settings)
    return settings


def _scan_music(settings: Settings) -> None:
    """Scan the music folders of ``data.music_dirs`` now (undecodable folders fail before any network is built)
    and say what training will draw from; the scan is kept for the data engine (``data.music_library``)."""
    if not settings.data.music_dirs:
        return
    from synesthete.data import music_library  # torch: only a run with --music pays for it here

    library = music_library(settings)
    console.print(f"music: {library.describe()}, {settings.data.music_share:.0%} of the clips")
    if library.skipped:
        err_console.print(f"[yellow]note:[/yellow] skipped {len(library.skipped)} files; first: "
                          f"{library.skipped[0][1]}")


# ----------------------------------------------------------------------------------------------- commands
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
    settings = _prepare("vae", preset, resume, export, device, music,
                        steps={"max_steps": max_steps, "batch_size": batch_size, "lr": lr},
                        train={"seed": seed, "run_name": run_name, "grad_accum": grad_accum})
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
        typer.Option("--vae", help=with_default("VAE: a checkpoint, an export folder (its vae.pt) or a run folder "
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
    settings = _prepare("diffusion", preset, resume, export, device, music,
                        steps={"max_steps": max_steps, "batch_size": batch_size, "lr": lr},
                        train={"seed": seed, "run_name": run_name, "grad_accum": grad_accum})
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
    settings = _prepare("critic", preset, resume, export, device, music,
                        steps={"max_steps": max_steps, "batch_size": batch_size, "lr": lr},
                        train={"seed": seed, "run_name": run_name, "grad_accum": grad_accum})
    from synesthete.train.critic import train_critic  # torch: after the checks

    summary = train_critic(settings, resume=resume, export=export)
    if summary:  # empty on torchrun ranks other than 0
        print_summary("train critic", summary)
