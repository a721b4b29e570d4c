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
import csv
import json
import math
import os
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ..faces import mask_frame
from .augment import augment
from .export import load_checkpoint
from .model import ARCHS, MEAN, STD, create_model, freeze_stem
from .prepare import DEFAULT_CACHE
from .sampling import GroupSampler
from .sbi import face_ellipse, self_blend

RUNS = Path(os.environ.get("UNMASK_RUNS", Path.home() / ".cache" / "unmask" / "runs"))


def read_manifest(cache: Path) -> list[dict]:
    with (cache / "manifest.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r["row"], r["label"] = int(r["row"]), int(r["label"])
    return rows


def load_crops(cache: Path, rows: list[dict], size: int | None = None) -> np.ndarray:
    """The cached crops for manifest ``rows``, in order, as one uint8 array.

    With ``size``, crops are resized to it as training resizes them (``CropSet``), so a model
    with another input size (a Lite2 teacher at 260, a small test model) reads the same cache.
    """
    arrays: dict[str, np.ndarray] = {}
    out = []
    for r in rows:
        if r["source"] not in arrays:
            arrays[r["source"]] = np.load(cache / f"{r['source']}.npy", mmap_mode="r")
        crop = np.asarray(arrays[r["source"]][r["row"]])
        if size and crop.shape[0] != size:
            crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR)
        out.append(crop)
    return np.stack(out)


class CropSet(Dataset):
    """Crops from the cache; indices past the end are self-blended fakes made from real crops."""

    def __init__(
        self,
        cache: Path,
        rows: list[dict],
        train: bool,
        size: int,
        sbi_rows: list[dict] | None = None,
        seed: int = 0,
        frame_mask: float = 0.0,
        background_dropout: float = 0.0,
    ):
        self.cache, self.rows, self.train, self.size = cache, rows, train, size
        self.sbi_rows = sbi_rows or []
        self.seed = seed
        self.frame_mask = frame_mask
        self.background_dropout = background_dropout
        self._arrays: dict[str, np.ndarray] = {}
        self._marks: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.rows) + len(self.sbi_rows)

    def _array(self, source: str) -> np.ndarray:
        if source not in self._arrays:
            self._arrays[source] = np.load(self.cache / f"{source}.npy", mmap_mode="r")
        return self._arrays[source]

    def _landmarks(self, source: str, row: int) -> np.ndarray | None:
        if source not in self._marks:
            path = self.cache / f"{source}_landmarks.npy"
            self._marks[source] = np.load(path, mmap_mode="r") if path.exists() else None
        marks = self._marks[source]
        return None if marks is None else np.asarray(marks[row], dtype=np.float32)

    def __getitem__(self, index: int):
        rng = np.random.default_rng((self.seed, index, time.perf_counter_ns()) if self.train else index)
        if index < len(self.rows):
            r = self.rows[index]
            image, label = np.asarray(self._array(r["source"])[r["row"]]), r["label"]
        else:
            r = self.sbi_rows[index - len(self.rows)]
            base = np.asarray(self._array(r["source"])[r["row"]])
            image, label = self_blend(base, self._landmarks(r["source"], r["row"]), rng), 1
        if self.train:
            image = augment(image, rng)
            if self.background_dropout and rng.random() < self.background_dropout:
                image = drop_background(image)
        image = mask_frame(image, self.frame_mask)
        if image.shape[0] != self.size:
            image = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        return to_tensor(image), torch.tensor([float(label)])


def drop_background(image: np.ndarray) -> np.ndarray:
    """Everything outside the fixed face ellipse blacked out, for every class alike: a model that
    sometimes sees only the face cannot lean on the background (a GAN set's studio backdrops) and
    is scored on the face alone in distribution (``evaluate.background_check``)."""
    return image * (face_ellipse(image.shape[:2]) > 0)[..., None].astype(image.dtype)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).float().div_(255)
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    return (x - mean) / std


