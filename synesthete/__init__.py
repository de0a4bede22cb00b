"""Synesthete: learn to turn music into video.

The Python API (``synesthete.pipeline``), imported on first use so that ``import synesthete`` (and the CLI's
start) stays light::

    from synesthete import Synesthete

    pipe = Synesthete.from_pretrained()
    result = pipe.render("song.mp3", "song.mp4")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["PictureScores", "RenderJob", "RenderResult", "Synesthete", "SyncScores", "VideoScore", "__version__"]
_API = frozenset(__all__) - {"__version__"}

if TYPE_CHECKING:
    from synesthete.pipeline import PictureScores, RenderJob, RenderResult, SyncScores, Synesthete, VideoScore


def __getattr__(name: str) -> Any:
    if name in _API:
        from synesthete import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'synesthete' has no attribute {name!r}")
