"""emotrain: the paper's training schemes, evaluation, export and engine building."""

from __future__ import annotations

import json
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from emocam.backends import MAX_BATCH, OPT_BATCH
# Declared once, for both commands.
from emocam.cli import EXIT_SIGNALLED, EXIT_USER_ERROR, BackendOpt, ReadingOpt
from emocam.extras import missing, optional
from emocam.outputs import left_while_printing

from .config import PRESETS, StageConfig
from .targets import TARGET_READING

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Train emocam's model: ImageNet -> FER-2013 -> target set (Ng et al., ICMI 2015).")

Fer = Annotated[Optional[Path], typer.Option(help="FER-2013 csv (.csv or .csv.gz) or folder with train/ and test/")]
FerPlus = Annotated[Optional[Path], typer.Option(help="FER+ votes (fer2013new.csv) to train on soft targets")]
Majority = Annotated[bool, typer.Option(help="with --ferplus: train on FER+'s most voted class instead")]
Target = Annotated[Optional[list[Path]], typer.Option(help="target set folder with train/<class>/ and val/<class>/; "
                                                           "repeat for several sets")]
Init = Annotated[str, typer.Option(help="imagenet, or a checkpoint (best.pt) to continue from")]
Rehearse = Annotated[int, typer.Option(help="with --fer: this many FER-2013 training faces, drawn anew, join each "
                                             "epoch on the target sets, so that FER-2013 is not forgotten")]
Distill = Annotated[float, typer.Option(help="with --rehearse: the share of each rehearsed face's target that is the "
                                           "starting model's own probabilities, so that it keeps its FER-2013 answers")]
Carve = Annotated[float, typer.Option(help="share of each target set's train persons kept apart to choose the epoch")]
FerFraming = Annotated[str, typer.Option(help="FER-2013 faces as they are (own) or re-cropped like live faces (live)")]
Footage = Annotated[float, typer.Option(help="share of training faces made to look like video: downscaled, blurred, "
                                             "relit")]
Turn = Annotated[float, typer.Option(help="share of training faces turned in depth (up to 60 degrees of yaw) and "
                                          "cropped again as the live side crops a turned face")]
YawFraming = Annotated[Optional[bool], typer.Option(help="frame turned faces from brow to chin, as a frontal face, "
                                                          "instead of by their projected eyes; the model's contract "
                                                          "says which (default: as the --init checkpoint, else off)")]
LogitAdjust = Annotated[float, typer.Option(help="logit-adjusted loss with this tau (1 is usual): rare classes such "
                                                 "as disgust and fear need less evidence; 0 is plain cross-entropy")]
Out = Annotated[Path, typer.Option(help="run folder for checkpoints, reports and the exported model")]
Arch = Annotated[Optional[str], typer.Option(help="mobilenet_v2, efficientnet_lite0, their _x2 forms (which upsample "
                                                   "the input 2x inside), alexnet or vgg_m (default: the --init "
                                                   "checkpoint's, else mobilenet_v2)")]
