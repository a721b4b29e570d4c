"""detector.training: dataset readers on tiny fixtures in the real layouts, splits, ``prepare``,
augmentation and self-blending; a tiny train-and-export run is marked slow."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from detector.training.augment import augment, color_jitter, h264, jpeg, rescale, shift_scale
from detector.training.datasets import (
    assign_split,
    detect_layout,
    read_celebdf,
    read_dataset,
    read_faceforensics,
    read_label_folders,
    read_labels_csv,
)
from detector.training.prepare import CROP_SIZE, prepare
from detector.training.sbi import hull_mask, self_blend


def _touch(root: Path, *relative: str) -> Path:
    for rel in relative:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return root


def _by_name(samples) -> dict:
    return {s.path.name: s for s in samples}


def _splits_by_group(samples) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for s in samples:
        out[s.group].add(s.split or assign_split(s.group))
    return out


# -- readers ---------------------------------------------------------------------------------


def test_label_folders(tmp_path):
    root = _touch(
        tmp_path / "mine", "real/a.jpg", "real/deep/b.PNG", "fake/c.mp4", "fake/notes.txt", "other/d.jpg"
    )
    samples = read_label_folders(root)
    assert detect_layout(root) == "label_folders"
    by = _by_name(samples)
    assert sorted(by) == ["a.jpg", "b.PNG", "c.mp4"]
    assert (by["a.jpg"].label, by["b.PNG"].label, by["c.mp4"].label) == (0, 0, 1)
    assert by["c.mp4"].generator == "fake" and by["a.jpg"].generator == "real"
    assert {s.source for s in samples} == {"mine"}
    assert len({s.group for s in samples}) == 3  # each file its own group
    assert by["b.PNG"].group == "mine:real/deep/b.PNG"


def _write_labels(root: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with (root / "labels.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "label", "group", "generator", "source", "extra"])
        writer.writerows([(*row, "set", "") for row in rows])
    return root


def test_labels_csv_groups_and_generators(tmp_path):
    root = _write_labels(
        tmp_path / "dfdc",
        [
            ("real/v1.jpg", "real", "vid1", "real"),
            ("fake/v1a.jpg", "fake", "vid1", "dfdc"),
            ("fake/v1b.jpg", "fake", "vid1", "dfdc"),
            ("real/v2.jpg", "real", "", ""),
        ],
    )
    assert detect_layout(root) == "labels_csv"
    by = _by_name(read_dataset(root))
    assert by["v1a.jpg"].path == root / "fake" / "v1a.jpg"
    assert by["v1.jpg"].group == by["v1a.jpg"].group == by["v1b.jpg"].group == "dfdc:vid1"
    assert by["v2.jpg"].group == "dfdc:real/v2.jpg"  # no group: the file is its own
    assert [by[n].label for n in ("v1.jpg", "v1a.jpg", "v2.jpg")] == [0, 1, 0]
    assert by["v1a.jpg"].generator == "dfdc" and by["v2.jpg"].generator == "real"


def test_labels_csv_refuses_unknown_labels(tmp_path):
    root = _write_labels(tmp_path / "odd", [("x.jpg", "maybe", "", "")])
    with pytest.raises(ValueError, match="unknown label 'maybe'"):
        read_labels_csv(root)


def test_shared_stargan_labels_pair_each_edit_with_its_original(shared_faces):
    samples = read_dataset(shared_faces / "stargan")
    assert Counter(s.label for s in samples) == {0: 1022, 1: 1022}
    groups = defaultdict(list)
    for s in samples:
        groups[s.group].append(s)
    assert all(len(members) <= 2 for members in groups.values())
    assert all(len(splits) == 1 for splits in _splits_by_group(samples).values())
    assert all(s.path.exists() for s in samples[:: len(samples) // 20])


FFPP = [
    "original_sequences/youtube/c23/videos/000.mp4",
    "original_sequences/youtube/c23/videos/003.mp4",
    "original_sequences/youtube/c40/videos/000.mp4",  # another compression: not read
    "manipulated_sequences/Deepfakes/c23/videos/000_003.mp4",
    "manipulated_sequences/Deepfakes/masks/videos/000_003.mp4",  # masks are not samples
    "manipulated_sequences/FaceSwap/c23/videos/000_003.mp4",
    "manipulated_sequences/NeuralTextures/c23/videos/003_000.mp4",
]


def test_faceforensics(tmp_path):
    root = _touch(tmp_path / "ffpp", *FFPP)
    assert detect_layout(root) == "faceforensics"
    samples = read_dataset(root)
    got = sorted((s.path.relative_to(root).as_posix(), s.label, s.generator, s.group) for s in samples)
    assert got == [
        ("manipulated_sequences/Deepfakes/c23/videos/000_003.mp4", 1, "Deepfakes", "ffpp:000"),
        ("manipulated_sequences/FaceSwap/c23/videos/000_003.mp4", 1, "FaceSwap", "ffpp:000"),
        ("manipulated_sequences/NeuralTextures/c23/videos/003_000.mp4", 1, "NeuralTextures", "ffpp:003"),
        ("original_sequences/youtube/c23/videos/000.mp4", 0, "real", "ffpp:000"),
        ("original_sequences/youtube/c23/videos/003.mp4", 0, "real", "ffpp:003"),
    ]
    assert {s.source for s in samples} == {"ffpp"}
    assert all(len(splits) == 1 for splits in _splits_by_group(samples).values())
    assert len(read_faceforensics(root, compression="c40")) == 1


CELEBDF = [
    "Celeb-real/id0_0000.mp4",
    "Celeb-real/id1_0000.mp4",
    "YouTube-real/00000.mp4",
    "YouTube-real/00001.mp4",
    "Celeb-synthesis/id0_id1_0000.mp4",
    "Celeb-synthesis/id1_id0_0000.mp4",
]
# The official list: "<1 real | 0 fake> <path>".
CELEBDF_TEST_LIST = (
    "1 YouTube-real/00001.mp4\n0 Celeb-synthesis/id1_id0_0000.mp4\n1 Celeb-real/id1_0000.mp4\n"
)


def test_celebdf_official_test_split(tmp_path):
    root = _touch(tmp_path / "Celeb-DF-v2", *CELEBDF)
    (root / "List_of_testing_videos.txt").write_text(CELEBDF_TEST_LIST)
    assert detect_layout(root) == "celebdf"
    by = {s.path.relative_to(root).as_posix(): s for s in read_celebdf(root)}
    assert sorted(by) == sorted(CELEBDF)
    assert {k for k, s in by.items() if s.split == "test"} == {
        "YouTube-real/00001.mp4",
        "Celeb-synthesis/id1_id0_0000.mp4",
        "Celeb-real/id1_0000.mp4",
    }
    assert {s.split for s in by.values()} == {"test", "train"}
    assert [by[k].label for k in CELEBDF] == [0, 0, 0, 0, 1, 1]
    assert by["Celeb-synthesis/id0_id1_0000.mp4"].generator == "celebdf"
    assert (
        by["Celeb-real/id0_0000.mp4"].group == by["Celeb-synthesis/id0_id1_0000.mp4"].group == "celebdf:id0"
    )


def test_unknown_layout_is_named(tmp_path):
    _touch(tmp_path / "junk", "a.jpg")
    with pytest.raises(ValueError, match="unknown dataset layout"):
        detect_layout(tmp_path / "junk")


# -- splits ----------------------------------------------------------------------------------


def test_assign_split_is_deterministic():
    # Fixed values: the split must not change between runs, machines or Python versions.
    groups = ["dfdc:aaa", "dfdc:aab", "dfdc:aac", "dfdc:aad", "ffpp:000"]
    assert [assign_split(g) for g in groups] == ["train", "test", "train", "val", "test"]


def test_assign_split_proportions():
    counts = Counter(assign_split(f"set:{i}") for i in range(5000))
    assert counts["test"] / 5000 == pytest.approx(0.2, abs=0.03)
    assert counts["val"] / 5000 == pytest.approx(0.1, abs=0.03)
    assert Counter(assign_split(f"set:{i}", test=0.0, val=0.0) for i in range(200)) == {"train": 200}


# -- prepare ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, media, make_clip, face_image, shared_faces):
    root = tmp_path_factory.mktemp("data") / "mini"
    (root / "real").mkdir(parents=True)
    (root / "fake").mkdir()
    for i in range(2):
        shutil.copy(media.face_photo_path(i), root / "real" / f"face{i}.jpg")
    media.save_image(media.gradient(), root / "real" / "gradient.png")
    media.truncate(shutil.copy(media.face_photo_path(2), root / "real" / "broken.jpg"), 0.3)
    make_clip(root / "real" / "talk.mp4", [face_image(3)], seconds=1.0)
    shutil.copy(sorted((shared_faces / "gan" / "fake").glob("*.jpg"))[0], root / "fake" / "gen.jpg")
    out = tmp_path_factory.mktemp("crops")
    split_file = out / "splits.csv"
    report = prepare([root], out, split_file=split_file, workers=1, landmarks=True)
    return root, out, split_file, report


def _manifest(out: Path) -> list[dict]:
    with (out / "manifest.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_prepare_report_counts(prepared):
    _, out, _, report = prepared
    mini = report["sources"]["mini"]
    # real: 2 photos + 8 video frames with a face, the gradient without; fake: 1 photo
    assert mini["total"] == {"real": 11, "fake": 1}
    assert mini["found"] == {"real": 10, "fake": 1}
    assert mini["unreadable"] == 1
    assert json.loads((out / "report.json").read_text())["sources"]["mini"]["found"] == mini["found"]


def test_prepare_writes_crops_landmarks_and_manifest(prepared):
    _, out, _, _ = prepared
    crops = np.load(out / "mini.npy")
    assert crops.shape == (11, CROP_SIZE, CROP_SIZE, 3) and crops.dtype == np.uint8
    assert crops.reshape(11, -1).std(axis=1).min() > 10, "every crop carries a picture"
    marks = np.load(out / "mini_landmarks.npy")
    assert marks.shape == (11, 468, 2)
    rows = _manifest(out)
    assert [int(r["row"]) for r in rows] == list(range(11))
    for row, mark in zip(rows, marks, strict=True):
        if row["label"] == "1":
            assert np.isnan(mark.astype(np.float32)).all(), "landmarks are kept for real crops only"
    assert np.isfinite(marks[0].astype(np.float32)).all()
    video_rows = [r for r in rows if r["file"].endswith("talk.mp4")]
    assert sorted(int(r["frame"]) for r in video_rows) == list(range(8))
    assert len({(r["group"], r["split"]) for r in video_rows}) == 1  # one video, one split


def test_prepare_writes_the_split_file(prepared):
    _, out, split_file, _ = prepared
    with split_file.open(newline="") as fh:
        splits = {row["group"]: row["split"] for row in csv.DictReader(fh)}
    rows = _manifest(out)
    assert {r["group"] for r in rows} == set(splits)
    assert all(splits[r["group"]] == r["split"] for r in rows)


# -- augmentation and self-blending ----------------------------------------------------------


@pytest.fixture(scope="module")
def crop(face_image) -> np.ndarray:
    import cv2

    return cv2.resize(face_image(0), (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_LINEAR)


@pytest.mark.parametrize("seed", range(6))
def test_augment_keeps_shape_and_dtype(crop, seed):
    out = augment(crop, np.random.default_rng(seed))
    assert out.shape == crop.shape and out.dtype == np.uint8 and out.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize(
    "transform",
    [
        lambda img, rng: jpeg(img, 30),
        lambda img, rng: h264(img, 35),
        lambda img, rng: rescale(img, 0.4),
        lambda img, rng: color_jitter(img, rng),
        lambda img, rng: shift_scale(img, rng),
    ],
    ids=["jpeg", "h264", "rescale", "color", "shift-scale"],
)
def test_each_augmentation_keeps_shape_and_changes_pixels(crop, transform):
    out = transform(crop, np.random.default_rng(1))
    assert out.shape == crop.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - crop).mean() > 0.5


def test_h264_loses_more_at_a_higher_crf_the_same_way_every_time(crop):
    """One intra frame through x264 and back: deterministic (one thread), and the stronger the
    compression the further from the crop, as a video codec's quality scale should be."""
    errors = [np.abs(h264(crop, crf).astype(int) - crop).mean() for crf in (18, 30, 42)]
    assert errors[0] < errors[1] < errors[2]
    assert np.array_equal(h264(crop, 30), h264(crop, 30))


