"""Media I/O through torchcodec and FFmpeg: files decoded whole (``decode``), audio streamed from an excerpt
(``stream``), mp4 and wav encoded and every file written atomically (``encode``), and one-line reasons for
codec errors (``messages``)."""

from synesthete.media.decode import AudioInfo, audio_info, load_audio, load_video, to_unit
from synesthete.media.encode import AAC_FRAME, VideoWriter, atomic_save, to_uint8, write_video, write_wav
from synesthete.media.messages import codec_message
from synesthete.media.stream import SEEK_PREROLL, AudioReader, decodable_duration, ffmpeg_binary

__all__ = [
    "AAC_FRAME", "SEEK_PREROLL", "AudioInfo", "AudioReader", "VideoWriter", "atomic_save", "audio_info",
    "codec_message", "decodable_duration", "ffmpeg_binary", "load_audio", "load_video", "to_uint8", "to_unit",
    "write_video", "write_wav",
]
