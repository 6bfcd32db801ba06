"""One fine-tuning stage, top to bottom: config -> data -> model -> loop -> checkpoints."""

from __future__ import annotations

import copy
import json
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from emocam.align import Preprocess, to_tensor
from emocam.contract import ModelContract

from .augment import augment, turned_like
from .config import StageConfig
from .data import CLASSES, FaceSet, fer_sets
from .metrics import scores
from .models import build_model, read_checkpoint
from .targets import describe, load_target


@dataclass
class Splits:
    """Train, validation and (optionally) extra test sets for one stage."""

    train: FaceSet
    val: FaceSet
    tests: dict[str, FaceSet] = field(default_factory=dict)
    rehearsal: FaceSet | None = None  # FER-2013 faces of which some join each epoch (StageConfig.rehearse)


def load_splits(cfg: StageConfig, pre: Preprocess) -> Splits:
    """The stage's data: FER-2013 (fer28/fer32), the target sets, or both combined (FER32 + the targets' train).

    Selection never looks at a reported split: fer28 validates on PublicTest, fer32 on faces carved out of its
    training faces; a target set validates on persons carved out of its train folder, and its val folder, like
    FER-2013's PrivateTest, is only scored."""
    fer, targets = None, []
    if cfg.data != "target" and cfg.fer is None:
        raise ValueError(f"data '{cfg.data}' needs --fer")
    if cfg.data in ("target", "combined") and not cfg.target:
        raise ValueError(f"data '{cfg.data}' needs --target")
    # Whatever is given is also scored, so that every scheme is compared on every test set.
    if cfg.fer is not None:
        fer = fer_sets(cfg.fer, "fer28" if cfg.data == "fer28" else "fer32", pre, cfg.ferplus,
                       cfg.ferplus_majority, cfg.fer_framing, cfg.seed)
    for root in cfg.target:
        loaded = {}
        for split in ("train", "val"):
            loaded[split], report = load_target(root / split, pre)
            describe(report, root / split)
        loaded["train"], loaded["carved"] = loaded["train"].carve(cfg.carve, cfg.seed)
        targets.append(loaded)
    tests = {} if fer is None else {"fer2013/PrivateTest": fer["test"]}
    tests.update({t["val"].name: t["val"] for t in targets})
    if targets:
        target_train = FaceSet.concat([t["train"] for t in targets], "+".join(t["train"].name for t in targets))
        target_val = FaceSet.concat([t["carved"] for t in targets], "+".join(t["carved"].name for t in targets))
    rehearsal = None
    if cfg.data in ("fer28", "fer32"):
        train, val = fer["train"], fer["val"]
    elif cfg.data == "target":
        train, val = target_train, target_val
        if cfg.rehearse:
            if fer is None:
                raise ValueError("--rehearse needs --fer")
            # Chosen on the carved target faces and as many of FER-2013's validation faces, weighed alike.
            rehearsal = fer["train"]
            extra = fer["val"].subset(np.random.default_rng(cfg.seed).permutation(len(fer["val"]))[:len(val)])
            val = FaceSet.concat([val, extra], f"{val.name}+{extra.name}")
    else:
        train, val = FaceSet.concat([fer["train"], target_train], f"fer32+{target_train.name}"), target_val
    if cfg.limit:  # quick runs: a random subset of at most ``limit`` faces of every split
        rng = np.random.default_rng(cfg.seed)
        train, val = _subset(train, cfg.limit, rng), _subset(val, cfg.limit, rng)
        tests = {name: _subset(s, cfg.limit, rng) for name, s in tests.items()}
        rehearsal = None if rehearsal is None else _subset(rehearsal, cfg.limit, rng)
    return Splits(train, val, tests, rehearsal)


def _subset(faces: FaceSet, n: int, rng: np.random.Generator) -> FaceSet:
    return faces.subset(rng.permutation(len(faces))[:n])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def to_input(images: np.ndarray, pre: Preprocess, device: torch.device) -> torch.Tensor:
    """uint8 faces (N, S, S) -> the model's input tensor, through the live side's own ``to_tensor``."""
    return torch.from_numpy(to_tensor(images, pre)).to(device)


