"""Fine-tune an EfficientNet-Lite on the prepared crops: resumable, CPU-sized, optional SBI and KD.

    python -m detector.training.train --run lite0-base --arch lite0 --minutes 55

Every ``--ckpt-every`` steps the run saves model, optimiser and sampler state under
``~/.cache/unmask/runs/<run>/``; rerunning the same command resumes where it stopped. The
best checkpoint by validation AUC is kept as ``best.pt`` for export.

Loss: ``(1 - alpha) * BCE(student, label) + alpha * T^2 * BCE(student / T, sigmoid(teacher / T))``
when ``--teacher`` is given (knowledge distillation), plain BCE otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from .data import DEFAULT_CACHE, CropSet, balanced_weights, read_manifest, select, validation_sample
from .evaluate import as_shared
from .losses import distillation_loss
from .metrics import SHARED, auc_by_source, fallen, noise_units, paired_gain, sources_fallen
from .model import ARCHS, create_model, freeze_stem, load_checkpoint, load_weights
from .sampling import GroupSampler, parse_weights

RUNS = Path(os.environ.get("UNMASK_RUNS", Path.home() / ".cache" / "unmask" / "runs"))


@torch.no_grad()
def predict(model: torch.nn.Module, loader: DataLoader) -> np.ndarray:
    model.eval()
    out = []
    for x, _ in loader:
        out.append(torch.sigmoid(model(x.contiguous(memory_format=torch.channels_last))).squeeze(1).numpy())
    return np.concatenate(out) if out else np.zeros(0)


def progress(step: int, total_steps: int, seconds: float, minutes: float) -> float:
    """How far along the learning-rate cosine a step is: by steps, or by the time budget
    (``minutes``, 0 for none) where that runs out first.

    Why both: ``make train`` sizes its steps to a budget at a rate measured on one machine (50
    steps a minute), and the same machine ran at 22 on another day. Sized by steps alone, the
    budget then stopped the run halfway down the cosine, at a high rate, and its last steps were
    never scored. Sized by whichever ends first, the rate reaches its floor when the run ends on
    any machine; on a fast one (a GPU) the steps end first, as before.
    """
    by_steps = step / total_steps if total_steps else 1.0
    by_time = seconds / (minutes * 60) if minutes else 0.0
    return min(1.0, max(by_steps, by_time))


def train(args: argparse.Namespace) -> Path:
    torch.set_num_threads(args.threads)
    run_dir = RUNS / args.run
    run_dir.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache)
    rows = read_manifest(cache)
    sources = set(args.sources.split(",")) if args.sources else None
    exclude = set(args.exclude.split(",")) if args.exclude else set()
    train_rows = select(rows, "train", sources, exclude)
    val_rows = select(rows, "val", sources, set())
    sbi_rows = [r for r in train_rows if r["label"] == 0] if args.sbi > 0 else []
    if args.sbi_only:
        train_rows = [r for r in train_rows if r["label"] == 0]
    size = args.size or ARCHS[args.arch].input_size
    train_set = CropSet(
        cache,
        train_rows,
        True,
        size,
        sbi_rows,
        seed=args.seed,
        frame_mask=args.frame_mask,
        background_dropout=args.background_dropout,
        arch=args.arch,
    )
    weights = balanced_weights(train_rows, sbi_rows, args.sbi if not args.sbi_only else 1.0)
    val_sample = validation_sample(val_rows, args.val_max)
    val_set = CropSet(cache, val_sample, False, size, frame_mask=args.frame_mask, arch=args.arch)
    # the same crops as a shared 360p video carries them: a model that reads compression as
    # forgery loses here and nowhere in val_set (0.4.0: 0.88 as is, 0.57 as shared)
    shared_set = (
        CropSet(cache, val_sample, False, size, frame_mask=args.frame_mask, arch=args.arch, degrade=as_shared)
        if args.judge_shared
        else None
    )

    model = create_model(args.arch).to(memory_format=torch.channels_last)
    frozen = freeze_stem(model, args.freeze_blocks)
    head = [p for n, p in model.named_parameters() if n.startswith("_fc") and p.requires_grad]
    body = [p for n, p in model.named_parameters() if not n.startswith("_fc") and p.requires_grad]
    opt = torch.optim.AdamW(
        [{"params": body, "lr": args.lr}, {"params": head, "lr": args.lr * 5}], weight_decay=1e-4
    )
    total_steps = args.steps
    base_lrs = [g["lr"] for g in opt.param_groups]

    teacher = None
    if args.teacher:
        teacher, ckpt = load_checkpoint(Path(args.teacher))
        teacher.to(memory_format=torch.channels_last)
        teacher_size = ckpt.get("size") or ARCHS[ckpt["arch"]].input_size

    state = {"step": 0, "best_auc": -1.0, "history": [], "seconds": 0.0}
    last = run_dir / "last.pt"
    if last.exists():
        resumed = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(resumed["model"])
        opt.load_state_dict(resumed["opt"])
        state = resumed["state"]
        print(f"resumed {args.run} at step {state['step']}", flush=True)
    elif args.init:
        model.load_state_dict(load_weights(Path(args.init), args.arch))
        print(f"{args.run} starts from {args.init}", flush=True)
    (run_dir / "args.json").write_text(json.dumps(vars(args), indent=2, default=str))
    # With --ema, the weights evaluated and kept are an exponential average of the trained ones:
    # a continuation stops while its learning rate is still high, where single steps move the
    # validation AUC by a few points, and the average sits in the middle of those moves.
    ema = None
    if args.ema:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(args.ema), use_buffers=True)
        if last.exists() and "ema" in resumed:
            ema.load_state_dict(resumed["ema"])
    scored = ema.module if ema is not None else model

    def save(path: Path, best: bool = False) -> None:
        if best:
            save_checkpoint(path, scored, opt, state, args, size)
        else:
            extra = {"ema": ema.state_dict()} if ema is not None else {}
            save_checkpoint(path, model, opt, state, args, size, **extra)

    def evaluate_and_keep(start: bool = False) -> None:
        """Score the weights on validation and log it; keep them as best.pt if they are the best,
        or (``start``) their scores as where this continuation starts, for the run log's gain."""
        val_auc, per_source, scores = evaluate_model(scored, val_set)
        entry = {"step": state["step"], "val_auc": val_auc, "per_source": per_source}
        if shared_set is not None:
            shared_auc, shared_per_source, shared_scores = evaluate_model(scored, shared_set)
            entry.update(val_auc_shared=shared_auc, per_source_shared=shared_per_source)
        entry["score"] = judged_score(entry)
        best = not start and entry["score"] > state["best_auc"]
        if start or best:
            name = "start" if start else "best"
            keep_scores(run_dir, val_set.rows, name, scores)
            if shared_set is not None:
                keep_scores(run_dir, val_set.rows, f"{name}_shared", shared_scores)
        model.train()
        for m in frozen:
            m.eval()
        entry["minutes"] = round(state["seconds"] / 60, 1)
        state["history"].append(entry)
        shared_note = f" as shared {entry['val_auc_shared']:.4f}" if shared_set is not None else ""
        print(f"eval step {state['step']} val_auc {val_auc:.4f}{shared_note} {per_source}", flush=True)
        if best:
            state["best_auc"] = entry["score"]
            save(run_dir / "best.pt", best=True)

    if args.sampling == "groups":
        batches = GroupSampler(
            train_rows,
            args.batch,
            total_steps,
            sbi=len(sbi_rows),
            sbi_share=args.sbi if not args.sbi_only else 1.0,
            pair_share=args.pairs,
            seed=args.seed,
            start=state["step"],
            real_weight=parse_weights(args.real_weight),
        )
        loader = DataLoader(train_set, batch_sampler=batches, num_workers=args.workers)
    else:
        sampler_gen = torch.Generator().manual_seed(args.seed + state["step"])
        sampler = torch.utils.data.WeightedRandomSampler(
            weights, num_samples=(total_steps - state["step"]) * args.batch, generator=sampler_gen
        )
        loader = DataLoader(
            train_set,
            batch_size=args.batch,
            sampler=sampler,
            num_workers=args.workers,
            drop_last=True,
            persistent_workers=False,
        )
    # after the sampler, which refuses a bad --real-weight before minutes of scoring
    if args.init and state["step"] == 0 and not state["history"]:
        evaluate_and_keep(start=True)  # where this continuation starts, for the run log
    model.train()
    for m in frozen:
        m.eval()
    started = time.time() - state["seconds"]
    deadline = time.time() + args.minutes * 60 if args.minutes else None
    t_log = time.time()
    for x, y in loader:
        step = state["step"]
        if step >= total_steps:
            break
        warm = min(1.0, (step + 1) / args.warmup)
        cosine = 0.5 * (1 + math.cos(math.pi * progress(step, total_steps, state["seconds"], args.minutes)))
        for g, lr in zip(opt.param_groups, base_lrs, strict=True):
            g["lr"] = lr * warm * (0.02 + 0.98 * cosine)
        loss = train_step(model, opt, x, y, teacher, teacher_size if teacher is not None else 0, args)
        if ema is not None:
            ema.update_parameters(model)
        state["step"] = step + 1
        state["seconds"] = time.time() - started
        if state["step"] % 20 == 0:
            rate = 20 * args.batch / (time.time() - t_log)
            t_log = time.time()
            print(
                f"step {state['step']}/{total_steps} loss {loss.item():.4f} {rate:.1f} img/s elapsed {state['seconds'] / 60:.1f} min",
                flush=True,
            )
        out_of_time = bool(deadline and time.time() > deadline)
        # the budget's last steps are scored too: they are the ones at the lowest learning rate
        if state["step"] % args.eval_every == 0 or state["step"] == total_steps or out_of_time:
            evaluate_and_keep()
        if state["step"] % args.ckpt_every == 0:
            save(last)
        if out_of_time:
            print("time budget reached; rerun the same command to continue", flush=True)
            save(last)
            break
    save(last)
    if not (run_dir / "best.pt").exists():
        save(run_dir / "best.pt", best=True)
    (run_dir / "summary.json").write_text(json.dumps(state, indent=2))
    if args.save_weights:
        save_weights(run_dir, Path(args.save_weights), args)
    return run_dir