def test_h264_keeps_an_odd_sized_crop_whole(crop):
    odd = np.ascontiguousarray(crop[:-1, :-3])
    out = h264(odd, 30)
    assert out.shape == odd.shape and out.dtype == np.uint8
    assert np.array_equal(out[-1], odd[-1]) and not np.array_equal(out[:-1, :-1], odd[:-1, :-1])


def _ellipse_landmarks(size: int = CROP_SIZE, n: int = 468) -> np.ndarray:
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([size / 2 + 0.3 * size * np.cos(angles), size / 2 + 0.38 * size * np.sin(angles)], axis=1)


@pytest.mark.parametrize(
    "landmarks",
    [_ellipse_landmarks(), None, np.full((468, 2), np.nan, np.float32)],
    ids=["landmarks", "none", "nan"],
)
@pytest.mark.parametrize("seed", range(3))
def test_self_blend_changes_the_face_and_keeps_shape(crop, landmarks, seed):
    out = self_blend(crop, landmarks, np.random.default_rng(seed))
    assert out.shape == crop.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - crop).mean() > 0.5
    again = self_blend(crop, landmarks, np.random.default_rng(seed))
    assert (out == again).all(), "same seed, same fake"


def test_hull_mask_follows_the_landmarks():
    mask = hull_mask((CROP_SIZE, CROP_SIZE), _ellipse_landmarks(), np.random.default_rng(0))
    assert mask[CROP_SIZE // 2, CROP_SIZE // 2] == 1.0
    assert mask[5, 5] == 0.0 and mask[CROP_SIZE - 5, CROP_SIZE - 5] == 0.0


# -- a tiny training run ---------------------------------------------------------------------


@pytest.fixture
def tiny_cache(tmp_path, prepared) -> Path:
    """The prepared crops with a fixed split: train and val both hold both labels whatever the
    hash says (the one fake is in both), and the test split repeats every crop so evaluation has
    both labels too."""
    _, cache, _, _ = prepared
    rows = _manifest(cache)
    for i, row in enumerate(rows):
        row["split"] = "val" if i % 3 == 0 else "train"
    rows[-1]["split"] = "train"
    # the set's one fake trains and is validated on too: a validation AUC needs both labels
    rows += [{**row, "split": "val"} for row in rows if int(row["label"]) == 1 and row["split"] == "train"]
    rows += [{**row, "split": "test"} for row in rows if row["split"] != "val" or int(row["label"]) == 0]
    tiny = tmp_path / "cache"
    tiny.mkdir()
    shutil.copy(cache / "mini.npy", tiny / "mini.npy")
    shutil.copy(cache / "mini_landmarks.npy", tiny / "mini_landmarks.npy")
    with (tiny / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return tiny


def _train_tiny(tmp_path: Path, monkeypatch, tiny: Path) -> Path:
    from detector.training import train as train_mod

    monkeypatch.setattr(train_mod, "RUNS", tmp_path / "runs")
    flags = "--size 64 --steps 3 --batch 4 --eval-every 3 --ckpt-every 3 --val-max 8 --warmup 1 --threads 1"
    args = train_mod.build_parser().parse_args(
        ["--run", "smoke", "--cache", str(tiny), *flags.split(), "--workers", "0"]
    )
    return train_mod.train(args)


def test_committed_weights_export_without_a_training_state(tmp_path, monkeypatch):
    """make release exports what is pruned from the committed weights, which carry no run state
    (steps, minutes): the card then says 0 steps of its own, the run log says the rest. Its
    commands name the home folder as ~, so a card carries no user name."""
    import torch

    from detector.training import export as export_mod
    from detector.training.model import create_model

    monkeypatch.setenv("HOME", str(tmp_path))
    weights = tmp_path / "weights.pt"
    model = create_model("lite0").state_dict()
    torch.save(
        {"arch": "lite0", "size": 64, "args": {"run": "r", "frame_mask": 0.1}, "model": model}, weights
    )
    assert export_mod.main([str(weights), "--out", str(tmp_path / "out")]) == 0
    card = json.loads((tmp_path / "out" / "card.json").read_text())
    assert card["training"]["steps"] == 0 and card["training"]["run"] == "r" and card["input_size"] == 64
    assert card["commands"]["export"].startswith("python -m detector.training.export ~/weights.pt ")
    assert str(tmp_path) not in card["commands"]["export"]


@pytest.mark.slow
def test_train_then_export_tiny(tmp_path, monkeypatch, tiny_cache):
    from detector.classifier import Predictor
    from detector.config import Settings
    from detector.training import export as export_mod
    from detector.training import quantize as quantize_mod

    run_dir = _train_tiny(tmp_path, monkeypatch, tiny_cache)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["step"] == 3 and len(summary["history"]) == 1
    model_dir = tmp_path / "model"
    assert export_mod.main([str(run_dir / "best.pt"), "--out", str(model_dir), "--threshold", "0.4"]) == 0
    card = json.loads((model_dir / "card.json").read_text())
    assert card["input_size"] == 64 and card["threshold"] == 0.4
    assert card["onnx_parity_max_abs_logit_diff"] < 1e-3
    predictor = Predictor(model_dir, Settings(model_dir=model_dir))
    probs, maps = predictor.predict_with_heatmaps(np.zeros((2, 64, 64, 3), dtype=np.uint8))
    assert probs.shape == (2,) and maps.shape == (2, 2, 2)

    # static INT8 with a histogram calibration: one crop a call, so any count works
    int8 = tmp_path / "int8" / "model.onnx"
    argv = [str(model_dir / "model.onnx"), str(int8), "--cache", str(tiny_cache), "--count", "5"]
    assert quantize_mod.main([*argv, "--calibration", "percentile"]) == 0
    card = json.loads((int8.parent / "card.json").read_text())
    assert card["quantization"]["calibration"] == "percentile" and card["file_bytes"] == int8.stat().st_size
    assert card["commands"]["quantize"].endswith("--count 5 --calibration percentile")
    held = card["quantization"]["validation"]  # the INT8 logits against the FP32 ones, val split
    val_rows = [r for r in _manifest(tiny_cache) if r["split"] == "val"]
    assert held["split"] == "val" and held["crops"] == len(val_rows) > 0
    assert 0 <= held["mean_abs_logit_diff"] <= held["p95_abs_logit_diff"] <= held["max_abs_logit_diff"]
    if len({r["label"] for r in val_rows}) == 2:
        assert 0 <= held["auc_int8"] <= 1 and 0 <= held["auc_fp32"] <= 1
    else:  # no area under a curve with one label: said, not written as NaN
        assert held["auc_int8"] is None and held["auc_fp32"] is None
    assert int8.stat().st_size < (model_dir / "model.onnx").stat().st_size
    import onnx

    # 7-bit weights: no CPU's 16-bit pair sums can saturate, said in the card and its command
    narrow = tmp_path / "int8-7bit" / "model.onnx"
    assert quantize_mod.main([argv[0], str(narrow), *argv[2:], "--weight-bits", "7"]) == 0
    card = json.loads((narrow.parent / "card.json").read_text())
    assert card["quantization"]["weight_bits"] == 7 and card["commands"]["quantize"].endswith(
        "--weight-bits 7"
    )
    from detector.graph import PAIR_SUM_LIMIT, worst_pair_sum

    assert card["quantization"]["worst_pair_sum"] == worst_pair_sum(onnx.load(str(narrow))) <= PAIR_SUM_LIMIT
    assert card["quantization"]["worst_pair_sum"] > 0

    ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    quantized = Predictor(int8.parent, Settings(model_dir=int8.parent)).predict(
        np.zeros((2, 64, 64, 3), np.uint8)
    )
    assert quantized.shape == (2,) and ((quantized >= 0) & (quantized <= 1)).all()


@pytest.mark.slow
def test_training_continues_from_committed_weights_and_logs_each_continuation(
    tmp_path, monkeypatch, tiny_cache, capsys
):
    """Issue 20: a run leaves FP16 weights and a log line; the next run (another machine) starts
    from those weights, not from ImageNet, and the log sums the continuations kept."""
    import torch

    from detector.training import train as train_mod

    monkeypatch.setattr(train_mod, "RUNS", tmp_path / "runs")
    weights = tmp_path / "weights" / "student.pt"
    flags = "--size 64 --steps 2 --batch 4 --eval-every 2 --ckpt-every 2 --val-max 100 --warmup 1 --threads 1"
    common = ["--cache", str(tiny_cache), *flags.split(), "--workers", "0", "--save-weights", str(weights)]
    assert train_mod.main(["--run", "first", *common]) == 0
    first = torch.load(weights, weights_only=False)
    assert first["arch"] == "lite0" and all(
        v.dtype == torch.float16 for v in first["model"].values() if v.is_floating_point()
    )
    log = json.loads(weights.with_suffix(".log.json").read_text())
    assert [c["run"] for c in log["continuations"]] == ["first"] and log["cumulative_steps"] == 2

    # a continuation of no steps is the starting point itself: the first run's weights, not ImageNet's
    assert train_mod.main(["--run", "second", *common, "--init", str(weights), "--steps", "0"]) == 0
    second_dir = tmp_path / "runs" / "second"
    kept = torch.load(second_dir / "best.pt", weights_only=False)["model"]
    assert all(torch.equal(kept[k], v.float()) for k, v in first["model"].items() if v.is_floating_point())
    start = json.loads((second_dir / "summary.json").read_text())["history"][0]
    assert start["step"] == 0 and "per_source" in start  # the starting weights were evaluated
    log = json.loads(weights.with_suffix(".log.json").read_text())
    second = log["continuations"][-1]
    assert second["from"] == str(weights) and json.dumps(second["start"]) == json.dumps(start)
    assert log["cumulative_steps"] == sum(c["steps"] for c in log["continuations"] if c["kept"])
    assert log["continuations"][0]["gain"] is None and second["gain"] is None  # from ImageNet; no step

    # a continuation that trains logs its gain over its start, with the interval the stop rule reads
    before = tmp_path / "before.pt"
    shutil.copy(weights, before)
    third = ["--run", "third", *common, "--init", str(weights), "--lr", "0.01"]
    assert train_mod.main(third) == 0
    third_line = json.loads(weights.with_suffix(".log.json").read_text())["continuations"][-1]
    gain = third_line["gain"]
    assert isinstance(third_line["fallen"], list) and not (third_line["fallen"] and third_line["kept"])
    if gain is not None:  # None only where no step beat the start (the tiny set's chance)
        assert gain["low"] <= gain["gain"] <= gain["high"]
    assert json.loads(weights.with_suffix(".log.json").read_text())["continuations"][-1]["start"][
        "per_source"
    ]

    # the same comparison from two weight files (earlier continuations, out of git history)
    from detector.training import gain as gain_mod

    assert gain_mod.main([str(before), str(weights), "--cache", str(tiny_cache), "--val-max", "100"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["before"] == str(before) and line["low"] <= line["gain"] <= line["high"]
    assert line["shared"] is False and isinstance(line["fallen"], list)
    # and on the validation crops as a shared video carries them
    argv = [str(before), str(weights), "--cache", str(tiny_cache), "--val-max", "100", "--shared"]
    assert gain_mod.main(argv) == 0
    shared = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert shared["shared"] is True and shared["low"] <= shared["gain"] <= shared["high"]


@pytest.mark.slow
def test_an_ema_run_keeps_the_averaged_weights_and_resumes_the_average(tmp_path, monkeypatch, tiny_cache):
    """--ema: the weights evaluated and kept (best.pt) are the average, not the last step's, and
    a resumed run carries on averaging from where it stopped rather than starting over."""
    import torch

    from detector.training import train as train_mod

    monkeypatch.setattr(train_mod, "RUNS", tmp_path / "runs")
    flags = (
        "--size 64 --batch 4 --eval-every 100 --ckpt-every 1 --val-max 8 --warmup 1 --threads 1 --workers 0"
    )
    common = ["--cache", str(tiny_cache), *flags.split(), "--ema", "0.5", "--lr", "0.01", "--steps", "2"]
    assert train_mod.main(["--run", "whole", *common]) == 0
    last = torch.load(tmp_path / "runs" / "whole" / "last.pt", weights_only=False)
    best = torch.load(tmp_path / "runs" / "whole" / "best.pt", weights_only=False)["model"]
    name = "_fc.weight"
    assert torch.equal(best[name], last["ema"][f"module.{name}"])
    assert not torch.equal(best[name], last["model"][name])  # the average, not the last step

    # stopped by its time budget after one step, then resumed: one average over both runs' steps
    assert train_mod.main(["--run", "split", *common, "--minutes", "0.0001"]) == 0
    first = torch.load(tmp_path / "runs" / "split" / "last.pt", weights_only=False)
    assert first["state"]["step"] == 1 and int(first["ema"]["n_averaged"]) == 1
    # the step the budget stopped at was scored (eval-every is 100): the lowest-rate weights count
    assert [h["step"] for h in first["state"]["history"]] == [1]
    assert train_mod.main(["--run", "split", *common]) == 0
    resumed = torch.load(tmp_path / "runs" / "split" / "last.pt", weights_only=False)
    assert int(resumed["ema"]["n_averaged"]) == 2


def test_a_paired_gain_is_beyond_the_noise_only_when_the_whole_interval_is():
    from detector.training.metrics import paired_gain

    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 300)
    groups = np.array([f"g{i // 6}" for i in range(600)])  # 100 groups of six near copies
    before = labels * 0.6 + rng.normal(0, 0.5, 600)
    better = labels * 1.5 + rng.normal(0, 0.5, 600)
    clear = paired_gain(labels, before, better, groups)
    assert 0 < clear["low"] <= clear["gain"] <= clear["high"]
    same = paired_gain(labels, before, before + rng.normal(0, 0.01, 600), groups)
    assert same["low"] <= 0 <= same["high"] and abs(same["gain"]) < 0.01
    with pytest.raises(ValueError, match="one label"):  # not an IndexError from an empty bootstrap
        paired_gain(np.zeros(600), before, better, groups)


def test_the_learning_rate_cosine_ends_with_the_steps_or_the_time_budget_whichever_comes_first():
    """make train sizes its steps at 50 a minute; on a machine doing 22, the time budget ends
    the run first, and the rate must be at its floor then, not halfway down the cosine."""
    from detector.training.train import progress

    assert progress(0, 1000, 0.0, 20) == 0.0
    assert progress(500, 1000, 60.0, 20) == 0.5  # fast machine: the steps lead
    assert progress(500, 1000, 15 * 60, 20) == 0.75  # slow machine: the clock leads
    assert progress(900, 1000, 20 * 60, 20) == 1.0 == progress(1000, 1000, 60.0, 20)
    assert progress(250, 1000, 10**6, 0) == 0.25  # no budget: steps alone
    assert progress(30, 1000, 30 * 60, 20) == 1.0  # past the budget (a resumed run): the floor


# -- distillation and pruning ------------------------------------------------------------------


def test_distillation_loss_is_plain_bce_without_a_teacher_and_blends_with_one():
    import torch
    import torch.nn.functional as F

    from detector.training.losses import distillation_loss

    logits = torch.tensor([[2.0], [-1.0], [0.5]], requires_grad=True)
    labels = torch.tensor([[1.0], [0.0], [1.0]])
    hard = F.binary_cross_entropy_with_logits(logits, labels)
    assert torch.isclose(distillation_loss(logits, labels, None, 0.25, 2.0), hard)
    assert torch.isclose(distillation_loss(logits, labels, logits.detach() + 3, 0.0, 2.0), hard)
    # a student that already matches its teacher gets no push from the soft term
    soft_only = distillation_loss(logits, labels, logits.detach(), 1.0, 2.0)
    (grad,) = torch.autograd.grad(soft_only, logits)
    assert torch.allclose(grad, torch.zeros_like(grad), atol=1e-6)
    # and one that disagrees is pulled toward it
    pulled = distillation_loss(logits, labels, torch.full_like(logits, 5.0), 1.0, 2.0)
    (grad,) = torch.autograd.grad(pulled, logits)
    assert (grad < 0).all()


def test_count_macs_of_a_known_network():
    import torch.nn as nn

    from detector.training.prune import count_macs

    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 8 x 8x8 outputs x 3*9 = 13,824
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # 512 outputs x 9 = 4,608
        nn.Flatten(),
        nn.Linear(512, 2),  # 2 x 512 = 1,024
    )
    assert count_macs(net, 8) == 13_824 + 4_608 + 1_024


def test_distillation_feeds_the_teacher_at_its_own_size():
    import torch
    from torch import nn

    from detector.training.prune import Distillation

    seen = []

    class Teacher(nn.Module):
        def forward(self, x):
            seen.append(tuple(x.shape))
            return x.mean(dim=(1, 2, 3))[:, None]

    x = torch.rand(2, 3, 48, 48)
    same = Distillation(Teacher(), 48, 1e-4, 0.5, 2.0).targets(x)
    larger = Distillation(Teacher(), 64, 1e-4, 0.5, 2.0).targets(x)
    assert seen == [(2, 3, 48, 48), (2, 3, 64, 64)]
    assert torch.allclose(same, x.mean(dim=(1, 2, 3))[:, None]) and not same.requires_grad
    assert torch.allclose(larger, same, atol=0.02)  # the same picture, upsampled


def test_a_decaying_finetune_ends_at_its_time_budget():
    """On a machine lent for minutes the cosine ends by the clock: the fine-tune stops there,
    settled, and says how many steps it took (the card records them, not the ones asked for)."""
    import itertools

    import torch
    from torch import nn

    from detector.training.prune import Distillation, finetune

    torch.manual_seed(0)

    def tiny() -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 1, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    model, teacher = tiny(), tiny()
    stream = itertools.repeat((torch.rand(8, 3, 4, 4), torch.ones(8, 1)))
    distil = Distillation(teacher, 0, 1e-3, 0.5, 2.0)
    _, steps = finetune(model, distil, stream, 10**7, decay=True, minutes=0.5 / 60)
    assert 0 < steps < 10**7
    _, steps = finetune(model, distil, stream, 25, decay=True, minutes=10)
    assert steps == 25  # the steps end first


def test_pack_carries_the_training_crops_in_parts_and_unpacks_them(tiny_cache, tmp_path):
    """The training split travels to a GPU machine as JPEG parts; unpacked, it is a crop cache
    the training code reads, with the same rows, near-identical crops and the real faces'
    landmarks; a pack missing a part is refused rather than trained on."""
    from detector.training.data import read_manifest
    from detector.training.pack import pack, unpack

    sizes = pack(tiny_cache, tmp_path / "pack", {"train"}, quality=95, part_mb=0.03)
    assert len(sizes) > 1 and all(s > 0 for s in sizes)
    out = tmp_path / "rebuilt"
    trained = [r for r in read_manifest(tiny_cache) if r["split"] == "train"]
    assert unpack(tmp_path / "pack", out) == len(trained)
    rows = read_manifest(out)
    key = ("source", "label", "group", "generator")
    assert [tuple(r[k] for k in key) for r in rows] == [tuple(r[k] for k in key) for r in trained]
    source = trained[0]["source"]
    original, rebuilt = np.load(tiny_cache / f"{source}.npy"), np.load(out / f"{source}.npy")
    marks, rebuilt_marks = (
        np.load(tiny_cache / f"{source}_landmarks.npy"),
        np.load(out / f"{source}_landmarks.npy"),
    )
    for old, new in zip(trained, rows, strict=True):
        a, b = original[old["row"]].astype(float), rebuilt[new["row"]].astype(float)
        assert 10 * np.log10(255**2 / max(((a - b) ** 2).mean(), 1e-9)) > 35
        if old["label"] == 0:
            assert np.array_equal(marks[old["row"]], rebuilt_marks[new["row"]], equal_nan=True)
    shutil.rmtree(tmp_path / "pack" / f"part-{len(sizes) - 1}")
    with pytest.raises(SystemExit, match="lacks"):
        unpack(tmp_path / "pack", tmp_path / "again")


def test_a_recovery_continued_in_a_later_session_keeps_the_cut_and_counts_every_step():
    """The card of a model released from a cut recovered over two sessions says how much was cut,
    by which command, and every recovery step, not only the last session's."""
    from detector.training.prune import control_record

    assert control_record({}, "none: 5 steps", "prune a", "t.pt", 5) == {
        "method": "none: 5 steps",
        "command": "prune a",
    }
    cut = {"method": "taylor", "target_removed": 0.5, "command": "prune cut"}
    first = control_record(cut, "none: 100 steps", "prune first", "t.pt", 100)
    assert first["target_removed"] == 0.5 and first["control_steps"] == 100
    second = control_record(first, "none: 40 steps", "prune second", "t.pt", 40)
    assert second["control_steps"] == 140 and second["target_removed"] == 0.5
    assert second["command"] == "prune cut && prune first && prune second"
    assert second["method"] == "taylor; then none: 100 steps; then none: 40 steps"


@pytest.mark.parametrize("bits", [8, 7])
def test_prune_without_evaluation_saves_the_level_for_elsewhere(tmp_path, monkeypatch, tiny_cache, bits):
    """A GPU machine prunes and recovers (--no-evaluate) and returns the level's checkpoint;
    export, quantization and evaluation happen where the model serves. With 7-bit weights the
    recovery learns the grid itself: every convolution of the saved level lies on it."""
    import torch

    from detector.training import prune as prune_mod
    from detector.training.model import load_checkpoint
    from detector.training.qat import LIMIT

    run_dir = _train_tiny(tmp_path, monkeypatch, tiny_cache)
    out = tmp_path / "pruned"
    argv = [str(run_dir / "best.pt"), "--out", str(out), "--cache", str(tiny_cache), "--no-evaluate"]
    flags = (
        "--levels 0.1 --step-ratio 0.05 --importance-batches 1 --step-finetune 1 --level-finetune 2 "
        f"--batch 4 --threads 1 --no-start --device auto --workers 0 --weight-bits {bits}"
    )
    argv += flags.split()
    assert prune_mod.main(argv) == 0
    model, ckpt = load_checkpoint(out / "p10" / "model.pt")
    assert ckpt["pruned"] and ckpt["pruning"]["recovery_steps"] == 2
    assert ckpt["pruning"]["recovery_weight_bits"] == bits
    assert not (out / "p10" / "int8").exists() and not (out / "pruning.json").exists()
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1)
    off_grid = 0.0
    for conv in (m for m in model.modules() if isinstance(m, torch.nn.Conv2d)):
        w = conv.weight.detach().flatten(1)
        steps = w / (w.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / LIMIT)
        off_grid = max(off_grid, float((steps - steps.round()).abs().max()))
    assert (off_grid < 1e-3) == (bits == 7)


def test_a_recovery_continues_from_its_committed_half_copy(tmp_path, monkeypatch, tiny_cache):
    """make release-recover keeps its recovery in FP16 (--half-copy) before the gate reads it, so
    a recovery longer than a session is continued by the next from the committed file, every
    step counted."""
    import torch

    from detector.training import prune as prune_mod
    from detector.training.model import load_checkpoint

    run_dir = _train_tiny(tmp_path, monkeypatch, tiny_cache)
    common = f"--cache {tiny_cache} --batch 4 --threads 1 --no-start --device cpu --workers 0 --no-evaluate"
    cut = tmp_path / "cut"
    flags = "--levels 0.1 --step-ratio 0.05 --importance-batches 1 --step-finetune 1 --level-finetune 2"
    assert prune_mod.main([str(run_dir / "best.pt"), "--out", str(cut), *flags.split(), *common.split()]) == 0
    half = tmp_path / "recovering.pt"
    for session, start in enumerate([cut / "p10" / "model.pt", half], start=1):
        argv = [str(start), "--base", str(run_dir / "best.pt"), "--out", str(tmp_path / f"r{session}")]
        argv += f"--control-steps 3 --weight-bits 7 --seed {session} --half-copy {half}".split()
        assert prune_mod.main(argv + common.split()) == 0
        saved = torch.load(half, map_location="cpu", weights_only=False)
        dtypes = {v.dtype for v in _tensors(saved["model"])}
        assert torch.float16 in dtypes and torch.float32 not in dtypes
        assert saved["pruning"]["control_steps"] == 3 * session
        assert saved["pruning"]["target_removed"] == 0.1
    model, _ = load_checkpoint(half)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1)