Size = Annotated[Optional[int], typer.Option(help="input side in pixels (default: the architecture's)")]
Weights = Annotated[Optional[Path], typer.Option(help="ImageNet state dict to use instead of torchvision's")]
Epochs = Annotated[int, typer.Option(min=1, help="epochs")]
Lr = Annotated[float, typer.Option(help="initial learning rate")]
Step = Annotated[int, typer.Option(help="divide the learning rate by 10 every this many epochs")]
Batch = Annotated[int, typer.Option(min=1, help="batch size")]
Momentum = Annotated[float, typer.Option(help="SGD momentum")]
Decay = Annotated[float, typer.Option(help="weight decay")]
Balance = Annotated[bool, typer.Option(help="sample classes evenly (disgust is 1.5% of FER-2013)")]
Erase = Annotated[float, typer.Option(help="share of training faces that get a random rectangle erased")]
Limit = Annotated[Optional[int], typer.Option(help="train on a random subset of this many faces (quick runs)")]
Seed = Annotated[int, typer.Option(help="random seed")]
Resume = Annotated[bool, typer.Option(help="continue from the run folder's last checkpoints")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")]
Threads = Annotated[Optional[int], typer.Option(help="CPU threads for torch")]
Export = Annotated[bool, typer.Option(help="export the final model to ONNX (and a TensorRT engine where present)")]


def fail(message: str, code: int = EXIT_USER_ERROR) -> None:
    """Tell the user what went wrong in one line and exit with ``code``."""
    print(f"emotrain: error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def _writable(*paths: Path) -> None:
    """Make the files' folders and check that files can be written there, before a long run (SinkError if not)."""
    from emocam.outputs import can_write

    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        can_write(path)


def _stage(preset: StageConfig, **kw) -> StageConfig:
    """``preset`` with the options given (``arch`` None: the --init checkpoint's); a value it refuses (an unknown
    framing, a share out of range) is a one-line error."""
    return _run(lambda: replace(preset, **kw))


def _run(action):
    """Run ``action``; user errors become one line on stderr and a non-zero exit."""
    from .data import DataError
    from .models import WeightsError
    from emocam.backends import BackendError
    from emocam.contract import ModelError
    from emocam.outputs import SinkError
    from emocam.sources import SourceError

    try:
        return action()
    except (DataError, WeightsError, ModelError, BackendError, SinkError, SourceError, ValueError) as e:
        fail(str(e))
    except OSError as e:  # a file that vanished or a folder that cannot be written: name it, not "[Errno 2]"
        fail(f"{e.filename}: {e.strerror}" if e.filename else str(e))
    except KeyboardInterrupt:
        fail("interrupted; rerun with --resume to continue from the last checkpoint",
             EXIT_SIGNALLED + signal.SIGINT)


def _export(checkpoints: list[Path], onnx_path: Path, fer: Path | None = None, mirror: bool = False,
            prior_correction: float = 0.0) -> None:
    """ONNX (checked against PyTorch on the first checkpoint's validation faces, or FER-2013 PrivateTest faces
    with ``fer``; ``prior_correction``: its TAU, with the class shares of ``fer``'s Training faces), the torch program
    beside it, and a TensorRT engine where TensorRT runs."""
    from emocam.backends import BackendError
    from emocam.outputs import check_paths

    outputs = {"--out": onnx_path, "its torch program": onnx_path.with_suffix(".pt2"),
               "its parity report": onnx_path.with_suffix(".parity.json")}
    _writable(*outputs.values())
    check_paths({f"checkpoint {c}": c for c in checkpoints}, outputs)

    from emocam.backends import build_engine

    from .export import export_onnx, export_program, fer_prior, load_checkpoint

    faces = prior = None
    if fer is not None:
        from .evaluate import fer_split

        contract = load_checkpoint(checkpoints[0])[1]
        faces = fer_split(fer, "PrivateTest", contract.pre).images[:64]
        if prior_correction:
            prior = fer_prior(fer, contract.classes, prior_correction)
    elif prior_correction:
        raise ValueError("--prior-correction takes the class shares of FER-2013 Training: pass --fer")
    print(f"exported {export_onnx(checkpoints, onnx_path, faces, mirror, prior)}")
    print(f"torch program {export_program(checkpoints, onnx_path)}")
    try:
        print(f"TensorRT engine {build_engine(onnx_path)}")
    except BackendError as e:  # no TensorRT or no GPU here: the ONNX model is the result
        print(f"no TensorRT engine built: {str(e).splitlines()[0]}")


# Every stage option's default is its preset's: one declaration, in train/config.py.
STAGE1, STAGE2 = PRESETS["cascade-stage1"], PRESETS["cascade-stage2"]
SINGLE, COMBINED, FER = PRESETS["single"], PRESETS["combined"], PRESETS["fer"]


@app.command()
def cascade(fer: Fer = STAGE1.fer, target: Target = None, ferplus: FerPlus = STAGE1.ferplus,
            ferplus_majority: Majority = STAGE1.ferplus_majority, out: Out = STAGE1.out.parent, arch: Arch = None,
            size: Size = STAGE1.size, weights: Weights = STAGE1.weights, epochs1: Epochs = STAGE1.epochs,
            lr1: Lr = STAGE1.lr, epochs2: Epochs = STAGE2.epochs, lr2: Lr = STAGE2.lr, step: Step = STAGE1.step,
            batch: Batch = STAGE1.batch, momentum: Momentum = STAGE1.momentum,
            weight_decay: Decay = STAGE1.weight_decay, balance: Balance = STAGE1.balance, erase: Erase = STAGE1.erase,
            footage: Footage = STAGE1.footage, turn: Turn = STAGE1.turn,
            yaw_framing: YawFraming = STAGE1.yaw_framing, logit_adjust: LogitAdjust = STAGE1.logit_adjust,
            carve: Carve = STAGE1.carve, fer_framing: FerFraming = STAGE1.fer_framing,
            rehearse: Rehearse = STAGE2.rehearse, distill: Distill = STAGE2.distill, limit: Limit = STAGE1.limit,
            seed: Seed = STAGE1.seed, resume: Resume = False, device: Device = STAGE1.device,
            threads: Threads = STAGE1.threads, export: Export = True) -> None:
    """The cascade: ImageNet -> FER-2013 (FER32) -> target sets, then export."""
    common = dict(arch=arch, size=size, batch=batch, momentum=momentum, weight_decay=weight_decay, step=step,
                  balance=balance, erase=erase, footage=footage, turn=turn, yaw_framing=yaw_framing,
                  logit_adjust=logit_adjust, carve=carve,
                  fer_framing=fer_framing, seed=seed,
                  device=device, threads=threads, fer=fer, target=tuple(target or ()))
    s1 = _stage(STAGE1, out=out / STAGE1.out.name, ferplus=ferplus, ferplus_majority=ferplus_majority,
                weights=weights, epochs=epochs1, lr=lr1, limit=limit, **common)
    s2 = _stage(STAGE2, out=out / STAGE2.out.name, epochs=epochs2, lr=lr2, rehearse=rehearse, distill=distill,
                **common)
    from .fit import cascade as run_cascade

    for folder in target or ():  # stage 2 reads them: say so before stage 1 makes its folder
        if not folder.is_dir():
            fail(f"target set folder not found: {folder}")
    best = _run(lambda: run_cascade(s1, s2, resume))
    if export:
        _run(lambda: _export([best], out / "model.onnx"))


@app.command()
def single(target: Target = None, out: Out = SINGLE.out, arch: Arch = None, size: Size = SINGLE.size,
           weights: Weights = SINGLE.weights, init: Init = SINGLE.init, epochs: Epochs = SINGLE.epochs,
           lr: Lr = SINGLE.lr, step: Step = SINGLE.step, batch: Batch = SINGLE.batch,
           momentum: Momentum = SINGLE.momentum, weight_decay: Decay = SINGLE.weight_decay,
           balance: Balance = SINGLE.balance, erase: Erase = SINGLE.erase, footage: Footage = SINGLE.footage,
           turn: Turn = SINGLE.turn, yaw_framing: YawFraming = SINGLE.yaw_framing,
           logit_adjust: LogitAdjust = SINGLE.logit_adjust,
           carve: Carve = SINGLE.carve, fer_framing: FerFraming = SINGLE.fer_framing,
           rehearse: Rehearse = SINGLE.rehearse, distill: Distill = SINGLE.distill, seed: Seed = SINGLE.seed,
           resume: Resume = False, device: Device = SINGLE.device, threads: Threads = SINGLE.threads,
           fer: Fer = SINGLE.fer, ferplus: FerPlus = SINGLE.ferplus, ferplus_majority: Majority = SINGLE.ferplus_majority,
           export: Export = False) -> None:
    """One stage on the target sets: from ImageNet (the paper's single scheme), or with --init from an earlier
    stage's checkpoint (the cascade's stage 2 alone); with --fer it is also scored on FER-2013 PrivateTest, and
    the faces --rehearse draws take FER+'s labels with --ferplus."""
    cfg = _stage(SINGLE, out=out, target=tuple(target or ()), fer=fer, ferplus=ferplus,
                 ferplus_majority=ferplus_majority, arch=arch, size=size, init=init,
                 weights=weights, epochs=epochs, lr=lr, step=step, batch=batch, momentum=momentum,
                 weight_decay=weight_decay, balance=balance, erase=erase, footage=footage, turn=turn,
                 yaw_framing=yaw_framing,
                 logit_adjust=logit_adjust, carve=carve,
                 fer_framing=fer_framing, rehearse=rehearse, distill=distill, seed=seed, device=device, threads=threads)
    from .fit import run_stage

    best = _run(lambda: run_stage(cfg, resume))
    if export:
        _run(lambda: _export([best], out / "model.onnx"))


@app.command()
def combined(fer: Fer = COMBINED.fer, target: Target = None, ferplus: FerPlus = COMBINED.ferplus,
             ferplus_majority: Majority = COMBINED.ferplus_majority, out: Out = COMBINED.out, arch: Arch = None,
             size: Size = COMBINED.size, weights: Weights = COMBINED.weights, epochs: Epochs = COMBINED.epochs,
             lr: Lr = COMBINED.lr, step: Step = COMBINED.step, batch: Batch = COMBINED.batch,
             momentum: Momentum = COMBINED.momentum, weight_decay: Decay = COMBINED.weight_decay,
             balance: Balance = COMBINED.balance, erase: Erase = COMBINED.erase, footage: Footage = COMBINED.footage,
             turn: Turn = COMBINED.turn, yaw_framing: YawFraming = COMBINED.yaw_framing,
             logit_adjust: LogitAdjust = COMBINED.logit_adjust,
             carve: Carve = COMBINED.carve, fer_framing: FerFraming = COMBINED.fer_framing,
             limit: Limit = COMBINED.limit, seed: Seed = COMBINED.seed, resume: Resume = False,
             device: Device = COMBINED.device, threads: Threads = COMBINED.threads, export: Export = False) -> None:
    """ImageNet -> FER32 and the target set's train split together, in one stage."""
    cfg = _stage(COMBINED, out=out, fer=fer, target=tuple(target or ()), ferplus=ferplus,
                 ferplus_majority=ferplus_majority, arch=arch, size=size, weights=weights, epochs=epochs, lr=lr,
                 step=step, batch=batch, momentum=momentum, weight_decay=weight_decay, balance=balance, erase=erase,
                 limit=limit, seed=seed, device=device, threads=threads, footage=footage, turn=turn,
                 yaw_framing=yaw_framing,
                 logit_adjust=logit_adjust, carve=carve,
                 fer_framing=fer_framing)
    from .fit import run_stage

    best = _run(lambda: run_stage(cfg, resume))
    if export:
        _run(lambda: _export([best], out / "model.onnx"))


@app.command()
def fer(fer: Fer = FER.fer, ferplus: FerPlus = FER.ferplus, ferplus_majority: Majority = FER.ferplus_majority,
        target: Target = None, out: Out = FER.out, variant: str = FER.data, arch: Arch = None, size: Size = FER.size,
        weights: Weights = FER.weights, init: Init = FER.init, epochs: Epochs = FER.epochs, lr: Lr = FER.lr,
        step: Step = FER.step, batch: Batch = FER.batch, momentum: Momentum = FER.momentum,
        weight_decay: Decay = FER.weight_decay, balance: Balance = FER.balance, erase: Erase = FER.erase,
        footage: Footage = FER.footage, turn: Turn = FER.turn, yaw_framing: YawFraming = FER.yaw_framing,
        logit_adjust: LogitAdjust = FER.logit_adjust,
        carve: Carve = FER.carve, fer_framing: FerFraming = FER.fer_framing,
        limit: Limit = FER.limit, seed: Seed = FER.seed, resume: Resume = False, device: Device = FER.device,
        threads: Threads = FER.threads, export: Export = False) -> None:
    """FER-2013 only (FER28 or FER32), from ImageNet or a checkpoint; with --target also scored on the target set."""
    cfg = _stage(FER, out=out, data=variant, fer=fer, ferplus=ferplus, ferplus_majority=ferplus_majority,
                 target=tuple(target or ()), arch=arch, size=size, init=init, weights=weights, epochs=epochs, lr=lr,
                 step=step, batch=batch, momentum=momentum, weight_decay=weight_decay, balance=balance, erase=erase,
                 limit=limit, seed=seed, device=device, threads=threads, footage=footage, turn=turn,
                 yaw_framing=yaw_framing,
                 logit_adjust=logit_adjust, carve=carve,
                 fer_framing=fer_framing)
    from .fit import run_stage

    best = _run(lambda: run_stage(cfg, resume))
    if export:
        _run(lambda: _export([best], out / "model.onnx"))


@app.command()
def evaluate(model: Annotated[Path, typer.Argument(help="exported ONNX model")],
             fer: Fer = None, split: Annotated[str, typer.Option(help="FER-2013 split")] = "PrivateTest",
             folder: Annotated[Optional[Path], typer.Option(help="labelled image folder <class>/*")] = None,
             out: Annotated[Optional[Path], typer.Option(help="write OUT.json and the confusion matrix OUT.png")] = None,
             backend: BackendOpt = "onnxruntime", reading: ReadingOpt = TARGET_READING) -> None:
    """Accuracy, mean per-class recall, per-class recall and confusion matrix on a FER-2013 split or a folder."""
    from emocam.reading import resolve_reading

    from .evaluate import evaluate_model, load_for, result_files, write_result

    face_reading = _run(lambda: resolve_reading(reading))
    if out is not None:  # checked before the evaluation, which takes a while
        _run(lambda: _writable(*result_files(out)))
    faces, found = _run(lambda: load_for(model, fer, split, folder, face_reading))
    result = {**_run(lambda: evaluate_model(model, faces, backend)), **found}
    if folder is not None:  # FER-2013's faces come cropped: no reading applies to them
        result["reading"] = face_reading.to_dict()
    shown = ("data", "images", "found", "n", "coverage", "gated", "accuracy", "mean_recall", "recall", "reading")
    print(json.dumps({k: result[k] for k in shown if k in result}, indent=1))
    if out is not None:
        _run(lambda: write_result(result, out))


@app.command()
def measure(fer: Fer = None,
            faces: Annotated[int, typer.Option(help="FER-2013 Training faces to sample")] = 1500, seed: Seed = 0,
            out: Annotated[Path, typer.Option(help="JSON to write")] = Path("docs/results/framing.json")) -> None:
    """FER-2013's framing (crop margins around the eyes), the head poses of its training faces and the keypoint-pose
    constants, as the live detector and landmarks see them: where CropSpec's and the quality gate's defaults come
    from."""
    from .data import measure_fer

    if fer is None:
        fail("give --fer (FER-2013's csv)")
    result = _run(lambda: measure_fer(fer, faces, seed))
    text = json.dumps(result, indent=1)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")


@app.command("export")
def export_cmd(
    checkpoints: Annotated[list[Path], typer.Argument(help="a stage's best.pt; several make an ensemble")],
    out: Annotated[Path, typer.Option(help="ONNX file to write")] = Path("model.onnx"),
    fer: Annotated[Optional[Path], typer.Option(help="check on FER-2013 PrivateTest faces from this csv")] = None,
    mirror: Annotated[bool, typer.Option(help="average each face with its mirror image (twice the cost)")] = False,
    prior_correction: Annotated[float, typer.Option(
        min=0.0, help="TAU: divide each class's probability by its share of FER-2013 Training (--fer) to the power "
                      "TAU, so that the classes seen most get no head start (0: off)")] = 0.0,
) -> None:
    """ONNX with a dynamic batch axis and the preprocessing contract, checked against PyTorch on real faces. Several
    checkpoints are averaged into one model (an ensemble), each network fed in its own normalisation."""
    _run(lambda: _export(checkpoints, out, fer, mirror, prior_correction))


@app.command()
def table(results: Annotated[list[Path], typer.Argument(help="evaluate --out JSON files named SCHEME-SET.json")]) -> None:
    """A markdown table of evaluation results: one row per scheme, accuracy and mean recall per test set."""
    from .evaluate import markdown_table

    print(_run(lambda: markdown_table(results)))


@app.command()
def engine(onnx: Annotated[Path, typer.Argument(help="exported ONNX model")],
           out: Annotated[Optional[Path], typer.Option(help="engine file (default: NAME.fp16.engine beside it)")] = None,
           max_batch: Annotated[int, typer.Option(help="largest batch the engine accepts")] = MAX_BATCH,
           fp32: Annotated[bool, typer.Option("--fp32", help="build in fp32 instead of fp16")] = False) -> None:
    """A TensorRT engine for this GPU, with a JSON sidecar of the TensorRT version, GPU, profile and ONNX it fits."""
    from emocam.backends import build_engine

    built = _run(lambda: build_engine(onnx, out, opt_batch=min(OPT_BATCH, max_batch), max_batch=max_batch,
                                      fp16=not fp32))
    print(f"TensorRT engine {built}")


def run(argv: list[str] | None = None) -> int:
    """The ``emotrain`` command on ``argv`` (default: the process's arguments) in this process; its exit code. Usage
    errors, too, are one line."""
    try:
        code = app(args=argv, prog_name="emotrain", standalone_mode=False)
    except SystemExit as e:
        return left_while_printing(e)
    except typer.TyperException as e:  # bad or missing options and arguments (no arguments: the help, printed)
        if e.format_message():
            print(f"emotrain: error: {e.format_message()}", file=sys.stderr)
        return EXIT_USER_ERROR
    except ModuleNotFoundError as e:  # emocam installed without the training extra (pip install emocam)
        if not optional(e):
            raise
        print(f"emotrain: error: {missing(e.name)} (or make setup-train in a checkout)", file=sys.stderr)
        return EXIT_USER_ERROR
    return code if isinstance(code, int) else 0


def main() -> None:
    """Entry point of the ``emotrain`` script: ``run`` with native libraries' log lines dropped."""
    from emocam.recognizer import quiet_native_stderr

    quiet_native_stderr()
    sys.exit(run())


if __name__ == "__main__":
    main()