def save_weights(run_dir: Path, target: Path, args: argparse.Namespace) -> None:
    """The run's best model as FP16 weights at ``target`` (committed: the next machine continues
    from them), and a line in the run log beside it (``<target>.log.json``): which run, from what,
    how many steps and minutes, validation AUC at its start and best, per source, on which CPU."""
    from ..cpu import this_cpu

    best = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=False)
    state = json.loads((run_dir / "summary.json").read_text())
    log_path = target.with_suffix(".log.json")
    log = json.loads(log_path.read_text()) if log_path.exists() else {"continuations": []}
    start = next((h for h in state["history"] if h["step"] == 0), None)
    top = max((h for h in state["history"] if h["step"] > 0), key=judged_score, default=None)
    lost = continuation_losses(run_dir) if args.init else []
    if args.init and start and top and judged_score(top) <= judged_score(start):
        print(f"no validation gain over {args.init}: {target} left as it was", flush=True)
        kept = False
    elif lost:
        print(
            f"{', '.join(lost)} fell beyond the noise against {args.init}: {target} left as it was",
            flush=True,
        )
        kept = False
    else:
        fp16 = {k: v.half() if v.is_floating_point() else v for k, v in best["model"].items()}
        target.parent.mkdir(parents=True, exist_ok=True)
        # the training's settings travel with the weights: export reads the frame mask from them,
        # prune fine-tunes with the same sampling
        settings = {k: v for k, v in vars(args).items() if k != "argv"}
        torch.save({"arch": args.arch, "size": best["size"], "args": settings, "model": fp16}, target)
        kept = True
    log["continuations"].append(
        {
            "date": time.strftime("%Y-%m-%d"),
            "run": args.run,
            "from": args.init or "ImageNet",
            "steps": state["step"],
            "minutes": round(state["seconds"] / 60, 1),
            "cpu": this_cpu().name,
            "start": start,
            "best": top,
            # the pooled gain and its 95 % interval, groups resampled: the stop rule's noise
            "gain": continuation_gain(run_dir),
            "gain_shared": continuation_gain(run_dir, shared=True),
            # sources the best weights lost beyond their noise: any, and they are not kept
            "fallen": lost,
            "kept": kept,
            "command": "python -m detector.training.train " + " ".join(getattr(args, "argv", [])),
        }
    )
    kept_runs = [c for c in log["continuations"] if c["kept"]]
    log["cumulative_steps"] = sum(c["steps"] for c in kept_runs)
    log["cumulative_minutes"] = round(sum(c["minutes"] for c in kept_runs), 1)
    log_path.write_text(json.dumps(log, indent=2) + "\n")


