"""The overlay: each face's box, a label (id, class, confidence) on a solid background and a panel of per-class bars,
laid out so that no panel covers a face (an annotator the sinks that show or write frames ask for; not a pipeline
stage)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .faces import Faces

# Colours told apart (Tableau's ten qualitative colours less its grey and brown, as BGR); grey is for gated faces.
PALETTE = ((180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (207, 190, 23),
           (194, 119, 227), (34, 189, 188))
GATED = (128, 128, 128)  # faces the quality gate does not label
UNTRACKED = (200, 200, 200)
PANEL = (32, 32, 32)  # the panels' background
TRACK = (72, 72, 72)  # a bar's empty part
FONT = cv2.FONT_HERSHEY_SIMPLEX
# Shown when a panel of every class finds no free room: the likeliest classes only.
COMPACT_ROWS = 3

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1, the end exclusive


@dataclass(frozen=True)
class Style:
    """Text scale and thickness, row height, bar width and padding for one image size: text grows with the image,
    within what stays legible on a 360p frame and does not swamp a 4K one."""

    scale: float
    thick: int
    row: int
    bar: int
    pad: int

    @classmethod
    def for_image(cls, height: int, width: int, factor: float = 1.0) -> "Style":
        """The style for an image of this size; ``factor`` scales the text (panels use 0.8)."""
        scale = factor * float(np.clip(min(height, width) / 1100, 0.4, 0.9))
        thick = 1 if scale < 0.65 else 2
        (_, h), base = cv2.getTextSize("Ag", FONT, scale, thick)
        return cls(scale, thick, h + base + 3, int(round(80 * scale)), max(2, int(round(5 * scale))))

    def text_size(self, text: str) -> tuple[int, int]:
        """Width and height (with the part below the baseline) of ``text`` in this style."""
        (w, h), base = cv2.getTextSize(text, FONT, self.scale, self.thick)
        return w, h + base


@dataclass(frozen=True)
class Placement:
    """Where one face's label and panel go: ``face`` indexes the Faces, ``rows`` are the panel's (class, probability)
    pairs (all classes, or the likeliest few where room is short), ``panel`` is None where there is no room at all."""

    face: int
    colour: tuple[int, int, int]
    text: str
    box: Rect
    label: Rect
    panel: Rect | None = None
    rows: tuple[tuple[str, float], ...] = ()
    top: str | None = None
    # Where they went: the label above (0), below (1) or inside (2) the box, and the panel's place (a name in SPOTS)
    # and whether it is compact (None: no panel). What an Overlay remembers of the frame before.
    spot: tuple[int, tuple[str, bool] | None] = (0, None)


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


class _Room:
    """The free room of an image: not outside it, not over a face, not over what was placed already."""

    def __init__(self, width: int, height: int, faces: list[Rect]) -> None:
        self.width, self.height, self.faces, self.taken = width, height, faces, []

    def free(self, r: Rect) -> bool:
        inside = r[0] >= 0 and r[1] >= 0 and r[2] <= self.width and r[3] <= self.height
        return inside and not any(_overlaps(r, t) for t in self.taken + self.faces)

    def take(self, r: Rect) -> Rect:
        self.taken.append(r)
        return r


# Where a panel may go, in order of preference: beside the box (top-aligned), below it, above its label, beside it
# bottom-aligned, below its label.
SPOTS = ("right", "left", "below", "above", "right-low", "left-low", "under-label")


def _rect(corner: tuple[int, int], w: int, h: int) -> Rect:
    return corner[0], corner[1], corner[0] + w, corner[1] + h


def _spot(name: str, box: Rect, label: Rect, size: tuple[int, int], gap: int) -> Rect:
    (x0, y0, x1, y1), (w, h) = box, size
    x, y = {"right": (x1 + gap, y0), "left": (x0 - gap - w, y0), "below": (x0, y1 + gap),
            "above": (label[0], label[1] - gap - h), "right-low": (x1 + gap, y1 - h),
            "left-low": (x0 - gap - w, y1 - h), "under-label": (x0, label[3] + gap)}[name]
    return x, y, x + w, y + h


def layout(faces: Faces, classes: tuple[str, ...], shape: tuple[int, ...],
           before: dict[int, tuple[int, tuple[str, bool] | None]] | None = None) -> list[Placement]:
    """Where each face's label and panel go in an image of ``shape``: the label just above the box (else below it,
    else on the box's top edge), the panel beside the box, else below or above it, else a compact panel of the
    likeliest classes, else none; no panel covers a face, and no label or panel covers another. ``before`` (track id
    to ``Placement.spot``) is where each face's label and panel were in the frame before: kept there while free."""
    height, width = shape[:2]
    style, small = Style.for_image(height, width), Style.for_image(height, width, 0.8)
    probs = faces.smoothed if faces.smoothed is not None else faces.probs
    boxes = [tuple(int(round(v)) for v in b) for b in faces.boxes.tolist()]
    rects = [(x, y, x + w, y + h) for x, y, w, h in boxes]
    room = _Room(width, height, rects)
    name_w = max(small.text_size(c)[0] for c in classes)
    placements = []
    # Top to bottom: a face's label goes above it, into room a face lower down does not need.
    for i in sorted(range(len(faces)), key=lambda i: (rects[i][1], rects[i][0])):
        x0, y0, x1, y1 = rects[i]
        track, passed = int(faces.track_ids[i]), bool(faces.passed[i])
        colour = GATED if not passed else PALETTE[track % len(PALETTE)] if track >= 0 else UNTRACKED
        text = f"#{track}" if track >= 0 else "face"
        labelled = passed and probs is not None and np.isfinite(probs[i]).all()
        top = None
        if not passed:
            text += f" {faces.quality[i]}"
        elif labelled:
            k = int(faces.labels[i]) if faces.labels is not None and faces.labels[i] >= 0 else int(probs[i].argmax())
            top = classes[k]
            text += f" {top} {probs[i][k]:.0%}"
        w, h = style.text_size(text)
        w, h = w + 2 * style.pad, h + 2 * style.pad
        lx = min(max(x0, 0), max(width - w, 0))
        # Where it was comes first: labels and panels that jump from frame to frame are hard to read.
        was_label, was_panel = before.get(track, (None, None)) if before else (None, None)
        # Above the box, below it, or (always room there) on its top edge, inside.
        sides = [(lx, y0 - h), (lx, y1), (lx, max(y0, 0))]
        order = [0, 1, 2] if was_label is None else [was_label] + [k for k in (0, 1, 2) if k != was_label]
        side = next(k for k in order if k == 2 or room.free(_rect(sides[k], w, h)))
        label = _rect(sides[side], w, h)
        room.take(label)
        panel, rows, where = None, (), None
        if labelled:
            every = tuple((c, float(p)) for c, p in zip(classes, probs[i]))
            likeliest = tuple(sorted(every, key=lambda r: -r[1])[:COMPACT_ROWS])
            tries = [(name, compact) for compact in (False, True) for name in SPOTS]
            if was_panel is not None:
                tries.insert(0, was_panel)
            for name, compact in tries:
                size = panel_size(len(likeliest if compact else every), small, name_w)
                r = _spot(name, rects[i], label, size, small.pad)
                if room.free(r):
                    panel, rows, where = room.take(r), likeliest if compact else every, (name, compact)
                    break
        placements.append(Placement(i, colour, text, rects[i], label, panel, rows, top, (side, where)))
    return sorted(placements, key=lambda p: p.face)


