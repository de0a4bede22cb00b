"""Procedural, beat-reactive visualizers: the ground-truth videos the model learns to imitate.

``sample_params(rng, settings)`` draws a clip's visual parameters (one visualizer or a composition of 2-3,
plus augmentation); ``render_frames(features, audio, params, settings)`` renders them, vectorised in torch
over frames and pixels, on the device of ``features``. See docs/visualizers.md.
"""

from synesthete.visual.compose import VISUALIZERS, available, blend, render_frames, sample_params

__all__ = ["VISUALIZERS", "available", "blend", "render_frames", "sample_params"]
