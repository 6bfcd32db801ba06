"""On a GPU machine: run the backend parity test, measure every backend present, write docs/benchmarks.md.

Usage: python scripts/gpu_check.py [--model MODEL.onnx] [--seconds 3]      (default: the shipped engines/emocam.onnx)
The parity test reads real faces from ../shared/data, $EMOCAM_DATA, or $EMOCAM_FACES (a .npy of 48x48 uint8 crops).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emocam.backends import BackendError, TorchBackend, open_backend, open_tensorrt, throughput  # noqa: E402

BATCHES = (1, 8, 64)


def backends(model: Path):
    """(label, opener) for every backend worth measuring, fastest kind first."""
    pt2 = model.with_suffix(".pt2")
    return [("tensorrt fp16", lambda: open_tensorrt(model, 0, fp16=True)),
            ("tensorrt fp32", lambda: open_tensorrt(model, 0, fp16=False)),
            ("onnxruntime-tensorrt fp16", lambda: open_backend(model, "onnxruntime-tensorrt")),
            ("onnxruntime-cuda fp32", lambda: open_backend(model, "onnxruntime-cuda")),
            ("torch cuda fp16 + CUDA graphs", lambda: TorchBackend(pt2, 0, fp16=True)),
            ("torch cuda fp16", lambda: TorchBackend(pt2, 0, fp16=True, graphs=False)),
            ("torch cuda fp32 + CUDA graphs", lambda: TorchBackend(pt2, 0, fp16=False)),
            ("onnxruntime cpu (1 thread)", lambda: open_backend(model, "onnxruntime", threads=1))]


def machine() -> str:
    """One line: GPU, driver-visible versions of the runtimes."""
    import onnxruntime
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA GPU"
    try:
        import tensorrt
        trt = tensorrt.__version__
    except ImportError:
        trt = "not installed"
    return (f"{gpu}; Python {platform.python_version()}; torch {torch.__version__}; onnxruntime {onnxruntime.__version__} "
            f"({', '.join(onnxruntime.get_available_providers())}); TensorRT {trt}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "engines" / "emocam.onnx",
                        help="emocam ONNX (model.pt2 beside it for torch)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds measured per batch size")
    args = parser.parse_args()
    command = " ".join(["python", *sys.argv])
    test = subprocess.run([sys.executable, "-m", "pytest", "-v", "-rs", "-p", "no:cacheprovider",
                           "tests/test_backends.py"], cwd=ROOT, capture_output=True, text=True)
    lines = [ln for ln in test.stdout.splitlines() if "test_backend_matches" in ln or ln.startswith(("SKIPPED", "FAILED"))
             or " passed" in ln or " failed" in ln]
    rows = []
    for label, opener in backends(args.model):
        try:
            rates = throughput(opener(), BATCHES, args.seconds)
            rows.append(f"| {label} | " + " | ".join(f"{rates[n]:,.0f}" for n in BATCHES) + " |")
        except BackendError as e:
            rows.append(f"| {label} | not here: {e} |" + " |" * (len(BATCHES) - 1))
        except Exception as e:  # a backend that breaks is a result to record, not a reason to stop
            rows.append(f"| {label} | FAILED: {type(e).__name__}: {str(e).splitlines()[0]} |" + " |" * (len(BATCHES) - 1))
        print(rows[-1], flush=True)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    report = [
        "# Inference backends: parity and throughput", "",
        f"Measured {now} with `{command}` on: {machine()}.", "",
        f"Model: `{os.path.relpath(args.model, ROOT)}`. Faces per second through `emocam.backends.throughput` "
        f"(numpy in, probabilities out, host-device copies included), {args.seconds:g} s per batch size after 3 "
        "warm-up calls.", "",
        "| backend | " + " | ".join(f"batch {n}" for n in BATCHES) + " |",
        "| --- |" + " ---: |" * len(BATCHES), *rows, "",
        f"## Parity with ONNX Runtime on CPU (`pytest tests/test_backends.py`, exit {test.returncode})", "",
        "```", *lines, "```", ""]
    out = ROOT / "docs" / "benchmarks.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(report))
    print(f"wrote {out}; parity test exit {test.returncode}")
    sys.exit(test.returncode)


if __name__ == "__main__":
    main()
