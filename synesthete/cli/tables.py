"""The CLI's result tables (rich): `synesthete eval`'s, drawn from the plain dicts that ``synesthete.eval`` returns,
and `synesthete render`'s, drawn from the typed ``RenderResult``.

Every table fits the terminal: wider than it, a table drops its vertical rules and outer padding
(``fit``), so that no cell is cut at 80 columns.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.table import Table

from synesthete.cli.app import shown
from synesthete.console import console

if TYPE_CHECKING:
    from synesthete.audio.analysis import SongAnalysis
    from synesthete.render import RenderResult

# Per-row metric columns after AV-Align and its ratio: (key in SyncAnalysis.metrics(), header, format).
COLUMNS = (
    ("bas", "BAS", "{:.3f}"),
    ("flicker", "flicker", "{:.4f}"),
    ("silence_ratio", "silence / sound", "{:.2f}"),
)


def fit(table: Table) -> Table:
    """``table``, drawn without vertical rules and outer padding when it is wider than the terminal (80
    columns fit), so that no cell is cut; headers wrap at their spaces."""
    natural = console.measure(table, options=console.options.update_width(10_000)).maximum
    if natural > console.width:
        table.box = box.SIMPLE_HEAD
        table.pad_edge = False
        table.collapse_padding = True
        table.show_edge = False
    return table


def _fmt(value: float | None, fmt: str = "{:.3f}") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return fmt.format(value)


def print_video(result: dict) -> None:
    """Print the scores of one video file."""
    m = result["metrics"]
    table = Table(title=f"sync of {result['video']}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("AV-Align", _fmt(m["av_align"]) + ("  (strict peaks)" if result["strict"] else "")),
        ("peaks matched", f"{int(m['matched_peaks'])} of {int(m['audio_peaks'])} audio, {int(m['video_peaks'])} video"),
        ("BAS (estimated beats)" if result["beats"] == "estimated" else "BAS (manifest beats)", _fmt(m["bas"])),
        ("tempo estimate" if result["beats"] == "estimated" else "tempo (manifest)",
         _fmt(result["tempo_bpm"], "{:.1f} BPM")),
        ("flicker in silence", _fmt(m["flicker"], "{:.4f}")),
        ("motion silence / sound", f"{_fmt(m['motion_silence'])} / {_fmt(m['motion_sound'])} px "
                                   f"(ratio {_fmt(m['silence_ratio'], '{:.2f}')})"),
        ("silent fraction", _fmt(m["silent_fraction"], "{:.2f}")),
        ("scored", f"{result['scored_seconds']:.2f} s, {result['frames']} frames at {result['fps']:.3g} fps, "
                   f"{result['size'][0]}x{result['size'][1]}"),
    ]
    pic = result.get("picture")
    if pic:
        rows += [
            ("recognisability", f"{_fmt(pic['recognisability'])} (top family: {pic['top_family']})"),
            ("cut rate", _fmt(pic["cut_rate"], "{:.2%}")),
            ("style stability", _fmt(pic["style_stability"], "{:.1%}")),
            ("sharpness (mean gradient)", _fmt(pic["sharpness"], "{:.4f}")),
        ]
    sec = result.get("sections")
    if sec:
        rows += [
            ("song (analysis)", f"{sec['tempo']:.1f} BPM, {sec['downbeats']} downbeats, {sec['sections']} sections"),
            ("look changes (cuts)", f"{sec['look_changes']}" + (f" at frames {', '.join(map(str, sec['cut_frames']))}"
                                                                if sec["cut_frames"] else "")),
            ("cuts on a downbeat", f"{sec['on_downbeats']} of {sec['look_changes']} "
                                   f"({_fmt(sec['on_downbeat_share'], '{:.0%}')}; at random "
                                   f"{_fmt(sec['chance_share'], '{:.0%}')})"),
        ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(fit(table))


# --------------------------------------------------------------------------------------------- held-out


def print_picture(picture: dict) -> None:
    """Print the picture metrics (model beside oracle and floors)."""
    from synesthete.eval import SEED_LOOK, VAE_ROUNDTRIP  # start-up: loaded by now; `analyze` prints without eval

    table = Table(title="picture (style critic)", title_justify="left")
    table.add_column("", style="bold")
    for col in ("model", "oracle", "oracle shuffled in time"):
        table.add_column(col, justify="right")
    keys = [("recognisability", "recognisability (top-family confidence)", "{:.3f}"),
            ("on_style", "frames on the requested style", "{:.1%}"),
            ("cut_rate", "cut rate", "{:.2%}"),
            ("style_stability", "style stability (per clip)", "{:.1%}"),
            ("sharpness", "sharpness (mean gradient)", "{:.4f}")]
    for key, label, fmt in keys:
        table.add_row(label, *[_fmt(picture[w].get(key), fmt) for w in ("model", "oracle", "oracle_shuffled_in_time")])
    fsd = picture["fsd"]
    table.add_row("FSD (floor: oracle vs oracle)", _fmt(fsd["model"], "{:.2f}"),
                  _fmt(fsd["floor_oracle_vs_oracle"], "{:.2f}"), "")
    table.add_row("FSD / floor", _fmt(fsd["ratio_to_floor"], "{:.2f}"), "1.00", "")
    labels = {SEED_LOOK: "visualizers, seed look", VAE_ROUNDTRIP: "VAE round trip"}
    for name, value in fsd.get("references", {}).items():
        table.add_row(f"FSD / floor, {labels.get(name, name.replace('_', ' '))}", "", _fmt(value, "{:.2f}"), "")
    table.add_row("sharpness / oracle", _fmt(picture["sharpness_ratio"], "{:.2f}"), "1.00", "")
    for name in ("long", "probe"):
        part = picture.get(name)
        if not part:
            continue
        m, o = part["model"], part["oracle"]
        if name == "long":
            table.add_row(f"{part['seconds']:g} s song ({part['style']}): stability",
                          _fmt(m["style_stability"], "{:.1%}"), _fmt(o["style_stability"], "{:.1%}"), "")
            table.add_row(f"{part['seconds']:g} s song: cut rate", _fmt(m["cut_rate"], "{:.2%}"),
                          _fmt(o["cut_rate"], "{:.2%}"), "")
            table.add_row(f"{part['seconds']:g} s song: on style", _fmt(m["on_style"], "{:.1%}"),
                          _fmt(o["on_style"], "{:.1%}"), "")
        else:
            table.add_row(f"seam score, {part['seconds']:g} s aperiodic probe", _fmt(m["seam_score"], "{:.2f}"),
                          _fmt(o["seam_score"], "{:.2f}"), "")
    console.print(fit(table))


def _long_stability(long: dict) -> str:
    """A family's long render: its style stability over the visualizers' on the same audio, and (held) its
    share on style where the visualizers are."""
    model, truth = long["model"]["style_stability"], long["visualizers"]["style_stability"]
    return (f"{_fmt(model, '{:.0%}')} / {_fmt(truth, '{:.0%}')} "
            f"(held {_fmt(long['model']['held_where_truth_shows'], '{:.0%}')})")


def print_families(result: dict) -> None:
    """The per-family table of ``eval.run_family_eval``: a row per family and source, render beside visualizers."""
    table = Table(title=f"every family ({result['clips_per_family']} excerpts of {result['clip_seconds']:g} s per "
                        "family and source; render / visualizers on the same audio, in the same look)",
                  title_justify="left")
    for col in ("family", "source", "on style", "cut rate", "FSD / floor", "AV-Align", "silence/sound",
                "long stability"):
        table.add_column(col, justify="left" if col in ("family", "source") else "right")
    for family, entry in result["families"].items():
        long = entry.get("long")
        for i, source in enumerate(result["sources"]):
            part = entry[source]
            m, v = part["model"], part["visualizers"]
            table.add_row(
                family if i == 0 else "", source,
                f"{_fmt(m['on_style'], '{:.0%}')} / {_fmt(v['on_style'], '{:.0%}')}",
                f"{_fmt(m['cut_rate'], '{:.1%}')} / {_fmt(v['cut_rate'], '{:.1%}')}",
                _fmt(part["fsd_ratio_to_floor"], "{:.1f}"),
                f"{_fmt(m['av_align'], '{:.2f}')} / {_fmt(v['av_align'], '{:.2f}')}",
                f"{_fmt(m['silence_ratio'], '{:.2f}')} / {_fmt(v['silence_ratio'], '{:.2f}')}",
                _long_stability(long) if long and long["source"] == source else "",
            )
    console.print(fit(table))
    if result.get("heldout_songs"):
        console.print(f"held-out songs: {', '.join(result['heldout_songs'])}")


def print_heldout(result: dict) -> None:
    """Print the held-out comparison table and the shuffle-gap/quality table."""
    from synesthete.eval import ROW_KEYS  # start-up: loaded by now; `analyze` prints without eval

    title = (
        f"sync on {result['clips']} held-out clips of {result['clip_seconds']:g} s "
        f"({'strict peaks' if result['strict'] else 'peak threshold ' + format(result['peak_threshold'], 'g')})"
    )
    table = Table(title=title, title_justify="left")
    table.add_column("video · audio", style="bold", no_wrap=True)
    # Numbers never shrink below their width (7, or 9 for "12.0/24.0"); narrow terminals wrap the headers.
    table.add_column("AV-Align", justify="right", min_width=8)
    table.add_column("× oracle", justify="right", min_width=7)
    for _, header, _ in COLUMNS:
        table.add_column(header, justify="right", min_width=7)
    table.add_column("peaks V/A", justify="right", min_width=9)
    for name, key in ROW_KEYS.items():
        row = result["rows"].get(key)
        if row is None:
            continue
        cells = [_fmt(row["av_align"]), _fmt(result["ratio_to_oracle"].get(key), "{:.2f}")]
        cells += [_fmt(row[col], fmt) for col, _, fmt in COLUMNS]
        cells.append(f"{row['video_peaks']:.1f}/{row['audio_peaks']:.1f}")
        table.add_row(name, *cells)
    console.print(fit(table))

    gaps = Table(title="shuffle gap (correct minus mismatched) and quality", title_justify="left")
    gaps.add_column("", style="bold")
    for who in result["gaps"]:
        gaps.add_column(who, justify="right")
    labels = (
        ("av_align_vs_other_audio", "AV-Align gap · other clip's audio", "{:+.3f}"),
        ("av_align_vs_half_beat_shift", "AV-Align gap · ½-beat shift", "{:+.3f}"),
        ("pixel_difference", "pixel difference · other audio", "{:.2%}"),
        ("latent_difference", "latent difference (σ units) · other audio", "{:.3f}"),
    )
    for key, label, fmt in labels:
        gaps.add_row(label, *[_fmt(result["gaps"][who].get(key), fmt) for who in result["gaps"]])
    q = result["quality"]
    if q:
        gaps.add_row("VAE PSNR (dB) on oracle frames", _fmt(q["vae_psnr_db"], "{:.2f}"), "")
        gaps.add_row("VAE SSIM on oracle frames", _fmt(q["vae_ssim"]), "")
    console.print(fit(gaps))


# --------------------------------------------------------------------------------------------- render
TIME_SPLIT = (("setup", "setup"), ("analysis", "analysis"), ("features", "features"), ("network", "network"),
              ("vae_decode", "VAE decode"), ("encode_mux", "encode+mux"), ("other", "other"))


def render_summary(result: RenderResult) -> dict[str, Any]:
    """The rows of `synesthete render`'s summary table, for people: rounded figures and joined settings."""
    engine = ", ONNX Runtime" if result.engine == "onnxruntime" else ""
    device = f"{result.device}, {result.precision}{engine}" + (f", {result.threads}" if result.threads else "")
    return {
        "output": str(result.output) if result.output is not None else "(in memory)",
        "duration (s)": round(result.duration, 3),
        "start (s)": round(result.start, 3),
        "frames": result.num_frames,
        "fps": result.fps,
        "size": f"{result.width}x{result.height}",
        "wall time (s)": round(result.wall, 2),
        "real-time factor": round(result.rtf, 3),
        "time split (s)": ", ".join(f"{label} {result.timings.get(key, 0.0):.1f}" for key, label in TIME_SPLIT),
        "style": result.style,
        **({"sections": "; ".join(f"{sec.label} {clock(sec.start)}-{clock(sec.end)} {sec.style}"
                                  for sec in result.sections),
            "analysis": f"{result.tempo:.1f} BPM; {len(result.cuts)} cut{'' if len(result.cuts) == 1 else 's'}, "
                        "each on the downbeat that starts a section"} if result.sections else {}),
        **({"level": f"turned down {-result.level_gain_db:.1f} dB for the model (render.level)"}
           if result.level_gain_db < -0.05 else {}),
        "seed": f"{result.seed} (from the song's hash)" if result.seed_from_song else result.seed,
        "sampler": f"{result.sampler}, {result.steps} steps, {result.lanes} lane{'s' if result.lanes > 1 else ''}",
        "guidance (audio, style)": f"{result.guidance:g}, {result.style_guidance:g}"
        + (" (audio distilled: one pass)" if result.guidance_distilled else ""),
        "checkpoints": str(result.checkpoints),
        "device": device,
    }


