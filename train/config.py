"""What defines a training stage (``StageConfig``) and the stages emotrain runs, as frozen presets: every emotrain
command takes its defaults from these, as nanoGPT's runs take theirs from config files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from emocam.align import Preprocess
from emocam.contract import ModelContract

DATA_KINDS = ("fer28", "fer32", "target", "combined")
# FER-2013's faces as they are ("own"), or re-cropped by the live side's landmarks and crop ("live").
FER_FRAMINGS = ("own", "live")
# Where a stage may start that is not a checkpoint ("stage1": the cascade's first stage, known once it has run).
STARTS = ("imagenet", "scratch", "stage1")


@dataclass(frozen=True)
class StageConfig:
    """Everything that defines one training stage. ``init`` is 'imagenet', 'scratch' or a checkpoint path; ``arch``
    None is the checkpoint's architecture and input size where ``init`` is one, else MobileNetV2."""

    out: Path
    data: str = "fer32"
    fer: Path | None = None
    target: tuple[Path, ...] = ()
    carve: float = 0.15
    fer_framing: str = "own"
    ferplus: Path | None = None
    ferplus_majority: bool = False
    arch: str | None = None
    size: int | None = None
    init: str = "imagenet"
    weights: Path | None = None
    epochs: int = 20
    batch: int = 64
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    step: int = 10
    gamma: float = 0.1
    balance: bool = False
    augment: bool = True
    erase: float = 0.0
    footage: float = 0.0
    turn: float = 0.0
    yaw_framing: bool | None = None  # None: as the --init checkpoint's contract (off from ImageNet)
    rehearse: int = 0
    distill: float = 0.0
    logit_adjust: float = 0.0
    select: str = "acc"
    limit: int | None = None
    seed: int = 0
    threads: int | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.target, (str, Path)):
            object.__setattr__(self, "target", (Path(self.target),))
        object.__setattr__(self, "target", tuple(Path(t) for t in self.target or ()))
        if self.fer_framing not in FER_FRAMINGS:
            raise ValueError(f"unknown FER-2013 framing '{self.fer_framing}'; choose one of {', '.join(FER_FRAMINGS)}")
        if not 0 < self.carve < 1:
            raise ValueError(f"--carve must be between 0 and 1, got {self.carve}")
        if self.data not in DATA_KINDS:
            raise ValueError(f"unknown data '{self.data}'; choose one of {', '.join(DATA_KINDS)}")
        if not 0 <= self.turn <= 1:
            raise ValueError(f"--turn must be between 0 and 1, got {self.turn}")
        if self.logit_adjust < 0:
            raise ValueError(f"--logit-adjust must be 0 or more, got {self.logit_adjust}")
        if not 0 <= self.distill <= 1:
            raise ValueError(f"--distill must be between 0 and 1, got {self.distill}")
        if self.distill and not self.rehearse:
            raise ValueError("--distill needs --rehearse: it changes what the rehearsed faces are taught")
        if self.select not in ("acc", "recall"):
            raise ValueError(f"unknown selection metric '{self.select}'; choose acc or recall")
        if self.arch is None or self.yaw_framing is None:  # what is not given is taken from the --init checkpoint
            start, framed = {}, False
            if self.init not in STARTS:
                from .models import read_checkpoint  # torch: only where a checkpoint is read

                ckpt = read_checkpoint(self.init)
                start, framed = ckpt["config"], ModelContract.from_json(ckpt["contract"]).pre.crop.yaw_framing
            if self.arch is None:
                object.__setattr__(self, "arch", start.get("arch", "mobilenet_v2"))
                object.__setattr__(self, "size", self.size or start.get("size"))
            if self.yaw_framing is None:
                object.__setattr__(self, "yaw_framing", framed)

    def preprocess(self) -> Preprocess:
        """The faces this stage's network takes: its input side, normalisation and framing."""
        from .models import input_preprocess

        return input_preprocess(self.arch, self.size, self.yaw_framing)


# The stages of the paper's schemes, as emotrain runs them; a command's options start from its preset.
PRESETS = {
    # ImageNet -> FER-2013 (FER32), the cascade's first stage.
    "cascade-stage1": StageConfig(out=Path("runs/cascade/stage1"), data="fer32", init="imagenet"),
    # Stage 1's best checkpoint -> the target sets, chosen by accuracy on carved-out persons.
    "cascade-stage2": StageConfig(out=Path("runs/cascade/stage2"), data="target", init="stage1", select="acc"),
    # ImageNet (or --init) -> the target sets alone.
    "single": StageConfig(out=Path("runs/single"), data="target", init="imagenet"),
    # ImageNet -> FER32 and the target sets' train split together.
    "combined": StageConfig(out=Path("runs/combined"), data="combined", init="imagenet"),
    # ImageNet (or --init) -> FER-2013 alone (FER28 or FER32).
    "fer": StageConfig(out=Path("runs/fer"), data="fer32", init="imagenet"),
}
