"""The summary sink: per face, seconds on screen and the share of each emotion, as a table, a JSON file and a plot
of each face's smoothed probabilities over time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

import numpy as np

from .faces import Faces, Frame
from .outputs import SinkError, Staged, tell
from .sinks import Sink


class Summary(Sink):
    """Per face: seconds on screen and the share of each emotion (by smoothed label); printed as a table,
    optionally saved as JSON and as a PNG of each face's smoothed probabilities over time. Frames in which a face
    failed the quality gate count apart, as uncertain seconds, and not in its shares."""

    def __init__(self, classes: tuple[str, ...], json_path: Path | None = None, plot_path: Path | None = None,
                 out: TextIO | None = None, max_plotted: int = 8, about: dict | None = None) -> None:
        self.classes = tuple(classes)
        # How the results were made (emocam.provenance: input, model and its sha256, options, version): heads the JSON.
        self.about = dict(about or {})
        if plot_path is not None:
            plot_format(plot_path)
        # Claimed now, so that a folder that cannot be written is found before the run; filled and renamed at close.
        self._json = None if json_path is None else Staged(json_path)
        try:
            self._plot = None if plot_path is None else Staged(plot_path)
        except SinkError:
            if self._json is not None:
                self._json.discard()
            raise
        self.json_path = None if self._json is None else self._json.target
        self.plot_path = None if self._plot is None else self._plot.target
        self.out, self.max_plotted = out, max_plotted
        self._frames, self._first_s, self._last_s = 0, 0.0, 0.0
        self._faces: dict[int, dict] = {}
        self._closed = False

    def write(self, frame: Frame, faces: Faces) -> None:
        if self._frames == 0:
            self._first_s = frame.timestamp_s
        self._frames += 1
        self._last_s = frame.timestamp_s
        if faces.labels is None:
            return
        for i, track in enumerate(faces.track_ids.tolist()):
            face = self._faces.get(track)
            if face is None:
                face = self._faces[track] = {"frames": 0, "uncertain": 0,
                                             "labels": np.zeros(len(self.classes), np.int64),
                                             "first_s": frame.timestamp_s, "timeline": Timeline(len(self.classes))}
            face["frames"] += 1
            face["last_s"] = frame.timestamp_s
            labelled = faces.labels[i] >= 0
            if labelled:
                face["labels"][faces.labels[i]] += 1
            else:
                face["uncertain"] += 1
            if self.plot_path is not None:
                face["timeline"].add(frame.timestamp_s, faces.smoothed[i] if labelled else None)

    @property
    def distinct_faces(self) -> int:
        """How many faces (track ids) were seen."""
        return len(self._faces)

    def frame_s(self) -> float:
        """Mean time between processed frames (0 before two frames)."""
        return (self._last_s - self._first_s) / (self._frames - 1) if self._frames > 1 else 0.0

    def report(self) -> dict:
        """The summary as a JSON-ready dict, faces longest on screen first."""
        frame_s = self.frame_s()
        faces = []
        for track, f in self._faces.items():
            shares = f["labels"] / max(f["labels"].sum(), 1)
            faces.append({"face_id": track, "seconds": round(f["frames"] * frame_s, 3), "frames": f["frames"],
                          "uncertain_s": round(f["uncertain"] * frame_s, 3), "uncertain_frames": f["uncertain"],
                          "first_s": round(f["first_s"], 3), "last_s": round(f["last_s"], 3),
                          "dominant": self.classes[int(shares.argmax())] if f["labels"].any() else None,
                          "shares": {c: round(float(s), 4) for c, s in zip(self.classes, shares)}})
        faces.sort(key=lambda f: (-f["frames"], f["face_id"]))
        return {**self.about, "frames": self._frames, "duration_s": round(self._frames * frame_s, 3),
                "first_s": round(self._first_s, 3), "last_s": round(self._last_s, 3), "classes": list(self.classes),
                "faces": faces}

    def table(self, report: dict) -> str:
        """The report as a short text table."""
        head = f"{'face':>5} {'seconds':>8} {'uncertain':>9}  " + " ".join(f"{c[:8]:>8}" for c in self.classes)
        rows = [f"{f['face_id']:>5} {f['seconds']:>8.1f} {f['uncertain_s']:>9.1f}  "
                + " ".join(f"{f['shares'][c]:>8.0%}" for c in self.classes) for f in report["faces"]]
        return "\n".join([f"{report['frames']} frames, {len(rows)} face(s)", head, *rows])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        staged = [s for s in (self._json, self._plot) if s is not None]
        if self._frames == 0:  # a run that failed before its first frame has nothing to tell
            for s in staged:
                s.discard()
            return
        report = self.report()
        tell(self.table(report), self.out)  # a reader that went away costs no file
        writes = {self._json: lambda path: path.write_text(json.dumps(report, indent=2) + "\n"),
                  self._plot: lambda path: self.plot(report, path)}
        errors = []
        for s in staged:  # each file on its own: one that cannot be written does not cost the other
            try:
                s.fill(writes[s])
            except SinkError as e:
                errors.append(e)
        if errors:
            raise errors[0]

    def plot(self, report: dict, path: Path | None = None) -> None:
        """The timeline plot (``figure``) as an image (PNG, or as ``path`` is named)."""
        path = Path(path or self.plot_path)
        self.figure(report).savefig(path, dpi=100, format=plot_format(path))

    def figure(self, report: dict):
        """Each face's smoothed probabilities over the whole run, one panel per face in id order (the ``max_plotted``
        longest on screen), the stretches where the quality gate left it unlabelled shaded, the legend beside the
        panels; titled with the input's name."""
        from matplotlib.figure import Figure  # a bare Figure renders with Agg and never opens a window
        from matplotlib.patches import Patch

        shown = sorted(f["face_id"] for f in report["faces"][:self.max_plotted])
        fig = Figure(figsize=(10, 1.4 + 1.9 * max(len(shown), 1)), layout="constrained")
        axes = fig.subplots(max(len(shown), 1), 1, squeeze=False, sharex=True)[:, 0]
        start, end = report["first_s"], report["last_s"]
        margin = 0.01 * (end - start) or 0.5  # one frame (an image) still gets an axis to stand on
        lines = []
        for ax, track in zip(axes, shown):
            timeline = self._faces[track]["timeline"]
            times, probs = timeline.points()
            few = len(times) < 3  # a point or two would not show as a line
            lines = [ax.plot(times, probs[:, k], label=name, linewidth=1.2, marker="o" if few else None)[0]
                     for k, name in enumerate(self.classes)]
            for first, last in timeline.gated_spans():
                ax.axvspan(first, last, color=GATED_SHADE, linewidth=0)
            ax.set_title(f"face {track}", loc="left", fontsize="medium")
            ax.set_ylabel("probability")
            ax.set_ylim(-0.04, 1.04)  # a line at exactly 0 or 1 stays clear of the frame
        if not shown:
            axes[0].text(0.5, 0.5, "no face", ha="center", va="center", transform=axes[0].transAxes)
        axes[0].set_xlim(start - margin, end + margin)
        axes[-1].set_xlabel("time (s)")
        handles = lines + [Patch(color=GATED_SHADE, label="not labelled (quality gate)")]
        fig.legend(handles=handles, loc="outside right upper", fontsize="small", frameon=False)
        name = Path(str(report.get("input") or "emocam")).name
        fig.suptitle(f"{name}: smoothed probability of each emotion, per face")
        return fig


