"""Each policy has one source: its constant is assigned in one module, and every default that states it comes from
there (the face reading's agreement across the commands, the API, batch and evaluate is in test_reading.py)."""

from __future__ import annotations

import ast
import inspect
from dataclasses import fields

from test_layout import module_files

# The policies the package declares once each, by the name of the constant that holds it.
POLICIES = ("MAX_BATCH", "OPT_BATCH", "TIMED_BATCHES", "IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "RANGE", "RANGES",
            "MIN_SCORE", "TAU_S", "HYSTERESIS", "READINGS", "DEFAULT_READING", "TARGET_READING", "EXIT_USER_ERROR",
            "ENDED_EARLY", "EXIT_SIGNALLED", "EXIT_SOME_FAILED", "PRESETS", "CLASSES", "MAX_PIXELS", "MAX_ASPECT",
            "PROBE_EVERY", "FULL_HOLD")


def test_each_policy_constant_is_assigned_in_one_module_and_images_are_read_by_one_function() -> None:
    where: dict[str, list[str]] = {name: [] for name in POLICIES}
    readers = []
    for module, path in module_files().items():
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AnnAssign) else []
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name) and name.id in where:
                        where[name.id].append(module)
        readers += [f"{module}.{n.name}" for n in ast.walk(ast.parse(path.read_text()))
                    if isinstance(n, ast.FunctionDef) and n.name.startswith(("read_image", "_read_image"))]
    assert {name: len(modules) for name, modules in where.items()} == dict.fromkeys(POLICIES, 1), where
    assert readers == ["emocam.sources.files.read_image"]


def test_the_emotrain_defaults_are_the_stage_presets() -> None:
    from emocam.train import cli
    from emocam.train.config import PRESETS

    names = {f.name for f in fields(PRESETS["single"])}
    # Left to the command: the architecture (None: the --init checkpoint's) and the target sets (none by default).
    own = {"arch", "target", "resume", "export", "out", "variant", "epochs1", "lr1", "epochs2", "lr2"}
    stage1, stage2 = PRESETS["cascade-stage1"], PRESETS["cascade-stage2"]
    checked = 0
    for command, preset in (("single", PRESETS["single"]), ("combined", PRESETS["combined"]),
                            ("fer", PRESETS["fer"]), ("cascade", stage1)):
        params = inspect.signature(getattr(cli, command)).parameters
        for name, param in params.items():
            if name in names and name not in own:
                # The cascade's options that both stages take are stage 1's, and stage 2's preset agrees.
                preset_for = stage2 if command == "cascade" and name in ("rehearse", "distill") else preset
                assert param.default == getattr(preset_for, name), f"emotrain {command} --{name}"
                checked += 1
        if command == "fer":
            assert params["variant"].default == preset.data and params["out"].default == preset.out
        elif command == "cascade":
            assert (params["epochs1"].default, params["lr1"].default) == (stage1.epochs, stage1.lr)
            assert (params["epochs2"].default, params["lr2"].default) == (stage2.epochs, stage2.lr)
            assert params["out"].default == stage1.out.parent == stage2.out.parent
        else:
            assert params["out"].default == preset.out
    assert checked > 60
    shared = names - {"out", "data", "init", "select", "rehearse", "distill"}
    assert {n: getattr(stage1, n) for n in shared} == {n: getattr(stage2, n) for n in shared}


def test_live_defaults_come_from_one_declaration() -> None:
    from emocam import Options
    from emocam.backends import MAX_BATCH, OPT_BATCH, TIMED_BATCHES, build_engine, throughput
    from emocam.backends.tensorrt_engine import Profile
    from emocam.detect import FaceDetector
    from emocam.predictor import BatchedPredictor
    from emocam.reading import DEFAULT_READING, READINGS, FaceReading
    from emocam.smooth import Smoother
    from emocam.sources import IMAGE_SUFFIXES
    from emocam.train import cli as train_cli
    from emocam.train import data

    def defaults(function) -> dict:
        return {k: p.default for k, p in inspect.signature(function).parameters.items()
                if p.default is not inspect.Parameter.empty}

    options, smoother = Options(), Smoother()
    assert (options.tau, options.hysteresis) == (smoother.tau_s, smoother.hysteresis)
    assert options.face_reading == READINGS[DEFAULT_READING] == READINGS["auto"]
    assert (defaults(FaceDetector)["range"], defaults(FaceDetector)["min_score"]) == \
        (FaceReading().detector, FaceReading().min_score)
    assert options.batch_frames == OPT_BATCH
    assert (defaults(BatchedPredictor)["max_faces"], defaults(BatchedPredictor)["max_frames"]) == (MAX_BATCH, OPT_BATCH)
    assert (Profile().opt, Profile().max) == (OPT_BATCH, MAX_BATCH) == (defaults(build_engine)["opt_batch"],
                                                                        defaults(build_engine)["max_batch"])
    assert defaults(train_cli.engine)["max_batch"] == MAX_BATCH
    assert defaults(throughput)["batches"] == TIMED_BATCHES == (1, OPT_BATCH, MAX_BATCH)
    assert data.IMAGE_SUFFIXES is IMAGE_SUFFIXES
