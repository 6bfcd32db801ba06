"""emocam serve as a client meets it: the real server on a free loopback port, a real HTTP client, and a real browser.

One API server and one live server are shared by the tests of this module (each starts in a few seconds); the tests
that must stop a server, or that must see it refuse to start, start their own."""

from __future__ import annotations

import base64
import concurrent.futures
import csv
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from importlib.metadata import version
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

httpx = pytest.importorskip("httpx", reason="the test extra installs httpx")
pytest.importorskip("fastapi", reason="emocam's serve extra is not installed")

import emocam  # noqa: E402
from emocam.backends import open_backend  # noqa: E402
from emocam.overlay import PALETTE  # noqa: E402
from emocam.records import csv_cells  # noqa: E402
from emocam.serve import Refused, ServeOptions  # noqa: E402
from emocam.serve.analysis import SharedModel, analyze  # noqa: E402
from emocam.serve.uploads import Deadline, Scratch, Upload  # noqa: E402
from emocam.sources import MAX_ASPECT  # noqa: E402
from conftest import run_command, says  # noqa: E402

ROOT = Path(__file__).parents[1]
TOKEN = "a-token-long-enough-to-keep"
# The API server's limits, small enough for the tests to cross each one cheaply.
LIMITS = ("--max-upload-mb", "2", "--max-megapixels", "4", "--max-video-s", "5", "--threads", "2", "--queue", "2")
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``emocam serve`` in a child process, started with ``args``; ``url`` once every worker said it is ready."""

    def __init__(self, *args: object, ready_lines: int = 1, timeout: float = 120, cwd: Path | None = None) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "emocam.cli", "serve", *map(str, args)],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
        self.lines: list[str] = []
        self.ready: list[str] = []
        got = threading.Event()

        def read() -> None:
            for line in self.process.stderr:
                self.lines.append(line)
                if m := re.search(r"ready at (http://\S+)/ \(pid (\d+)", line):
                    self.ready.append(m.group(1))
                    if len(self.ready) == ready_lines:
                        got.set()
            got.set()

        threading.Thread(target=read, daemon=True).start()
        if not got.wait(timeout) or len(self.ready) < ready_lines:
            self.stop()
            raise AssertionError(f"emocam serve did not start:\n{''.join(self.lines)}")
        self.url = self.ready[0]

    def stop(self) -> int:
        """SIGTERM, then the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        finally:
            if self.process.poll() is None:
                self.process.kill()


@pytest.fixture(scope="module")
def api(shared: Path):
    """The API server: the shipped model, the full-range detector (multi_face.jpg's small faces), small limits, a
    token, on a port chosen here."""
    port = free_port()
    server = Server("--port", port, "--detector", "full", "--token", TOKEN, *LIMITS)
    assert server.url == f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as client:
        yield client
    code = server.stop()
    assert code == 128 + signal.SIGTERM and "Traceback" not in "".join(server.lines), "".join(server.lines)


@pytest.fixture(scope="module")
def reference(shared: Path):
    """Recognizer in this process with the API server's options."""
    with emocam.Recognizer(detector="full") as rec:
        yield rec


def healthy(client: httpx.Client) -> None:
    answer = client.get("/v1/health")
    assert answer.status_code == 200 and answer.json()["status"] == "ok"


# --- what the API answers -------------------------------------------------------------------------------------------

def test_multi_face_jpg_gives_the_faces_and_labels_of_recognizer(api: httpx.Client, reference: emocam.Recognizer,
                                                                  shared: Path) -> None:
    path = shared / "images" / "multi_face.jpg"
    expected = reference(path)
    raw = api.post("/v1/analyze", content=path.read_bytes(), headers={"Content-Type": "image/jpeg"})
    form = api.post("/v1/analyze", files={"file": ("x.jpg", path.read_bytes(), "image/jpeg")})
    for answer in (raw, form):
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["kind"] == "image" and (body["width"], body["height"]) == (1000, 667) and body["faces"] == 5
        rows = body["records"]
        assert [r["face_id"] for r in rows] == expected.track_ids.tolist()
        assert [r["label"] for r in rows] == [reference.classes[k] for k in expected.labels]
        np.testing.assert_allclose([[r["x"], r["y"], r["w"], r["h"]] for r in rows], expected.boxes, atol=0.06)
        np.testing.assert_allclose([[r[f"p_{c}"] for c in reference.classes] for r in rows], expected.probs,
                                   atol=6e-5)


