"""Memory of a long emocam batch: each worker process's resident memory as the inputs go through, to show that it stays
flat however many inputs a worker takes.

    python scripts/batch_memory.py --copies 100 --workers 2          # 100 copies of the sample clip, shipped model

Copies, not links: a batch takes a file reached twice as one input. Prints a line every --every seconds (inputs done,
each worker's RSS) and at the end each worker's RSS after its first input and at its highest.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MB (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        return None


def workers(pid: int) -> list[int]:
    """The worker processes of batch process ``pid`` (its spawned children)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            try:
                if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(child)
            except OSError:
                continue
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=ROOT / "samples" / "single_face.mp4")
    parser.add_argument("--copies", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between printed lines")
    parser.add_argument("extra", nargs="*", help="more emocam batch options (after --)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="emocam-batch-memory-") as work:
        clips = Path(work) / "clips"
        clips.mkdir()
        for i in range(args.copies):
            shutil.copy(args.clip, clips / f"clip{i:04d}.mp4")
        out = Path(work) / "out"
        batch = subprocess.Popen([sys.executable, "-m", "emocam.cli", "batch", str(clips), "--out-dir", str(out),
                                  "--workers", str(args.workers), *args.extra], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True)
        start, next_line = time.monotonic(), 0.0
        seen: dict[int, list[tuple[int, float]]] = {}  # worker -> (inputs done then, RSS MB)
        while batch.poll() is None:
            index = out / "index.csv"
            done = max(index.read_text().count("\n") - 1, 0) if index.exists() else 0
            for pid in workers(batch.pid):
                rss = rss_mb(pid)
                if rss is not None:
                    seen.setdefault(pid, []).append((done, rss))
            now = time.monotonic() - start
            if now >= next_line:
                print(f"{now:6.0f} s  {done:4d} inputs done  " + "  ".join(
                    f"worker {pid}: {samples[-1][1]:5.0f} MB" for pid, samples in seen.items()), flush=True)
                next_line += args.every
            time.sleep(0.5)
        print(batch.stdout.read().strip())
        print(f"exit code {batch.returncode}, {time.monotonic() - start:.0f} s")
        for pid, samples in seen.items():
            after_first = [rss for done, rss in samples if done >= 1]
            if after_first:
                print(f"worker {pid}: {after_first[0]:.0f} MB after the first input, {min(after_first):.0f}-"
                      f"{max(after_first):.0f} MB from then on ({len(samples)} samples)")


if __name__ == "__main__":
    main()