def panel_size(rows: int, style: Style, name_w: int) -> tuple[int, int]:
    """Width and height of a panel of ``rows`` classes: name, bar and percentage on each row."""
    return name_w + style.bar + style.text_size("100%")[0] + 4 * style.pad, rows * style.row + style.pad


def text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on ``background`` (BGR)."""
    b, g, r = background
    return (0, 0, 0) if 0.114 * b + 0.587 * g + 0.299 * r > 150 else (255, 255, 255)


def draw_label(image: np.ndarray, text: str, r: Rect, background: tuple[int, int, int], style: Style) -> None:
    """``text`` on a solid ``background`` filling ``r``."""
    cv2.rectangle(image, (r[0], r[1]), (r[2] - 1, r[3] - 1), background, -1)
    base = cv2.getTextSize(text, FONT, style.scale, style.thick)[1]
    cv2.putText(image, text, (r[0] + style.pad, r[3] - style.pad - base), FONT, style.scale,
                text_colour(background), style.thick, cv2.LINE_AA)


def draw_panel(image: np.ndarray, p: Placement, style: Style, name_w: int) -> None:
    """A face's panel: one row per class, its name, a bar in the face's colour and the percentage; the shown label's
    row in white, the others in grey."""
    x0, y0, x1, y1 = p.panel
    cv2.rectangle(image, (x0, y0), (x1 - 1, y1 - 1), PANEL, -1)
    cv2.rectangle(image, (x0, y0), (x1 - 1, y1 - 1), p.colour, 1)
    pct_w = style.text_size("100%")[0]
    bx = x0 + 2 * style.pad + name_w
    for k, (name, prob) in enumerate(p.rows):
        top = y0 + style.pad + k * style.row
        baseline = top + style.row - cv2.getTextSize(name, FONT, style.scale, style.thick)[1] - 1
        shade = (255, 255, 255) if name == p.top else (190, 190, 190)
        cv2.putText(image, name, (x0 + style.pad, baseline), FONT, style.scale, shade, style.thick, cv2.LINE_AA)
        cv2.rectangle(image, (bx, top + 3), (bx + style.bar, top + style.row - 3), TRACK, -1)
        if prob > 0:
            cv2.rectangle(image, (bx, top + 3), (bx + int(round(style.bar * prob)), top + style.row - 3), p.colour, -1)
        pct = f"{prob:.0%}"
        cv2.putText(image, pct, (bx + style.bar + style.pad + pct_w - style.text_size(pct)[0], baseline), FONT,
                    style.scale, shade, style.thick, cv2.LINE_AA)


def annotate(image: np.ndarray, faces: Faces, classes: tuple[str, ...], fps: float | None = None) -> np.ndarray:
    """Draw, in place, each face's box, its label and, where there is room, its panel of per-class bars (see
    ``layout``), and ``fps`` if given (for a window; never for a file); returns ``image``. A face that failed the
    quality gate is drawn grey, with the reason instead of a label and no panel. For the frames of a video, an
    ``Overlay`` keeps each panel where it was."""
    draw(image, layout(faces, classes, image.shape), classes)
    return image if fps is None else annotate_rate(image, fps)


class Overlay:
    """``annotate`` for the frames of one video: each face's panel stays where it was in the frame before while that
    spot is free, instead of moving whenever another spot comes first (only the faces in view are remembered)."""

    def __init__(self, classes: tuple[str, ...]) -> None:
        self.classes = tuple(classes)
        self._spots: dict[int, tuple[int, tuple[str, bool] | None]] = {}

    def __call__(self, image: np.ndarray, faces: Faces) -> np.ndarray:
        """Draw, in place, the faces of the next frame; returns ``image``."""
        placements = layout(faces, self.classes, image.shape, self._spots)
        self._spots = {int(faces.track_ids[p.face]): p.spot for p in placements}
        draw(image, placements, self.classes)
        return image


def draw(image: np.ndarray, placements: list[Placement], classes: tuple[str, ...]) -> None:
    """Draw, in place, the boxes, labels and panels that ``layout`` placed."""
    height, width = image.shape[:2]
    style, small = Style.for_image(height, width), Style.for_image(height, width, 0.8)
    name_w = max(small.text_size(c)[0] for c in classes)
    for p in placements:  # every box first, so that no box is drawn over a label
        x0, y0, x1, y1 = p.box
        cv2.rectangle(image, (x0, y0), (x1, y1), p.colour, style.thick + (p.colour != GATED))
    for p in placements:
        draw_label(image, p.text, p.label, p.colour, style)
        if p.panel is not None:
            draw_panel(image, p, small, name_w)


def annotate_rate(image: np.ndarray, fps: float) -> np.ndarray:
    """Draw, in place, the rate at which frames are shown (a window's, never a file's) in the top left corner."""
    style = Style.for_image(*image.shape[:2])
    text = f"{fps:.0f} fps"
    w, h = style.text_size(text)
    draw_label(image, text, (0, 0, w + 2 * style.pad, h + 2 * style.pad), (0, 0, 0), style)
    return image
