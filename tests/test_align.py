"""Geometry of the eye-distance crop on synthetic images with known eye points."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from emocam.align import CropSpec, Preprocess, crop_face, to_tensor


def two_dots(left: tuple[float, float], right: tuple[float, float], shape=(600, 800), radius=10) -> np.ndarray:
    """A black BGR image with a white dot on each eye point."""
    image = np.zeros((*shape, 3), np.uint8)
    for x, y in (left, right):
        cv2.circle(image, (round(x), round(y)), radius, (255, 255, 255), -1, cv2.LINE_AA)
    return image


def dot_centres(crop: np.ndarray) -> np.ndarray:
    """Intensity-weighted centres (x, y) of the bright blob in the left and in the right half of a crop."""
    h, w = crop.shape
    centres = []
    for x0, x1 in ((0, w // 2), (w // 2, w)):
        part = crop[:, x0:x1].astype(np.float64)
        ys, xs = np.mgrid[0:h, x0:x1]
        centres.append(((xs * part).sum() / part.sum(), (ys * part).sum() / part.sum()))
    return np.array(centres) + 0.5  # pixel centres


def expected_eyes(pre: Preprocess) -> np.ndarray:
    """Where the eye centres land in the crop, from the crop margins."""
    c = pre.crop
    x = np.array([c.side, 1 + c.side]) / (1 + 2 * c.side) * pre.size
    y = c.top / (c.top + c.bottom) * pre.size
    return np.stack([x, [y, y]], axis=1)


@pytest.mark.parametrize("angle", [-30.0, 0.0, 25.0])
@pytest.mark.parametrize("size", [48, 64])
def test_tilted_eyes_come_out_level_at_their_place(angle: float, size: int) -> None:
    pre = Preprocess(size=size)
    centre, e2e = np.array([400.0, 300.0]), 200.0
    d = 0.5 * e2e * np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
    left, right = centre - d, centre + d
    crop = crop_face(two_dots(left, right), left, right, pre)
    assert crop.shape == (size, size) and crop.dtype == np.uint8
    found = dot_centres(crop)
    assert abs(found[0, 1] - found[1, 1]) < 0.3  # level
    np.testing.assert_allclose(found, expected_eyes(pre), atol=0.4)


def test_crop_margins_follow_the_spec() -> None:
    pre = Preprocess(size=64, crop=CropSpec(side=0.4, top=0.6, bottom=1.0))
    left, right = np.array([300.0, 300.0]), np.array([500.0, 300.0])
    found = dot_centres(crop_face(two_dots(left, right), left, right, pre))
    np.testing.assert_allclose(found, expected_eyes(pre), atol=0.4)


def test_a_turned_face_is_framed_from_brow_to_chin_as_a_frontal_one() -> None:
    """Turned by a yaw, a face shows its eyes closer by cos(yaw) while its mouth stays as far below them: given the
    yaw, the crop puts eyes and mouth where the frontal face's crop has them (without it, the mouth falls out)."""
    pre = Preprocess(size=64, crop=CropSpec(yaw_framing=True))
    mouth_below = 1.4  # eye distances below the eye line: out of the crop when it is taken by the projected eyes
    mid = np.array([400.0, 300.0])

    def crop(e2e: float, yaw: float, pre: Preprocess = pre) -> np.ndarray:
        left, right = mid - (e2e / 2, 0), mid + (e2e / 2, 0)
        image = two_dots(left, right)
        cv2.circle(image, (400, round(300 + mouth_below * 200)), 10, (255, 255, 255), -1, cv2.LINE_AA)
        return crop_face(image, left, right, pre, yaw)

    def mouth_row(c: np.ndarray) -> float:
        low = c[pre.size // 2 + 4:].astype(np.float64)
        return float((np.arange(len(low))[:, None] * low).sum() / low.sum()) + pre.size // 2 + 4

    frontal = crop(200.0, 0.0)
    for yaw in (45.0, -60.0):
        turned = crop(200.0 * np.cos(np.radians(yaw)), yaw)
        np.testing.assert_allclose(dot_centres(turned[:pre.size // 2]), expected_eyes(pre), atol=0.5)
        assert abs(mouth_row(turned) - mouth_row(frontal)) < 0.5
    assert np.array_equal(crop(30.0, 89.0), crop(30.0, 70.0))  # near profile the margins stop growing at 70 degrees
    unknown = crop(200.0 * np.cos(np.radians(45.0)), float("nan"))  # no pose: cropped as a frontal face
    assert np.array_equal(unknown, crop(200.0 * np.cos(np.radians(45.0)), 0.0))
    assert unknown[pre.size // 2 + 4:].max() < 50  # the mouth is out of a crop taken by the projected eyes
    # A model trained on faces framed by their projected eyes (a contract without yaw_framing) keeps that crop.
    older = Preprocess.from_dict({**pre.to_dict(), "crop": {"side": 0.863, "top": 1.074, "bottom": 1.653}})
    assert older == Preprocess(size=64) and Preprocess.from_dict(pre.to_dict()) == pre
    assert np.array_equal(crop(200.0 * np.cos(np.radians(45.0)), 45.0, older), unknown)
    assert CropSpec.from_dict({**older.crop.to_dict(), "yaw_height": True}) == pre.crop  # the key's first name


def test_a_face_at_the_border_gives_a_full_crop() -> None:
    image = np.full((120, 160, 3), 90, np.uint8)
    image[:10, :20] = 250
    pre = Preprocess(size=48)
    for left, right in (((4.0, 6.0), (40.0, 2.0)), ((-20.0, -5.0), (15.0, 3.0)), ((150.0, 118.0), (190.0, 125.0))):
        crop = crop_face(image, np.array(left), np.array(right), pre)
        assert crop.shape == (48, 48) and crop.dtype == np.uint8


def test_coinciding_eyes_are_refused() -> None:
    with pytest.raises(ValueError, match="coincide"):
        crop_face(np.zeros((50, 50, 3), np.uint8), np.array([10.0, 10.0]), np.array([10.0, 10.0]), Preprocess(48))


@pytest.mark.parametrize("channels", [1, 3])
def test_tensor_layout_and_range(channels: int) -> None:
    pre = Preprocess(size=48, channels=channels, mean=0.5, std=0.25)
    crops = np.stack([np.zeros((48, 48), np.uint8), np.full((48, 48), 255, np.uint8)])
    x = to_tensor(crops, pre)
    assert x.shape == (2, channels, 48, 48) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_allclose([x[0].min(), x[1].max()], [-2.0, 2.0], atol=1e-6)