def _tensors(state) -> list:
    """Every tensor in torch-pruning's nested state dict."""
    import torch

    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for v in state.values() for t in _tensors(v)]
    if isinstance(state, (list, tuple)):
        return [t for v in state for t in _tensors(v)]
    return []


@pytest.mark.slow
def test_prune_tiny_writes_smaller_models_and_a_table(
    tmp_path, monkeypatch, tiny_cache, make_clip, face_image
):
    from detector.classifier import Predictor
    from detector.config import Settings
    from detector.training import prune as prune_mod

    run_dir = _train_tiny(tmp_path, monkeypatch, tiny_cache)
    out = tmp_path / "pruned"
    flags = (
        "--levels 0.1 --step-ratio 0.05 --max-steps 10 --importance-batches 1 --step-finetune 1 "
        "--level-finetune 1 --batch 4 --threads 1"
    )
    videos = tmp_path / "videos"
    (videos / "real").mkdir(parents=True)
    make_clip(videos / "real" / "talk.mp4", [face_image(3)], seconds=0.5)
    argv = [str(run_dir / "best.pt"), "--out", str(out), "--cache", str(tiny_cache), "--videos", str(videos)]
    argv += flags.split()
    assert prune_mod.main(argv) == 0
    table = json.loads((out / "pruning.json").read_text())
    assert [r["target"] for r in table] == [0.0, 0.1]
    base, pruned = table
    assert pruned["removed"] >= 0.1 and pruned["parameters"] < base["parameters"]
    assert pruned["macs"] < base["macs"]
    assert pruned["int8"]["file_mb"] < pruned["fp32"]["file_mb"] <= base["fp32"]["file_mb"]
    # the residual stream (stem and projections) keeps its width; channels inside blocks go
    from detector.training.model import create_model, load_checkpoint

    thin, _ = load_checkpoint(out / "p10" / "model.pt")
    full = create_model("lite0", pretrained=False)
    assert [b._project_conv.out_channels for b in thin._blocks] == [
        b._project_conv.out_channels for b in full._blocks
    ]
    assert sum(b._depthwise_conv.out_channels for b in thin._blocks) < sum(
        b._depthwise_conv.out_channels for b in full._blocks
    )
    verdict, score = pruned["int8"]["videos"]["real/talk.mp4"]
    assert verdict in ("real", "uncertain", "fake") and 0 <= score <= 1  # the three-way rule
    card = json.loads((out / "p10" / "int8" / "card.json").read_text())
    assert card["pruning"]["target_removed"] == 0.1 and "prune" in card["commands"]
    predictor = Predictor(out / "p10" / "int8", Settings(model_dir=out / "p10" / "int8"))
    assert predictor.predict(np.zeros((1, 64, 64, 3), dtype=np.uint8)).shape == (1,)
    # a rerun finds every level done and only prints the table
    assert prune_mod.main(argv) == 0
    assert len(json.loads((out / "pruning.json").read_text())) == 2
    # the control: the same fine-tuning without pruning, evaluated the same way
    assert prune_mod.main([*argv, "--control-steps", "2"]) == 0
    control = json.loads((out / "control.json").read_text())
    assert control["steps"] == 2 and control["parameters"] == base["parameters"]
    assert 0 <= control["int8"]["auc"] <= 1
    # the same at another input size: trained, exported and served at it (the teacher at its own)
    resized = tmp_path / "at48"
    assert (
        prune_mod.main(
            [*argv, "--control-steps", "1", "--size", "48", "--out", str(resized), "--weight-bits", "7"]
        )
        == 0
    )
    card = json.loads((resized / "control" / "int8" / "card.json").read_text())
    assert card["input_size"] == 48
    # ... and with the weights learnt on the 7-bit grid, stored within +-64: nothing saturates
    assert card["quantization"]["weight_bits"] == 7 and card["quantization"]["worst_pair_sum"] <= 32767
    assert "7 bits" in card["pruning"]["method"]
    predictor = Predictor(resized / "control" / "int8", Settings(model_dir=resized / "control" / "int8"))
    assert predictor.predict(np.zeros((1, 48, 48, 3), dtype=np.uint8)).shape == (1,)
    # further from the pruned level, counted against the unpruned base (a release from the last)
    further = tmp_path / "further"
    argv = [str(out / "p10" / "model.pt"), "--base", str(run_dir / "best.pt"), "--out", str(further)]
    level = round(pruned["removed"] + 0.05, 2)  # one 5 % step can remove far more on a tiny model
    argv += ["--cache", str(tiny_cache), "--no-videos", "--no-start", *flags.split(), "--levels", str(level)]
    assert prune_mod.main(argv) == 0
    (row,) = json.loads((further / "pruning.json").read_text())
    assert row["target"] == level and row["removed"] >= level and row["parameters"] < pruned["parameters"]
    assert row["macs"] < pruned["macs"] and row["base_macs"] == base["macs"]
    # a cut's second half (make release-recover): its card tells the cut and the recovery both
    recovered = tmp_path / "recovered"
    argv = [str(out / "p10" / "model.pt"), "--base", str(run_dir / "best.pt"), "--out", str(recovered)]
    argv += ["--cache", str(tiny_cache), "--no-videos", "--no-start", *flags.split(), "--control-steps", "1"]
    assert prune_mod.main(argv) == 0
    made = json.loads((recovered / "control" / "int8" / "card.json").read_text())["pruning"]
    assert made["target_removed"] == 0.1 and made["control_steps"] == 1
    assert made["method"].startswith("torch-pruning") and "; then none: 1 distillation" in made["method"]
    assert made["control_teacher"] == str(run_dir / "best.pt") and " && " in made["command"]


