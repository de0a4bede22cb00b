"""One-line reasons for torchcodec (FFmpeg) and torch I/O errors, without C++ file names and lines."""

from __future__ import annotations

import errno
import os
import re

# Where in its C++ sources torchcodec (or torch's zip writer) raised: "encodeVideoFrame, /__w/.../Encoder.cpp:1504, "
# or "[enforce fail at inline_container.cc:672] . ". A user gets the reason, not the location.
_CPP_LOCATION = re.compile(r"(?:\b\w+, )?\S*\.(?:cpp|cc|cxx|hpp|h):\d+\]?[,.]?\s*(?:\.\s+)?|\[enforce fail at\s*")


def codec_message(exc: BaseException) -> str:
    """The reason of a torchcodec (FFmpeg) or torch I/O error in one line, without C++ file names and lines;
    the operating system's reason (``No space left on device``) where one is in the exception's chain."""
    reason = _os_reason(exc)
    if reason is not None:
        return reason
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return _CPP_LOCATION.sub("", text).strip(" ,.") or type(exc).__name__


def _os_reason(exc: BaseException) -> str | None:
    """The strerror of the first OSError in ``exc``'s chain, or of an errno message FFmpeg passed on."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO, errno.EACCES):
        if os.strerror(code) in str(exc):
            return os.strerror(code)
    return None
