"""Frame sizes: a size that would crash or exhaust the process is refused before anything is decoded, and huge frames
are buffered by bytes, not by a count made for small ones (issue 19: 2, 15)."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import av
import numpy as np
import pytest

import emocam
from emocam.sources import size_problem
from conftest import SAMPLE


@pytest.mark.parametrize("width, height, taken", [
    (640, 360, True), (7680, 4320, True), (12_000, 8_000, True), (16, 256, True),
    (1, 17, False), (100_000, 1, False), (12_000, 12_000, False), (16_400, 2_000, False), (0, 10, False),
], ids=["vga", "8k", "96mp", "aspect16", "aspect17", "line", "144mp", "side", "empty"])
def test_which_sizes_are_taken(width: int, height: int, taken: bool) -> None:
    problem = size_problem(width, height)
    assert (problem is None) == taken
    assert taken or f"{width}x{height} pixels" in problem


def test_a_video_whose_frames_are_too_narrow_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "narrow.avi"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mjpeg", rate=10)
        stream.width, stream.height, stream.pix_fmt = 8, 400, "yuvj420p"
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((400, 8, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame.reformat(format="yuvj420p")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    with pytest.raises(emocam.SourceError, match="narrow.avi is 8x400 pixels: more than 16 times"):
        emocam.open_source(path)


def test_frames_are_buffered_by_bytes(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The budget made as small against the sample's 640x360 frames as the real one is against 8K frames (2.6 frames):
    # the queues then hold one frame each, where counted in frames they would hold 20.
    from emocam.sources import base

    frame_bytes = 640 * 360 * 3
    monkeypatch.setattr(base, "BUFFER_BYTES", int(2.6 * frame_bytes))
    with emocam.Recognizer(tiny_model, backend="onnxruntime") as rec:
        tracemalloc.start()  # numpy's buffers, every decoded frame among them, are traced
        try:
            frames = 0
            for _ in rec.stream(SAMPLE):
                frames += 1
                time.sleep(0.02)  # a slow consumer (a sink writing a video): everything before it fills up
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert frames == 72
    # At most a frame in each of the three queues, and the few in hand: decoding, detecting, the one handed out.
    assert peak < 8 * frame_bytes, f"{peak / frame_bytes:.1f} frames at the peak"