@pytest.mark.parametrize("folder", ["unmask-lite0-0.1.0", "unmask-lite0"])  # unpruned, pruned
def test_recover_rebuilds_the_shipped_model_with_batch_norms_that_train(tiny_cache, folder):
    """A shipped INT8 file back as a torch model: same scores as the file (up to INT8
    activation rounding), and batch norms whose statistics match the data, so a training-mode
    forward pass does not rescale the network. A pruned file gets its thinner layers."""
    import torch

    from detector.classifier import Predictor
    from detector.graph import reference_session
    from detector.training.data import served_batches
    from detector.training.recover import rebuild

    model_dir = Path(__file__).resolve().parents[1] / "models" / folder
    card = json.loads((model_dir / "card.json").read_text())
    (x,) = (torch.from_numpy(b) for b in served_batches(tiny_cache, 12, Predictor(model_dir), batch=12))
    model = rebuild(model_dir / card["file"], "lite0", [x])
    with torch.no_grad():
        ours = model(x).numpy().ravel()
        model.train()
        training = model(x).numpy().ravel()
    session = reference_session(model_dir / card["file"])  # the same on every CPU
    theirs = session.run(["logit"], {"image": x.numpy()})[0].ravel()
    assert np.abs(ours - theirs).max() < 0.5 and np.corrcoef(ours, theirs)[0, 1] > 0.99
    assert np.corrcoef(ours, training)[0, 1] > 0.95
    # folded weights alone, every batch norm an identity plus bias: the same function
    folded = rebuild(model_dir / card["file"], "lite0", [])
    with torch.no_grad():
        assert np.allclose(folded(x).numpy().ravel(), ours, atol=1e-3)
    assert sum(p.numel() for p in model.parameters()) == card["parameters"]


