"""The model's contract (class names and preprocessing), carried in the ONNX file's metadata."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .align import Preprocess

METADATA_KEY = "emocam"


class ModelError(Exception):
    """A model file that is missing, unreadable or lacks its contract."""


@dataclass(frozen=True)
class ModelContract:
    """What a model expects and what it answers: read from, and written to, its metadata."""

    classes: tuple[str, ...]
    pre: Preprocess
    info: dict = field(default_factory=dict, compare=False)

    def to_json(self) -> str:
        return json.dumps({"classes": list(self.classes), "preprocess": self.pre.to_dict(), "info": self.info})

    @classmethod
    def from_json(cls, text: str) -> "ModelContract":
        d = json.loads(text)
        return cls(classes=tuple(d["classes"]), pre=Preprocess.from_dict(d["preprocess"]), info=d.get("info", {}))


def read_contract(model: Path) -> ModelContract:
    """The contract stored in an ONNX model's metadata; ModelError says what is wrong if it cannot be read."""
    import onnxruntime as ort

    model = Path(model)
    if not model.is_file():
        raise ModelError(f"model file not found: {model}")
    try:
        meta = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_modelmeta()
    except Exception as e:  # onnxruntime raises several unrelated types for a bad file
        raise ModelError(f"{model} is not a readable ONNX model ({str(e).splitlines()[0][:120]})") from None
    return contract_from_metadata(meta.custom_metadata_map, model)


def contract_from_metadata(metadata: dict, model: Path) -> ModelContract:
    """Parse the contract out of an ONNX metadata map."""
    text = metadata.get(METADATA_KEY)
    if text is None:
        raise ModelError(f"{model} has no '{METADATA_KEY}' metadata; export it with 'emotrain export'")
    try:
        return ModelContract.from_json(text)
    except (ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{model} has malformed '{METADATA_KEY}' metadata: {e}") from None
