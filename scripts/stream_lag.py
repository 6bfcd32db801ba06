"""How far behind a live stream emocam falls when the stream decodes slower than it arrives.

Makes a 4K 60 fps H.264 clip (upscaled from a clip with faces, cached), serves it on loopback in real time and looped,
as a live server does (packets remuxed into MPEG-TS over TCP, paced by their timestamps, never re-encoded), and runs
emocam's Recognizer on it for a while: the lag of each frame it hands out (wall time since the stream began minus the
frame's stream time), at intervals and at most, and the frames the reader dropped to stay live.

    python scripts/stream_lag.py --seconds 60            # emocam's stream reader
    python scripts/stream_lag.py --seconds 60 --reader opencv   # the OpenCV grabber it replaced, for comparison
"""

from __future__ import annotations

import argparse
import itertools
import socket
import struct
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT.parent / "shared" / "data" / "videos" / "WolfgangLanger_Pexels.mp4"


def make_clip(path: Path, width: int, height: int, fps: int, seconds: float, gop: int, source: Path = FACES) -> Path:
    """An H.264 clip of ``source``'s first frames scaled to width x height, played at ``fps`` with a key frame every
    ``gop`` frames; kept at ``path`` and reused when it is there."""
    if path.is_file():
        return path
    partial = path.with_suffix(".partial.mp4")
    with av.open(str(source)) as inp, av.open(str(partial), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(gop), "keyint_min": str(gop),
                          "sc_threshold": "0"}
        frames = int(seconds * fps)
        for i, frame in enumerate(inp.decode(video=0)):
            if i == frames:
                break
            scaled = frame.reformat(width=width, height=height, format="yuv420p")
            scaled.pts, scaled.time_base = i, Fraction(1, fps)
            out.mux(stream.encode(scaled))
        out.mux(stream.encode(None))
    partial.rename(path)
    return path


class LoopServer:
    """Serves a clip on 127.0.0.1 as a live TCP stream (MPEG-TS), looped, in real time from each client's connection
    (``started``: when each began, time.monotonic); ``url`` is where to read it. With ``quiet_after_s`` it stops
    sending after that long but keeps the connection open, as a hung server does; with ``loops`` it ends the stream
    after sending the clip that many times, closing the connection as a finite stream does. A context manager;
    closing it resets every connection still open, as a server that goes away does."""

    def __init__(self, clip: Path, quiet_after_s: float | None = None, loops: int | None = None) -> None:
        self.clip = clip
        self.quiet_after_s = quiet_after_s
        self.loops = loops
        self.started: list[float] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.url = f"tcp://127.0.0.1:{self._server.getsockname()[1]}"
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, name="stream-server", daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._send, args=(conn,), name="stream-client", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _send(self, conn: socket.socket) -> None:
        try:
            # Reset, not closed in order, when the server goes away (close); a finite stream's end closes in order.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with conn, conn.makefile("wb") as wire, av.open(str(self.clip)) as inp, \
                    av.open(wire, "w", format="mpegts") as out:
                src = inp.streams.video[0]
                dst = out.add_stream_from_template(src)
                packets = [p for p in inp.demux(src) if p.dts is not None]
                tb = src.time_base
                first = packets[0].dts
                span = packets[-1].dts - first + (packets[1].dts - packets[0].dts)  # one loop, in time_base units
                start, shift = time.monotonic(), 0
                self.started.append(start)
                for _ in itertools.repeat(None) if self.loops is None else range(self.loops):
                    for packet in packets:
                        due = start + float((packet.dts - first + shift) * tb)
                        if self.quiet_after_s is not None and due - start > self.quiet_after_s:
                            self._stop.wait()
                            return
                        wait = due - time.monotonic()
                        if (wait > 0 and self._stop.wait(wait)) or self._stop.is_set():
                            return
                        copy = av.Packet(bytes(packet))
                        copy.pts, copy.dts = packet.pts + shift, packet.dts + shift
                        copy.time_base, copy.stream = tb, dst
                        if packet.is_keyframe:
                            copy.is_keyframe = True
                        out.mux(copy)
                        wire.flush()
                    shift += span
                # The whole stream sent: closed in order, every byte delivered before the end.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 0, 0))
        except (OSError, av.error.FFmpegError):
            return  # the client went away

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        for thread in self._threads:
            thread.join(timeout=2.0)

    def __enter__(self) -> "LoopServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def lags(rec, source, seconds: float, started: list[float], every_s: float) -> dict:
    """Run a Recognizer on an opened live source for ``seconds``: the lag of each frame it hands out with its faces,
    printed every ``every_s`` (the latest and the largest since the last line), and the run's figures."""
    worst, window, frames, faces_seen = 0.0, 0.0, 0, 0
    t0 = time.monotonic()
    next_line = t0 + every_s
    for frame, faces in rec.stream(source):
        now = time.monotonic()
        lag = now - started[-1] - frame.stream_s  # the server's clock: wall time since the stream began
        frames += 1
        faces_seen += len(faces)
        window, worst = max(window, lag), max(worst, lag)
        if now >= next_line:
            print(f"{now - t0:6.1f} s  {frames:5d} frames  lag {lag:5.2f} s  (max {window:5.2f} s since the last "
                  f"line)  dropped {source.dropped}", flush=True)
            window, next_line = 0.0, next_line + every_s
        if now - t0 >= seconds:
            break
    return {"frames": frames, "faces": faces_seen, "max_lag_s": worst, "dropped": source.dropped}


def main() -> None:
    from emocam import Recognizer
    from emocam.recognizer import quiet_native_stderr
    from emocam.sources import LiveCapture, LiveStream

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to read the stream")
    parser.add_argument("--reader", choices=("pyav", "opencv"), default="pyav",
                        help="pyav: emocam's stream reader; opencv: an OpenCV grabber reading every frame")
    parser.add_argument("--size", default="3840x2160")
    parser.add_argument("--fps", type=int, default=60)
    parser.add_argument("--gop", type=int, default=60, help="frames from one key frame to the next")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between printed lines")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "emocam-stream-lag")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    args.cache.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    clip = make_clip(args.cache / f"faces_{width}x{height}_{args.fps}fps_gop{args.gop}.mp4", width, height, args.fps,
                     4.0, args.gop)
    print(f"clip {clip} ({time.monotonic() - t0:.0f} s to make or find)", flush=True)
    quiet_native_stderr()
    with Recognizer() as rec, LoopServer(clip) as server:
        if args.reader == "pyav":
            source = LiveStream(server.url)
        else:
            ms = 10_000  # as emocam gave up on a stream before its own reader: 10 s to connect and for each read
            capture = cv2.VideoCapture(server.url, cv2.CAP_FFMPEG,
                                       [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
            source = LiveCapture(capture, f"stream {server.url}", stall_s=10.0)
        with source:
            print(f"{args.reader} reader on {server.url}: {width}x{height} at {source.fps:g} fps, "
                  f"{args.seconds:g} s", flush=True)
            figures = lags(rec, source, args.seconds, server.started, args.every)
    print(f"{args.reader}: {figures['frames']} frames ({figures['faces']} faces) in {args.seconds:g} s, max lag "
          f"{figures['max_lag_s']:.2f} s, {figures['dropped']} frames dropped undecoded")


if __name__ == "__main__":
    main()