def test_recover_writes_a_pruned_checkpoint_that_loads_and_trains(tmp_path, tiny_cache):
    """The shipped (pruned) model as a checkpoint pruning and distillation can start from."""
    import torch

    from detector.training import recover
    from detector.training.model import load_checkpoint

    model_dir = Path(__file__).resolve().parents[1] / "models" / "unmask-lite0"
    out = tmp_path / "shipped.pt"
    assert (
        recover.main([str(model_dir), "--out", str(out), "--cache", str(tiny_cache), "--batches", "1"]) == 0
    )
    model, ckpt = load_checkpoint(out)
    assert ckpt["pruned"] and ckpt["arch"] == "lite0"
    assert (
        sum(p.numel() for p in model.parameters())
        == json.loads((model_dir / "card.json").read_text())["parameters"]
    )
    x = torch.rand(2, 3, 224, 224)
    model.train()
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.slow
def test_ablate_tiny_runs_each_recipe_at_one_budget_and_resumes(tmp_path, monkeypatch, tiny_cache):
    from detector.training import ablate

    teacher = _train_tiny(tmp_path, monkeypatch, tiny_cache) / "best.pt"
    out = tmp_path / "ablation"
    argv = ["--out", str(out), "--cache", str(tiny_cache), "--teacher", str(teacher), "--alphas", "0.5"]
    argv += ["--withhold", "", "--steps", "2", "--size", "64", "--batch", "4", "--threads", "1"]
    assert ablate.main(argv) == 0
    table = json.loads((out / "ablation.json").read_text())
    assert [r["run"] for r in table] == ["alone", "no-sbi", "no-pairs", "frames", "kd-0.5"]
    for r in table:
        assert "--steps 2" in r["flags"] and 0 <= r["auc"] <= 1 and set(r["per_source"]) == {"mini"}
    assert "--teacher" in table[4]["flags"] and "--sbi 0 " in table[1]["flags"] + " "
    assert "--pairs 0" in table[2]["flags"] and "--sampling frames" in table[3]["flags"]
    assert (out / "kd-0.5" / "model.onnx").exists()
    assert ablate.main(argv) == 0  # all done: nothing retrained
    assert len(json.loads((out / "ablation.json").read_text())) == 5


