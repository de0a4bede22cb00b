"""Song -> features -> windows of latents -> frames -> mp4, streamed so memory stays flat with song length.

A render is planned, then run: ``plan_render`` checks everything that needs no network (the excerpt, the
song, the output, the style) and gives a ``RenderJob``; ``run_render`` runs it with loaded models and gives a
``RenderResult`` (both in ``records``). ``synesthete.Synesthete`` (the Python API) and the CLI drive these;
``render_song`` plans, loads the models and runs, for one song. The data path of a run, module by module:
0. ``job`` and ``looks``: with ``render.sections`` (the default), analyse the whole song
   (``audio.analysis.analyse_file``: tempo, beats, downbeats, sections; streamed, far faster than real time) and
   give each kind of section of the excerpt its look (``section_looks``): a style (``auto``: a family per
   kind) and a style exemplar drawn from the render seed, which is ``render.seed`` or, when that is empty, a
   hash of the song file (``song_seed``).
1. ``job``: decode the excerpt once, streamed (``media.AudioReader``: FFmpeg seeks to ``--start``), at the
   model's rate, mono, and compute the frame-aligned features chunk by chunk (``song_features``; 48 bytes per
   video frame are kept: 1 MB for a 10-minute song).
2. ``layout`` and ``windows``: generate latents window by window: each window of ``dit.window`` frames
   is denoised jointly, and continues from the previous window's last ``render.overlap`` latents, given as
   clean context, so windows join without seams or jumps. A section is a segment of lanes of its own that
   starts from its look's exemplar on the frame of its first downbeat, with no bridge from the section
   before: the picture cuts there (``window_layout``'s cuts). Without sections one look holds for the song.
3. ``output``: decode each window's new latents with the VAE and stream them, with the original audio (a
   second streamed decode at its own rate and channels, interleaved by an ``AudioMuxer``), into an H.264 +
   AAC mp4 written to a temporary file and renamed at the end; or keep them, as uint8, for a render to memory.

CPU threads are chosen for a shared machine (``synesthete.threads``): the render runs on the cores nobody else
is using, re-checked as it goes. The entry points (the CLI, ``synesthete.Synesthete``) make OpenMP workers
spin only briefly before they sleep (``threads.prepare_openmp``); importing this package does not.
"""

from synesthete.render.job import generate_frames, plan_render, render_song, run_render, song_features
from synesthete.render.layout import MIN_LANE_WINDOWS, WindowLayout, window_layout
from synesthete.render.looks import (
    MIN_SECTION_FRAMES,
    render_seed,
    section_looks,
    section_plan,
    seed_look,
    song_seed,
    style_exemplar,
)
from synesthete.render.output import check_memory, memory_need
from synesthete.render.records import RenderJob, RenderResult, RenderSection
from synesthete.render.windows import Look, iter_windows, settled_silence, song_layout

__all__ = [
    "MIN_LANE_WINDOWS", "MIN_SECTION_FRAMES", "Look", "RenderJob", "RenderResult", "RenderSection", "WindowLayout",
    "check_memory", "generate_frames", "iter_windows", "memory_need", "plan_render", "render_seed", "render_song",
    "run_render", "section_looks", "section_plan", "seed_look", "settled_silence", "song_features", "song_layout",
    "song_seed", "style_exemplar", "window_layout",
]
