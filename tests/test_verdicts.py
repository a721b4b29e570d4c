"""Issue 19's verdicts: two thresholds chosen by the worst source, calibrated probabilities, and
the rule that turns faces, persons and files into real, uncertain or fake.

Synthetic score sets with known rates check the choice and the calibration fit; the shipped model
checks that serving applies the card's calibration to the score and to the heatmap alike."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from detector.analyze import Analyzer
from detector.annotate import AMBER, GREEN, RED, Label, _style, draw_labels
from detector.calibration import (
    Calibration,
    choose_calibration,
    expected_calibration_error,
    fit_calibration,
    fit_platt,
    fit_temperature,
    reliability,
)
from detector.classifier import Predictor
from detector.config import Settings, settings_from_env
from detector.results import Thresholds, face_verdict, file_verdict, person_verdict
from detector.training.thresholds import (
    choose_thresholds,
    error_rates,
    highest_real_threshold,
    lowest_fake_threshold,
)

# -- choosing the thresholds -------------------------------------------------------------------


def _grid(n: int) -> np.ndarray:
    """n distinct scores evenly inside (0, 1), off the 4-digit grid: i/n + 1/(2n)."""
    return (np.arange(n) + 0.5) / n


@pytest.mark.parametrize("n", [10, 33, 100, 1000])
def test_fake_threshold_lets_through_at_most_the_rate_and_no_less_strict_one_does(n):
    reals = np.random.default_rng(n).permutation(_grid(n))
    t = lowest_fake_threshold(reals, 0.03)
    allowed = int(0.03 * n)
    assert (reals >= t).sum() <= allowed
    assert (reals >= t - 1e-4).sum() > allowed  # one step lower breaks the promise
    assert round(t, 4) == t


@pytest.mark.parametrize("n", [10, 33, 100, 1000])
def test_real_threshold_lets_through_at_most_the_rate_and_no_less_strict_one_does(n):
    fakes = np.random.default_rng(n).permutation(_grid(n))
    t = highest_real_threshold(fakes, 0.03)
    allowed = int(0.03 * n)
    assert (fakes < t).sum() <= allowed
    assert (fakes < t + 1e-4).sum() > allowed
    assert round(t, 4) == t


def test_a_score_on_the_grid_is_not_let_through():
    reals = np.array([0.5] + [0.1] * 9)  # 10 reals: none may be called fake at 3 %
    assert lowest_fake_threshold(reals, 0.03) == 0.5001


def test_the_worst_source_sets_each_threshold_and_one_class_sources_their_own_side():
    rng = np.random.default_rng(0)
    scores, labels, sources = [], [], []

    def add(source: str, label: int, values: np.ndarray) -> None:
        scores.extend(rng.permutation(values))
        labels.extend([label] * len(values))
        sources.extend([source] * len(values))

    add("easy", 0, _grid(100) * 0.4)  # reals in (0, 0.4): fine from 0.39
    add("easy", 1, 0.6 + _grid(100) * 0.4)  # fakes in (0.6, 1)
    add("hard", 0, 0.2 + _grid(100) * 0.6)  # reals up to 0.8: sets the fake threshold
    add("hard", 1, 0.3 + _grid(100) * 0.7)
    add("reals-only", 0, _grid(100) * 0.5)
    add("fakes-only", 1, 0.1 + _grid(100) * 0.9)  # fakes down to 0.1: sets the real threshold
    choice = choose_thresholds(np.array(scores), np.array(labels), np.array(sources), 0.03)
    assert choice.fake_set_by == "hard" and choice.real_set_by == "fakes-only"
    assert not choice.crossed
    t = choice.thresholds
    assert 0.1 < t.real < t.fake < 0.8
    scores, labels, sources = np.array(scores), np.array(labels), np.array(sources)
    for source in ("easy", "hard", "reals-only", "fakes-only"):
        own = sources == source
        rates = error_rates(scores[own], labels[own], t)
        for key in ("real_called_fake", "fake_called_real"):
            assert rates[key] is None or rates[key] <= 0.03, (source, rates)
    limits = {s.source: s for s in choice.per_source}
    assert limits["reals-only"].real is None and limits["fakes-only"].fake is None
    assert json.loads(json.dumps(choice.to_json()))["fake_set_by"] == "hard"


def test_crossing_thresholds_are_said_and_meet_in_the_middle():
    # a model that keeps the classes apart: the rule's real threshold lands above its fake one
    scores = np.concatenate([0.1 + _grid(100) * 0.3, 0.6 + _grid(100) * 0.3])
    labels = np.array([0] * 100 + [1] * 100)
    choice = choose_thresholds(scores, labels, np.array(["s"] * 200), 0.03)
    assert choice.crossed and choice.rule_real > choice.rule_fake
    middle = round((choice.rule_real + choice.rule_fake) / 2, 4)
    assert choice.thresholds == Thresholds(middle, middle)
    assert middle == pytest.approx(0.5, abs=0.01)
    rates = error_rates(scores, labels, choice.thresholds)
    assert rates["decided"] == 1.0 and rates["real_called_fake"] == rates["fake_called_real"] == 0.0


def test_error_rates_count_each_outcome():
    t = Thresholds(0.3, 0.7)
    scores = np.array([0.1, 0.5, 0.8, 0.9, 0.2, 0.5, 0.75, 0.95])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    rates = error_rates(scores, labels, t)
    assert rates["real_called_fake"] == 0.5 and rates["fake_called_real"] == 0.25
    assert rates["uncertain"] == 0.25 and rates["decided"] == 0.75
    assert rates["accuracy_of_decided"] == round(3 / 6, 4)


# -- calibration ------------------------------------------------------------------------------


def _calibrated_data(temperature: float, bias: float, n: int = 40000, seed: int = 0):
    """Logits whose labels are drawn from sigmoid(logit / temperature + bias): that is the truth."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-(logits / temperature + bias)))).astype(int)
    return logits.astype(np.float32), labels


