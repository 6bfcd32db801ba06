"""Soak: a clip looped for a long run through the CLI's sinks (summary with its plot, CSV), printing the process's
resident memory as it goes, to show that memory stays bounded however long the video is.

    python scripts/soak.py samples/single_face.mp4 --frames 20000 --csv /tmp/soak.csv --plot /tmp/soak.png
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Iterator

from emocam import CsvSink, Recognizer, Summary
from emocam.faces import Frame
from emocam.sinks import Sink
from emocam.sources import Source, VideoFile


def rss_mb() -> float:
    """Resident memory of this process in MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


class Looped(Source):
    """A video file played again and again up to ``frames`` frames, times running on across the loops."""

    live = False

    def __init__(self, path: Path, frames: int) -> None:
        self.path, self.frame_count, self.decode_s = path, frames, 0.0
        with VideoFile(path) as probe:
            self.name, self.fps = str(path), probe.fps

    def __iter__(self) -> Iterator[Frame]:
        index, offset = 0, 0.0
        while index < self.frame_count:
            with VideoFile(self.path) as clip:
                last = 0.0
                for frame in clip:
                    if index == self.frame_count:
                        return
                    last = frame.timestamp_s
                    yield Frame(index, offset + last, frame.image)
                    index += 1
                self.decode_s += clip.decode_s
            offset += last + 1.0 / self.fps

    def close(self) -> None:
        pass


class Memory(Sink):
    """A sink that records (frame, seconds, RSS MB) every ``every`` frames."""

    def __init__(self, every: int) -> None:
        self.every, self.start, self.rows = every, time.monotonic(), []

    def write(self, frame: Frame, faces) -> None:
        if frame.index % self.every == 0:
            self.rows.append((frame.index, time.monotonic() - self.start, rss_mb()))
            print(f"{frame.index:>8} frames {self.rows[-1][1]:>7.1f} s {self.rows[-1][2]:>7.1f} MB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", type=Path)
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--csv", type=Path, required=True)
    parser.add_argument("--plot", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=None)
    args = parser.parse_args()
    memory = Memory(args.every)
    with Recognizer(args.model, backend="onnxruntime") as rec, Summary(rec.classes, None, args.plot) as summary, \
            CsvSink(args.csv, rec.classes) as csv:
        rec.run(Looped(args.clip, args.frames), [summary, csv, memory])
    first = next((r for r in memory.rows if r[1] >= 60.0), memory.rows[-1])
    end = rss_mb()
    print(f"RSS after the first minute {first[2]:.1f} MB (frame {first[0]}), at the end {end:.1f} MB: "
          f"{100 * (end / first[2] - 1):+.1f}%")


if __name__ == "__main__":
    main()