def test_a_clip_gives_the_rows_of_the_csv(api: httpx.Client, clip: Path, tmp_path: Path) -> None:
    result = run_command("emocam", "--video", clip, "--csv", tmp_path / "clip.csv", "--detector", "full", "--no-display")
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "clip.csv", newline="") as f:
        header, *rows = list(csv.reader(f))
    answer = api.post("/v1/analyze", content=clip.read_bytes(), headers={"Content-Type": "video/mp4"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    classes = tuple(name[2:] for name in header if name.startswith("p_"))
    assert body["kind"] == "video" and body["frames"] == 72 and len(rows) == 72
    assert [list(record) for record in body["records"]] == [header] * len(rows)
    assert [csv_cells(record, classes) for record in body["records"]] == rows


def test_every_frame_adds_the_frames_without_a_face(api: httpx.Client) -> None:
    classes = api.get("/v1/schema").json()["classes"]
    blank = cv2.imencode(".png", np.full((120, 160, 3), 90, np.uint8))[1].tobytes()
    assert api.post("/v1/analyze", content=blank, headers={"Content-Type": "image/png"}).json()["records"] == []
    rows = api.post("/v1/analyze?every_frame=true", content=blank, headers={"Content-Type": "image/png"}).json()
    assert rows["records"] == [dict.fromkeys(emocam.columns(classes)) | {"frame": 0, "timestamp_s": 0.0}]


def test_an_analysis_past_its_deadline_is_refused_with_504(reference: emocam.Recognizer, clip: Path) -> None:
    with Scratch() as scratch:
        with pytest.raises(Refused) as refused:
            analyze(reference, Upload(clip.read_bytes(), "video"), ServeOptions(), scratch, Deadline(0.0))
        assert not list(scratch.path.iterdir())  # the upload's file is gone
    assert refused.value.status == 504 and "--request-timeout" in refused.value.message


def test_schema_is_the_csv_header_and_health_the_options(api: httpx.Client) -> None:
    schema = api.get("/v1/schema").json()
    assert [c["name"] for c in schema["columns"]] == emocam.columns(schema["classes"])
    assert {c["name"]: c["type"] for c in schema["columns"]}["face_id"] == "integer"
    health = api.get("/v1/health").json()
    assert health["model"] == "emocam.onnx" and health["classes"] == schema["classes"] and health["uptime_s"] >= 0
    assert health["options"]["detector"] == "full" and health["threads"] == 2 and health["queue"] == 2
    assert health["limits"] == {"max_upload_mb": 2, "max_megapixels": 4, "max_video_s": 5, "request_timeout_s": 60}
    assert health["version"] == version("emocam") and health["live"] is None


def test_the_openapi_description_is_valid_and_names_every_endpoint(api: httpx.Client) -> None:
    from openapi_spec_validator import validate

    spec = api.get("/v1/openapi.json").json()
    validate(spec)
    assert {"/v1/analyze", "/v1/health", "/v1/schema", "/v1/stream.mjpg", "/v1/events"} <= set(spec["paths"])
    body = spec["paths"]["/v1/analyze"]["post"]["requestBody"]["content"]
    assert {"image/*", "video/*", "multipart/form-data"} <= set(body)


def test_faces_of_concurrent_calls_share_model_calls(tiny_model: Path) -> None:
    backend = open_backend(tiny_model, "onnxruntime")
    shared = SharedModel(backend)
    rng = np.random.default_rng(0)
    busy = rng.random((6000, 1, 48, 48), np.float32)  # keeps the model busy while the others ask
    asks = [rng.random((n, 1, 48, 48), np.float32) for n in (1, 2, 3, 1, 4, 1, 2, 1)]
    try:
        first = threading.Thread(target=shared.predict, args=(busy,))
        first.start()
        time.sleep(0.05)
        with concurrent.futures.ThreadPoolExecutor(len(asks)) as pool:
            answers = list(pool.map(shared.predict, asks))
        first.join()
    finally:
        shared.close()
    for ask, answer in zip(asks, answers):
        np.testing.assert_allclose(answer, backend.predict(ask), atol=1e-6)
    assert shared.faces == len(busy) + sum(map(len, asks))
    assert shared.calls <= 3, f"{len(asks) + 1} callers took {shared.calls} model calls"


# --- what the API refuses -------------------------------------------------------------------------------------------

def png(width: int, height: int) -> bytes:
    """A PNG whose header says ``width`` x ``height`` (8-bit grey), with a few bytes of data: what a decompression
    bomb shows before it is decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def bad_inputs(shared: Path, clip: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """Each bad input: (status, what the error says, request keywords for httpx)."""
    jpeg = (shared / "images" / "multi_face.jpg").read_bytes()
    folder = tmp_path_factory.mktemp("long")
    longer = folder / "longer.mp4"  # the clip three times over: 7.2 s
    reader, writer = cv2.VideoCapture(str(clip)), cv2.VideoWriter(str(longer), cv2.VideoWriter_fourcc(*"mp4v"), 30,
                                                                 (640, 360))
    frames = [f for ok, f in iter(reader.read, (False, None)) if ok]
    for frame in frames * 3:
        writer.write(frame)
    writer.release()
    front = folder / "front.mp4"  # the clip with its index at the front, so that its first half still plays
    with av.open(str(clip)) as source, av.open(str(front), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    cut = front.read_bytes()[: front.stat().st_size // 2]
    thin = cv2.imencode(".png", np.zeros((1, 100_000), np.uint8))[1].tobytes()
    image = {"Content-Type": "image/jpeg"}
    return {
        "not an image": (400, "not an image", dict(content=b"hello, I am text", headers=image)),
        "zero bytes": (400, "empty", dict(content=b"", headers=image)),
        "truncated": (400, "truncated", dict(content=jpeg[: len(jpeg) // 2], headers=image)),
        "huge": (413, "--max-upload-mb", dict(content=os.urandom(3_000_000), headers=image)),
        "huge, no length": (413, "--max-upload-mb", dict(content=iter([b"\0" * 500_000] * 6), headers=image)),
        "too many pixels": (413, "--max-megapixels", dict(content=png(5000, 5000), headers={"Content-Type": "image/png"})),
        "decompression bomb": (413, "megapixels", dict(content=png(32000, 32000), headers={"Content-Type": "image/png"})),
        "a thin strip": (400, f"more than {MAX_ASPECT} times wider", dict(content=thin,
                                                                        headers={"Content-Type": "image/png"})),
        "a side too long": (400, "a side longer", dict(content=png(17_000, 1_100), headers={"Content-Type": "image/png"})),
        "wrong content type": (415, "text/plain", dict(content=jpeg, headers={"Content-Type": "text/plain"})),
        "json": (415, "application/json", dict(json={"path": str(shared / "images" / "multi_face.jpg")})),
        "no content type": (415, "Content-Type", dict(content=jpeg)),
        "a path in a field": (400, "'path'", dict(data={"path": str(shared / "images" / "multi_face.jpg")},
                                                 files={"file": ("a.txt", b"", "application/octet-stream")})),
        "a path as the file": (400, "neither an image nor a video", dict(
            files={"file": ("multi_face.jpg", str(shared / "images" / "multi_face.jpg").encode(),
                            "application/octet-stream")})),
        "two files": (400, "one file", dict(files=[("file", ("a.jpg", jpeg, "image/jpeg")),
                                                   ("file", ("b.jpg", jpeg, "image/jpeg"))])),
        "not a video": (400, "neither an image nor a video", dict(content=os.urandom(5000),
                                                                 headers={"Content-Type": "video/mp4"})),
        "a cut video": (400, "the video ended early", dict(content=cut, headers={"Content-Type": "video/mp4"})),
        "too long a video": (413, "--max-video-s", dict(content=longer.read_bytes(), headers={"Content-Type": "video/mp4"})),
        "a bad query": (422, "every_frame", dict(params={"every_frame": "perhaps"}, content=jpeg, headers=image)),
    }


BAD = ["not an image", "zero bytes", "truncated", "huge", "huge, no length", "too many pixels", "decompression bomb",
       "a thin strip", "wrong content type", "json", "no content type", "a path in a field", "a path as the file",
       "two files", "not a video", "a cut video", "too long a video", "a bad query"]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_gets_its_4xx_and_the_server_goes_on(api: httpx.Client, bad_inputs: dict, case: str) -> None:
    status, says, request = bad_inputs[case]
    answer = api.post("/v1/analyze", **request)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert says in error and "\n" not in error and "/tmp" not in error, error
    if case == "a cut video":  # with the records of the frames before the cut
        assert 0 < answer.json()["frames"] < 72 and len(answer.json()["records"]) == answer.json()["frames"]
    healthy(api)


def test_a_client_that_leaves_mid_upload_leaves_the_server_serving(api: httpx.Client) -> None:
    host, port = str(api.base_url).removeprefix("http://").rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(f"POST /v1/analyze HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                  f"Content-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n".encode() + b"\xff\xd8" * 50)
        time.sleep(0.3)
    healthy(api)  # and the server's log stays free of tracebacks (checked when the module's server stops)


def test_a_full_queue_answers_503_with_retry_after(api: httpx.Client, shared: Path) -> None:
    jpeg = (shared / "images" / "multi_face.jpg").read_bytes()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: api.post("/v1/analyze", content=jpeg, headers={"Content-Type": "image/jpeg"}),
                                range(16)))
    codes = [a.status_code for a in answers]
    assert set(codes) == {200, 503} and codes.count(200) >= 4, codes  # 2 threads + 2 waiting
    busy = next(a for a in answers if a.status_code == 503)
    assert busy.headers["Retry-After"] == "1" and "busy" in busy.json()["error"]
    healthy(api)


def test_a_wrong_or_missing_token_gets_401(api: httpx.Client) -> None:
    url = str(api.base_url)
    for headers in ({"Authorization": "Bearer not-the-token"}, {"Authorization": f"Basic {TOKEN}"}, {}):
        answer = httpx.get(f"{url}/v1/health", headers=headers)
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == "Bearer", answer.text
        assert "token" in answer.json()["error"]
    assert httpx.get(f"{url}/?token=wrong").status_code == 401
    link = httpx.get(f"{url}/?token={TOKEN}")  # the link that gives a browser its cookie
    assert link.status_code == 303 and link.cookies.get("emocam_token") == TOKEN
    assert httpx.get(f"{url}/v1/health", cookies={"emocam_token": TOKEN}).status_code == 200
    page = httpx.get(url + "/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["Content-Security-Policy"]


def test_the_page_loads_nothing_from_the_internet() -> None:
    static = ROOT / "realtime" / "serve" / "static"
    for path in static.iterdir():
        assert not re.search(r"(src|href|url)\s*[=(]\s*[\"']?(https?:)?//", path.read_text()), path


# --- what refuses to start ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (("--host", "0.0.0.0"), "give --token"),
    (("--host", "0.0.0.0", "--token", "short"), "at least 16 characters"),
    (("--source", "0", "--workers", "2"), "one process"),
    (("--source", "no/such/clip.mp4"), "not found"),
    (("--model", "no/such/model.onnx"), "model file not found"),
])
def test_what_must_not_start_is_told_in_one_line(args: tuple, message: str) -> None:
    result = run_command("emocam", "serve", "--port", 0, *args)
    says(result, message)
    assert result.returncode == 2


def test_without_the_serve_extra_the_command_says_how_to_install_it() -> None:
    code = ("import sys; sys.modules['fastapi'] = None; sys.argv = ['emocam', 'serve', '--port', '0']; "
            "from emocam.cli import main; main()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    says(result, "fastapi is not installed; pip install 'emocam[serve]'")


def test_a_port_in_use_is_told_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_command("emocam", "serve", "--port", taken.getsockname()[1])
    says(result, "cannot listen on 127.0.0.1")


def test_workers_share_the_port_and_sigterm_lets_requests_in_flight_end(clip: Path, tiny_model: Path) -> None:
    # With every recognizer option set otherwise than its default: each reaches the recognizers of every worker.
    server = Server("--port", 0, "--workers", 2, "--threads", 1, "--model", tiny_model, "--backend", "onnxruntime",
                    "--reading", "stills", "--detector", "full", "--min-score", "0.6", "--tau", "0.7",
                    "--hysteresis", "0.2", "--batch-frames", "3", ready_lines=2)
    try:
        with httpx.Client(base_url=server.url, limits=httpx.Limits(max_keepalive_connections=0)) as fresh:
            healths = {}
            for _ in range(300):  # a connection each, until both workers have answered (the kernel picks who accepts)
                health = fresh.get("/v1/health").json()
                healths[health["pid"]] = health
                if len(healths) == 2:
                    break
        assert len(healths) == 2, list(healths)
        for health in healths.values():
            assert health["options"] == {"model": str(tiny_model), "detector": "full", "min_score": 0.6,
                                         "backend": "onnxruntime", "device": 0, "tau": 0.7, "hysteresis": 0.2,
                                         "batch_frames": 3, "reading": "stills", "max_frames": None,
                                         "duration_s": None}
            assert health["model"] == "tiny.onnx" and health["threads"] == 1
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            flight = pool.submit(httpx.post, f"{server.url}/v1/analyze", content=clip.read_bytes(),
                                 headers={"Content-Type": "video/mp4"}, timeout=120)
            time.sleep(0.5)  # under way
            server.process.send_signal(signal.SIGTERM)
            answer = flight.result()
        assert answer.status_code == 200 and len(answer.json()["records"]) == 72, answer.text
        assert server.process.wait(60) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/v1/health")
    finally:
        server.stop()
    assert "Traceback" not in "".join(server.lines)


# --- the live source and the page -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def live(shared: Path):
    """A server playing the sample clip as its live source, again and again, behind a token; a short request
    timeout."""
    server = Server("--port", 0, "--source", "samples/single_face.mp4", "--detector", "full", "--token", TOKEN,
                    "--request-timeout", "3", cwd=ROOT)
    yield server
    assert server.stop() == 128 + signal.SIGTERM


def test_events_carry_each_frames_records_with_its_stream_time(live: Server) -> None:
    events = []
    with httpx.stream("GET", f"{live.url}/v1/events", headers={"Authorization": f"Bearer {TOKEN}"},
                      timeout=30) as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in answer.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
            if sum(n == "records" for n, _ in events) >= 20:
                break
    assert events[0][0] == "status" and events[0][1]["state"] in ("starting", "playing")
    frames = [data for name, data in events if name == "records"]
    times = [f["t"] for f in frames]
    assert times == sorted(times) and times[-1] > times[0]
    assert all(0 <= f["timestamp_s"] <= 2.4 and f["records"][0]["face_id"] == 0 for f in frames if f["records"])
    assert sum(bool(f["records"]) for f in frames) >= 15
    assert set(frames[-1]["records"][0]) == set(emocam.columns(tuple(
        k[2:] for k in frames[-1]["records"][0] if k.startswith("p_"))))


def test_the_mjpeg_stream_sends_annotated_frames(live: Server, clip: Path) -> None:
    with httpx.stream("GET", f"{live.url}/v1/stream.mjpg", headers={"Authorization": f"Bearer {TOKEN}"},
                      timeout=30) as answer:
        assert answer.headers["content-type"] == "multipart/x-mixed-replace; boundary=frame"
        data = b""
        for chunk in answer.iter_bytes():
            data += chunk
            if data.count(b"--frame") >= 3:
                break
    part = data.split(b"--frame")[1]
    image = cv2.imdecode(np.frombuffer(part.split(b"\r\n\r\n", 1)[1], np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (360, 640, 3)
    # The rate at which frames come, white on black at the top left as in the preview window, is not in the clip.
    first = cv2.VideoCapture(str(clip)).read()[1]
    corner = (slice(0, 16), slice(0, 46))
    dark = lambda im: int((im[corner].max(axis=2) < 40).sum())  # noqa: E731
    light = lambda im: int((im[corner].min(axis=2) > 180).sum())  # noqa: E731
    assert dark(image) > 300 and light(image) > 5 and dark(first) == light(first) == 0
    # The overlay: face 0's box, label and bars in its colour, which the clip does not hold.
    coloured = lambda im: int((np.abs(im.astype(int) - PALETTE[0]).max(axis=2) < 40).sum())  # noqa: E731
    assert coloured(image) > 500 and coloured(first) == 0


def test_a_slow_upload_gets_408(live: Server) -> None:
    host, port = live.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(f"POST /v1/analyze HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                  f"Content-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n".encode() + b"\xff\xd8" * 50)
        started = time.monotonic()
        reply = b""
        while not reply.endswith(b"}"):  # the status line, the headers, then the JSON body
            reply += s.recv(65536) or b"}"
        reply = reply.decode(errors="replace")
    assert reply.startswith("HTTP/1.1 408") and "--request-timeout" in reply, reply
    assert 2.5 < time.monotonic() - started < 10


def test_the_page_in_a_real_browser(live: Server, shared: Path) -> None:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="the test extra installs selenium")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(str(CHROMEDRIVER)), options=options)
    wait = WebDriverWait(driver, 30, poll_frequency=0.1)
    try:
        driver.get(f"{live.url}/?token={TOKEN}")
        label = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#faces .face .label").text)
        assert label in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral") or label.startswith("(")
        bars = lambda d: d.execute_script(  # noqa: E731 - the bars' drawn widths, in pixels
            "return [...document.querySelectorAll('#faces .face .fill')].map(e => e.getBoundingClientRect().width)")
        before = bars(driver)
        assert len(before) == 7 and max(before) > 20
        assert wait.until(lambda d: bars(d) != before)  # the bars move with the stream
        frame = lambda d: d.find_element(By.ID, "frame-count").text  # noqa: E731
        seen = frame(driver)
        assert wait.until(lambda d: frame(d) != seen)
        assert wait.until(lambda d: d.execute_script("return document.getElementById('video').naturalWidth")) == 640
        painted = ("const c = document.querySelector('.timeline canvas');"
                   "return c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some(v => v > 0)")
        assert wait.until(lambda d: d.execute_script(painted))

        photo = base64.b64encode((shared / "images" / "multi_face.jpg").read_bytes()).decode()
        driver.execute_script("""
            const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));
            const data = new DataTransfer();
            data.items.add(new File([bytes], 'multi_face.jpg', {type: 'image/jpeg'}));
            const zone = document.getElementById('dropzone');
            for (const type of ['dragover', 'drop'])
                zone.dispatchEvent(new DragEvent(type, {dataTransfer: data, bubbles: true, cancelable: true}));
        """, photo)
        dropped = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#drop-result .face"))
        assert len(dropped) == 5 and all(f.find_element(By.CLASS_NAME, "label").text for f in dropped)
        assert "5 faces" in driver.find_element(By.ID, "drop-status").text
        assert driver.find_element(By.ID, "drop-canvas").is_displayed()
        if "EMOCAM_SERVE_SCREENSHOT" in os.environ:  # how docs/serve.png is made: after half a minute of timeline
            time.sleep(30)
            driver.set_window_size(1280, 1500)
            driver.save_screenshot(os.environ["EMOCAM_SERVE_SCREENSHOT"])

        driver.set_window_size(390, 844)  # a phone: one column, nothing wider than the screen
        assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        driver.quit()


def test_the_listening_socket_says_tcp_so_that_responses_are_not_held_back() -> None:
    from emocam.serve.server import listening_socket

    # asyncio turns Nagle's algorithm off only on sockets made with IPPROTO_TCP; without it a keep-alive client
    # waited 40 ms (its delayed ACK) for every answer written in two parts.
    with listening_socket("127.0.0.1", 0) as sock:
        assert sock.proto == socket.IPPROTO_TCP
