"""The preview window: a file plays at its own speed (--fast: as fast as it is processed), an image stays open until a
key is pressed. The window tests run on a virtual X display (Xvfb, with xdotool to press keys) where one is installed."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from emocam import cli
from emocam.faces import Faces, Frame
from emocam.sinks import Playback, Window


def test_playback_shows_each_frame_at_its_timestamp() -> None:
    clock = Playback()
    assert clock.wait_s(10.0) == 0.0  # the first frame sets the clock: shown at once
    time.sleep(0.1)
    assert clock.wait_s(10.5) == pytest.approx(0.4, abs=0.05)
    assert clock.wait_s(10.05) == 0.0  # a frame already late is shown at once, not skipped


@pytest.fixture(scope="module")
def display() -> str:
    """A virtual X display for the module's tests; skips where Xvfb or xdotool is not installed."""
    if not (shutil.which("Xvfb") and shutil.which("xdotool")):
        pytest.skip("Xvfb and xdotool are not installed")
    for number in range(90, 100):
        if not Path(f"/tmp/.X11-unix/X{number}").exists():
            break
    server = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "1280x720x24"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{number}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f":{number}"
    server.terminate()
    server.wait(timeout=10)


def frames(n: int, fps: float) -> list[tuple[Frame, Faces]]:
    return [(Frame(i, i / fps, np.full((120, 160, 3), 60, np.uint8)), Faces.empty()) for i in range(n)]


def shown_for(window: Window, n: int = 15, fps: float = 15.0) -> float:
    """Seconds the window takes to show ``n`` frames of a ``fps`` clip."""
    start = time.perf_counter()
    for frame, faces in frames(n, fps):
        window.write(frame, faces)
    return time.perf_counter() - start


def test_a_file_plays_at_its_own_speed_unless_fast(display: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", display)
    with Window("paced", pace=True) as paced:
        assert shown_for(paced) >= 14 / 15 - 0.02  # the 15th frame is due 14/15 s after the first
    with Window("fast", pace=False) as fast:
        assert shown_for(fast) < 0.5


def test_fast_reaches_the_window(display: str, clip: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("DISPLAY", display)
    made = []

    class Seen(Window):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(cli, "Window", Seen)
    for extra in ((), ("--fast",)):
        assert cli.run(["--video", str(clip), "--model", str(tiny_model), "--max-frames", "5", *extra]) == 0
    assert [w.clock is not None for w in made] == [True, False]


def xdotool(*args: str) -> None:
    subprocess.run(["xdotool", *args], check=True, capture_output=True)


def test_an_image_stays_open_until_a_key(display: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", display)
    window = Window("emocam photo", hold=True)
    window.write(*frames(1, 1.0)[0])
    found = subprocess.run(["xdotool", "search", "--name", "emocam photo"], capture_output=True, text=True)
    window_id = found.stdout.split()[0]
    pressed, closed = [], threading.Event()

    def press() -> None:  # from another thread: OpenCV takes keys only in the thread that shows the window
        time.sleep(1.0)
        pressed.append(time.perf_counter())
        xdotool("windowfocus", "--sync", window_id)
        xdotool("key", "--window", window_id, "x")
        if not closed.wait(5.0):  # the key did not close it: end the wait, and the test fails below
            xdotool("windowkill", window_id)

    helper = threading.Thread(target=press)
    helper.start()
    window.close()  # holds until the key
    closed.set()
    took = time.perf_counter() - pressed[0]
    helper.join()
    assert 0 <= took < 2.0