def test_ablate_plans_leave_one_out_with_and_without_sbi():
    from detector.training import ablate

    plan = ablate.runs("", [0.25], ["photoshop", "dfdc:fake"])
    assert set(plan) == {
        "alone", "no-sbi", "no-pairs", "frames", "without-photoshop", "without-photoshop-no-sbi",
        "without-dfdc-fake", "without-dfdc-fake-no-sbi",
    }  # fmt: skip
    assert plan["no-pairs"] == ["--sbi", "0.3", "--pairs", "0"]
    assert plan["frames"] == ["--sbi", "0.3", "--pairs", "0", "--sampling", "frames"]
    assert plan["without-dfdc-fake"] == ["--sbi", "0.3", "--exclude", "dfdc:fake"]
    assert ablate.runs("", [], [], (0.5,)) == {
        "alone": ["--sbi", "0.3"], "no-sbi": ["--sbi", "0"],
        "no-pairs": ["--sbi", "0.3", "--pairs", "0"],
        "frames": ["--sbi", "0.3", "--pairs", "0", "--sampling", "frames"],
        "background-dropout-0.5": ["--sbi", "0.3", "--background-dropout", "0.5"],
    }  # fmt: skip
    report = {"per_source": {"dfdc": {"auc": 0.61}, "photoshop": {"auc": 0.55}}}
    assert ablate.withheld_auc(report, "dfdc:fake") == 0.61
    assert ablate.withheld_auc(report, "photoshop") == 0.55


