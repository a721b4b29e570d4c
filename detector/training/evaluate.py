"""Evaluate a shipped model folder exactly as it serves (ONNX Runtime), and write its report.

    python -m detector.training.evaluate --model models/unmask-lite0 [--choose-thresholds]

``--choose-thresholds`` first chooses the calibration (none, temperature or Platt scaling,
whichever best predicts validation sources left out of its fit: ``detector.calibration``) and
the verdict's two thresholds (``.thresholds``) on the validation split, and writes both into
``card.json``; the test split never sees a choice.

Reads the test split of the prepared crops (``prepare`` runs first if the cache is missing),
and writes ``report.json``, ``roc.png`` and ``reliability.png`` beside the model, then copies
the headline numbers into ``card.json`` so the card always states what this command measured:
AUC overall and per source / generator, beside what the verdict does there (real faces called
fake, fakes called real, the share left uncertain and so the share decided), the expected
calibration error before and after calibration, AUC on the face alone and on the background
alone (``background_check``), AUC after JPEG re-compression at quality 95 / 75 / 50 / 30, size,
parameters, per-crop latency, and the verdicts on the labelled videos.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from ..calibration import (
    Calibration,
    choose_calibration,
    expected_calibration_error,
    negative_log_likelihood,
    reliability,
)
from ..classifier import Predictor, sigmoid
from ..config import REPO_ROOT, Settings
from ..results import FRAME_SHARE, Thresholds
from .augment import jpeg, rescale
from .data import DEFAULT_CACHE, load_crops, read_manifest
from .metrics import auc
from .sbi import face_ellipse
from .thresholds import MAX_RATE, choose_thresholds, error_rates

JPEG_QUALITIES = (95, 75, 50, 30)
VIDEOS = REPO_ROOT.parent / "shared" / "data" / "videos"


def _scores(predictor: Predictor, crops: np.ndarray, quality: int | None = None) -> np.ndarray:
    if quality is not None:
        crops = np.stack([jpeg(c, quality) for c in crops])
    return predictor.predict(crops)


def breakdown(
    rows: list[dict], labels: np.ndarray, scores: np.ndarray, thresholds: Thresholds | None = None
) -> dict:
    """AUC per source (its fakes and reals; one-class sources against every other real) and per
    fake generator (against all reals), so a weak spot cannot hide in the pooled number. With
    ``thresholds``, each also says what the verdict does to its own faces (``error_rates``)."""
    sources = sorted({r["source"] for r in rows})
    src = np.array([r["source"] for r in rows])
    gen = np.array([r["generator"] for r in rows])
    per_source = {}

    def score(mask: np.ndarray) -> float:
        return round(auc(labels[mask], scores[mask]), 4)

    for s in sources:
        own = src == s
        fakes_vs_other_reals = (own & (labels == 1)) | (~own & (labels == 0))
        if len(set(labels[own])) == 2:
            per_source[s] = {"auc": score(own), "n": int(own.sum())}
            if (~own & (labels == 0)).any():
                # its fakes against everyone else's reals: a model that had learnt this source's
                # own reals (their framing, their camera) rather than its fakes would fall here
                per_source[s]["auc_fakes_vs_other_reals"] = score(fakes_vs_other_reals)
        else:  # one-class set: scored against the other sets' opposite class
            one_class = fakes_vs_other_reals if labels[own].max() == 1 else ~fakes_vs_other_reals
            per_source[s] = {"auc": score(one_class), "n": int(own.sum())}
        if thresholds is not None:
            per_source[s].update(_rates(labels[own], scores[own], thresholds))
    per_generator = {}
    for g in sorted(set(gen[labels == 1])):
        mask = (gen == g) | (labels == 0)
        per_generator[g] = {"auc": score(mask), "n": int((gen == g).sum())}
        if thresholds is not None:
            per_generator[g].update(_rates(labels[gen == g], scores[gen == g], thresholds))
    return {"per_source": per_source, "per_generator": per_generator}


def _rates(labels: np.ndarray, scores: np.ndarray, thresholds: Thresholds) -> dict:
    """``error_rates`` without the counts ``breakdown`` already gives, and without the side a
    one-class set does not have."""
    rates = error_rates(scores, labels, thresholds)
    return {k: v for k, v in rates.items() if k not in ("n", "n_real", "n_fake") and v is not None}


def background_check(
    predictor: Predictor, rows: list[dict], labels: np.ndarray, crops: np.ndarray, chunk: int = 256
) -> dict:
    """Is the score the face's? Photo sets differ in their backgrounds as much as in their faces
    (a GAN portrait's studio blur, a webcam's room), and a model may learn those instead. Every
    crop is scored twice more: with all but a fixed face ellipse blacked out (the face alone) and
    with the ellipse blacked out (the background alone). The ellipse is the same for every crop,
    so it carries no label; black is what the frame mask already shows the model."""
    inside = face_ellipse(crops.shape[1:3]) > 0
    out = {}
    for name, keep in (("face_only", inside), ("background_only", ~inside)):
        mask = keep[None, :, :, None].astype(np.uint8)
        # masked a chunk at a time: a masked copy of the whole test split is about 0.5 GB
        chunks = range(0, len(crops), chunk)
        scores = np.concatenate([predictor.predict(crops[i : i + chunk] * mask) for i in chunks])
        per_source = breakdown(rows, labels, scores)["per_source"]
        out[name] = {
            "auc": round(auc(labels, scores), 4),
            "per_source": {s: {k: v for k, v in d.items() if k != "n"} for s, d in per_source.items()},
        }
    return out


def latency_ms(model_dir: Path, size: int, runs: int = 50) -> float:
    """Median milliseconds for one crop on one CPU thread (the on-device figure)."""
    predictor = Predictor(model_dir, Settings(model_dir=model_dir, threads=1), batch_size=1)
    crop = np.random.default_rng(0).integers(0, 255, (1, size, size, 3), dtype=np.uint8)
    predictor.predict(crop)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        predictor.predict(crop)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000)


def roc_picture(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    for name, (labels, scores) in curves.items():
        order = np.argsort(-scores)
        lab = labels[order]
        tpr = np.concatenate([[0], np.cumsum(lab) / max(1, lab.sum())])
        fpr = np.concatenate([[0], np.cumsum(1 - lab) / max(1, (1 - lab).sum())])
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc(labels, scores):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("false positive rate (real called fake)")
    ax.set_ylabel("true positive rate (fake caught)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Unmask test split ROC")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def reliability_picture(
    labels: np.ndarray, curves: dict[str, np.ndarray], thresholds: Thresholds, path: Path
) -> None:
    """Predicted P(fake) against the observed fake rate per bin (the diagonal is a calibrated
    model), before and after calibration, with the two thresholds marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    for name, probabilities in curves.items():
        bins = [b for b in reliability(probabilities, labels) if b.n]
        ece = expected_calibration_error(probabilities, labels)
        ax.plot(
            [b.mean_probability for b in bins],
            [b.fake_rate for b in bins],
            "o-",
            ms=3,
            label=f"{name} (ECE {ece:.3f})",
        )
    for value, word in ((thresholds.real, "real below"), (thresholds.fake, "fake from")):
        ax.axvline(value, color="#b07000", lw=0.8, ls="--")
        ax.text(value, 0.02, f" {word} {value:.2f}", color="#b07000", fontsize=7, rotation=90)
    ax.set_xlabel("predicted P(fake)")
    ax.set_ylabel("observed share of fakes")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Unmask test split reliability (15 bins)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def social_verdicts(model_dir: Path, folder: Path) -> dict:
    """The shared clips as a social network passes them on (``social_copy``), judged again."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        copies = Path(tmp)
        for path in sorted(folder.rglob("*.mp4")):
            (copies / path.parent.name).mkdir(exist_ok=True)
            social_copy(path, copies / path.parent.name / path.name)
        rows = video_verdicts(model_dir, copies)
    right = sum(v["verdict"] == v["expected"] for v in rows)
    uncertain = sum(v["verdict"] == "uncertain" for v in rows)
    return {
        "reencode": f"{SOCIAL_HEIGHT}p, x264 CRF {SOCIAL_CRF} (preset medium), audio kept",
        "videos": rows,
        "correct": right,
        "uncertain": uncertain,
        "wrong": len(rows) - right - uncertain,
    }


def video_verdicts(model_dir: Path, folder: Path) -> list[dict]:
    from ..analyze import Analyzer

    analyzer = Analyzer(Settings(model_dir=model_dir))
    out = []
    for path in sorted(folder.rglob("*.mp4")):
        r = analyzer.analyze(path)
        expected = "fake" if path.parent.name == "fake" else "real"
        out.append(
            {
                "file": f"{path.parent.name}/{path.name}",
                "expected": expected,
                "verdict": r.verdict,
                "fake_probability": None if r.fake_probability is None else round(r.fake_probability, 4),
            }
        )
    return out


# How a social network passes a video on (issue 20): 360 lines, x264 at CRF 35. Made on the fly,
# never committed; the clips' own audio is copied (it does not enter a verdict).
SOCIAL_HEIGHT, SOCIAL_CRF = 360, 35
# A face crop as a 360p frame of a 1080p source shows it: a third of the pixels each way.
SOCIAL_SCALE = 360 / 1080


def social_copy(source: Path, target: Path, height: int = SOCIAL_HEIGHT, crf: int = SOCIAL_CRF) -> Path:
    """``source`` re-encoded as a social network shares it: scaled to ``height`` lines (never up),
    H.264 at ``crf`` with x264's usual preset, audio kept."""
    import cv2

    from ..annotate import AnnotatedVideoWriter
    from ..video import iter_frames, probe_video

    info = probe_video(source)
    scale = min(1.0, height / info.height)
    width, rows = round(info.width * scale / 2) * 2, round(info.height * scale / 2) * 2
    with AnnotatedVideoWriter(
        target, width, rows, info.fps, audio_from=source, crf=crf, preset="medium", x264_params=""
    ) as writer:
        for frame in iter_frames(source, info):
            writer.write(cv2.resize(frame.image, (width, rows), interpolation=cv2.INTER_AREA))
    return target


