"""The files people open: the annotated video (H.264 in mp4, nothing about the machine in it) and the annotated image
of a photo."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

import emocam
from conftest import run_here, says


def test_the_annotated_video_is_h264_that_browsers_play(clip: Path, tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "a.mp4"
    ran = run_here("emocam", "--video", clip, "--model", tiny_model, "--no-display", "--out", out)
    assert ran.returncode == 0, ran.stderr
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.width, stream.height) == (640, 360)
        assert sum(1 for _ in container.decode(stream)) == 72
    # Not three times the input, as mp4v was: the overlay adds detail, so a little more than the input at most.
    assert out.stat().st_size < 1.5 * clip.stat().st_size


def test_a_frame_of_odd_size_is_padded_to_even(tiny_model: Path, tmp_path: Path, shared: Path) -> None:
    odd = tmp_path / "odd.avi"
    image = cv2.resize(cv2.imread(str(shared / "images" / "single_face.jpg")), (321, 181))
    with av.open(str(odd), "w") as container:  # lossless FFV1 keeps the odd size (OpenCV's writers round it down)
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = 321, 181, "bgr0"
        for _ in range(5):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(stream.encode(None))
    ran = run_here("emocam", "--video", odd, "--model", tiny_model, "--no-display", "--out", tmp_path / "o.mp4")
    assert ran.returncode == 0, ran.stderr
    with av.open(str(tmp_path / "o.mp4")) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert len(frames) == 5 and frames[0].shape == (182, 322, 3)


def test_nothing_about_the_machine_goes_into_the_video(clip: Path, tiny_model: Path) -> None:
    # What the overlay sinks receive is the annotation of the faces alone: no fps counter, which differs run to run.
    class Keep(emocam.Sink):
        overlay = True

        def __init__(self) -> None:
            self.images = []

        def write(self, frame, faces) -> None:
            self.images.append(frame.image.copy())

    with emocam.Recognizer(tiny_model, backend="onnxruntime", max_frames=20) as rec:
        expected = [emocam.annotate(frame.image.copy(), faces, rec.classes) for frame, faces in rec.stream(clip)]
        kept = Keep()
        with emocam.open_source(clip, live=False) as source:
            rec.run(source, [kept])
    assert len(kept.images) == len(expected) == 20
    for got, want in zip(kept.images, expected):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_an_image_gives_an_annotated_image_of_the_same_size(shared: Path, tiny_model: Path, tmp_path: Path,
                                                            suffix: str) -> None:
    photo = shared / "images" / "multi_face.jpg"
    out = tmp_path / f"annotated{suffix}"
    ran = run_here("emocam", "--video", photo, "--model", tiny_model, "--detector", "full", "--no-display",
                   "--out", out)
    assert ran.returncode == 0, ran.stderr
    original, annotated = cv2.imread(str(photo)), cv2.imread(str(out))
    assert annotated is not None and annotated.shape == original.shape
    changed = np.abs(annotated.astype(int) - original.astype(int)).max(axis=2) > 60
    assert 0.02 < changed.mean() < 0.5  # boxes, labels and panels drawn, the photo still there
    assert not list(tmp_path.glob("*partial*"))


def test_an_image_output_for_a_video_is_refused(clip: Path, tiny_model: Path, tmp_path: Path) -> None:
    ran = run_here("emocam", "--video", clip, "--model", tiny_model, "--no-display", "--out", tmp_path / "x.jpg")
    says(ran, "is an image")
    assert not (tmp_path / "x.jpg").exists()
    ran = run_here("emocam", "--video", clip, "--model", tiny_model, "--no-display", "--out", tmp_path / "x.txt")
    says(ran, ".mp4")
    assert ".jpg" in ran.stderr
