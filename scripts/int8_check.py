"""What int8 would do to an exported model: ONNX Runtime's static quantisation, its accuracy, its agreement with the
fp32 model and its speed on this CPU.

The int8 copy is calibrated on FER-2013 Training faces (QDQ, per-channel int8 weights, uint8 activations, min-max
ranges) and compared with the fp32 model on a FER-2013 split that is not reported as a test result (PublicTest):
accuracy of each, how often their top classes agree, and the distribution of the largest probability difference per
face. Speed: faces per second of each at batch 1 and 8 on one thread.

    python scripts/int8_check.py engines/emocam.onnx --fer ../shared/data/fer2013/fer2013.csv.gz --out /tmp/int8.onnx
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from emocam.align import to_tensor
from emocam.backends import OnnxRuntimeBackend, throughput
from emocam.contract import read_contract
from emocam.train.evaluate import fer_split


class Calibration(CalibrationDataReader):
    """FER-2013 faces for quantize_static, in batches."""

    def __init__(self, x: np.ndarray, batch: int = 32) -> None:
        self.batches = iter([x[i:i + batch] for i in range(0, len(x), batch)])

    def get_next(self) -> dict | None:
        batch = next(self.batches, None)
        return None if batch is None else {"faces": batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="an ONNX model from 'emotrain export'")
    parser.add_argument("--fer", type=Path, required=True, help="FER-2013 csv")
    parser.add_argument("--out", type=Path, required=True, help="where to write the int8 copy")
    parser.add_argument("--calibrate", type=int, default=256, help="FER-2013 Training faces to calibrate on")
    parser.add_argument("--split", default="PublicTest", help="FER-2013 split to compare on")
    args = parser.parse_args()

    pre = read_contract(args.model).pre
    train = fer_split(args.fer, "Training", pre)
    pick = np.random.default_rng(0).choice(len(train.images), args.calibrate, replace=False)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(args.model), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(args.out), Calibration(to_tensor(train.images[pick], pre)),
                        quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
    quantized = onnx.load(str(args.out))  # the contract travels in the metadata, which quantisation drops
    quantized.metadata_props.extend(onnx.load(str(args.model)).metadata_props)
    onnx.save(quantized, str(args.out))

    faces = fer_split(args.fer, args.split, pre)
    x = to_tensor(faces.images, pre)
    report = {"split": args.split, "faces": len(x), "calibration_faces": args.calibrate}
    probs = {}
    for name, path in (("fp32", args.model), ("int8", args.out)):
        backend = OnnxRuntimeBackend(path, threads=1)
        probs[name] = np.concatenate([backend.predict(x[i:i + 64]) for i in range(0, len(x), 64)])
        report[name] = {"accuracy": round(float((probs[name].argmax(1) == faces.labels).mean()), 4),
                        "faces_per_s": {n: round(r, 1) for n, r in throughput(backend, (1, 8)).items()}}
    diff = np.abs(probs["int8"] - probs["fp32"]).max(1)
    report["top_class_agreement"] = round(float((probs["int8"].argmax(1) == probs["fp32"].argmax(1)).mean()), 4)
    report["max_abs_diff"] = {"p50": round(float(np.median(diff)), 4), "p99": round(float(np.percentile(diff, 99)), 4),
                              "max": round(float(diff.max()), 4)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
