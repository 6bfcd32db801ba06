"""The Python API on what callers actually pass: wrong arrays and types are one-line errors that say what was
expected, crafted images are refused before they are decoded, RGB frames have an option, and one Recognizer shared
by threads serialises their calls instead of breaking (issue 19: 2, 8, 12, 13)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

import emocam
from crafted import png


@pytest.fixture(scope="module")
def rec(tiny_model: Path):
    with emocam.Recognizer(tiny_model, backend="onnxruntime") as r:
        yield r


@pytest.fixture(scope="module")
def photo(shared: Path) -> np.ndarray:
    """A BGR photo in which the default detector finds one face."""
    return cv2.imread(str(shared / "images" / "single_face.jpg"))


def refused(call, *expected: str) -> str:
    """``call()`` raises one of emocam.USER_ERRORS, in one line naming each of ``expected``; returns the message."""
    with pytest.raises(emocam.USER_ERRORS) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and all(e in message for e in expected), message
    return message


# --- 12: each wrong argument is one line saying what was expected ----------------------------------------------------

@pytest.mark.parametrize("given, expected", [
    (None, ("None", "BGR")),
    (np.zeros((0, 0, 3), np.uint8), ("empty",)),
    (np.zeros((40, 40, 3), np.float32), ("float32", "uint8")),
    (np.zeros((40, 40, 2), np.uint8), ("2 channels", "(H, W, 3)")),
    (np.zeros((40, 40, 4), np.uint8), ("4 channels", "[..., :3]")),
    (123, ("int", "file")),
    (b"\x89PNG", ("bytes", "file")),
    ([[0, 1], [2, 3]], ("list",)),
], ids=["none", "empty", "float", "2ch", "4ch", "int", "bytes", "list"])
def test_a_wrong_image_argument_says_what_was_expected(rec: emocam.Recognizer, given: object,
                                                       expected: tuple[str, ...]) -> None:
    refused(lambda: rec(given), *expected)


def test_a_pil_image_says_how_to_pass_it(rec: emocam.Recognizer, photo: np.ndarray) -> None:
    from PIL import Image

    picture = Image.fromarray(np.ascontiguousarray(photo[..., ::-1]))
    refused(lambda: rec(picture), "PIL", "np.asarray", "rgb=True")
    # Done as the message says, it gives the faces of the BGR array.
    np.testing.assert_allclose(rec(np.asarray(picture), rgb=True).boxes, rec(photo).boxes, atol=1)


def test_a_closed_recognizer_says_so(tiny_model: Path, photo: np.ndarray, clip: Path) -> None:
    r = emocam.Recognizer(tiny_model, backend="onnxruntime")
    r.close()
    refused(lambda: r(photo), "closed")
    refused(lambda: next(r.stream(clip)), "closed")
    r.close()  # twice is fine


def test_a_grey_image_is_taken(rec: emocam.Recognizer, photo: np.ndarray) -> None:
    grey = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    assert len(rec(grey)) == len(rec(grey[..., None])) == 1


# --- 13: common mistakes that gave 0 faces silently --------------------------------------------------------------

def test_a_batch_of_images_is_refused(rec: emocam.Recognizer, photo: np.ndarray) -> None:
    refused(lambda: rec(np.stack([photo, photo])), "one image", "(2, ")


def test_a_channels_first_array_is_refused(rec: emocam.Recognizer, photo: np.ndarray) -> None:
    refused(lambda: rec(photo.transpose(2, 0, 1)), "channels first", "transpose(1, 2, 0)")


@pytest.mark.parametrize("max_frames", [-1, 0, 2.5, "3"])
def test_max_frames_must_be_a_positive_count(rec: emocam.Recognizer, clip: Path, max_frames: object) -> None:
    refused(lambda: next(rec.stream(clip, max_frames=max_frames)), "max_frames", repr(max_frames))


def test_stream_and_analyze_refuse_what_is_not_a_source(rec: emocam.Recognizer) -> None:
    refused(lambda: next(rec.stream(None)), "None", "file")
    refused(lambda: next(rec.stream(np.zeros((8, 8, 3), np.uint8))), "ndarray", "rec(image)")
    refused(lambda: rec.analyze(None), "None", "file")


def test_rgb_frames_give_the_answers_of_their_bgr_copy(rec: emocam.Recognizer, photo: np.ndarray) -> None:
    bgr = rec(photo)
    rgb = rec(np.ascontiguousarray(photo[..., ::-1]), rgb=True)
    assert len(bgr) == len(rgb) == 1
    np.testing.assert_allclose(rgb.boxes, bgr.boxes)
    np.testing.assert_allclose(rgb.probs, bgr.probs, atol=1e-6)
    # Without the option the same array is read as BGR: red and blue swapped, another answer.
    assert not np.allclose(rec(np.ascontiguousarray(photo[..., ::-1])).probs, bgr.probs, atol=1e-3)


# --- 2: crafted images are refused before decoding, in a process of their own (without the check they abort it) ---

def test_crafted_images_and_arrays_are_refused_not_fatal(tiny_model: Path, tmp_path: Path) -> None:
    thin = png(tmp_path / "thin.png", 1, 100_000)  # 274 bytes
    huge = png(tmp_path / "huge.png", 12_000, 12_000)  # 144 million pixels in a few hundred kilobytes
    code = f"""
import numpy as np, emocam
rec = emocam.Recognizer({str(tiny_model)!r}, backend="onnxruntime")
for given in ({str(thin)!r}, {str(huge)!r}, np.zeros((1, 100_000, 3), np.uint8), np.zeros((40_000, 2, 3), np.uint8)):
    try:
        rec(given)
        print("taken")
    except emocam.USER_ERRORS as e:
        print(type(e).__name__, e)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 4, result.stdout
    assert lines[0].startswith("SourceError") and "1x100000" in lines[0] and "wider than" in lines[0]
    assert lines[1].startswith("SourceError") and "12000x12000" in lines[1] and "pixels" in lines[1]
    assert "100000x1" in lines[2] and "2x40000" in lines[3]  # width x height


# --- 8: one Recognizer, several threads ----------------------------------------------------------------------------

def test_calls_from_two_threads_are_serialised(rec: emocam.Recognizer, photo: np.ndarray) -> None:
    expected = rec(photo)
    got, errors = [], []

    def calls() -> None:
        for _ in range(8):
            try:
                got.append(rec(photo))
            except Exception as e:  # noqa: BLE001 - collected, the test says which
                errors.append(e)

    threads = [threading.Thread(target=calls) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(got) == 24
    assert all(len(f) == 1 and np.allclose(f.probs, expected.probs, atol=1e-6) for f in got)
    assert len(rec(photo)) == 1  # and it still works afterwards


def test_a_call_during_an_unfinished_stream_is_refused_and_leaves_both_working(rec: emocam.Recognizer,
                                                                               photo: np.ndarray, clip: Path) -> None:
    frames = rec.stream(clip)
    first, _ = next(frames)
    refused(lambda: rec(photo), "stream", "close")
    refused(lambda: next(rec.stream(clip)), "stream", "close")
    assert [f.index for f, _ in frames][:3] == [1, 2, 3]  # the stream went on untouched
    assert len(rec(photo)) == 1  # once it ended, calls are taken again
    frames = rec.stream(clip)
    next(frames)
    frames.close()  # closed early: free again at once
    assert len(rec(photo)) == 1