def train_step(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    teacher: torch.nn.Module | None,
    teacher_size: int,
    args: argparse.Namespace,
) -> torch.Tensor:
    """One optimiser step on a batch: the loss against the labels, and the teacher's scores (at
    the teacher's own input size) where one is given."""
    x = x.contiguous(memory_format=torch.channels_last)
    logits = model(x)
    teacher_logits = None
    if teacher is not None:
        with torch.no_grad():
            if teacher_size != x.shape[-1]:
                x = F.interpolate(x, size=teacher_size, mode="bilinear", align_corners=False)
            teacher_logits = teacher(x)
    loss = distillation_loss(logits, y, teacher_logits, args.alpha, args.temperature)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def evaluate_model(model: torch.nn.Module, val_set: CropSet) -> tuple[float, dict[str, float], np.ndarray]:
    """Validation AUC, pooled and per source, and the scores (leaves the model in eval mode)."""
    scores = predict(model, DataLoader(val_set, batch_size=64, num_workers=1))
    return (*auc_by_source(val_set.rows, scores), scores)


def keep_scores(run_dir: Path, rows: list[dict], name: str, scores: np.ndarray) -> None:
    """Write one model's validation scores (``start``, ``best``) beside the run, with the
    labels, groups and sources they were scored on, so the gain between two can be bootstrapped
    after a resume too (``continuation_gain``, ``continuation_losses``)."""
    path = run_dir / "val_scores.npz"
    kept = dict(np.load(path)) if path.exists() else {}
    kept.update(
        labels=np.array([r["label"] for r in rows]),
        groups=noise_units(rows),
        sources=np.array([r["source"] for r in rows]),
        **{name: scores},
    )
    np.savez(path.with_suffix(".tmp.npz"), **kept)
    path.with_suffix(".tmp.npz").replace(path)


