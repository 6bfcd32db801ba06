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
        classes = d["classes"]
        # A bare string would pass tuple() as one class per letter.
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes):
            raise ValueError(f"'classes' must be a list of class names, got {json.dumps(classes)}")
        if len(set(classes)) != len(classes):
            raise ValueError(f"'classes' names a class twice: {', '.join(classes)}")
        return cls(classes=tuple(classes), pre=Preprocess.from_dict(d["preprocess"]), info=d.get("info", {}))


def read_contract(model: Path) -> ModelContract:
    """The contract stored in an ONNX model's metadata; ModelError says what is wrong if it cannot be read."""
    import onnxruntime as ort

    model = Path(model)
    if not model.is_file():
        raise ModelError(f"model file not found: {model}")
    try:
        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises several unrelated types for a bad file
        raise ModelError(f"{model} is not a readable ONNX model ({str(e).splitlines()[0][:120]})") from None
    return session_contract(session, model)


def session_contract(session, model: Path) -> ModelContract:
    """The contract of an onnxruntime session's model, checked against the network's input and output shapes."""
    contract = contract_from_metadata(session.get_modelmeta().custom_metadata_map, model)
    check_network(contract, session.get_inputs()[0].shape, session.get_outputs()[0].shape, model)
    return contract


def check_network(contract: ModelContract, input_shape: list, output_shape: list, model: Path) -> None:
    """ModelError naming the first way the network's shapes (named axes match anything) differ from the contract."""
    pre = contract.pre
    if len(input_shape) != 4:
        raise ModelError(f"{model} takes input of shape {input_shape}; emocam models take (batch, channels, size, size)")
    expected = {"input channels": (input_shape[1], pre.channels), "input height": (input_shape[2], pre.size),
                "input width": (input_shape[3], pre.size), "outputs": (output_shape[-1], len(contract.classes))}
    for what, (network, meta) in expected.items():
        if isinstance(network, int) and network != meta:
            said = f"{meta} classes" if what == "outputs" else f"{what} {meta}"
            raise ModelError(f"{model}: its '{METADATA_KEY}' metadata says {said}, but the network has {what} {network}")


def contract_from_metadata(metadata: dict, model: Path) -> ModelContract:
    """Parse the contract out of an ONNX metadata map."""
    text = metadata.get(METADATA_KEY)
    if text is None:
        raise ModelError(f"{model} has no '{METADATA_KEY}' metadata; export it with 'emotrain export'")
    try:
        return ModelContract.from_json(text)
    except (ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{model} has malformed '{METADATA_KEY}' metadata: {e}") from None