def print_batch(rows: list[tuple[Path, Path | None, RenderResult | str]]) -> None:
    """The summary of a batch render: per song its output and the result, or why it failed; a folder that gave
    no songs has a row too, but is not counted as a song. Names are shown on one line each (``app.shown``)."""
    done = sum(1 for *_, r in rows if not isinstance(r, str))
    folders = sum(1 for song, _, r in rows if isinstance(r, str) and song.is_dir())
    title = f"render: {done} of {len(rows) - folders} songs rendered"
    if folders:
        title += f"; {folders} folder{'s' if folders > 1 else ''} gave none"
    table = Table(title=title, title_justify="left")
    table.add_column("song", overflow="fold")
    table.add_column("output", overflow="fold")
    table.add_column("result", overflow="fold")
    for song, out, result in rows:
        name = shown(str(song))
        if isinstance(result, str):
            table.add_row(name, "", f"[red]failed[/red]: {shown(result)}")
        else:
            table.add_row(name, shown(str(out)),
                          f"{result.duration:.1f} s, {result.style}, RTF {result.rtf:.2f}")
    console.print(fit(table))


# --------------------------------------------------------------------------------------------- analyze
def clock(seconds: float) -> str:
    """Seconds as m:ss.s (a song position)."""
    minutes, rest = divmod(max(0.0, seconds), 60)
    return f"{int(minutes)}:{rest:04.1f}"


