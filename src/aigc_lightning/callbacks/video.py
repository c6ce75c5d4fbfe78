"""Streaming video encoder: H.264 MP4 of stylised frames (the source's size, frame rate and audio) or of frames
made here (latent walks, posters: ``write_frames``).

``write_video(path, source, frames)`` pulls uint8 frame batches (B, H, W, 3) from ``frames`` one at a time and
encodes them as they come, so memory holds one batch, never the video. Codec constraints handled here:
- yuv420p (what every player decodes) needs an even width and height; odd-sized videos are encoded as yuv444p
  so the output keeps the exact size (no padding or cropping to undo).
- audio: codecs MP4 can hold are copied packet by packet (no quality loss); others (PCM, Vorbis, …) are
  transcoded to AAC. Audio packets are interleaved by time with the video packets, so the muxer buffers only
  a few, whatever the length.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from torch import Tensor

from aigc_lightning.datamodules.io import replacing
from aigc_lightning.datamodules.video import VideoClip, VideoInfo, open_video
from aigc_lightning.errors import UserError

if TYPE_CHECKING:
    import av

MP4_AUDIO = {"aac", "mp3", "ac3", "eac3", "alac", "flac", "opus"}  # copied as they are; others become AAC


def _seconds(packet: av.Packet) -> float:
    t = packet.pts if packet.pts is not None else packet.dts
    return float(t * packet.time_base) if t is not None and packet.time_base else 0.0


def _audio_packets(source: av.container.InputContainer, output: av.container.OutputContainer) -> Iterator:
    """The source's first audio stream as packets for ``output``: copied or encoded to AAC (see module doc)."""
    import av  # PyAV: imported where a video is written, not at start-up (~30 ms of every command)

    in_audio = source.streams.audio[0]
    if in_audio.codec_context.name in MP4_AUDIO:
        out_audio = output.add_stream_from_template(in_audio)
        for packet in source.demux(in_audio):
            if packet.dts is not None:  # the demuxer's final empty packet
                packet.stream = out_audio
                yield packet
        return
    out_audio = output.add_stream("aac", rate=in_audio.codec_context.sample_rate)
    # Native layouts only: PCM in MKV/AVI often has an unordered "1 channels" one, which the AAC encoder refuses.
    channels = in_audio.codec_context.layout.nb_channels
    out_audio.layout = {1: "mono", 2: "stereo"}.get(channels) or av.AudioLayout(channels).name
    out_audio.format = "fltp"  # the only sample format FFmpeg's AAC encoder takes; PyAV resamples into it
    for frame in source.decode(in_audio):
        frame.pts = None  # the encoder re-times the resampled frames
        yield from out_audio.encode(frame)
    yield from out_audio.encode(None)


def _checked(packets: Iterator, path: str) -> Iterator:
    """``packets``, with FFmpeg's error on a damaged audio stream as one ``UserError`` naming the file."""
    import av

    try:
        yield from packets
    except av.FFmpegError as e:
        raise UserError(
            f"cannot read the audio of video file {path} ({e}); it is damaged or truncated: delete or replace it"
        ) from e


def write_video(path: Path, source: VideoClip, frames: Iterable[Tensor], crf: int = 18) -> int:
    """Encode uint8 frame batches (B, H, W, 3) to ``path`` at ``source``'s frame rate, with its audio; returns
    the number of frames written. ``crf``: x264 quality (18: visually lossless, 23: x264's default)."""
    info = source.info()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Encoded into a fresh file that replaces ``path`` only when complete: a failed or killed run leaves no
    # truncated OUT/<name>.mp4, and a symlink at ``path`` is replaced, never written through.
    with replacing(path) as tmp:
        return _encode(tmp, source, info, frames, crf)


class _MadeFrames:
    """The ``source`` of frames made here: their size and frame rate, no audio."""

    path = None

    def __init__(self, width: int, height: int, fps: float | Fraction) -> None:
        self._info = VideoInfo(width=width, height=height, fps=Fraction(fps).limit_denominator(1001), frames=0,
                               has_audio=False)  # fmt: skip

    def info(self) -> VideoInfo:
        return self._info


def write_frames(
    path: Path, frames: Iterable[Tensor], fps: float, width: int, height: int, crf: int = 18
) -> int:
    """Encode uint8 frame batches (B, height, width, 3) made here (no source video) to ``path`` at ``fps``;
    returns the number of frames written. Even sizes give yuv420p, which every player decodes."""
    return write_video(Path(path), _MadeFrames(width, height, fps), frames, crf)  # type: ignore[arg-type]


def _encode(tmp: Path, source: VideoClip, info: VideoInfo, frames: Iterable[Tensor], crf: int) -> int:
    import av

    count = 0
    with av.open(str(tmp), "w", format="mp4") as output:
        video = output.add_stream("libx264", rate=info.fps)
        video.width, video.height = info.width, info.height
        video.pix_fmt = "yuv420p" if info.width % 2 == 0 and info.height % 2 == 0 else "yuv444p"
        video.options = {"crf": str(crf)}
        audio_source = open_video(source.path) if info.has_audio else None
        audio: Iterator = iter(())
        if audio_source is not None:
            audio = _checked(_audio_packets(audio_source, output), source.path)
        pending = next(audio, None)  # the next audio packet not yet muxed (interleaving by time)
        frame_time = Fraction(1) / info.fps

        def mux_video(packets: list[av.Packet]) -> None:
            nonlocal pending
            for packet in packets:
                while pending is not None and _seconds(pending) <= _seconds(packet):
                    output.mux(pending)
                    pending = next(audio, None)
                output.mux(packet)

        try:
            for batch in frames:
                if tuple(batch.shape[1:]) != (info.height, info.width, 3):
                    raise ValueError(f"frames {tuple(batch.shape)} do not match the video's {info}")
                for rgb in batch.numpy():
                    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                    frame.pts, frame.time_base = count, frame_time
                    mux_video(video.encode(frame))
                    count += 1
            mux_video(video.encode(None))  # flush the encoder's delayed frames
            while pending is not None:
                output.mux(pending)
                pending = next(audio, None)
        finally:
            if audio_source is not None:
                audio_source.close()
    return count
