"""How faces are read, declared once (emocam.reading): the presets, and every entry point resolving them alike."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from emocam import Options, Recognizer
from emocam.faces import Faces
from emocam.reading import DEFAULT_READING, READINGS, FaceReading, resolve_reading


@pytest.fixture(scope="module")
def crowd(shared: Path) -> Path:
    """A photo of a crowd whose faces are small: the live reading finds none, the stills reading some."""
    return shared / "images" / "multi_face.jpg"


def test_presets_resolve_with_overrides_and_unknown_names_list_the_valid_ones() -> None:
    assert resolve_reading() == resolve_reading(None) == READINGS[DEFAULT_READING]
    assert READINGS["live"] == FaceReading()  # the detector's own defaults
    assert resolve_reading("stills", detector=None, min_score=None) == READINGS["stills"]
    assert resolve_reading("stills", min_score=0.6) == replace(READINGS["stills"], min_score=0.6)
    given = FaceReading("full", 0.4, enlarge=True, keep="best")
    assert resolve_reading(given, detector="both") == replace(given, detector="both")
    with pytest.raises(ValueError, match="unknown face reading 'far'; choose one of auto, live, stills, fer"):
        resolve_reading("far")
    with pytest.raises(ValueError, match="unknown keep 'first'"):
        FaceReading(keep="first")
    with pytest.raises(ValueError, match="unknown detector 'far'"):
        FaceReading("far")


def test_auto_reads_stills_and_video_frames_at_their_own_scores_unless_one_is_given() -> None:
    auto = READINGS["auto"]
    assert DEFAULT_READING == "auto" and (auto.score(still=True), auto.score(still=False)) == (0.5, 0.7)
    assert resolve_reading("auto", min_score=0.6).score(still=False) == 0.6  # a score given holds for video too
    assert READINGS["live"].score(still=True) == READINGS["live"].score(still=False) == 0.7
    # Labelled stills are read as auto reads a still, keeping the face each image is labelled for.
    assert replace(READINGS["stills"], keep="all", video_min_score=auto.video_min_score) == auto


def test_auto_takes_a_fainter_face_in_a_photo_than_in_a_video(tiny_model: Path, shared: Path, tmp_path: Path) -> None:
    """A photo whose face the detector scores about 0.6 has it as a still; the same picture as the frames of a
    video does not (there a false face would recur frame after frame), unless --min-score is given."""
    photo = shared / "wild" / "val" / "angry" / "Doug_Collins_0002.jpg"
    clip = tmp_path / "photo.avi"
    image = cv2.imread(str(photo))
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25, image.shape[1::-1])
    for _ in range(5):
        writer.write(image)
    writer.release()

    def found(**options: object) -> tuple[int, int]:
        with Recognizer(tiny_model, backend="onnxruntime", **options) as rec:
            return len(rec(photo)), sum(len(faces) for _, faces in rec.stream(clip))

    assert found() == (1, 0)
    assert found(min_score=0.5) == (1, 5)


def test_keep_chooses_every_face_the_largest_or_the_surest() -> None:
    faces = Faces(np.array([[0, 0, 10, 10], [0, 0, 30, 30], [0, 0, 20, 20]]), np.array([0.6, 0.7, 0.9]),
                  np.zeros((3, 2, 2)))
    assert len(FaceReading(keep="all").choose(faces)) == 3
    assert FaceReading(keep="largest").choose(faces).boxes[:, 2].tolist() == [30]
    assert FaceReading(keep="best").choose(faces).boxes[:, 2].tolist() == [20]


def test_an_enlarged_reading_gives_faces_in_the_images_own_pixels(tiny_model: Path, shared: Path) -> None:
    small = next((shared / "ckplus48" / "val" / "happy").glob("*.png"))  # 48 x 48
    with Recognizer(tiny_model, backend="onnxruntime", reading="stills") as rec:
        faces = rec(small)
    assert len(faces) == 1
    x, y, w, h = faces.boxes[0]
    assert -2 <= x and -2 <= y and x + w <= 50 and y + h <= 50 and 20 <= w <= 48
    assert ((faces.eyes >= 0) & (faces.eyes <= 48)).all()


def test_small_photos_are_cropped_as_training_crops_them(tiny_model: Path, shared: Path, tmp_path: Path) -> None:
    """A 48 px photo's faces are found in its enlarged copy; Recognizer crops them from that copy too, as
    load_target (training, emotrain evaluate) does, so the model sees the same face either way."""
    from emocam.contract import read_contract
    from emocam.train.targets import load_target

    folder = tmp_path / "set" / "happy"
    folder.mkdir(parents=True)
    photos = sorted((shared / "ckplus48" / "val" / "happy").glob("*.png"))[:4]
    for photo in photos:
        (folder / photo.name).write_bytes(photo.read_bytes())
    trained, _ = load_target(folder.parent, read_contract(tiny_model).pre)
    with Recognizer(tiny_model, backend="onnxruntime") as rec:
        live = np.stack([rec(folder / photo.name).crops[0] for photo in photos])
    assert live.shape == trained.images.shape
    diff = np.abs(live.astype(int) - trained.images.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_the_reading_option_reaches_the_live_command_and_batch(tiny_model: Path, crowd: Path, tmp_path: Path) -> None:
    from emocam.cli import app

    runner = CliRunner()
    found = {}
    for reading in ("live", "stills"):
        out = tmp_path / f"{reading}.csv"
        result = runner.invoke(app, ["--video", str(crowd), "--model", str(tiny_model), "--backend", "onnxruntime",
                                     "--no-display", "--reading", reading, "--csv", str(out)])
        assert result.exit_code == 0, result.output
        found[reading] = len(_rows(out))
        batch = runner.invoke(app, ["batch", str(crowd), "--out-dir", str(tmp_path / reading), "--model",
                                    str(tiny_model), "--backend", "onnxruntime", "--reading", reading])
        assert batch.exit_code == 0, batch.output
        [row] = _rows(tmp_path / reading / "index.csv")
        found[f"batch {reading}"] = (row["status"], row["face_rows"])
    # Live: the short-range model at 0.7 finds none of the small faces; stills: both ranges at 0.5, the largest kept.
    assert found == {"live": 0, "stills": 1, "batch live": ("no face", "0"), "batch stills": ("done", "1")}


def test_cli_api_batch_and_evaluate_report_the_same_reading(tiny_model: Path, crowd: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from emocam.batch import jobs_for, recognizer
    from emocam.cli import app
    from emocam.train.cli import app as train_app
    from emocam.train.targets import TARGET_READING

    monkeypatch.setenv("EMOCAM_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "folder" / "happy"
    folder.mkdir(parents=True)
    (folder / crowd.name).write_bytes(crowd.read_bytes())
    cv2.imwrite(str(folder / "blank.png"), np.full((64, 64, 3), 128, np.uint8))  # an image without a face
    runner = CliRunner()

    def bench(*reading: str) -> dict:
        out = tmp_path / "bench.json"
        result = runner.invoke(app, ["bench", str(crowd), "--model", str(tiny_model), "--backend", "onnxruntime",
                                     *reading, "--json", str(out)])
        assert result.exit_code == 0, result.output
        return json.loads(out.read_text())["reading"]

    def api(**reading: object) -> dict:
        with Recognizer(tiny_model, backend="onnxruntime", **reading) as rec:
            return rec.reading.to_dict()

    def batch(**reading: object) -> dict:
        options = Options(model=tiny_model, backend="onnxruntime", **reading)
        [job] = jobs_for([crowd], tmp_path, options, False)
        return recognizer(job.options).reading.to_dict()  # what each batch worker runs

    def evaluate(*reading: str) -> dict:
        out = tmp_path / "eval"
        result = runner.invoke(train_app, ["evaluate", str(tiny_model), "--folder", str(folder.parent), *reading,
                                           "--out", str(out)])
        assert result.exit_code == 0, result.output
        result = json.loads(out.with_suffix(".json").read_text())
        assert (result["images"], result["found"]) == (2, 0.5)  # the share of images where a face was found
        return result["reading"]

    for preset in ("stills", "fer"):
        expected = READINGS[preset].to_dict()
        assert bench("--reading", preset) == api(reading=preset) == batch(reading=preset) == \
            evaluate("--reading", preset) == expected, preset
    # Unless told, the commands, the API and batch read faces the default way, and evaluate (like training) reads
    # labelled stills its own way.
    assert bench() == api() == batch() == READINGS[DEFAULT_READING].to_dict()
    assert evaluate() == READINGS[TARGET_READING].to_dict()
    # --detector and --min-score replace the preset's range and score, everywhere alike.
    assert bench("--reading", "stills", "--min-score", "0.6") == api(reading="stills", min_score=0.6) == \
        batch(reading="stills", min_score=0.6) == replace(READINGS["stills"], min_score=0.6).to_dict()