GATED_SHADE = "#d9d9d9"


def plot_format(path: Path) -> str:
    """The image format matplotlib writes for ``path``'s suffix; SinkError for one it cannot write."""
    from matplotlib.backend_bases import FigureCanvasBase

    kinds = FigureCanvasBase.get_supported_filetypes()
    kind = Path(path).suffix.lower().lstrip(".")
    if kind not in kinds:
        raise SinkError(f"cannot write the plot {path}: name it .png (or .pdf, .svg, .jpg: a type matplotlib writes)")
    return kind


class Timeline:
    """A face's smoothed probabilities over time in at most ``points`` points: when full, neighbouring points are
    averaged in pairs and each later point averages twice as many frames, so a day-long run uses no more memory than
    a short one. Frames the quality gate left unlabelled count in their point's time, not in its probabilities."""

    def __init__(self, classes: int, points: int = 1024) -> None:
        self.points_max, self.per_point, self.n = points, 1, 0
        # Per point: sums of time (every frame) and probabilities (labelled frames), the frames and the labelled
        # frames in it; grown as needed up to points_max.
        self._sums = np.zeros((0, 1 + classes))
        self._counts = np.zeros((0, 2), np.int64)

    def add(self, timestamp_s: float, probs: np.ndarray | None) -> None:
        """Take one frame's probabilities (None: a frame in which the face was not labelled)."""
        if self.n == 0 or self._counts[self.n - 1, 0] >= self.per_point:
            if self.n == self.points_max:
                self._halve()
            if self.n == len(self._counts):  # grow by doubling: most tracks are short
                grow = min(max(16, 2 * self.n), self.points_max) - self.n
                self._sums = np.concatenate([self._sums, np.zeros((grow, self._sums.shape[1]))])
                self._counts = np.concatenate([self._counts, np.zeros((grow, 2), np.int64)])
            self.n += 1
        self._sums[self.n - 1, 0] += timestamp_s
        self._counts[self.n - 1, 0] += 1
        if probs is not None:
            self._sums[self.n - 1, 1:] += probs
            self._counts[self.n - 1, 1] += 1

    def _halve(self) -> None:
        half = self.n // 2
        self._sums[:half] = self._sums[0:2 * half:2] + self._sums[1:2 * half:2]
        self._counts[:half] = self._counts[0:2 * half:2] + self._counts[1:2 * half:2]
        self._sums[half:], self._counts[half:] = 0.0, 0
        self.n, self.per_point = half, 2 * self.per_point

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """Times (n,) and mean probabilities (n, classes) of the points so far; NaN where no frame was labelled."""
        counts = self._counts[:self.n]
        times = self._sums[:self.n, 0] / counts[:, 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            probs = self._sums[:self.n, 1:] / counts[:, 1:2]
        return times, np.where(counts[:, 1:2] > 0, probs, np.nan)

    def gated_spans(self) -> list[tuple[float, float]]:
        """(first, last) seconds of each run of points in which most frames were not labelled, widened by half the
        step to the points beside it, so that a span covers its frames."""
        times, _ = self.points()
        gated = self._counts[:self.n, 1] * 2 < self._counts[:self.n, 0]
        step = float(np.median(np.diff(times))) if self.n > 1 else 0.0
        spans, k = [], 0
        while k < self.n:
            if not gated[k]:
                k += 1
                continue
            j = k
            while j + 1 < self.n and gated[j + 1]:
                j += 1
            spans.append((float(times[k]) - step / 2, float(times[j]) + step / 2))
            k = j + 1
        return spans
