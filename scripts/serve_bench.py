"""emocam serve under load, beside Recognizer alone: requests per second and p50/p95 latency for a single-face
640x360 JPEG at concurrency 1, 4 and 16, then a long run at concurrency 16 that counts the answers by status and
follows the server's resident memory.

    python scripts/serve_bench.py                      # 300 requests a level, then 2,000 at concurrency 16
    python scripts/serve_bench.py --requests 100 --long 0 -- --threads 4 --workers 2   # after --: serve's options

Recognizer alone runs first, in this process (decode the JPEG, find and classify the face, make the records: what the
server does for each request), then the server starts in its own process and the clients run here, in threads.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import cv2
import httpx
import numpy as np

import emocam

ROOT = Path(__file__).parents[1]
LEVELS = (1, 4, 16)


def single_face_jpeg() -> bytes:
    """The sample clip's first frame (640x360, one face) as a JPEG of quality 90."""
    capture = cv2.VideoCapture(str(ROOT / "samples" / "single_face.mp4"))
    ok, frame = capture.read()
    capture.release()
    assert ok and frame.shape == (360, 640, 3)
    return cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def figures(latencies: list[float], wall_s: float, codes: Counter) -> dict:
    ms = np.array(latencies) * 1e3
    return {"requests": len(latencies), "per_s": round(len(latencies) / wall_s, 2),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "codes": dict(sorted(codes.items()))}


def recognizer_alone(jpeg: bytes, requests: int) -> dict:
    """Recognizer in this process, one image after another."""
    with emocam.Recognizer() as rec:
        latencies = []
        for i in range(requests + 10):
            t0 = time.perf_counter()
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            rows = emocam.records(emocam.Frame(0, 0.0, image), rec(image), rec.classes)
            assert len(rows) == 1
            if i >= 10:  # the first few warm the caches
                latencies.append(time.perf_counter() - t0)
    return figures(latencies, sum(latencies), Counter({200: len(latencies)}))


class Server:
    """emocam serve in its own process on a free port; ``rss_mb`` sums the resident memory of it and its workers."""

    def __init__(self, args: list[str]) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "emocam.cli", "serve", "--port", "0", *args],
                                        stderr=subprocess.PIPE, text=True)
        self.url = None
        for line in self.process.stderr:
            if m := re.search(r"ready at (http://\S+)/", line):
                self.url = m.group(1)
                break
            print(line, end="", file=sys.stderr)
        if self.url is None:
            raise SystemExit("emocam serve did not start")
        threading.Thread(target=lambda: [None for _ in self.process.stderr], daemon=True).start()

    def rss_mb(self) -> float:
        pids = [self.process.pid]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:  # its ppid: a uvicorn worker
                pids.append(int(stat.parent.name))
        total = 0
        for pid in pids:
            try:
                total += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
            except OSError:
                pass
        return total * os.sysconf("SC_PAGE_SIZE") / 1e6

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)


def load(url: str, jpeg: bytes, concurrency: int, requests: int, every: int = 0,
         sample=None) -> tuple[dict, list[float]]:
    """``requests`` POSTs of ``jpeg`` from ``concurrency`` clients, each with its own connection; ``sample`` is called
    after every ``every`` answers."""
    latencies, codes, lock, done = [], Counter(), threading.Lock(), [0]
    samples = []
    local = threading.local()

    def one(_: int) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=120)
        t0 = time.perf_counter()
        try:
            code = local.client.post("/v1/analyze", content=jpeg, headers={"Content-Type": "image/jpeg"}).status_code
        except httpx.HTTPError as e:
            code = type(e).__name__
        with lock:
            latencies.append(time.perf_counter() - t0)
            codes[code] += 1
            done[0] += 1
            if every and done[0] % every == 0:
                samples.append(sample())

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(requests)))
    return figures(latencies, time.perf_counter() - start, codes), samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests at each concurrency level")
    parser.add_argument("--long", type=int, default=2000, help="requests of the long run at concurrency 16 (0: none)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("serve_args", nargs="*", help="emocam serve's options, after --")
    args = parser.parse_args()
    jpeg = single_face_jpeg()
    report = {"image": "samples/single_face.mp4 frame 0, 640x360 JPEG q90", "serve_args": args.serve_args,
              "cpus": os.cpu_count()}
    report["recognizer_alone"] = alone = recognizer_alone(jpeg, args.requests)
    print(f"Recognizer alone: {alone['per_s']} images/s, p50 {alone['p50_ms']} ms, p95 {alone['p95_ms']} ms",
          flush=True)
    server = Server(args.serve_args)
    try:
        load(server.url, jpeg, 4, 40)  # warm-up
        report["levels"] = {}
        for concurrency in LEVELS:
            result, _ = load(server.url, jpeg, concurrency, args.requests)
            result["vs_alone"] = round(result["per_s"] / alone["per_s"], 2)
            report["levels"][str(concurrency)] = result
            print(f"concurrency {concurrency:>2}: {result['per_s']} requests/s ({result['vs_alone']}x Recognizer "
                  f"alone), p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms, answers {result['codes']}",
                  flush=True)
        if args.long:
            result, memory = load(server.url, jpeg, 16, args.long, every=max(args.long // 20, 1),
                                  sample=server.rss_mb)
            warm = memory[len(memory) // 10:]  # after the first tenth of the run
            result["rss_mb"] = {"after_warmup": round(warm[0], 1), "end": round(memory[-1], 1),
                                "max": round(max(warm), 1), "samples": [round(m, 1) for m in memory]}
            report["long"] = result
            print(f"long run: {result['requests']} requests at concurrency 16, answers {result['codes']}, "
                  f"{result['per_s']} requests/s, p95 {result['p95_ms']} ms; server memory {warm[0]:.0f} MB after "
                  f"warm-up, {memory[-1]:.0f} MB at the end (max {max(warm):.0f})", flush=True)
        health = httpx.get(f"{server.url}/v1/health").json()
        report["model_calls"], report["faces_classified"] = health["model_calls"], health["faces_classified"]
        print(f"server: {health['faces_classified']} faces in {health['model_calls']} model calls "
              f"({health['faces_classified'] / max(health['model_calls'], 1):.2f} faces a call; this process's "
              f"figures, pid {health['pid']})")
    finally:
        server.stop()
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
