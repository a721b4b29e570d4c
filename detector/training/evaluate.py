"""Evaluate a shipped model folder exactly as it serves (ONNX Runtime), and write its report.

    python -m detector.training.evaluate --model models/unmask-lite0

Reads the test split of the prepared crops (``prepare`` runs first if the cache is missing),
and writes ``report.json`` and ``roc.png`` beside the model, then copies the headline numbers
into ``card.json`` so the card always states what this command measured:
AUC overall and per source / generator, accuracy at the card's threshold, AUC on the face
alone and on the background alone (``background_check``), AUC after JPEG
re-compression at quality 95 / 75 / 50 / 30, size, parameters, per-crop latency, and the
verdicts on the labelled videos.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from ..classifier import Predictor
from ..config import REPO_ROOT, Settings
from .augment import jpeg
from .prepare import DEFAULT_CACHE
from .sbi import face_ellipse
from .train import auc, load_crops, read_manifest

JPEG_QUALITIES = (95, 75, 50, 30)
VIDEOS = REPO_ROOT.parent / "shared" / "data" / "videos"


def _scores(predictor: Predictor, crops: np.ndarray, quality: int | None = None) -> np.ndarray:
    if quality is not None:
        crops = np.stack([jpeg(c, quality) for c in crops])
    return predictor.predict(crops)


def breakdown(rows: list[dict], labels: np.ndarray, scores: np.ndarray) -> dict:
    """AUC per source (its fakes and reals; one-class sources against every other real) and per
    fake generator (against all reals), so a weak spot cannot hide in the pooled number."""
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
    per_generator = {}
    for g in sorted(set(gen[labels == 1])):
        mask = (gen == g) | (labels == 0)
        per_generator[g] = {"auc": score(mask), "n": int((gen == g).sum())}
    return {"per_source": per_source, "per_generator": per_generator}


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


def youden_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score cut that maximises sensitivity + specificity (Youden's J) on the given data."""
    best, cut = -1.0, 0.5
    for t in np.unique(np.round(scores, 3)):
        pred = scores >= t
        j = pred[labels == 1].mean() + (~pred[labels == 0]).mean()
        if j > best:
            best, cut = j, float(t)
    return cut


def choose_threshold(model_dir: Path, cache: Path) -> float:
    """Pick the card's threshold on the validation split (never the test split) and store it."""
    predictor = Predictor(model_dir, Settings(model_dir=model_dir))
    rows = [r for r in read_manifest(cache) if r["split"] == "val"]
    labels = np.array([r["label"] for r in rows])
    cut = youden_threshold(labels, predictor.predict(load_crops(cache, rows, predictor.input_size)))
    path = model_dir / "card.json"
    card = json.loads(path.read_text())
    card["threshold"] = round(cut, 3)
    card["threshold_rule"] = "Youden's J on the validation split (splits/faces.csv)"
    path.write_text(json.dumps(card, indent=2) + "\n")
    return cut


def evaluate(
    model_dir: Path, cache: Path, split: str = "test", videos: Path | None = VIDEOS, limit: int = 0
) -> dict:
    if not (cache / "manifest.csv").exists():
        from .prepare import main as prepare_main

        faces = REPO_ROOT.parent / "shared" / "data" / "faces"
        prepare_main([str(p) for p in sorted(faces.iterdir()) if p.is_dir()] + ["--out", str(cache)])
    predictor = Predictor(model_dir, Settings(model_dir=model_dir))
    card = predictor.card
    rows = [r for r in read_manifest(cache) if r["split"] == split]
    if limit:
        rows = rows[:: max(1, len(rows) // limit)]
    crops = load_crops(cache, rows, predictor.input_size)
    labels = np.array([r["label"] for r in rows])
    src = np.array([r["source"] for r in rows])
    started = time.time()
    scores = _scores(predictor, crops)
    report: dict = {
        "model": card.name,
        "version": card.version,
        "split": split,
        "n": len(rows),
        "n_fake": int(labels.sum()),
        "auc": round(auc(labels, scores), 4),
        "threshold": card.threshold,
        "accuracy_at_threshold": round(float(((scores >= card.threshold) == labels).mean()), 4),
        "dfdc_auc": round(auc(labels[src == "dfdc"], scores[src == "dfdc"]), 4),
    }
    report.update(breakdown(rows, labels, scores))
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
    report["eval_seconds"] = round(time.time() - started, 1)
    onnx_path = model_dir / card.file
    report["file_bytes"] = onnx_path.stat().st_size
    report["file_mb"] = round(onnx_path.stat().st_size / 1e6, 2)
    report["parameters"] = card.extra.get("parameters")
    report["latency_ms_per_crop_1_thread"] = round(latency_ms(model_dir, card.input_size), 2)
    report["machine"] = f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores"
    if videos is not None and videos.is_dir():
        report["videos"] = video_verdicts(model_dir, videos)
        report["videos_correct"] = sum(v["verdict"] == v["expected"] for v in report["videos"])
    report["command"] = "python -m detector.training.evaluate --model " + str(model_dir)
    roc_picture(curves, model_dir / "roc.png")
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
        "accuracy_at_threshold",
        "per_source",
        "per_generator",
        "background_check",
        "jpeg_auc",
        "jpeg_auc_drop_95_to_30",
        "file_mb",
        "latency_ms_per_crop_1_thread",
        "machine",
        "videos_correct",
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
        "--choose-threshold", action="store_true", help="first set the card's threshold on the val split"
    )
    args = ap.parse_args(argv)
    if args.choose_threshold:
        choose_threshold(args.model, args.cache)
    report = evaluate(args.model, args.cache, args.split, None if args.no_videos else args.videos, args.limit)
    if args.choose_threshold:
        report["command"] += " --choose-threshold"
        (args.model / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        _update_card(args.model, report)
    summary = {
        k: report[k]
        for k in (
            "auc",
            "dfdc_auc",
            "accuracy_at_threshold",
            "jpeg_auc_drop_95_to_30",
            "file_mb",
            "latency_ms_per_crop_1_thread",
        )
        if k in report
    }
    summary["videos_correct"] = report.get("videos_correct")
    print(json.dumps(summary), file=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
