"""Audio-visual sync metrics: AV-Align, Beat Alignment Score, shuffle gap and picture-quality side metrics."""

from synesthete.metrics.av_align import AVAlignResult, av_align, match_peaks, pick_peaks, video_peaks
from synesthete.metrics.bas import beat_alignment, visual_beats
from synesthete.metrics.flow import lucas_kanade, motion_curve
from synesthete.metrics.onsets import OnsetEnvelope, audio_peaks, detect_onsets, onset_envelope
from synesthete.metrics.quality import flicker, psnr, silence_response, silent_frames, ssim
from synesthete.metrics.sync import SyncAnalysis, analyse, sync_metrics

__all__ = [
    "AVAlignResult", "OnsetEnvelope", "SyncAnalysis", "analyse", "audio_peaks", "av_align", "beat_alignment",
    "detect_onsets", "flicker", "lucas_kanade", "match_peaks",
    "motion_curve", "onset_envelope", "pick_peaks", "psnr", "silence_response", "silent_frames", "ssim",
    "sync_metrics", "video_peaks", "visual_beats",
]