def _start_and_best(run_dir: Path, *needed: str) -> dict[str, np.ndarray] | None:
    """The scores ``keep_scores`` wrote for the start and the best weights, with ``needed``
    besides; None where the run did not start from weights, never improved, or predates them."""
    path = run_dir / "val_scores.npz"
    if not path.exists():
        return None
    kept = dict(np.load(path))
    return kept if {"start", "best", *needed} <= kept.keys() else None


def judged_score(entry: dict) -> float:
    """What a validation entry is ranked by: the mean of the AUC as is and as shared where both
    were scored, so weights that gain on shared media at no cost on clean crops count as a gain
    (the keep rule then refuses any source that fell beyond its noise in either)."""
    if "val_auc_shared" in entry:
        return (entry["val_auc"] + entry["val_auc_shared"]) / 2
    return entry["val_auc"]


def continuation_gain(run_dir: Path, shared: bool = False) -> dict[str, float] | None:
    """The best weights' pooled validation gain over the start (``shared``: scored as shared),
    with its 95 % interval (``metrics.paired_gain``); None where there is nothing to compare
    (``_start_and_best``)."""
    suffix = "_shared" if shared else ""
    kept = _start_and_best(run_dir, f"start{suffix}", f"best{suffix}")
    if kept is None:
        return None
    return paired_gain(kept["labels"], kept[f"start{suffix}"], kept[f"best{suffix}"], kept["groups"])