def print_analysis(song: Path, a: SongAnalysis) -> None:
    """`synesthete analyze`'s tables: what was heard, and the sections with their times."""
    head = Table(title=f"analysis of {song}", show_header=False, title_justify="left")
    head.add_column(style="bold")
    head.add_column(overflow="fold")
    bar = 60.0 * a.beats_per_bar / a.tempo if a.tempo else 0.0
    head.add_row("tempo", f"{a.tempo:.1f} BPM" if a.tempo else "– (no beat found)")
    head.add_row("beats", f"{len(a.beats)}")
    head.add_row("downbeats", f"{len(a.downbeats)} (bars of {a.beats_per_bar} beats)")
    head.add_row("sections", f"{len(a.sections)}: {'-'.join(s.label for s in a.sections)}")
    head.add_row("duration", f"{clock(a.duration)} ({a.duration:.1f} s)")
    head.add_row("analysed in", f"{a.seconds:.2f} s ({a.duration / a.seconds:.0f}x real time)" if a.seconds else "–")
    console.print(fit(head))
    table = Table(title="sections", title_justify="left")
    for name in ("section", "start", "end", "length"):
        table.add_column(name, justify="left" if name == "section" else "right")
    for s in a.sections:
        bars = f", {round((s.end - s.start) / bar)} bars" if bar else ""
        table.add_row(s.label, clock(s.start), clock(s.end), f"{s.end - s.start:.1f} s{bars}")
    console.print(fit(table))