def distillation_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    alpha: float,
    temperature: float,
) -> torch.Tensor:
    """``(1 - alpha) * hard + alpha * T^2 * soft``: plain BCE when there is no teacher.

    The T^2 factor keeps the soft term's gradient on the same scale whatever the temperature,
    so ``alpha`` alone sets the balance (Hinton et al., 2015).
    """
    hard = F.binary_cross_entropy_with_logits(logits, labels)
    if teacher_logits is None:
        return hard
    soft_targets = torch.sigmoid(teacher_logits / temperature)
    soft = F.binary_cross_entropy_with_logits(logits / temperature, soft_targets) * temperature**2
    return (1 - alpha) * hard + alpha * soft


def balanced_weights(rows: list[dict], sbi_rows: list[dict], sbi_share: float) -> torch.Tensor:
    """Half real, half fake; inside each, a source weighs with the square root of its size.

    Equal weights would draw a 700-image set as often as DFDC's 6,000 face swaps, repeating
    the small sets until they are memorised and starving the hardest one; weights proportional
    to size would drown the small sets. SBI takes ``sbi_share`` of the fake half.
    """
    cells = Counter((r["label"], r["source"]) for r in rows)
    mass = {cell: n**0.5 for cell, n in cells.items()}
    label_mass = Counter()
    for (label, _), m in mass.items():
        label_mass[label] += m
    fake_share = 0.5 * (1 - sbi_share) if sbi_rows else 0.5
    weights = []
    for r in rows:
        cell = (r["label"], r["source"])
        share = 0.5 if r["label"] == 0 else fake_share
        weights.append(share * mass[cell] / label_mass[r["label"]] / cells[cell])
    if sbi_rows:
        weights += [0.5 * sbi_share / len(sbi_rows)] * len(sbi_rows)
    return torch.tensor(weights, dtype=torch.double)


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum formula (ties averaged)."""
    labels = np.asarray(labels)
    pos, neg = labels == 1, labels == 0
    if pos.sum() == 0 or neg.sum() == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    return float((ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * neg.sum()))


@torch.no_grad()
def predict(model: torch.nn.Module, loader: DataLoader) -> np.ndarray:
    model.eval()
    out = []
    for x, _ in loader:
        out.append(torch.sigmoid(model(x.contiguous(memory_format=torch.channels_last))).squeeze(1).numpy())
    return np.concatenate(out) if out else np.zeros(0)


def select(rows: list[dict], split: str, sources: set[str] | None, exclude: set[str]) -> list[dict]:
    keep = []
    for r in rows:
        if r["split"] != split:
            continue
        if sources and r["source"] not in sources:
            continue
        if (
            r["source"] in exclude
            or f"{r['source']}:{r['generator']}" in exclude
            or (r["label"] == 1 and f"{r['source']}:fake" in exclude)
        ):
            continue
        keep.append(r)
    return keep


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
    )
    weights = balanced_weights(train_rows, sbi_rows, args.sbi if not args.sbi_only else 1.0)
    val_set = CropSet(
        cache, val_rows[:: max(1, len(val_rows) // args.val_max)], False, size, frame_mask=args.frame_mask
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
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        state = ckpt["state"]
        print(f"resumed {args.run} at step {state['step']}", flush=True)
    elif args.init:
        model.load_state_dict(load_weights(Path(args.init), args.arch))
        print(f"{args.run} starts from {args.init}", flush=True)
    (run_dir / "args.json").write_text(json.dumps(vars(args), indent=2, default=str))

    def save(path: Path, extra: dict | None = None) -> None:
        payload = {
            "model": model.state_dict(),
            "opt": opt.state_dict(),
            "state": state,
            "arch": args.arch,
            "size": size,
            "args": vars(args),
        }
        payload.update(extra or {})
        tmp = path.with_suffix(".tmp")
        torch.save(payload, tmp)
        tmp.replace(path)

    def evaluate() -> tuple[float, dict[str, float]]:
        loader = DataLoader(val_set, batch_size=64, num_workers=1)
        scores = predict(model, loader)
        return auc_by_source(val_set.rows, scores)

    if args.init and state["step"] == 0 and not state["history"]:
        val_auc, per_source = evaluate()  # where this continuation starts, for the run log
        state["history"].append({"step": 0, "val_auc": val_auc, "per_source": per_source, "minutes": 0.0})
        print(f"eval step 0 val_auc {val_auc:.4f} {per_source}", flush=True)
        model.train()
        for m in frozen:
            m.eval()
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
        cosine = 0.5 * (1 + math.cos(math.pi * step / total_steps))
        for g, lr in zip(opt.param_groups, base_lrs, strict=True):
            g["lr"] = lr * warm * (0.02 + 0.98 * cosine)
        x = x.contiguous(memory_format=torch.channels_last)
        logits = model(x)
        teacher_logits = None
        if teacher is not None:
            with torch.no_grad():
                xt = (
                    x
                    if teacher_size == size
                    else F.interpolate(x, size=teacher_size, mode="bilinear", align_corners=False)
                )
                teacher_logits = teacher(xt)
        loss = distillation_loss(logits, y, teacher_logits, args.alpha, args.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state["step"] = step + 1
        state["seconds"] = time.time() - started
        if state["step"] % 20 == 0:
            rate = 20 * args.batch / (time.time() - t_log)
            t_log = time.time()
            print(
                f"step {state['step']}/{total_steps} loss {loss.item():.4f} {rate:.1f} img/s elapsed {state['seconds'] / 60:.1f} min",
                flush=True,
            )
        if state["step"] % args.eval_every == 0 or state["step"] == total_steps:
            val_auc, per_source = evaluate()
            model.train()
            for m in frozen:
                m.eval()
            minutes = round(state["seconds"] / 60, 1)
            state["history"].append(
                {"step": state["step"], "val_auc": val_auc, "per_source": per_source, "minutes": minutes}
            )
            print(f"eval step {state['step']} val_auc {val_auc:.4f} {per_source}", flush=True)
            if val_auc > state["best_auc"]:
                state["best_auc"] = val_auc
                save(run_dir / "best.pt")
        if state["step"] % args.ckpt_every == 0:
            save(last)
        if deadline and time.time() > deadline:
            print("time budget reached; rerun the same command to continue", flush=True)
            save(last)
            break
    save(last)
    if not (run_dir / "best.pt").exists():
        save(run_dir / "best.pt")
    (run_dir / "summary.json").write_text(json.dumps(state, indent=2))
    if args.save_weights:
        save_weights(run_dir, Path(args.save_weights), args)
    return run_dir


def auc_by_source(rows: list[dict], scores: np.ndarray) -> tuple[float, dict[str, float]]:
    """Pooled AUC, and each source's: its own two classes, or (a one-class source) its faces
    against every real face of the split, rounded for the logs."""
    labels = np.array([r["label"] for r in rows])
    sources = np.array([r["source"] for r in rows])
    out = {}
    for source in sorted(set(sources)):
        own = sources == source
        mask = own if len(set(labels[own])) == 2 else own | (labels == 0)
        value = auc(labels[mask], scores[mask])
        if not np.isnan(value):
            out[source] = round(value, 4)
    return auc(labels, scores), out


def load_weights(path: Path, arch: str) -> dict:
    """A state dict from committed weights (FP16, ``save_weights``) or a run's checkpoint."""
    blob = torch.load(path, map_location="cpu", weights_only=False)
    if blob.get("arch", arch) != arch or blob.get("pruned"):
        raise ValueError(
            f"{path} holds {blob.get('arch')} weights{' (pruned)' if blob.get('pruned') else ''}"
        )
    return {k: v.float() if v.is_floating_point() else v for k, v in blob["model"].items()}


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
    top = max((h for h in state["history"] if h["step"] > 0), key=lambda h: h["val_auc"], default=None)
    if args.init and start and top and top["val_auc"] <= start["val_auc"]:
        print(f"no validation gain over {args.init}: {target} left as it was", flush=True)
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
            "kept": kept,
            "command": "python -m detector.training.train " + " ".join(getattr(args, "argv", [])),
        }
    )
    kept_runs = [c for c in log["continuations"] if c["kept"]]
    log["cumulative_steps"] = sum(c["steps"] for c in kept_runs)
    log["cumulative_minutes"] = round(sum(c["minutes"] for c in kept_runs), 1)
    log_path.write_text(json.dumps(log, indent=2) + "\n")


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
    ap.add_argument("--pairs", type=float, default=0.5, help="share of a batch drawn as real/fake pairs")
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
