"""Domain errors: each becomes one red line and exit code 1 at the CLI boundary."""


class SynestheteError(Exception):
    """A user-facing error (bad input, bad option, missing file); never a programming error."""


class InputError(SynestheteError):
    """A missing, corrupt, empty or unusable input file."""


class OutputError(SynestheteError):
    """An output that exists (without --overwrite) or cannot be written."""


class CheckpointError(SynestheteError):
    """A missing, foreign, unsafe or mismatched checkpoint."""


class DeviceError(SynestheteError):
    """A requested device that is not available."""


class TrainingError(SynestheteError):
    """Training cannot go on (e.g. a NaN loss); the last good checkpoint is kept."""


class ConfigError(SynestheteError):
    """An unreadable or invalid .env file or environment setting (its value is never echoed)."""


class BusyError(SynestheteError):
    """Another synesthete job holds the lock on the same output or run folder."""


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like Ctrl-C (temporary files are removed) and the CLI exits with 143."""