def test_breakdown_scores_each_source_and_its_fakes_against_other_reals():
    from detector.training.evaluate import breakdown

    rows = [
        {"source": "gan", "generator": "stylegan2", "label": 1},
        {"source": "gan", "generator": "stylegan2", "label": 1},
        {"source": "gan", "generator": "real", "label": 0},
        {"source": "gan", "generator": "real", "label": 0},
        {"source": "utkface", "generator": "real", "label": 0},
        {"source": "utkface", "generator": "real", "label": 0},
        {"source": "diffusion", "generator": "t2i:SDXL", "label": 1},
    ]
    labels = np.array([r["label"] for r in rows])
    # the GAN fakes beat their own reals but not the other set's: a source-specific shortcut
    scores = np.array([0.6, 0.7, 0.1, 0.2, 0.8, 0.9, 0.95])
    out = breakdown(rows, labels, scores)
    gan = out["per_source"]["gan"]
    assert gan["auc"] == 1.0 and gan["auc_fakes_vs_other_reals"] == 0.0 and gan["n"] == 4
    # a one-class source is scored against the other sets' opposite class
    assert out["per_source"]["diffusion"]["auc"] == 1.0
    assert "auc_fakes_vs_other_reals" not in out["per_source"]["utkface"]
    assert set(out["per_generator"]) == {"stylegan2", "t2i:SDXL"}


