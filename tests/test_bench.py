"""``benchmarks.run``'s side-by-side timing: each contender is timed on its own crops."""

import json

import numpy as np

from benchmarks.run import _per_crop_rounds, compare
from detector.config import REPO_ROOT

MODELS = REPO_ROOT / "models"


def test_rounds_feed_each_contender_its_own_crops():
    seen: dict[str, set] = {"small": set(), "large": set()}
    crops = {"small": np.zeros((3, 8, 8, 3), np.uint8), "large": np.zeros((5, 16, 16, 3), np.uint8)}
    fns = {name: (lambda batch, name=name: seen[name].add(batch.shape)) for name in seen}
    ms = _per_crop_rounds(fns, crops, rounds=2, calls=4)
    assert seen == {"small": {(1, 8, 8, 3)}, "large": {(1, 16, 16, 3)}}
    assert all(len(v) == 2 and min(v) >= 0 for v in ms.values())


def test_compare_times_models_side_by_side_on_a_real_clip(tmp_path, make_clip, face_image):
    clip = make_clip(tmp_path / "face.mp4", [face_image(2)], seconds=1.0)
    res = compare(clip, [MODELS / "unmask-lite0", MODELS / "unmask-lite0-0.2.0"], rounds=2)
    assert res["crops"] >= 3  # every fourth of 15 frames, each with its face found
    names = list(res["per_crop_ms"])
    size = json.loads((MODELS / "unmask-lite0" / "card.json").read_text())["input_size"]
    assert len(names) == 2 and f"{size} px" in names[0] and "0.2.0" in names[1]
    assert res["speedup_vs_first"][names[0]] == 1.0 and res["per_crop_ms"][names[1]] > 0