def continuation_losses(run_dir: Path) -> list[str]:
    """The sources whose validation AUC the best weights lost beyond their noise against the
    start (``metrics.sources_fallen``, the release gate's rule): weights that gain pooled but
    lose a source would be refused by the gate, so training does not keep them either. Empty
    where there is nothing to compare, or the scores were saved without their sources."""
    kept = _start_and_best(run_dir, "sources")
    if kept is None:
        return []
    lost = fallen(
        sources_fallen(kept["labels"], kept["sources"], kept["groups"], kept["start"], kept["best"])
    )
    if {"start_shared", "best_shared"} <= kept.keys():
        judged = sources_fallen(
            kept["labels"], kept["sources"], kept["groups"], kept["start_shared"], kept["best_shared"]
        )
        lost += [source + SHARED for source in fallen(judged)]
    return lost


def save_checkpoint(
    path: Path,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    state: dict,
    args: argparse.Namespace,
    size: int,
    **extra: object,
) -> None:
    """Everything a resumed run needs, written whole or not at all (a temporary file renamed);
    ``extra`` travels beside it (the averaged weights of an --ema run)."""
    payload = {
        "model": model.state_dict(),
        "opt": opt.state_dict(),
        "state": state,
        "arch": args.arch,
        "size": size,
        "args": {k: v for k, v in vars(args).items() if k != "argv"},
        **extra,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="run name; checkpoints go to ~/.cache/unmask/runs/<run>")
    ap.add_argument("--arch", default="lite0", choices=sorted(ARCHS))
    ap.add_argument("--size", type=int, default=0, help="input size (default: the architecture's)")
    ap.add_argument("--cache", default=str(DEFAULT_CACHE))
    ap.add_argument("--sources", default="", help="comma list of sources to train on (default all)")
    ap.add_argument(
        "--exclude", default="", help="withhold sources, 'source:generator' or 'source:fake' (leave-one-out)"
    )
    ap.add_argument("--sbi", type=float, default=0.3, help="share of fakes that are self-blended (0 = off)")
    ap.add_argument(
        "--background-dropout",
        type=float,
        default=0.0,
        help="share of training crops shown with only the face ellipse (see drop_background)",
    )
    ap.add_argument("--sbi-only", action="store_true", help="no real fakes at all: reals and SBI only")
    ap.add_argument("--teacher", default="", help="checkpoint of a trained teacher for distillation")
    ap.add_argument("--alpha", type=float, default=0.25)
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--freeze-blocks", type=int, default=2)
    ap.add_argument(
        "--frame-mask", type=float, default=0.1, help="black frame on each crop edge (see faces.mask_frame)"
    )
    ap.add_argument("--eval-every", type=int, default=400)
    ap.add_argument(
        "--judge-shared",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also score validation as a shared 360p video carries it; the best and kept weights "
        "are judged on both (judged_score, continuation_losses)",
    )
    ap.add_argument("--ckpt-every", type=int, default=50)
    ap.add_argument("--val-max", type=int, default=1500)
    ap.add_argument("--minutes", type=float, default=0, help="stop (resumably) after this many minutes")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--sampling",
        choices=["groups", "frames"],
        default="groups",
        help="groups: each video or identity counts once, pairs drawn together (detector.training.sampling)",
    )
    ap.add_argument(
        "--ema",
        type=float,
        default=0.0,
        help="evaluate and keep an exponential average of the weights (decay, 0 = off)",
    )
    ap.add_argument("--pairs", type=float, default=0.5, help="share of a batch drawn as real/fake pairs")
    ap.add_argument(
        "--real-weight",
        default="",
        help="'source=factor,...': multiply these sources' share of real draws and pairs (GroupSampler)",
    )
    ap.add_argument("--init", default="", help="start from these weights (committed FP16 or a checkpoint)")
    ap.add_argument("--save-weights", default="", help="write the best weights here (FP16) and log the run")
    return ap


def main(argv: list[str] | None = None) -> int:
    import sys

    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    train(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