class _MeanBrightness:
    """A scorer whose every answer is the crop's mean brightness: whatever region carries the
    label decides its AUC, which is what the background check must reveal."""

    def predict(self, crops: np.ndarray) -> np.ndarray:
        return crops.reshape(len(crops), -1).mean(axis=1) / 255.0


@pytest.mark.parametrize("label_in", ["background", "face"])
def test_background_check_tells_a_face_cue_from_a_background_cue(label_in):
    from detector.training.evaluate import background_check
    from detector.training.sbi import face_ellipse

    rng = np.random.default_rng(0)
    labels = np.array([0, 1] * 6)
    rows = [{"source": "gan", "generator": "stylegan2" if y else "real", "label": int(y)} for y in labels]
    inside = face_ellipse((64, 64)) > 0
    crops = np.empty((len(labels), 64, 64, 3), dtype=np.uint8)
    for i, y in enumerate(labels):
        face = np.full((64, 64, 3), 120, np.uint8) + (40 * y if label_in == "face" else 0)
        back = rng.integers(0, 60, (64, 64, 3), dtype=np.uint8) + (150 * y if label_in == "background" else 0)
        crops[i] = np.where(inside[..., None], face, back)
    out = background_check(_MeanBrightness(), rows, labels, crops)
    cue, other = (
        ("background_only", "face_only") if label_in == "background" else ("face_only", "background_only")
    )
    assert out[cue]["auc"] == 1.0 and out[cue]["per_source"]["gan"]["auc"] == 1.0
    assert out[other]["auc"] < 0.8  # the other region alone cannot tell the classes apart


def test_background_dropout_keeps_the_face_ellipse_only_and_only_in_training(tiny_cache):
    from detector.training.data import CropSet, drop_background, read_manifest
    from detector.training.model import ARCHS
    from detector.training.sbi import face_ellipse

    image = np.full((CROP_SIZE, CROP_SIZE, 3), 200, np.uint8)
    dropped = drop_background(image)
    inside = face_ellipse(image.shape[:2]) > 0
    assert (dropped[inside] == 200).all() and (dropped[~inside] == 0).all() and dropped.dtype == np.uint8
    rows = [r for r in read_manifest(tiny_cache) if r["split"] == "train"][:4]
    always = CropSet(tiny_cache, rows, True, CROP_SIZE, background_dropout=1.0)
    never = CropSet(tiny_cache, rows, False, CROP_SIZE, background_dropout=1.0)  # evaluation: untouched
    import torch

    outside = torch.from_numpy(~inside)
    spec = ARCHS["lite0"]
    black = torch.tensor([(0.0 - m) / sd for m, sd in zip(spec.mean, spec.std, strict=True)]).view(3, 1)
    assert torch.allclose(always[0][0][:, outside], black.expand(3, int(outside.sum())), atol=1e-5)
    assert not torch.allclose(never[0][0][:, outside], black.expand(3, int(outside.sum())), atol=1e-5)


def test_an_evaluation_crop_set_can_show_the_crops_as_shared(tiny_cache):
    """``gain --shared`` judges weights on the validation crops as a shared 360p video carries
    them: the crop set applies the same transform as ``evaluate``'s shared figures, every time."""
    from functools import partial

    import torch

    from detector.training.augment import rescale
    from detector.training.data import CropSet, load_crops, read_manifest, to_tensor
    from detector.training.evaluate import SOCIAL_CRF, SOCIAL_SCALE, at_scale

    rows = [r for r in read_manifest(tiny_cache) if r["split"] == "val"][:2]
    shared = CropSet(
        tiny_cache, rows, False, CROP_SIZE, degrade=partial(rescale, factor=SOCIAL_SCALE, crf=SOCIAL_CRF)
    )
    plain = CropSet(tiny_cache, rows, False, CROP_SIZE)
    expected = at_scale(load_crops(tiny_cache, rows, CROP_SIZE), SOCIAL_SCALE, SOCIAL_CRF)
    for i in range(len(rows)):
        assert torch.equal(shared[i][0], to_tensor(expected[i]))
        assert not torch.equal(shared[i][0], plain[i][0])
