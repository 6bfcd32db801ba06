"""Training augmentation of batches of faces: mirror, small rotation, scale and shift, random erasing, faces made
to look like faces in footage, and faces turned in depth."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from emocam.align import CropSpec, height_scale


def augment(x: torch.Tensor, gen: torch.Generator, erase: float = 0.0, footage: float = 0.0) -> torch.Tensor:
    """Face-friendly augmentation of a (N, 1, S, S) batch: mirror, small rotation, scale and shift; with
    ``erase`` > 0, that share of the faces also gets a random rectangle (2-25% of the face) set to the mean; with
    ``footage`` > 0, that share looks like a face in a video frame (``footage_like``)."""
    n = x.shape[0]
    rand = lambda lo, hi: torch.rand(n, generator=gen) * (hi - lo) + lo  # noqa: E731
    angle = rand(-10, 10) * math.pi / 180
    scale = rand(0.9, 1.1)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, rand(-0.08, 0.08)], 1),
                         torch.stack([sin * flip, cos, rand(-0.08, 0.08)], 1)], 1)
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if erase > 0:
        side = x.shape[-1]
        area, aspect = rand(0.02, 0.25), torch.exp(rand(math.log(0.5), math.log(2.0)))
        h, w = (area * aspect).sqrt().clamp(max=1), (area / aspect).sqrt().clamp(max=1)
        top, left = rand(0, 1) * (1 - h), rand(0, 1) * (1 - w)
        pos = (torch.arange(side) + 0.5) / side
        rows = (pos[None] >= top[:, None]) & (pos[None] < (top + h)[:, None])
        cols = (pos[None] >= left[:, None]) & (pos[None] < (left + w)[:, None])
        hit = (rows[:, :, None] & cols[:, None, :]) & (torch.rand(n, generator=gen) < erase)[:, None, None]
        x = x.masked_fill(hit[:, None].to(x.device), 0.0)  # 0 is the normalised mean
    if footage > 0:
        x = footage_like(x, gen, footage)
    return x


def footage_like(x: torch.Tensor, gen: torch.Generator, share: float) -> torch.Tensor:
    """``share`` of the faces made to look like faces in footage: each of them, at random, downscaled (to 35-100% of
    its side and back, as a small or compressed face), blurred (motion or focus, sigma up to 1.5 px) and with its
    tone curve bent (gamma 0.6-1.6: lighting that the min-max stretch does not undo)."""
    n, _, side, _ = x.shape
    pick = torch.rand(n, generator=gen) < share
    if not pick.any():
        return x
    x = x.clone()
    rand = lambda lo, hi: float(torch.rand(1, generator=gen)) * (hi - lo) + lo  # noqa: E731
    for i in torch.nonzero(pick).flatten().tolist():
        face = x[i:i + 1]
        if rand(0, 1) < 0.5:
            small = max(8, round(side * rand(0.35, 1.0)))
            face = F.interpolate(F.interpolate(face, size=small, mode="area"), size=side, mode="bilinear",
                                 align_corners=False)
        if rand(0, 1) < 0.5:
            sigma = rand(0.3, 1.5)
            taps = torch.arange(-3, 4, dtype=x.dtype, device=x.device)
            kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
            kernel /= kernel.sum()
            face = F.conv2d(F.pad(face, (3, 3, 0, 0), mode="replicate"), kernel.view(1, 1, 1, 7))
            face = F.conv2d(F.pad(face, (0, 0, 3, 3), mode="replicate"), kernel.view(1, 1, 7, 1))
        if rand(0, 1) < 0.5:
            lo, hi = face.amin(), face.amax()
            unit = ((face - lo) / (hi - lo).clamp(min=1e-6)).clamp(0, 1)
            face = unit ** rand(0.6, 1.6) * (hi - lo) + lo
        x[i:i + 1] = face
    return x


# Turned faces are synthesised on a vertical cylinder whose radius, in eye distances, is half a face's width (about
# 2.2 eye distances from cheek to cheek), turned about its axis by up to MAX_TURN degrees.
HEAD_RADIUS = 1.1
MAX_TURN = 60.0


def turned_like(x: torch.Tensor, gen: torch.Generator, share: float, crop: CropSpec, max_yaw: float = MAX_TURN,
                min_yaw: float = 0.0) -> torch.Tensor:
    """``share`` of the faces turned in depth by a random yaw of ``min_yaw`` to ``max_yaw`` degrees, either way, then
    cropped again the way the live side crops a turned face (``emocam.align``): across by its projected eyes, whose
    distance shrinks by cos(yaw) as the head turns, and from brow to chin as before the turn (``crop.yaw_framing``;
    without it, by the projected eyes both ways).

    The face is texture on a cylinder (``HEAD_RADIUS`` eye distances) through the eye midpoint: a point at angle phi
    moves to phi + yaw, so the near side is stretched and the far side foreshortened and, past the cheek, hidden.
    Where the turn shows the side of the head, the face's edge is drawn out; beyond the head, the background stays
    where it was."""
    n = x.shape[0]
    pick = torch.rand(n, generator=gen) < share
    sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    yaw = (torch.rand(n, generator=gen) * (max_yaw - min_yaw) + min_yaw) * math.pi / 180 * sign
    if not pick.any():
        return x
    yaw = torch.where(pick, yaw, torch.zeros(n))
    r = HEAD_RADIUS
    half_w, height = 0.5 + crop.side, crop.top + crop.bottom  # the crop's half-width and height in eye distances
    eye = math.asin(0.5 / r)
    left, right = r * torch.sin(yaw - eye), r * torch.sin(yaw + eye)  # the eyes as seen after the turn
    k, mid = right - left, (left + right) / 2  # the new eye distance (in old ones) and eye midpoint
    side = x.shape[-1]
    pos = (torch.arange(side, dtype=x.dtype) + 0.5) / side * 2 - 1  # output pixel centres, -1..1
    gx, gy = pos[None, None, :].expand(n, side, side), pos[None, :, None].expand(n, side, side)
    seen_x = mid[:, None, None] + gx * half_w * k[:, None, None]  # where each output pixel lies, seen from the front
    # The crop's height in eye distances before the turn, as the live crop takes it from the projected eye distance k.
    tall = k * torch.from_numpy(height_scale(torch.rad2deg(yaw).numpy(), crop)).to(k.dtype)
    seen_y = ((gy + 1) / 2 * height - crop.top) * tall[:, None, None]
    phi = torch.asin((seen_x / r).clamp(-1, 1)) - yaw[:, None, None]  # the angle on the unturned face
    on_face = r * torch.sin(phi.clamp(-math.pi / 2, math.pi / 2))  # the side of the head shows the face's edge
    src_x = torch.where(seen_x.abs() < r, on_face, seen_x) / half_w
    src_y = (seen_y + crop.top) / height * 2 - 1
    grid = torch.stack([src_x, src_y], -1).to(x.device, x.dtype)
    turned = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return torch.where(pick[:, None, None, None].to(x.device), turned, x)