def test_temperature_fit_recovers_a_known_temperature():
    logits, labels = _calibrated_data(2.0, 0.0)
    fit = fit_temperature(logits, labels)
    assert fit.method == "temperature" and fit.bias == 0.0
    assert fit.temperature == pytest.approx(2.0, rel=0.05)
    before = expected_calibration_error(1 / (1 + np.exp(-logits)), labels)
    after = expected_calibration_error(1 / (1 + np.exp(-fit.apply(logits))), labels)
    assert after < 0.02 < before


def test_platt_fit_recovers_temperature_and_bias_and_is_chosen_when_the_bias_helps():
    logits, labels = _calibrated_data(0.5, 0.8)
    fit = fit_platt(logits, labels)
    assert fit.temperature == pytest.approx(0.5, rel=0.05) and fit.bias == pytest.approx(0.8, abs=0.1)
    assert fit_calibration(logits, labels).method == "platt"
    unbiased = fit_calibration(*_calibrated_data(0.5, 0.0))
    assert unbiased.method == "temperature"  # one parameter unless two clearly help


def test_choose_calibration_keeps_a_scale_only_when_it_holds_on_left_out_sources():
    parts = [_calibrated_data(2.0, 0.0, 10000, seed) for seed in range(3)]
    logits = np.concatenate([z for z, _ in parts])
    labels = np.concatenate([y for _, y in parts])
    sources = np.repeat(["a", "b", "c"], 10000)
    shared = choose_calibration(logits, labels, sources)  # one temperature fits every source
    assert shared.calibration.method == "temperature"
    assert shared.calibration.temperature == pytest.approx(2.0, rel=0.05)
    assert shared.held_out_nll["temperature"] < shared.held_out_nll["none"]
    honest = choose_calibration(*_calibrated_data(1.0, 0.0, 30000, 3), sources)
    assert honest.calibration == Calibration()  # already calibrated: nothing gained
    assert set(json.loads(json.dumps(honest.to_json()))["candidates"]) == {"none", "temperature", "platt"}


