"""detector.classifier: the model card, and the ONNX predictor on real face crops.

Verdicts of the shipped model on particular media are checked elsewhere; here only what holds
for any correctly exported model: shapes, ranges, batching, and the card agreeing with training.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from detector.classifier import ModelCard, Predictor
from detector.config import DEFAULT_MODEL_DIR, Settings
from detector.errors import ModelNotFound
from detector.faces import DETECTION_BORDER, create_detector, crop_face


@pytest.fixture(scope="module")
def crops(face_image, predictor) -> np.ndarray:
    """Real face crops, framed as serving frames them."""
    card = predictor.card
    detector = create_detector("blazeface")
    out = []
    for index in range(4):
        image = face_image(index)
        face = detector.detect(image)[0]
        out.append(crop_face(image, face.box, card.crop_margin, card.input_size))
    detector.close()
    return np.stack(out)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def test_missing_card_is_model_not_found(tmp_path):
    with pytest.raises(ModelNotFound, match="Model card not found"):
        ModelCard.load(tmp_path)
    with pytest.raises(ModelNotFound):
        Predictor(tmp_path, Settings(model_dir=tmp_path))


def test_incomplete_card_is_model_not_found(tmp_path, model_dir):
    card = json.loads((model_dir / "card.json").read_text())
    del card["input_size"]
    (tmp_path / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelNotFound, match="incomplete"):
        ModelCard.load(tmp_path)


@pytest.mark.parametrize("rewrite", [True, False])
def test_truncated_weights_are_model_not_found(tmp_path, model_dir, rewrite):
    shutil.copy(model_dir / "card.json", tmp_path / "card.json")
    (tmp_path / "model.onnx").write_bytes((model_dir / "model.onnx").read_bytes()[:50_000])
    predictor = Predictor(tmp_path, Settings(model_dir=tmp_path), rewrite=rewrite)
    with pytest.raises(ModelNotFound, match="not a model ONNX Runtime can load"):
        predictor.load()


def test_a_time_limit_during_the_load_is_not_a_missing_model(tmp_path, model_dir, monkeypatch):
    """Celery stops a task past its soft limit by raising into it, model load included (a loaded
    2-core worker took over a second); the job must fail as a timeout, not "model not installed"."""
    from billiard.exceptions import SoftTimeLimitExceeded

    import detector.classifier as classifier

    def interrupted(*args, **kwargs):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(classifier, "for_serving", interrupted)
    predictor = Predictor(model_dir, Settings(model_dir=model_dir))
    with pytest.raises(SoftTimeLimitExceeded):
        predictor.load()


def test_missing_weights_is_model_not_found(tmp_path, model_dir):
    shutil.copy(model_dir / "card.json", tmp_path / "card.json")
    predictor = Predictor(tmp_path, Settings(model_dir=tmp_path))  # the card alone loads
    with pytest.raises(ModelNotFound, match="Model file not found"):
        predictor.load()


def test_default_settings_use_the_shipped_model_folder():
    assert Settings().model_dir == DEFAULT_MODEL_DIR
    assert DEFAULT_MODEL_DIR.parts[-2:] == ("models", "unmask-lite0")


def test_card_agrees_with_training_and_serving(model_dir):
    from detector.training.model import ARCHS
    from detector.training.prepare import CROP_MARGIN, CROP_SIZE

    card = ModelCard.load(model_dir)
    arch = next(spec for spec in ARCHS.values() if spec.name == card.architecture)
    # crops are cut at CROP_SIZE for training and resized to the model's own input, never up
    assert card.input_size <= CROP_SIZE == arch.input_size
    assert tuple(card.mean) == tuple(arch.mean)  # the architecture's own normalisation
    assert tuple(card.std) == tuple(arch.std)
    assert card.crop_margin == CROP_MARGIN
    assert card.face_detector == "blazeface"
    assert card.extra.get("detection_border") == DETECTION_BORDER
    assert 0.0 < card.threshold < 1.0
    assert (model_dir / card.file).exists()


@pytest.mark.parametrize("count", [1, 4, 19])  # 19 spans two batches of 16
def test_predict_probabilities_per_crop(predictor, crops, count):
    batch = crops[np.arange(count) % len(crops)]
    probs = predictor.predict(batch)
    assert probs.shape == (count,) and probs.dtype == np.float32
    assert ((probs >= 0) & (probs <= 1)).all()
    assert np.allclose(probs, probs[0 : len(crops)][np.arange(count) % len(crops)], atol=1e-4)


def test_predict_does_not_mix_crops_in_a_batch(predictor, crops):
    together = predictor.predict(crops)
    alone = np.concatenate([predictor.predict(crops[i : i + 1]) for i in range(len(crops))])
    assert np.allclose(together, alone, atol=1e-4)


def test_predict_accepts_a_list_and_nothing(predictor, crops):
    assert predictor.predict(list(crops[:2])).shape == (2,)
    assert predictor.predict([]).shape == (0,)
    probs, maps = predictor.predict_with_heatmaps([])
    assert probs.shape == (0,) and maps.shape[0] == 0


def test_predict_refuses_crops_of_the_wrong_size_or_type(predictor):
    size = predictor.input_size
    with pytest.raises(ValueError, match=f"crops must be {size}x{size}"):
        predictor.predict(np.zeros((1, 112, 112, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="RGB uint8"):
        predictor.predict(np.zeros((1, size, size, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="RGB uint8"):
        predictor.predict(np.zeros((1, size, size, 3), dtype=np.float32))


def test_heatmaps_come_from_the_same_pass(predictor, crops):
    probs, maps = predictor.predict_with_heatmaps(crops)
    side = -(-predictor.input_size // 32)  # EfficientNet-Lite's last feature map (5 halvings)
    assert maps.shape == (len(crops), side, side) and maps.dtype == np.float32
    assert ((maps >= 0) & (maps <= 1)).all()
    assert np.allclose(probs, predictor.predict(crops), atol=1e-4)
    # the head is a linear layer after average pooling: the logit is the mean of the map's logits
    cam_mean = _logit(maps).reshape(len(crops), -1).mean(axis=1)
    assert np.allclose(cam_mean, _logit(probs), atol=0.15)


def test_preprocess_normalises_as_the_card_says(predictor, crops):
    x = predictor.preprocess(crops[:1])
    card = predictor.card
    assert x.shape == (1, 3, card.input_size, card.input_size) and x.dtype == np.float32
    expected = (crops[0, 10, 20, 1] / 255.0 - card.mean[1]) / card.std[1]
    assert x[0, 1, 10, 20] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("frame_mask", [0.0, 0.001, 0.1, 0.25])
def test_preprocess_matches_the_stepwise_reference(model_dir, crops, frame_mask):
    """The looked-up input (frame filled) is the step-by-step input to the bit."""
    predictor = Predictor(model_dir)
    predictor.card = dataclasses.replace(predictor.card, frame_mask=frame_mask)
    noise = np.random.default_rng(0).integers(0, 256, crops.shape, dtype=np.uint8)
    for batch in (crops[:1], crops, noise, list(noise[:3])):
        fused, stepwise = predictor.preprocess(batch), predictor.preprocess_stepwise(batch)
        assert fused.shape == stepwise.shape and fused.dtype == np.float32 and fused.flags.c_contiguous
        assert np.array_equal(fused, stepwise)
    b = round(predictor.input_size * frame_mask)
    if b:  # the masked frame is what a black pixel becomes, whatever the crop had there
        black = (0.0 - np.array(predictor.card.mean)) / np.array(predictor.card.std)
        assert np.allclose(predictor.preprocess(noise[:1])[0, :, :b, :].mean(axis=(1, 2)), black, atol=1e-5)
