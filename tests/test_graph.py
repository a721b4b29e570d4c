"""detector.graph: the serving rewrites change no score, and leave alone what they do not match.

Scores are compared to the bit against the file's own graph in ONNX Runtime, on real face crops
and on noise with saturated and black patches (every pixel value, both extremes of each sum).
"""

from __future__ import annotations

import dataclasses
import json
import platform
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from detector.classifier import Predictor
from detector.config import Settings
from detector.faces import create_detector, crop_face
from detector.graph import for_serving, quantize_table


def _int8_dot_is_32_bit() -> bool:
    """Where INT8 products accumulate in 32 bits the rewrites are exact; on x86 with only AVX2,
    ONNX Runtime sums pairs in 16 bits with saturation, in an order the stem rewrite changes."""
    if platform.machine().lower() in ("aarch64", "arm64"):
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


EXACT = _int8_dot_is_32_bit()


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return np.array_equal(a, b) if EXACT else np.allclose(a, b, atol=0.02)


@pytest.fixture(scope="module")
def crops(face_image, model_dir) -> np.ndarray:
    card = Predictor(model_dir).card
    detector = create_detector("blazeface")
    real = []
    for index in range(6):
        image = face_image(index)
        real.append(crop_face(image, detector.detect(image)[0].box, card.crop_margin, card.input_size))
    detector.close()
    noise = np.random.default_rng(0).integers(
        0, 256, (6, card.input_size, card.input_size, 3), dtype=np.uint8
    )
    noise[0] = 255
    noise[1] = 0
    noise[2, :, : card.input_size // 2] = 255
    noise[3, ::2] = 0
    return np.concatenate([np.stack(real), noise])


def _model_copy(tmp_path: Path, model_dir: Path, edit_card=None, edit_model=None) -> Path:
    shutil.copy(model_dir / "card.json", tmp_path / "card.json")
    shutil.copy(model_dir / "model.onnx", tmp_path / "model.onnx")
    if edit_card:
        card = json.loads((tmp_path / "card.json").read_text())
        edit_card(card)
        (tmp_path / "card.json").write_text(json.dumps(card))
    if edit_model:
        model = onnx.load(str(tmp_path / "model.onnx"))
        edit_model(model)
        onnx.save(model, str(tmp_path / "model.onnx"))
    return tmp_path


def _both(model_dir: Path) -> tuple[Predictor, Predictor]:
    settings = Settings(model_dir=model_dir, threads=1)
    return Predictor(model_dir, settings), Predictor(model_dir, settings, rewrite=False)


def test_the_shipped_model_is_served_rewritten_and_scores_as_the_file(model_dir, crops):
    served, as_file = _both(model_dir)
    graph = for_serving(model_dir / "model.onnx", served._lut)
    assert graph.rewrites == ("quantized input", "space-to-depth stem")
    assert graph.input_name == "pixels" and graph.table.shape == (3, 256) and graph.table.dtype == np.uint8
    for batch in (crops[:1], crops, list(crops[3:5])):
        probs, maps = served.predict_with_heatmaps(batch)
        probs_file, maps_file = as_file.predict_with_heatmaps(batch)
        assert _same(probs, probs_file) and _same(maps, maps_file)
    assert served._input == "pixels" and as_file._input == "image"


def test_looked_up_pixels_are_the_graphs_own_quantized_input(tmp_path, model_dir, crops):
    """Channels with different normalisations (the three-table lookup), and each frame mask."""

    def card(c):
        c["mean"], c["std"] = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

    folder = _model_copy(tmp_path, model_dir, edit_card=card)
    model = onnx.load(str(folder / "model.onnx"))
    quant = model.graph.node[0]
    assert quant.op_type == "QuantizeLinear"
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    scale, zero_point = inits[quant.input[1]], inits[quant.input[2]]
    for frame_mask in (0.0, 0.1, 0.25):
        predictor = Predictor(folder, Settings(model_dir=folder, threads=1))
        predictor.card = dataclasses.replace(predictor.card, frame_mask=frame_mask)
        pixels = predictor.preprocess_pixels(crops)
        assert pixels.dtype == np.uint8 and pixels.shape == crops.shape
        assert not (predictor._table == predictor._table[0]).all()
        floats = predictor.preprocess(crops).transpose(0, 2, 3, 1)
        expected = quantize_table(np.ascontiguousarray(floats.reshape(-1, 3).T), scale, zero_point)
        assert np.array_equal(pixels.reshape(-1, 3).T, expected)


def test_a_stem_the_pattern_does_not_match_keeps_its_convolution(tmp_path, model_dir, crops):
    """Padded on all sides, the stem is not the pattern: the input is still looked up, the
    convolution stays 3x3 stride 2, and the scores still match the file's."""

    def pad_all_sides(model):
        conv = next(n for n in model.graph.node if n.op_type == "Conv")
        next(a for a in conv.attribute if a.name == "pads").ints[:] = [1, 1, 1, 1]

    folder = _model_copy(tmp_path, model_dir, edit_model=pad_all_sides)
    served, as_file = _both(folder)
    assert for_serving(folder / "model.onnx", served._lut).rewrites == ("quantized input",)
    probs, maps = served.predict_with_heatmaps(crops)
    probs_file, maps_file = as_file.predict_with_heatmaps(crops)
    assert np.array_equal(probs, probs_file) and np.array_equal(maps, maps_file)


def test_a_float_graph_is_served_as_it_is(tmp_path):
    """An FP32 export has no opening QuantizeLinear: nothing to rewrite, float input."""
    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node(
                "Conv", ["image", "w"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1]
            )
        ],
        "fp32",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, str(tmp_path / "model.onnx"))
    served = for_serving(tmp_path / "model.onnx", np.zeros((3, 256), np.float32))
    assert served.rewrites == () and served.table is None and served.input_name == "image"
    assert onnx.load_from_string(served.model).graph == model.graph