@torch.no_grad()
def predict(model: torch.nn.Module, images: np.ndarray, pre: Preprocess, device: torch.device,
            batch: int = 256, softmax: bool = True) -> np.ndarray:
    """Class probabilities (N, K) for uint8 faces; ``softmax=False`` for a model that gives probabilities itself."""
    model.eval()
    out = []
    for i in range(0, len(images), batch):
        x = to_input(images[i:i + batch], pre, device).contiguous(memory_format=torch.channels_last)
        y = model(x)
        out.append((F.softmax(y, 1) if softmax else y).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), np.float32)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _initial_model(cfg: StageConfig) -> tuple[torch.nn.Module, dict]:
    """The stage's starting model: ImageNet / scratch, or the weights of a previous stage's checkpoint."""
    if cfg.init in ("imagenet", "scratch"):
        return build_model(cfg.arch, len(CLASSES), 1, cfg.init, cfg.weights), {"init": cfg.init}
    ckpt = read_checkpoint(cfg.init)
    model = build_model(cfg.arch, len(CLASSES), 1, "scratch")
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError:
        raise ValueError(f"--init {cfg.init}: its {ckpt['config']['arch']} weights do not fit --arch {cfg.arch}") from None
    return model, {"init": str(cfg.init), "init_epoch": ckpt["epoch"], "init_stage": ckpt["config"]["data"]}


class Targets:
    """What each training face is taught: its one-hot label or FER+ votes, and with ``distill`` a share of the
    ``teacher``'s answer for each rehearsed face, asked the first time the face is drawn."""

    def __init__(self, train: FaceSet, teacher: torch.nn.Module | None, distill: float, pre: Preprocess,
                 device: torch.device) -> None:
        onehot = np.eye(len(CLASSES), dtype=np.float32)
        self.values = torch.from_numpy(train.soft if train.soft is not None else onehot[train.labels])
        self.images, self.teacher, self.distill, self.pre, self.device = train.images, teacher, distill, pre, device
        self.taught = np.zeros(len(train), bool)  # faces whose targets already take in the teacher's answer

    def teach(self, drawn: np.ndarray) -> None:
        """Mix the teacher's answer into the targets of the faces in ``drawn`` it has not answered yet."""
        new = drawn[~self.taught[drawn]] if self.teacher is not None else []
        if len(new):
            said = torch.from_numpy(predict(self.teacher, self.images[new], self.pre, self.device))
            self.values[new] = (1 - self.distill) * self.values[new] + self.distill * said
            self.taught[new] = True

    def __getitem__(self, idx: np.ndarray) -> torch.Tensor:
        return self.values[idx]


def draw_epoch(cfg: StageConfig, epoch: int, splits: Splits, targets: Targets, gen: torch.Generator) -> torch.Tensor:
    """The faces of one epoch in the order they are trained on: the stage's own faces (drawn class-balanced with
    ``balance``) and ``rehearse`` FER-2013 faces drawn anew, shuffled together."""
    # Every random draw of the epoch (batches, augmentation, dropout's global RNG) is seeded by the epoch, so a
    # resumed run repeats an uninterrupted one exactly.
    gen.manual_seed(cfg.seed * 1000 + epoch)
    torch.manual_seed(cfg.seed * 1000 + epoch)
    own = len(splits.train)  # the stage's own faces; rehearsed FER-2013 faces follow them
    if cfg.balance:
        # Each face drawn with probability inversely proportional to its class's size.
        counts = np.bincount(splits.train.labels, minlength=len(CLASSES)).astype(np.float64)
        weights = torch.from_numpy((1.0 / np.maximum(counts, 1))[splits.train.labels])
        order = torch.multinomial(weights, own, replacement=True, generator=gen)
    else:
        order = torch.randperm(own, generator=gen)
    if splits.rehearsal is None:
        return order
    drawn = own + torch.randperm(len(splits.rehearsal), generator=gen)[:cfg.rehearse]
    targets.teach(drawn.numpy())
    return torch.cat([order, drawn])[torch.randperm(own + len(drawn), generator=gen)]


def train_one_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, images: np.ndarray, targets: Targets,
                    order: torch.Tensor, cfg: StageConfig, pre: Preprocess, device: torch.device,
                    gen: torch.Generator, desc: str) -> float:
    """One pass over ``order`` in batches of ``cfg.batch`` (augmented with ``cfg.augment``); the mean loss. With
    ``cfg.logit_adjust`` tau, the loss is logit-adjusted (Menon et al., ICLR 2021): tau * log of the epoch's class
    shares is added to the logits while training only, so rare classes need less evidence at inference."""
    model.train()
    shift = 0.0
    if cfg.logit_adjust:
        shares = targets[order.numpy()].mean(0).clamp(min=1e-4)
        shift = (cfg.logit_adjust * shares.log()).to(device)
    seen, loss_sum = 0, 0.0
    bar = tqdm(range(0, len(order), cfg.batch), desc=desc, leave=False, mininterval=2)
    for i in bar:
        idx = order[i:i + cfg.batch].numpy()
        if len(idx) < 2:
            continue
        x = to_input(images[idx], pre, device)
        if cfg.augment:
            x = augment(x, gen, cfg.erase, cfg.footage)
            if cfg.turn:
                x = turned_like(x, gen, cfg.turn, pre.crop)
        x = x.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(x) + shift, targets[idx].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(idx)
        loss_sum += loss.item() * len(idx)
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", refresh=False)
    return loss_sum / max(seen, 1)


