"""The networks of an exported model taken back out of its torch program (``emotrain export`` writes NAME.pt2 beside
NAME.onnx) as checkpoints that a later stage can start from (``emotrain single --init``):

    python scripts/networks_from_program.py engines/emocam.onnx runs/shipped
    -> runs/shipped/0_mobilenet_v2_x2/best.pt, runs/shipped/1_mobilenet_v2/best.pt

Each checkpoint holds its network's weights, the model's contract and, as its origin, the program it came from.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from emocam.contract import ModelContract, read_contract
from emocam.train.models import build_model, input_preprocess


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("onnx", type=Path, help="an exported model; its .pt2 must lie beside it")
    parser.add_argument("out", type=Path, help="folder for one run folder per network")
    args = parser.parse_args()
    contract = read_contract(args.onnx)
    members = contract.info.get("members") or [contract.info]
    weights = torch.export.load(args.onnx.with_suffix(".pt2")).state_dict
    for i, member in enumerate(members):
        arch = member["arch"]
        prefix = f"models.{i}."
        model = build_model(arch, len(contract.classes), contract.pre.channels, "scratch")
        model.load_state_dict({k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)})
        own = ModelContract(contract.classes, input_preprocess(arch), {"arch": arch})
        folder = args.out / f"{i}_{arch}"
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({"model": model.state_dict(), "config": {"arch": arch, "size": None, "data": member.get("stage"),
                                                            "out": str(folder)},
                    "contract": own.to_json(), "origin": {"program": str(args.onnx.with_suffix(".pt2")), "member": i},
                    "epoch": 0, "best": 0.0, "best_epoch": member.get("best_epoch", 0), "history": []},
                   folder / "best.pt")
        print(folder / "best.pt")


if __name__ == "__main__":
    main()
