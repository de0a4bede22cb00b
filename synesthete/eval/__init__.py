"""`synesthete eval`: score the audio-visual sync and the picture of the model, or of any video file.

``files`` scores one video (``eval --video``); ``heldout`` is the benchmark of the checkpoints on held-out
procedural clips beside the oracle (the visualizers' own video); ``picture`` holds the picture metrics with
the style critic; ``sheets`` the contact sheets; ``families`` judges every visualizer family on its own
(``eval --families``); ``run`` is the command.
"""

from synesthete.eval.common import clip_look, json_safe, visualizers, write_json
from synesthete.eval.families import evaluate_families, run_family_eval
from synesthete.eval.files import (
    PictureScores,
    SectionScores,
    SyncScores,
    VideoScore,
    score_file,
    score_video,
    section_scores,
)
from synesthete.eval.heldout import ROW_KEYS, SEED_LOOK, VAE_ROUNDTRIP, evaluate_heldout, heldout_clips
from synesthete.eval.picture import heldout_picture, video_picture
from synesthete.eval.run import run_eval
from synesthete.eval.sheets import heldout_sheet_rows

__all__ = [
    "ROW_KEYS", "SEED_LOOK", "VAE_ROUNDTRIP", "PictureScores", "SectionScores", "SyncScores", "VideoScore",
    "clip_look", "evaluate_families", "evaluate_heldout", "heldout_clips", "heldout_picture", "heldout_sheet_rows",
    "json_safe", "run_eval", "run_family_eval", "score_file", "score_video", "section_scores",
    "video_picture", "visualizers", "write_json",
]
