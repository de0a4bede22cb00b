"""The one Settings object every command shares: ``root`` (Settings, presets, loading, the env file),
``sections`` (one model per section), ``legacy`` (settings that moved or were retired)."""

from synesthete.settings.legacy import check_retired, retired_problem, upgrade_stored
from synesthete.settings.root import (
    ENV_FILE_VARIABLE,
    Settings,
    check_environment,
    env_example,
    env_file_path,
    load_settings,
    validation_message,
)
from synesthete.settings.sections import (
    AudioSettings,
    DiTSettings,
    EvalSettings,
    SamplingSettings,
    VideoSettings,
    default_checkpoint_dir,
)

__all__ = [
    "ENV_FILE_VARIABLE", "AudioSettings", "DiTSettings", "EvalSettings", "SamplingSettings", "Settings",
    "VideoSettings", "check_environment", "check_retired", "default_checkpoint_dir", "env_example",
    "env_file_path", "load_settings", "retired_problem", "upgrade_stored", "validation_message",
]
