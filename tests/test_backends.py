"""Every backend that runs here gives ONNX Runtime's CPU probabilities for the same real faces; the rest say why not."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from emocam.align import Preprocess, crop_face, prepare_gray, to_tensor
from emocam.predictor import BatchedPredictor
from emocam.contract import ModelContract, read_contract
from emocam.backends import (BackendError, OnnxRuntimeBackend, TorchBackend, open_backend, open_tensorrt,
                              open_torch, throughput)

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
DATA = Path(os.environ.get("EMOCAM_DATA", Path(__file__).parents[1].parent / "shared" / "data"))
FP32, FP16 = 1e-4, 5e-3
SHIPPED = Path(__file__).parents[1] / "engines"
# The shipped model's (first) network; an ensemble's contract names its networks' architectures joined by "+".
ARCH = read_contract(SHIPPED / "emocam.onnx").info["arch"].split("+")[0]


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    """70 real 48x48 face crops: the detected faces of multi_face.jpg, then FER-2013 faces (or $EMOCAM_FACES, a .npy)."""
    if "EMOCAM_FACES" in os.environ:
        return np.load(os.environ["EMOCAM_FACES"])
    if not DATA.is_dir():
        pytest.skip(f"real data not found at {DATA} (set EMOCAM_DATA or EMOCAM_FACES)")
    import cv2

    from emocam.train.data import read_fer_csv

    pre = Preprocess(48)
    crops = []
    try:
        from emocam.detect import FaceDetector

        image = cv2.imread(str(DATA / "images" / "multi_face.jpg"))
        with FaceDetector(range="both") as detect:
            crops = [crop_face(image, e[0], e[1], pre) for e in detect(image).eyes]
    except ImportError:  # no mediapipe (a bare GPU box): FER-2013 faces alone are real faces too
        pass
    images, _, _ = read_fer_csv(DATA / "fer2013" / "fer2013.csv.gz")
    crops += [prepare_gray(im, pre) for im in images[:70 - len(crops)]]
    return np.stack(crops)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shipped model (emocam.onnx and its torch program emocam.pt2): real trained weights, so that
    the parity figures are those users get. A copy, so that engines built by the tests stay out of engines/."""
    folder = tmp_path_factory.mktemp("model")
    for name in ("emocam.onnx", "emocam.pt2"):
        shutil.copy(SHIPPED / name, folder / name)
    return folder / "emocam.onnx"


def write_checkpoint(path: Path, arch: str, pre: Preprocess, faces: np.ndarray) -> Path:
    """A checkpoint as emotrain writes it, of ``arch`` with ImageNet features where they can be had."""
    import torch

    from emocam.train.models import WeightsError, build_model

    torch.manual_seed(0)
    try:
        net = build_model(arch, len(CLASSES), 1, "imagenet")
    except WeightsError:
        net = build_model(arch, len(CLASSES), 1, "scratch")
    with torch.no_grad():
        # A fresh head answers near 1/7 for every class, which would make any two outputs look equal.
        [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1].weight *= 4.0
    torch.save({"model": net.state_dict(), "contract": ModelContract(CLASSES, pre, {}).to_json(),
                "sample_faces": faces, "config": {"arch": arch, "data": "test"}}, path)
    return path