def as_shared(image: np.ndarray) -> np.ndarray:
    """One crop as a shared 360p video carries it (``shared_360p_crf35``). Training's keep rule,
    the release gate and ``gain --shared`` judge validation so too: 0.4.0 read heavy compression as
    forgery, and scoring clean crops only cannot see that."""
    return rescale(image, SOCIAL_SCALE, SOCIAL_CRF)


def at_scale(crops: np.ndarray, factor: float, crf: int | None = None) -> np.ndarray:
    """Crops as a smaller frame shows the face, and through x264 at ``crf`` where given, as a
    social network re-encodes it (``augment.rescale``, one crop at a time)."""
    return np.stack([rescale(c, factor, crf) for c in crops])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return sigmoid(np.asarray(z, dtype=np.float64))


THRESHOLD_RULE = (
    "on the validation split (splits/faces.csv), on the calibrated P(fake): 'fake' from the lowest "
    "score at which at most {rate:.0%} of the real faces of every source score as high, 'real' "
    "below the highest score under which at most {rate:.0%} of the fakes of every source fall; "
    "uncertain between (the worst source sets each; one-class sources set the side they have; "
    "crossing thresholds would both be their midpoint)"
)
VERDICT_RULE = (
    "face: fake at or above thresholds.fake, real below thresholds.real, else uncertain; person in "
    "a video: fake when the mean over its scored frames is at or above thresholds.fake and at "
    "least {share:.0%} of those frames are, real when the mean is below thresholds.real and at "
    "least {share:.0%} of frames are, else uncertain; file: fake if any person (or face) is fake, "
    "uncertain if none is fake and any is uncertain, else real (detector/results.py)"
)