def evaluate(model: torch.nn.Module, faces: FaceSet, pre: Preprocess, device: torch.device,
             gated: bool = False) -> dict:
    """The model's scores on ``faces`` (``metrics.scores``); with ``gated``, faces the quality gate refuses count
    as wrong, as the live side would give them no label."""
    pred = predict(model, faces.images, pre, device).argmax(1)
    return scores(faces.labels, pred, passed=faces.passed if gated else None)


def save_checkpoint(out: Path, checkpoint: dict, best: bool) -> None:
    """``last.pt`` in the run folder, replaced whole, and with ``best`` also ``best.pt``."""
    if best:
        torch.save(checkpoint, out / "best.pt")
    torch.save(checkpoint, out / "last.pt.tmp")
    (out / "last.pt.tmp").replace(out / "last.pt")  # a crash mid-save never leaves a broken last.pt


def run_stage(cfg: StageConfig, resume: bool = False) -> Path:
    """Train one stage; keeps ``last.pt`` each epoch and ``best.pt`` (best validation score); returns best.pt."""
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    pre = cfg.preprocess()

    # Data.
    splits = load_splits(cfg, pre)
    train = splits.train if splits.rehearsal is None else FaceSet.concat([splits.train, splits.rehearsal], "train")

    # Model, optimiser, schedule; or all three as the last checkpoint left them, with --resume.
    model, origin = _initial_model(cfg)
    # With ``distill``, the starting model as it is now tells what each rehearsed face is, the first time it is drawn.
    teacher = copy.deepcopy(model).to(device) if cfg.distill and splits.rehearsal is not None else None
    out = Path(cfg.out)  # made once the data and the starting weights are known to be good
    out.mkdir(parents=True, exist_ok=True)
    model.to(device, memory_format=torch.channels_last)  # 2-3x faster convolutions on the CPU
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step, gamma=cfg.gamma)
    contract = ModelContract(CLASSES, pre, {"arch": cfg.arch})
    config = json.loads(json.dumps(asdict(cfg), default=str))  # paths as text, tuples as lists
    state = {"epoch": 0, "best": -1.0, "best_epoch": 0, "history": []}
    if resume and (out / "last.pt").is_file():
        ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        state = {k: ckpt[k] for k in state}
        print(f"resuming {out} after epoch {state['epoch']}")
    targets = Targets(train, teacher, cfg.distill, pre, device)
    gen = torch.Generator().manual_seed(cfg.seed)
    print(f"{cfg.data}: train {len(train)} {train.counts()}, val {len(splits.val)} on {device}; {origin}")

    # Loop: train, score on the validation faces, keep the checkpoints.
    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        order = draw_epoch(cfg, epoch, splits, targets, gen)
        started = time.time()
        loss = train_one_epoch(model, optimizer, train.images, targets, order, cfg, pre, device, gen,
                               f"epoch {epoch}/{cfg.epochs}")
        scheduler.step()
        val = evaluate(model, splits.val, pre, device)
        metric = val["accuracy"] if cfg.select == "acc" else val["mean_recall"]
        row = {"epoch": epoch, "loss": loss, "val_accuracy": val["accuracy"], "val_mean_recall": val["mean_recall"],
               "seconds": round(time.time() - started, 1)}
        state["history"].append(row)
        print(json.dumps(row), flush=True)
        state["epoch"] = epoch
        improved = metric > state["best"]
        if improved:
            state.update(best=metric, best_epoch=epoch)
        save_checkpoint(out, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "scheduler": scheduler.state_dict(), "config": config, "contract": contract.to_json(),
                              "origin": origin, "sample_faces": splits.val.images[:32], **state}, improved)

    # The best epoch's model, scored on the validation faces and every test set.
    best = torch.load(out / "best.pt", map_location="cpu", weights_only=False)
    model.load_state_dict(best["model"])
    report = {"stage": config, "origin": origin, "best_epoch": best["best_epoch"], "history": state["history"],
              "val": evaluate(model, splits.val, pre, device),
              "tests": {name: evaluate(model, s, pre, device, gated=True) for name, s in splits.tests.items()}}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(f"best epoch {best['best_epoch']}: " + ", ".join(
        f"{name} acc {r['accuracy']:.4f} mean recall {r['mean_recall']:.4f}" for name, r in report["tests"].items()))
    return out / "best.pt"


def cascade(stage1: StageConfig, stage2: StageConfig, resume: bool = False) -> Path:
    """Stage 1 (ImageNet -> FER-2013), then stage 2 (target set) from stage 1's best checkpoint."""
    best1 = run_stage(stage1, resume)
    return run_stage(replace(stage2, init=str(best1)), resume)
