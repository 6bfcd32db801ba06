"""The eye-distance face crop and the input normalisation: the only copy, shared by train/ and the live side.

The crop follows Ng et al. (ICMI 2015): rotate so that the eye centres are level; with e2e the distance
between them, take from the left eye centre minus ``side`` e2e to the right eye centre plus ``side`` e2e,
and from ``top`` e2e above the eye line to ``bottom`` e2e below it; grayscale; min-max stretch to [0, 255].

A face turned by a yaw shows its eyes closer, by cos(yaw), while its height stays: with ``CropSpec.yaw_framing`` the
vertical margins are taken in the eye distance the face has frontally, e2e / cos(yaw), so that a turned face is
cropped from brow to chin as a frontal one is, and stretched across to a frontal face's width (at yaw 0: the paper's
crop). Without it, a turned face's crop is a magnified patch of eyes and nose with the mouth below its edge.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class CropSpec:
    """Crop margins in units of the eye-to-eye distance. The defaults frame a face as FER-2013 frames its faces
    (medians over 1,447 of its training faces seen by the live detector: `emotrain measure`,
    docs/results/framing.json), so that live crops look like the faces the model learnt from."""

    side: float = 0.863
    top: float = 1.074
    bottom: float = 1.653
    yaw_framing: bool = False  # vertical margins in the frontal eye distance (emotrain --yaw-framing)

    def to_dict(self) -> dict:
        """The margins, and ``yaw_framing`` where it is on (so that a contract without it reads as before)."""
        d = asdict(self)
        if not self.yaw_framing:
            del d["yaw_framing"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CropSpec":
        framed = d.get("yaw_framing", d.get("yaw_height", False))  # the key's first name, in early such contracts
        return cls(float(d["side"]), float(d["top"]), float(d["bottom"]), bool(framed))


@dataclass(frozen=True)
class Preprocess:
    """Everything between a face and the model's input tensor: crop geometry, size, channels, normalisation."""

    size: int
    channels: int = 1
    mean: float = 0.5
    std: float = 0.5
    crop: CropSpec = CropSpec()

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.size < 8:
            raise ValueError(f"input size must be at least 8 pixels, got {self.size}")
        if not self.std > 0:  # it divides every pixel
            raise ValueError(f"std must be positive, got {self.std}")

    def to_dict(self) -> dict:
        return {"size": self.size, "channels": self.channels, "mean": self.mean, "std": self.std,
                "crop": self.crop.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        return cls(size=int(d["size"]), channels=int(d["channels"]), mean=float(d["mean"]),
                   std=float(d["std"]), crop=CropSpec.from_dict(d["crop"]))


# The turn beyond which the vertical margins stop growing (cos 70 degrees: about three times a frontal face's).
MAX_YAW_FRAMED = 70.0


def height_scale(yaw: float | np.ndarray, crop: CropSpec) -> np.ndarray:
    """How many projected eye distances the crop's vertical margins are measured in, for a face turned by ``yaw``
    degrees (a number or an array): the frontal eye distance, 1 / cos(|yaw|) up to MAX_YAW_FRAMED, where
    ``crop.yaw_framing`` is on; else 1. An unknown yaw (not finite) counts as frontal."""
    yaw = np.abs(np.asarray(yaw, np.float64))
    yaw = np.where(np.isfinite(yaw), yaw, 0.0)
    return 1.0 / np.cos(np.radians(np.minimum(yaw, MAX_YAW_FRAMED))) if crop.yaw_framing else np.ones_like(yaw)


def crop_matrix(left_eye: np.ndarray, right_eye: np.ndarray, size: int, crop: CropSpec,
                yaw: float = 0.0) -> np.ndarray:
    """2x3 affine matrix mapping output pixel (u, v) of a ``size`` x ``size`` crop to source image (x, y).

    ``left_eye`` is the eye centre with the smaller x in the image (the subject's right eye); ``yaw`` the head's turn
    in degrees (NaN: unknown, taken as frontal), used where ``crop.yaw_framing`` is on.
    """
    left = np.asarray(left_eye, np.float64)
    right = np.asarray(right_eye, np.float64)
    d = right - left
    e2e = float(np.hypot(d[0], d[1]))
    if e2e < 1e-6:
        raise ValueError("eye centres coincide; cannot align the face")
    cos, sin = d / e2e
    tall = e2e * float(height_scale(yaw, crop))  # the eye distance the face has frontally, for the vertical margins
    # Crop rectangle in the eye-aligned frame, origin at the left eye, x along the eye line.
    x0 = -crop.side * e2e
    y0 = -crop.top * tall
    sx = (1 + 2 * crop.side) * e2e / size
    sy = (crop.top + crop.bottom) * tall / size
    # Output pixel centre (u + 0.5, v + 0.5) -> aligned frame -> rotate back -> translate to the left eye.
    ax, ay = x0 + 0.5 * sx, y0 + 0.5 * sy
    return np.array([
        [cos * sx, -sin * sy, left[0] + cos * ax - sin * ay],
        [sin * sx, cos * sy, left[1] + sin * ax + cos * ay],
    ])


def stretch(gray: np.ndarray) -> np.ndarray:
    """Min-max stretch a uint8 grayscale image to the full [0, 255] range (a flat image stays as it is)."""
    lo, hi = int(gray.min()), int(gray.max())
    if hi <= lo:
        return gray
    lut = np.clip((np.arange(256, dtype=np.float32) - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)
    return lut[gray]


def crop_face(image: np.ndarray, left_eye: np.ndarray, right_eye: np.ndarray, pre: Preprocess,
              yaw: float = 0.0) -> np.ndarray:
    """The aligned, grayscale, stretched ``size`` x ``size`` uint8 face crop from a BGR or grayscale image, of a face
    turned by ``yaw`` degrees.

    Pixels outside the image repeat the nearest edge pixel, so faces at the border still give a full crop.
    """
    m = crop_matrix(left_eye, right_eye, pre.size, pre.crop, yaw)
    out = cv2.warpAffine(image, m, (pre.size, pre.size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REPLICATE)
    if out.ndim == 3:
        out = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)
    return stretch(out)


def prepare_gray(gray: np.ndarray, pre: Preprocess) -> np.ndarray:
    """An already cropped grayscale face (a FER-2013 image, say) resized and stretched like a live crop."""
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_BGR2GRAY)
    if gray.shape != (pre.size, pre.size):
        interp = cv2.INTER_AREA if gray.shape[0] > pre.size else cv2.INTER_LINEAR
        gray = cv2.resize(gray, (pre.size, pre.size), interpolation=interp)
    return stretch(gray)


def to_tensor(crops: np.ndarray, pre: Preprocess) -> np.ndarray:
    """Stack of uint8 crops (N, size, size) -> float32 model input (N, channels, size, size)."""
    x = crops.astype(np.float32)
    x *= 1.0 / (255.0 * pre.std)
    x -= pre.mean / pre.std
    x = x[:, None]
    if pre.channels == 3:
        x = np.repeat(x, 3, axis=1)
    return np.ascontiguousarray(x)