def choose_thresholds_and_calibration(
    model_dir: Path, cache: Path, max_rate: float = MAX_RATE
) -> tuple[Calibration, Thresholds]:
    """Fit the calibration and choose both thresholds on the validation split (never the test
    split), and store them in the card.

    The card keeps ``threshold`` for readers from before calibration: it is the fake threshold
    expressed as the raw ``sigmoid(logit)`` such a reader computes, so it calls fake exactly
    what the new rule calls fake (and real everything else)."""
    predictor = Predictor(model_dir, Settings(model_dir=model_dir))
    rows = [r for r in read_manifest(cache) if r["split"] == "val"]
    labels = np.array([r["label"] for r in rows])
    sources = np.array([r["source"] for r in rows])
    logits = predictor.logits(load_crops(cache, rows, predictor.input_size), calibrated=False)
    calibration_choice = choose_calibration(logits, labels, sources)
    calibration = calibration_choice.calibration
    raw, calibrated = _sigmoid(logits), _sigmoid(calibration.apply(logits))
    choice = choose_thresholds(calibrated, labels, sources, max_rate)
    path = model_dir / "card.json"
    card = json.loads(path.read_text())
    card["threshold"] = float(
        min(1.0, np.ceil(calibration.raw_probability(choice.thresholds.fake) * 1e4) / 1e4)
    )
    card["thresholds"] = choice.thresholds.to_json()
    card["calibration"] = {
        **calibration.to_json(),
        "fitted_on": f"validation split, {len(rows)} faces",
        "formula": "P(fake) = sigmoid(logit / temperature + bias)",
        "rule": "none, temperature or Platt scaling, whichever has the lowest negative log "
        "likelihood on validation sources left out of its fit (leave one source out); more "
        "parameters must gain 0.001 nats per face",
        **calibration_choice.to_json(),
        "val_nll": {
            "before": round(negative_log_likelihood(logits, labels, Calibration()), 4),
            "after": round(negative_log_likelihood(logits, labels, calibration), 4),
        },
        "val_ece": {
            "before": round(expected_calibration_error(raw, labels), 4),
            "after": round(expected_calibration_error(calibrated, labels), 4),
        },
    }
    card["threshold_rule"] = (
        "threshold: thresholds.fake as the uncalibrated sigmoid(logit), for readers from before "
        "calibration; thresholds: " + THRESHOLD_RULE.format(rate=max_rate)
    )
    card["thresholds_choice"] = choice.to_json()
    card["verdict_rule"] = VERDICT_RULE.format(share=FRAME_SHARE)
    if choice.crossed:
        card["thresholds_note"] = (
            f"the rule's thresholds crossed (real below {choice.rule_real}, fake from "
            f"{choice.rule_fake}: on validation the classes are apart): both set to their "
            "midpoint, so every face is decided"
        )
    else:
        card.pop("thresholds_note", None)
    path.write_text(json.dumps(card, indent=2) + "\n")
    return calibration, choice.thresholds


