"""What each part of the training recipe is worth, at one budget: SBI on and off, real/fake
pairs and group-weighted draws on and off, distillation against the same student alone at
several alphas, leave-one-source-out, and (with ``--background-dropout``) training that
sometimes shows only the face.

    python -m detector.training.ablate --teacher ~/.cache/unmask/runs/shipped/best.pt \\
        --steps 300 --size 160 --out .cache/ablation

A recipe's parts can only be compared when everything else is held fixed: every run here starts
from the same ImageNet weights, sees the same number of batches of the same size in the same
order (one seed), with the same schedule, and is then exported and evaluated exactly as a shipped
model is (``evaluate``, ONNX Runtime, test split, JPEG 95 / 30). The budget is small so that the
whole table fits one CPU session; its absolute AUCs are those of short runs, and only the
differences between rows answer the questions. A leave-one-out row is read on its withheld
source, which that run never saw; the last column is GAN's AUC on the face alone and on the
background alone (``evaluate.background_check``). Finished runs are kept in
``<out>/ablation.json`` and skipped when the command is rerun.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from . import evaluate as evaluate_mod
from . import export as export_mod
from . import train as train_mod
from .data import DEFAULT_CACHE


def runs(
    teacher: str, alphas: list[float], withhold: list[str], background_dropout: tuple[float, ...] = ()
) -> dict[str, list[str]]:
    """Each run's name and its flags beyond the shared ones. ``alone`` is the reference: the
    shipped recipe (SBI at 0.3 of the fakes) without a teacher."""
    table = {"alone": ["--sbi", "0.3"], "no-sbi": ["--sbi", "0"]}
    # issue 20: real/fake pairs of one group in a batch, against groups drawn alone, against the
    # frame-weighted draws of the earlier recipe (each video counted by its frames)
    table["no-pairs"] = ["--sbi", "0.3", "--pairs", "0"]
    table["frames"] = ["--sbi", "0.3", "--pairs", "0", "--sampling", "frames"]
    for share in background_dropout:
        table[f"background-dropout-{share:g}"] = ["--sbi", "0.3", "--background-dropout", str(share)]
    if teacher:
        for alpha in alphas:
            table[f"kd-{alpha:g}"] = ["--sbi", "0.3", "--teacher", teacher, "--alpha", str(alpha)]
    for held in withhold:
        table[f"without-{held.replace(':', '-')}"] = ["--sbi", "0.3", "--exclude", held]
        table[f"without-{held.replace(':', '-')}-no-sbi"] = ["--sbi", "0", "--exclude", held]
    return table


def withheld_auc(report: dict, held: str) -> float:
    """AUC on what a leave-one-out run withheld: a whole source, or one source's fakes (read as
    that source's AUC, its reals having been seen)."""
    source = held.split(":")[0]
    return report["per_source"][source]["auc"]


def row(name: str, flags: list[str], report: dict, minutes: float) -> dict:
    out = {
        "run": name,
        "flags": export_mod.as_recorded(" ".join(flags)),
        "minutes": round(minutes, 1),
        "auc": report["auc"],
        "dfdc_auc": report["dfdc_auc"],
        "auc_jpeg95": report["jpeg_auc"]["95"]["auc"],
        "auc_jpeg30": report["jpeg_auc"]["30"]["auc"],
        "per_source": {k: v["auc"] for k, v in report["per_source"].items()},
    }
    if "background_check" in report:  # GAN's AUC on the face alone and on the background alone
        check = report["background_check"]
        out["gan_face_only"] = check["face_only"]["per_source"].get("gan", {}).get("auc")
        out["gan_background_only"] = check["background_only"]["per_source"].get("gan", {}).get("auc")
    if "--exclude" in flags:
        held = flags[flags.index("--exclude") + 1]
        out["withheld"] = held
        out["withheld_auc"] = withheld_auc(report, held)
    return out


def markdown(rows: list[dict]) -> str:
    sources = sorted({s for r in rows for s in r["per_source"]})
    lines = [
        "| run | minutes | AUC | JPEG 95 / 30 | "
        + " | ".join(sources)
        + " | withheld AUC | GAN face / background |",
        "| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in sources) + " | ---: | ---: |",
    ]
    for r in rows:
        cells = [f"{r['per_source'].get(s, float('nan')):.3f}" for s in sources]
        held = f"{r['withheld']}: {r['withheld_auc']:.3f}" if "withheld" in r else ""
        parts = (r.get("gan_face_only"), r.get("gan_background_only"))
        gan = f"{parts[0]:.3f} / {parts[1]:.3f}" if None not in parts else ""
        lines.append(
            f"| {r['run']} | {r['minutes']} | {r['auc']:.4f} | {r['auc_jpeg95']:.3f} / {r['auc_jpeg30']:.3f} "
            f"| {' | '.join(cells)} | {held} | {gan} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(".cache/ablation"))
    ap.add_argument("--cache", default=str(DEFAULT_CACHE))
    ap.add_argument("--teacher", default="", help="checkpoint the distilled runs learn from")
    ap.add_argument("--alphas", default="0.25,0.5,0.75")
    ap.add_argument(
        "--withhold", default="photoshop,gan", help="comma list for leave-one-out ('source' or 'source:fake')"
    )
    ap.add_argument(
        "--background-dropout", default="", help="comma list of shares for train.py's --background-dropout"
    )
    ap.add_argument("--only", default="", help="comma list of run names (default all)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prefix", default="ablate", help="run names under ~/.cache/unmask/runs")
    args = ap.parse_args(argv)

    cache = Path(args.cache)
    args.out.mkdir(parents=True, exist_ok=True)
    table_path = args.out / "ablation.json"
    table = json.loads(table_path.read_text()) if table_path.exists() else []
    done = {r["run"] for r in table}
    plan = runs(
        args.teacher,
        [float(a) for a in args.alphas.split(",") if a],
        [w for w in args.withhold.split(",") if w],
        tuple(float(b) for b in args.background_dropout.split(",") if b),
    )
    only = set(args.only.split(",")) if args.only else set(plan)
    shared = [
        "--steps", str(args.steps), "--size", str(args.size), "--batch", str(args.batch),
        "--eval-every", str(args.steps), "--threads", str(args.threads), "--cache", str(cache),
        "--warmup", str(max(1, args.steps // 10)),
    ]  # fmt: skip
    for name, flags in plan.items():
        if name in done or name not in only:
            continue
        run = f"{args.prefix}-{name}"
        started = time.time()
        train_mod.main(["--run", run, *shared, *flags])
        minutes = (time.time() - started) / 60
        folder = args.out / name
        export_mod.main([str(train_mod.RUNS / run / "last.pt"), "--out", str(folder), "--name", run])
        evaluate_mod.choose_thresholds_and_calibration(folder, cache)
        report = evaluate_mod.evaluate(folder, cache, "test", None)
        table.append(row(name, [*shared, *flags], report, minutes))
        table_path.write_text(json.dumps(table, indent=2) + "\n")
        print(markdown(table[-1:]).splitlines()[-1], flush=True)
    print(markdown(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