def test_calibration_keeps_the_order_and_inverts_for_old_readers():
    cal = Calibration("platt", 1.7, 0.3)
    z = np.linspace(-8, 8, 50, dtype=np.float32)
    assert (np.diff(cal.apply(z)) > 0).all()
    p = 0.8
    raw = cal.raw_probability(p)
    assert 1 / (1 + np.exp(-cal.apply(np.log(raw / (1 - raw))))) == pytest.approx(p, abs=1e-5)
    assert Calibration().apply(z) is not None and (Calibration().apply(z) == z).all()
    assert fit_calibration(z, np.zeros(50)) == Calibration()  # one class: nothing to fit
    with pytest.raises(ValueError):
        Calibration("platt", 0.0, 0.0)


def test_reliability_bins_and_ece_of_a_perfect_and_a_wrong_model():
    p = np.repeat([0.05, 0.35, 0.65, 0.95], 1000)
    y = np.concatenate([np.arange(1000) < k for k in (50, 350, 650, 950)]).astype(int)
    assert expected_calibration_error(p, y) == pytest.approx(0.0, abs=1e-9)
    assert expected_calibration_error(1 - p, y) == pytest.approx(0.6, abs=1e-9)
    bins = reliability(p, y, bins=10)
    assert sum(b.n for b in bins) == 4000 and bins[0].fake_rate == pytest.approx(0.05)


@pytest.fixture(scope="module")
def calibrated_model(tmp_path_factory, model_dir):
    """The shipped model under a card with a known calibration."""
    folder = tmp_path_factory.mktemp("calibrated")
    card = json.loads((model_dir / "card.json").read_text())
    card["calibration"] = {"method": "platt", "temperature": 2.0, "bias": 0.5}
    (folder / "card.json").write_text(json.dumps(card))
    shutil.copy(model_dir / card["file"], folder / card["file"])
    return folder


def test_serving_applies_the_cards_calibration_to_scores_and_heatmaps(calibrated_model, model_dir):
    rng = np.random.default_rng(0)
    plain = Predictor(model_dir, Settings(model_dir=model_dir, threads=1))
    plain.calibration = Calibration()
    calibrated = Predictor(calibrated_model, Settings(model_dir=calibrated_model, threads=1))
    assert calibrated.calibration == Calibration("platt", 2.0, 0.5)
    size = plain.input_size
    crops = rng.integers(0, 255, (3, size, size, 3), dtype=np.uint8)
    raw_p, raw_maps = plain.predict_with_heatmaps(crops)

    def calibrate(p: np.ndarray) -> np.ndarray:
        z = np.log(p.astype(np.float64)) - np.log1p(-p.astype(np.float64))
        return 1 / (1 + np.exp(-(z / 2.0 + 0.5)))

    p, maps = calibrated.predict_with_heatmaps(crops)
    assert np.allclose(p, calibrate(raw_p), atol=1e-4)
    assert np.allclose(calibrated.predict(crops), p, atol=1e-6)
    assert np.allclose(maps, calibrate(raw_maps), atol=1e-4)


# -- the verdict rule --------------------------------------------------------------------------

T = Thresholds(0.3, 0.7)


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (0.0, "real"),
        (0.2999, "real"),
        (0.3, "uncertain"),
        (0.6999, "uncertain"),
        (0.7, "fake"),
        (1.0, "fake"),
    ],
)
def test_face_verdict(p, expected):
    assert face_verdict(p, T) == expected