def evaluate(
    model_dir: Path, cache: Path, split: str = "test", videos: Path | None = VIDEOS, limit: int = 0
) -> dict:
    if not (cache / "manifest.csv").exists():
        from .prepare import main as prepare_main

        faces = REPO_ROOT.parent / "shared" / "data" / "faces"
        prepare_main([str(p) for p in sorted(faces.iterdir()) if p.is_dir()] + ["--out", str(cache)])
    predictor = Predictor(model_dir, Settings(model_dir=model_dir))
    card = predictor.card
    thresholds = Thresholds.from_card(card)
    rows = [r for r in read_manifest(cache) if r["split"] == split]
    if limit:
        rows = rows[:: max(1, len(rows) // limit)]
    crops = load_crops(cache, rows, predictor.input_size)
    labels = np.array([r["label"] for r in rows])
    src = np.array([r["source"] for r in rows])
    started = time.time()
    logits = predictor.logits(crops, calibrated=False)
    raw = _sigmoid(logits)
    scores = _sigmoid(predictor.calibration.apply(logits))  # what serving returns
    report: dict = {
        "model": card.name,
        "version": card.version,
        "split": split,
        "n": len(rows),
        "n_fake": int(labels.sum()),
        "auc": round(auc(labels, scores), 4),
        "threshold": thresholds.fake,
        "thresholds": thresholds.to_json(),
        "calibration": predictor.calibration.to_json(),
        "ece": round(expected_calibration_error(scores, labels), 4),
        "ece_uncalibrated": round(expected_calibration_error(raw, labels), 4),
        "verdicts": error_rates(scores, labels, thresholds),
        "dfdc_auc": round(auc(labels[src == "dfdc"], scores[src == "dfdc"]), 4),
    }
    report["reliability"] = [
        {"low": round(b.low, 4), "high": round(b.high, 4), "n": b.n}
        | (
            {"mean_probability": round(b.mean_probability, 4), "fake_rate": round(b.fake_rate, 4)}
            if b.n
            else {}
        )
        for b in reliability(scores, labels)
    ]
    report.update(breakdown(rows, labels, scores, thresholds))
    report["background_check"] = background_check(predictor, rows, labels, crops)
    report["jpeg_auc"] = {}
    curves = {"all": (labels, scores), "dfdc": (labels[src == "dfdc"], scores[src == "dfdc"])}
    for q in JPEG_QUALITIES:
        s = _scores(predictor, crops, q)
        report["jpeg_auc"][str(q)] = {
            "auc": round(auc(labels, s), 4),
            "dfdc_auc": round(auc(labels[src == "dfdc"], s[src == "dfdc"]), 4),
        }
        if q == 30:
            curves["all, JPEG q30"] = (labels, s)
    report["jpeg_auc_drop_95_to_30"] = round(
        report["jpeg_auc"]["95"]["auc"] - report["jpeg_auc"]["30"]["auc"], 4
    )
    small = predictor.predict(at_scale(crops, SOCIAL_SCALE))
    report["scale_360p"] = {
        "factor": round(SOCIAL_SCALE, 4),
        "auc": round(auc(labels, small), 4),
        "per_source_auc": {k: v["auc"] for k, v in breakdown(rows, labels, small)["per_source"].items()},
    }
    # the crops as a shared video carries them: 360p scale and x264 at the social CRF; the
    # verdicts say whether "re-encoded" reads as "fake" (issue 20's item 6) on every test face
    shared = predictor.predict(at_scale(crops, SOCIAL_SCALE, SOCIAL_CRF))
    report["shared_360p_crf35"] = {
        "factor": round(SOCIAL_SCALE, 4),
        "crf": SOCIAL_CRF,
        "auc": round(auc(labels, shared), 4),
        "per_source_auc": {k: v["auc"] for k, v in breakdown(rows, labels, shared)["per_source"].items()},
        "verdicts": error_rates(shared, labels, thresholds),
        "mean_real_score": {
            "original": round(float(scores[labels == 0].mean()), 4),
            "shared": round(float(shared[labels == 0].mean()), 4),
        },
    }
    report["eval_seconds"] = round(time.time() - started, 1)
    onnx_path = model_dir / card.file
    report["file_bytes"] = onnx_path.stat().st_size
    report["file_mb"] = round(onnx_path.stat().st_size / 1e6, 2)
    report["parameters"] = card.extra.get("parameters")
    report["latency_ms_per_crop_1_thread"] = round(latency_ms(model_dir, card.input_size), 2)
    report["machine"] = f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores"
    if videos is not None and videos.is_dir():
        report["videos"] = video_verdicts(model_dir, videos)
        # right only when decided correctly; uncertain is neither right nor wrong
        report["videos_correct"] = sum(v["verdict"] == v["expected"] for v in report["videos"])
        report["videos_uncertain"] = sum(v["verdict"] == "uncertain" for v in report["videos"])
        report["videos_wrong"] = len(report["videos"]) - report["videos_correct"] - report["videos_uncertain"]
        report["videos_social"] = social_verdicts(model_dir, videos)
    report["command"] = "python -m detector.training.evaluate --model " + str(model_dir)
    roc_picture(curves, model_dir / "roc.png")
    reliability_picture(
        labels, {"uncalibrated": raw, "calibrated": scores}, thresholds, model_dir / "reliability.png"
    )
    (model_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    _update_card(model_dir, report)
    return report


def _update_card(model_dir: Path, report: dict) -> None:
    path = model_dir / "card.json"
    card = json.loads(path.read_text())
    keys = (
        "split",
        "n",
        "auc",
        "dfdc_auc",
        "threshold",
        "thresholds",
        "calibration",
        "ece",
        "ece_uncalibrated",
        "verdicts",
        "per_source",
        "per_generator",
        "background_check",
        "jpeg_auc",
        "jpeg_auc_drop_95_to_30",
        "file_mb",
        "latency_ms_per_crop_1_thread",
        "machine",
        "videos_correct",
        "videos_uncertain",
        "videos_wrong",
        "scale_360p",
        "shared_360p_crf35",
        "videos_social",
    )
    card["metrics"] = {k: report[k] for k in keys if k in report}
    card.setdefault("commands", {})["evaluate"] = report["command"]
    path.write_text(json.dumps(card, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=REPO_ROOT / "models" / "unmask-lite0")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--split", default="test")
    ap.add_argument("--videos", type=Path, default=VIDEOS)
    ap.add_argument("--no-videos", action="store_true")
    ap.add_argument("--limit", type=int, default=0, help="evaluate on about N crops (quick checks)")
    ap.add_argument(
        "--choose-thresholds",
        "--choose-threshold",
        dest="choose",
        action="store_true",
        help="first fit the calibration and choose both thresholds on the val split, into the card",
    )
    ap.add_argument(
        "--max-rate",
        type=float,
        default=MAX_RATE,
        help="with --choose-thresholds: the largest share of any source's reals called fake "
        "(and of its fakes called real) on the val split (default 0.03)",
    )
    args = ap.parse_args(argv)
    if args.choose:
        choose_thresholds_and_calibration(args.model, args.cache, args.max_rate)
    report = evaluate(args.model, args.cache, args.split, None if args.no_videos else args.videos, args.limit)
    if args.choose:
        report["command"] += " --choose-thresholds"
        if args.max_rate != MAX_RATE:
            report["command"] += f" --max-rate {args.max_rate}"
        (args.model / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        _update_card(args.model, report)
    summary = {
        k: report[k]
        for k in (
            "auc",
            "dfdc_auc",
            "thresholds",
            "ece_uncalibrated",
            "ece",
            "verdicts",
            "jpeg_auc_drop_95_to_30",
            "file_mb",
            "latency_ms_per_crop_1_thread",
        )
        if k in report
    }
    for key in ("videos_correct", "videos_uncertain", "videos_wrong"):
        summary[key] = report.get(key)
    print(json.dumps(summary), file=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
