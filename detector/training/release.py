"""Replace the shipped model only with one that is not worse on any source: the release gate.

    python -m detector.training.release CANDIDATE_DIR [--shipped models/unmask-lite0] [--install]

Why: a model that gains on the pooled score can still lose a source (the pooled AUC hides which
faces it now gets wrong), and one validation split is noisy. Both models score the validation
split as served (INT8, this CPU's exact path); per source, a bootstrap over the source's groups
(videos, identities; its clips where it has fewer than ``MIN_GROUPS``: ``metrics.noise_units``)
gives the shipped model's 95 % interval, and half its width is the source's noise. The gate
refuses when any source's AUC falls by more than its noise, on the crops as they are or as a
shared 360p video carries them (``evaluate.at_scale`` at the social scale and CRF: 0.4.0 lost
most of its AUC there and clean crops cannot show it). The shared clips are reported by
``evaluate``, never used to choose. With ``--install`` an accepted candidate is evaluated on the
test split (report, thresholds, calibration, parity) and copied over the shipped folder, the
model it replaces kept beside it under its version.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from ..classifier import Predictor
from ..config import REPO_ROOT, Settings
from .data import DEFAULT_CACHE, load_crops, read_manifest
from .evaluate import SOCIAL_CRF, SOCIAL_SCALE, at_scale
from .metrics import SHARED, fallen, noise_units, sources_fallen

SHIPPED = REPO_ROOT / "models" / "unmask-lite0"
# The committed weights `make release` builds from (models/weights: their run log beside them).
WEIGHTS = REPO_ROOT / "models" / "weights" / "lite0-student.pt"


def gate(candidate: Path, shipped: Path = SHIPPED, cache: Path = DEFAULT_CACHE, split: str = "val") -> dict:
    rows = [r for r in read_manifest(cache) if r["split"] == split]
    scores: dict[str, np.ndarray] = {}
    for name, folder in (("shipped", shipped), ("candidate", candidate)):
        predictor = Predictor(folder, Settings(model_dir=folder))
        crops = load_crops(cache, rows, predictor.input_size)
        scores[name] = predictor.predict(crops).astype(np.float64)
        shared = at_scale(crops, SOCIAL_SCALE, SOCIAL_CRF)  # as evaluate's shared_360p_crf35
        scores[f"{name}_shared"] = predictor.predict(shared).astype(np.float64)
    labels = np.array([r["label"] for r in rows])
    groups = noise_units(rows)
    sources = np.array([r["source"] for r in rows])
    judged = sources_fallen(labels, sources, groups, scores["shipped"], scores["candidate"])
    judged_shared = sources_fallen(
        labels, sources, groups, scores["shipped_shared"], scores["candidate_shared"]
    )

    def table(judged: dict) -> dict:
        return {
            s: {"shipped": v["before"], "candidate": v["after"], "noise": v["noise"]}
            for s, v in judged.items()
        }

    refused = fallen(judged) + [s + SHARED for s in fallen(judged_shared)]
    return {
        "split": split,
        "shipped": str(shipped),
        "candidate": str(candidate),
        "rule": "refused when a source's AUC falls by more than half the width of the shipped model's 95 % "
        "bootstrap interval on it (groups resampled), on the crops as they are or as a shared 360p "
        "video carries them (x264 CRF 35)",
        "sources": table(judged),
        "sources_shared": table(judged_shared),
        "refused_for": refused,
        "accepted": not refused,
    }


def install(candidate: Path, shipped: Path, cache: Path, version: str, gate_result: dict) -> Path:
    """Evaluate the accepted candidate as shipped models are, keep the shipped model beside it
    (``<shipped>-<its version>``), then put the candidate in the shipped folder."""
    from . import evaluate as evaluate_mod
    from . import parity

    card_path = candidate / "card.json"
    card = json.loads(card_path.read_text())
    card["version"] = version
    card.update(provenance(WEIGHTS))
    card["release_gate"] = {
        k: gate_result[k]
        for k in ("split", "rule", "sources", "sources_shared", "accepted")
        if k in gate_result
    }
    card.setdefault("commands", {})["release"] = (
        f"python -m detector.training.release {candidate} --install --version {version}"
    )
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    evaluate_mod.main(["--model", str(candidate), "--cache", str(cache), "--choose-thresholds"])
    parity.main([str(candidate)])
    old_version = json.loads((shipped / "card.json").read_text())["version"]
    kept = shipped.with_name(f"{shipped.name}-{old_version}")
    if not kept.exists():
        shutil.copytree(shipped, kept)
    for path in shipped.iterdir():  # what the candidate does not have must not linger
        if path.is_file() and not (candidate / path.name).exists():
            path.unlink()
    for path in candidate.iterdir():
        if path.is_file() and path.name != "release_gate.json":
            shutil.copy(path, shipped / path.name)
    # the figures were measured on the candidate's folder; rerunning them reads the shipped one
    for name in ("card.json", "report.json"):
        text = (shipped / name).read_text()
        (shipped / name).write_text(
            text.replace(f"--model {candidate} ", f"--model {shipped_arg(shipped)} ").replace(
                f"parity {candidate}", f"parity {shipped_arg(shipped)}"
            )
        )
    return kept


def provenance(weights: Path) -> dict:
    """What the card says about how the release came to be, beyond its own pruning run: the
    committed weights it was built from with their run log's totals (each continuation, its
    steps and minutes), and the recipe's leave-one-source-out figures (``ablate``: a source never
    trained on, scored on it), which no single model can measure on itself."""
    out: dict = {}
    log_path = weights.with_suffix(".log.json")
    if log_path.exists():
        log = json.loads(log_path.read_text())
        runs = log["continuations"]
        out["weights"] = {
            "file": shipped_arg(weights),
            "run_log": shipped_arg(log_path),
            "continuations": len(runs),
            "kept": sum(c["kept"] for c in runs),
            "cumulative_steps": log["cumulative_steps"],
            "cumulative_minutes": log["cumulative_minutes"],
            "val_auc": next((c["best"]["val_auc"] for c in reversed(runs) if c["kept"] and c["best"]), None),
        }
    ablation_path = weights.parent / "ablation.json"
    if ablation_path.exists():
        ablation = json.loads(ablation_path.read_text())
        out["leave_one_source_out"] = {
            "command": ablation["command"],
            "note": ablation["note"],
            "withheld_auc": {r["withheld"]: r["withheld_auc"] for r in ablation["rows"] if "withheld" in r},
            "same_budget_with_everything": next(
                (r["per_source"] for r in ablation["rows"] if r["run"] == "alone"), None
            ),
        }
    return out


def shipped_arg(folder: Path) -> str:
    """A model folder as the commands in a card name it: relative to the repository if inside."""
    try:
        return str(folder.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(folder)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("candidate", type=Path, help="model folder (card.json + INT8 file)")
    ap.add_argument("--shipped", type=Path, default=SHIPPED)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--install", action="store_true", help="evaluate and copy an accepted candidate")
    ap.add_argument("--version", default="", help="the installed model's version (needed with --install)")
    args = ap.parse_args(argv)
    if args.install and not args.version:
        ap.error("--install needs --version")
    result = gate(args.candidate, args.shipped, args.cache)
    for title, key, suffix in (("as is", "sources", ""), ("as shared", "sources_shared", SHARED)):
        print(f"{'source ' + title:<20}{'shipped':>9}{'candidate':>11}{'noise':>9}")
        for source, row in result[key].items():
            mark = "  REFUSED" if source + suffix in result["refused_for"] else ""
            print(f"{source:<20}{row['shipped']:>9.4f}{row['candidate']:>11.4f}{row['noise']:>9.4f}{mark}")
    (args.candidate / "release_gate.json").write_text(json.dumps(result, indent=2) + "\n")
    if not result["accepted"]:
        print(f"refused: worse than {args.shipped} beyond the noise on {', '.join(result['refused_for'])}")
        return 1
    print(f"accepted against {args.shipped}")
    if args.install:
        kept = install(args.candidate, args.shipped, args.cache, args.version, result)
        print(f"installed {args.version} in {args.shipped}; the previous model kept in {kept}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