@pytest.fixture(scope="module")
def checkpoint(faces: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of the shipped architecture, for export tests."""
    return write_checkpoint(tmp_path_factory.mktemp("checkpoint") / "best.pt", ARCH, Preprocess(48), faces)


@pytest.fixture(scope="module")
def reference(model: Path, faces: np.ndarray) -> np.ndarray:
    """ONNX Runtime's CPU probabilities: what every backend must reproduce."""
    backend = OnnxRuntimeBackend(model)
    return backend.predict(to_tensor(faces, backend.contract.pre))


@pytest.mark.slow
def test_reference_is_a_confident_spread_of_probabilities(reference: np.ndarray) -> None:
    assert reference.shape == (70, len(CLASSES))
    np.testing.assert_allclose(reference.sum(axis=1), 1.0, atol=1e-5)
    assert reference.max(axis=1).mean() > 0.5 and reference.std(axis=0).max() > 0.05


def _open(spec: str, model: Path):
    runtime, _, setting = spec.partition(":")
    if runtime == "torch":
        device, precision = setting.split("-")
        return TorchBackend(model.with_suffix(".pt2"), "cpu" if device == "cpu" else 0, fp16=precision == "fp16")
    if runtime == "tensorrt":
        return open_tensorrt(model, 0, fp16=setting == "fp16")
    return open_backend(model, runtime, device=0)


@pytest.mark.slow
@pytest.mark.parametrize("spec, tolerance", [
    ("torch:cpu-fp32", FP32), ("torch:cuda-fp32", FP32), ("torch:cuda-fp16", FP16),
    ("onnxruntime-cuda", FP32), ("onnxruntime-tensorrt", FP16), ("tensorrt:fp32", FP32), ("tensorrt:fp16", FP16)])
def test_backend_matches_onnxruntime_cpu(spec: str, tolerance: float, model: Path, faces: np.ndarray,
                                         reference: np.ndarray) -> None:
    try:
        backend = _open(spec, model)
    except BackendError as e:
        pytest.skip(f"{spec} cannot run here: {e}")
    x = to_tensor(faces, backend.contract.pre)
    # 1, 5 and 70 faces: new input shapes, a part-filled CUDA graph, and more than one 64-face engine call.
    for n in (1, 5, 70):
        got = backend.predict(x[:n])
        assert got.dtype == np.float32 and got.shape == (n, len(CLASSES))
        diff = float(np.abs(got - reference[:n]).max())
        assert diff <= tolerance, f"{backend.name} differs from onnxruntime on CPU by {diff:.2e} with {n} faces"


@pytest.mark.slow
def test_fp16_onnx_for_tensorrt_keeps_float32_io_and_the_answers(model: Path, faces: np.ndarray,
                                                                 reference: np.ndarray, tmp_path: Path) -> None:
    from emocam.backends.tensorrt_engine import fp16_onnx

    half = tmp_path / "half.onnx"
    half.write_bytes(fp16_onnx(model))
    backend = OnnxRuntimeBackend(half)
    got = backend.predict(to_tensor(faces, backend.contract.pre))
    assert got.dtype == np.float32
    assert float(np.abs(got - reference).max()) <= FP16


@pytest.mark.slow
def test_mirror_export_averages_each_face_with_its_mirror_image(checkpoint: Path, faces: np.ndarray,
                                                               tmp_path: Path) -> None:
    from emocam.train.export import export_program
    from emocam.train.export import export_onnx

    plain = OnnxRuntimeBackend(export_onnx([checkpoint], tmp_path / "plain.onnx"))
    mirrored = export_onnx([checkpoint], tmp_path / "mirror.onnx", mirror=True)
    assert read_contract(mirrored).info["mirror"] is True
    x = to_tensor(faces, Preprocess(48))
    flipped = np.ascontiguousarray(x[..., ::-1])
    got = OnnxRuntimeBackend(mirrored).predict(x)
    np.testing.assert_allclose(got, (plain.predict(x) + plain.predict(flipped)) / 2, atol=1e-5)
    np.testing.assert_allclose(OnnxRuntimeBackend(mirrored).predict(flipped), got, atol=1e-5)
    program = TorchBackend(export_program([checkpoint], mirrored), "cpu")
    np.testing.assert_allclose(program.predict(x), got, atol=FP32)


@pytest.mark.slow
def test_export_prior_correction_divides_by_the_fer_training_shares(checkpoint: Path, faces: np.ndarray,
                                                                     tmp_path: Path) -> None:
    import csv
    import gzip

    from conftest import run_here, says
    from emocam.train.export import export_onnx

    counts = np.array([1, 2, 4, 8, 16, 32, 64])  # Training faces per class; PrivateTest faces check the export
    rows = [(c, " ".join(map(str, face.ravel())), "Training") for c, n in enumerate(counts) for face in faces[:n]]
    rows += [(3, " ".join(map(str, face.ravel())), "PrivateTest") for face in faces[:8]]
    fer = tmp_path / "fer.csv.gz"
    with gzip.open(fer, "wt", newline="") as f:
        csv.writer(f).writerows([("emotion", "pixels", "Usage"), *rows])
    done = run_here("emotrain", "export", checkpoint, "--fer", fer, "--prior-correction", "0.5", "--out",
                    tmp_path / "c.onnx")
    assert done.returncode == 0, done.stderr
    prior = read_contract(tmp_path / "c.onnx").info["prior_correction"]
    weights = counts ** -0.5 / np.mean(counts ** -0.5)
    assert prior["tau"] == 0.5 and np.allclose(prior["weights"], weights, atol=1e-5)
    x = to_tensor(faces, Preprocess(48))
    plain = OnnxRuntimeBackend(export_onnx([checkpoint], tmp_path / "plain.onnx")).predict(x) * weights
    got = OnnxRuntimeBackend(tmp_path / "c.onnx").predict(x)
    np.testing.assert_allclose(got, plain / plain.sum(1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(TorchBackend(tmp_path / "c.pt2", "cpu").predict(x), got, atol=FP32)
    says(run_here("emotrain", "export", checkpoint, "--prior-correction", "1", "--out", tmp_path / "d.onnx"),
         "--prior-correction takes the class shares of FER-2013 Training: pass --fer", program="emotrain")


@pytest.mark.slow
def test_ensemble_export_averages_its_networks_each_in_its_own_normalisation(checkpoint: Path, faces: np.ndarray,
                                                                              tmp_path: Path) -> None:
    from emocam.train.export import export_program
    from emocam.train.export import export_onnx

    lite_pre = Preprocess(48, mean=0.449, std=0.226)  # the first network's is 0.5, 0.5
    lite = write_checkpoint(tmp_path / "lite.pt", "efficientnet_lite0", lite_pre, faces)
    first = OnnxRuntimeBackend(export_onnx([checkpoint], tmp_path / "first.onnx"))
    second = OnnxRuntimeBackend(export_onnx([lite], tmp_path / "second.onnx"))
    both = export_onnx([checkpoint, lite], tmp_path / "both.onnx")
    info = read_contract(both).info
    assert info["arch"] == f"{ARCH}+efficientnet_lite0" and len(info["members"]) == 2
    x = to_tensor(faces, first.contract.pre)
    p1, p2 = first.predict(x), second.predict(to_tensor(faces, lite_pre))
    assert float(np.abs(p1 - p2).max()) > 1e-2
    got = OnnxRuntimeBackend(both).predict(x)
    np.testing.assert_allclose(got, (p1 + p2) / 2, atol=1e-5)
    program = TorchBackend(export_program([checkpoint, lite], both), "cpu")
    np.testing.assert_allclose(program.predict(x), got, atol=FP32)


def test_tensorrt_without_tensorrt_says_what_to_install(model: Path) -> None:
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    with pytest.raises(BackendError) as e:
        open_backend(model, "tensorrt")
    assert "pip install tensorrt" in str(e.value) and "\n" not in str(e.value)


def test_gpu_only_backends_refuse_the_cpu_and_unknown_names_list_the_choices(model: Path) -> None:
    with pytest.raises(BackendError, match="runs on a GPU only"):
        open_backend(model, "onnxruntime-cuda", device="cpu")
    with pytest.raises(BackendError, match="choose auto, tensorrt"):
        open_backend(model, "tflite")


def test_auto_picks_a_backend_that_runs_and_cpu_means_onnxruntime(model: Path, faces: np.ndarray,
                                                                 reference: np.ndarray) -> None:
    import torch

    assert open_backend(model, "auto", device="cpu").name == "onnxruntime"
    backend = open_backend(model, "auto")
    if not torch.cuda.is_available():
        assert backend.name == "onnxruntime"
    got = backend.predict(to_tensor(faces, backend.contract.pre))
    assert float(np.abs(got - reference).max()) <= FP16


@pytest.mark.slow
def test_torch_program_carries_the_contract_and_refuses_another_onnx(model: Path, tmp_path: Path) -> None:
    backend = open_torch(model, "cpu")
    assert backend.contract == read_contract(model)
    other = tmp_path / "model.onnx"
    shutil.copy(model, other)
    shutil.copy(model.with_suffix(".pt2"), other.with_suffix(".pt2"))
    other.write_bytes(other.read_bytes() + b"\0")  # a different file, same name
    with pytest.raises(BackendError, match="was not exported with"):
        open_torch(other, "cpu")


def test_throughput_counts_faces_per_second(model: Path) -> None:
    rates = throughput(OnnxRuntimeBackend(model), batches=(1, 4), seconds=0.2)
    assert set(rates) == {1, 4} and all(r > 0 for r in rates.values())


def test_batched_predictor_returns_frames_in_order_with_their_own_answers(model: Path, faces: np.ndarray,
                                                                          reference: np.ndarray) -> None:
    backend = OnnxRuntimeBackend(model)
    x = to_tensor(faces, backend.contract.pre)
    sizes = [3, 0, 5, 1, 0, 20, 2, 30, 9]  # 70 faces over 9 frames, two of them empty
    starts = np.cumsum([0] + sizes)
    batcher = BatchedPredictor(backend, max_faces=16, max_frames=3)
    done = []
    for frame, (s, n) in enumerate(zip(starts, sizes)):
        done += batcher.put(frame, x[s:s + n])
        assert len(batcher) < 3
    done += batcher.flush()
    assert [frame for frame, _ in done] == list(range(len(sizes)))
    for (frame, probs), s, n in zip(done, starts, sizes):
        assert probs.shape == (n, len(CLASSES))
        np.testing.assert_allclose(probs, reference[s:s + n], atol=FP32)
    assert batcher.flush() == []


def test_batched_predictor_rejects_empty_limits(model: Path) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        BatchedPredictor(OnnxRuntimeBackend(model), max_faces=0)


# The engine sidecar: pure functions, so they run without TensorRT or a GPU.

FACTS = {"tensorrt": "10.13.3.9", "gpu": "NVIDIA H200", "compute_capability": "9.0"}


def test_engine_is_reused_only_when_every_sidecar_field_matches(model: Path, tmp_path: Path) -> None:
    from emocam.backends.tensorrt_engine import Profile, describe, stale_reason

    built = describe(model, True, Profile(), FACTS)
    assert json.loads(json.dumps(built)) == built
    assert stale_reason(built, describe(model, True, Profile(), FACTS)) is None
    assert stale_reason(None, built) == "it has no readable sidecar"
    assert "precision" in stale_reason(built, describe(model, False, Profile(), FACTS))
    assert "profile" in stale_reason(built, describe(model, True, Profile(max=128), FACTS))
    assert "gpu" in stale_reason(built, describe(model, True, Profile(), dict(FACTS, gpu="NVIDIA L4")))
    assert "compute_capability" in stale_reason(built, describe(model, True, Profile(),
                                                                dict(FACTS, compute_capability="8.9")))
    assert "tensorrt" in stale_reason(built, describe(model, True, Profile(), dict(FACTS, tensorrt="11.4.0.106")))
    changed = tmp_path / "model.onnx"
    changed.write_bytes(model.read_bytes() + b"\0")
    assert stale_reason(built, describe(changed, True, Profile(), FACTS)) == "the ONNX file changed since it was built"


def test_engine_paths_sidecars_and_profiles(tmp_path: Path) -> None:
    from emocam.backends.tensorrt_engine import Profile, engine_path, read_sidecar, sidecar_path

    engine = engine_path(tmp_path / "model.onnx")
    assert engine.name == "model.fp16.engine" and engine_path(tmp_path / "m.onnx", fp16=False).name == "m.fp32.engine"
    assert sidecar_path(engine).name == "model.fp16.engine.json"
    assert read_sidecar(engine) is None
    sidecar_path(engine).write_text("{not json")
    assert read_sidecar(engine) is None
    with pytest.raises(ValueError, match="min <= opt <= max"):
        Profile(1, 16, 8)


def test_engine_for_without_tensorrt_raises_backend_error(model: Path) -> None:
    from emocam.backends.tensorrt_engine import build_engine, engine_for

    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    for call in (lambda: engine_for(model), lambda: build_engine(model)):
        with pytest.raises(BackendError, match="TensorRT is not installed"):
            call()