def test_face_verdict_with_one_threshold_is_the_old_two_states():
    assert face_verdict(0.49, 0.5) == "real" and face_verdict(0.5, 0.5) == "fake"
    assert face_verdict(None, T) is None


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ([0.8, 0.9, 0.75, 0.85], "fake"),  # mean and every frame over the fake threshold
        ([0.95, 0.95, 0.5, 0.5], "fake"),  # mean 0.725, half the frames agree
        ([0.99, 0.99, 0.99, 0.5, 0.1], "fake"),  # mean 0.714, 3 frames in 5 agree
        ([1.0, 1.0, 0.4, 0.4, 0.4], "uncertain"),  # mean 0.64: between
        ([1.0, 0.69, 0.69, 0.69], "uncertain"),  # mean over 0.7, one frame in four agrees
        ([0.1, 0.2, 0.25, 0.1], "real"),
        ([0.05, 0.05, 0.5, 0.5], "real"),  # mean 0.275, half the frames agree
        ([0.0, 0.0, 0.0, 0.31, 0.31, 0.31, 0.31], "uncertain"),  # mean 0.177, 3 frames in 7 agree
        ([], None),
    ],
)
def test_person_verdict_needs_the_mean_and_a_share_of_frames(scores, expected):
    assert person_verdict(scores, T) == expected


def test_person_verdict_share_is_a_parameter():
    assert person_verdict([0.9, 0.9, 0.5], T, share=0.5) == "fake"
    assert person_verdict([0.9, 0.9, 0.5], T, share=0.9) == "uncertain"


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        (["real", "fake", "uncertain"], "fake"),
        (["real", "uncertain"], "uncertain"),
        (["real", "real"], "real"),
        (["real", None], "real"),
        ([None], None),
        ([], None),
    ],
)
def test_file_verdict(verdicts, expected):
    assert file_verdict(verdicts) == expected


# -- configuration -----------------------------------------------------------------------------


def test_thresholds_parse_and_refuse_nonsense():
    assert Thresholds.parse("0.2,0.8") == Thresholds(0.2, 0.8)
    assert Thresholds.parse(" 0.5 ") == Thresholds(0.5, 0.5)
    for bad in ("0.8,0.2", "a,b", "0.1,0.2,0.3", "-0.1,0.5", "0.2,1.5", ""):
        with pytest.raises(ValueError):
            Thresholds.parse(bad)


def test_thresholds_come_from_the_card_or_the_environment(model_dir):
    assert Thresholds.from_card({"threshold": 0.57}) == Thresholds(0.57, 0.57)
    assert Thresholds.from_card({"threshold": 0.9, "thresholds": {"real": 0.2, "fake": 0.8}}) == Thresholds(
        0.2, 0.8
    )
    assert settings_from_env({}).thresholds is None
    assert settings_from_env({"UNMASK_THRESHOLDS": "0.25,0.75"}).thresholds == Thresholds(0.25, 0.75)
    with pytest.raises(ValueError, match="UNMASK_THRESHOLDS"):
        settings_from_env({"UNMASK_THRESHOLDS": "0.9,0.1"})


def test_analyzer_takes_the_settings_thresholds_over_the_cards(analyzer, settings, face_image):
    assert analyzer.thresholds == Thresholds.from_card(analyzer.predictor.card)
    everything_uncertain = Analyzer(
        settings.with_overrides(thresholds=Thresholds(0.0, 1.0)), predictor=analyzer.predictor
    )
    image = face_image(0)
    faces = everything_uncertain.score_faces(image, everything_uncertain.detector.detect(image))
    assert faces and all(f.verdict == "uncertain" for f in faces)
    # the card's decided share was measured at the card's thresholds, not these: not reported
    assert analyzer.decided_share is not None and everything_uncertain.decided_share is None
    everything_uncertain.detector.close()


# -- annotation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "colour", "word"), [(0.9, RED, "FAKE"), (0.5, AMBER, "UNSURE"), (0.1, GREEN, "REAL")]
)
def test_boxes_have_a_third_colour_for_uncertain(p, colour, word):
    box = (60, 50, 100, 90)
    image = np.full((240, 320, 3), 30, dtype=np.uint8)
    label = Label(box, p, T)
    out = draw_labels(image, [label])
    assert tuple(out[box[1] + box[3] // 2, box[0]]) == colour
    assert _style(label) == (colour, f"{word} {p:.2f}")
