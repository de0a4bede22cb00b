"""Synesthete: learn to turn music into video.

The Python API (``synesthete.pipeline``), imported on first use so that ``import synesthete`` (and the CLI's
start) stays light; that first use is an entry point, so it sets the OpenMP wait policy first
(``threads.prepare_openmp``), before the pipeline loads torch::

    from synesthete import Synesthete

    pipe = Synesthete.from_pretrained()
    result = pipe.render("song.mp3", "song.mp4")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from synesthete import threads

__version__ = "0.1.0"

__all__ = ["PictureScores", "RenderJob", "RenderResult", "Synesthete", "SyncScores", "VideoScore", "__version__"]
_API = frozenset(__all__) - {"__version__"}

if TYPE_CHECKING:
    from synesthete.pipeline import PictureScores, RenderJob, RenderResult, SyncScores, Synesthete, VideoScore


def __getattr__(name: str) -> Any:
    if name in _API:
        threads.prepare_openmp()  # the Python API's entry: before the pipeline loads torch's OpenMP runtime
        from synesthete import pipeline  # on first use: ``import synesthete`` stays light (no torch)

        return getattr(pipeline, name)
    raise AttributeError(f"module 'synesthete' has no attribute {name!r}")
