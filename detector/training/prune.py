"""Structured pruning of a trained student, with distillation, into a table of size against accuracy.

    python -m detector.training.prune ~/.cache/unmask/runs/lite0-kd/best.pt --out .cache/pruned

A phone wants fewer parameters (file size, memory) and fewer multiply-adds (speed), and removing
whole channels buys both on any runtime, where sparse weights buy neither. Channels are removed
in small global steps, ranked across all layers by first-order Taylor importance measured on
training crops (``torch-pruning`` keeps residual additions and depthwise convolutions consistent).
After every step the model is fine-tuned briefly, distilled from the unpruned model it started
as, so no step has to recover from a large cut. At each level in ``--levels`` (the fraction of
parameters removed) it gets a longer fine-tune, is saved, exported to ONNX (FP32), quantized to
INT8 and both files are evaluated exactly as they serve (``evaluate``). The table goes to
``<out>/pruning.json`` and is printed as markdown; rerunning continues after the last saved level.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler

from . import evaluate as evaluate_mod
from . import export as export_mod
from . import quantize as quantize_mod
from .data import DEFAULT_CACHE, CropSet, balanced_weights, read_manifest, select
from .losses import distillation_loss
from .model import load_checkpoint
from .qat import bake, on_the_grid
from .sampling import GroupSampler, parse_weights
from .train import progress

DEFAULT_LEVELS = (0.2, 0.3, 0.35, 0.4, 0.5)
CPU = torch.device("cpu")


def count_parameters(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def count_macs(model: nn.Module, size: int) -> int:
    """Multiply-accumulates of one forward pass at ``size`` (convolutions and linear layers)."""
    total = 0
    device = next(model.parameters()).device

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size, device=device))
    model.train(was_training)
    for h in handles:
        h.remove()
    return total


def batches(
    cache: Path,
    train_args: dict,
    size: int,
    batch: int,
    seed: int,
    device: torch.device = CPU,
    workers: int = 1,
) -> Iterator[tuple]:
    """An endless stream of training batches drawn as the student's training drew them, on
    ``device``, augmented by ``workers`` processes (a GPU outruns one: an H200 took 7 to feed 21
    steps a second)."""
    pin = device.type == "cuda"
    for x, y in _batches(cache, train_args, size, batch, seed, workers, pin):
        yield x.to(device, non_blocking=pin), y.to(device, non_blocking=pin)


def draws(ckpt: dict, real_weight: str | None = None) -> dict:
    """The training arguments the batches are drawn by: the student's own, or with its sources'
    real-face weights replaced (``--real-weight``: a recovery that must win one source back, as
    political after the 2026-12-05 cut, can draw that source's real faces more than training did)."""
    train_args = dict(ckpt.get("args", {}))
    if real_weight is not None:
        parse_weights(real_weight)  # a malformed value fails before any minute is spent
        train_args["real_weight"] = real_weight
    return train_args


def _batches(
    cache: Path, train_args: dict, size: int, batch: int, seed: int, workers: int, pin: bool
) -> Iterator[tuple]:
    rows = select(read_manifest(cache), "train", None, set())
    sbi_share = float(train_args.get("sbi", 0.0))
    sbi_rows = [r for r in rows if r["label"] == 0] if sbi_share > 0 else []
    dataset = CropSet(
        cache,
        rows,
        True,
        size,
        sbi_rows,
        seed=seed,
        frame_mask=float(train_args.get("frame_mask", 0.0)),
        background_dropout=float(train_args.get("background_dropout", 0.0)),
        arch=str(train_args.get("arch", "lite0")),
    )
    if train_args.get("sampling", "frames") == "groups":  # the nine-source student's draws
        sampler = GroupSampler(
            rows,
            batch,
            10**9,
            len(sbi_rows),
            sbi_share,
            float(train_args.get("pairs", 0.5)),
            seed=seed,
            real_weight=parse_weights(str(train_args.get("real_weight", ""))),
        )
        yield from DataLoader(dataset, batch_sampler=sampler, num_workers=workers, pin_memory=pin)
    weights = balanced_weights(rows, sbi_rows, sbi_share)
    for epoch in itertools.count():
        sampler = WeightedRandomSampler(
            weights, num_samples=200 * batch, generator=torch.Generator().manual_seed(seed + epoch)
        )
        yield from DataLoader(
            dataset,
            batch_size=batch,
            sampler=sampler,
            num_workers=workers,
            drop_last=True,
            pin_memory=pin,
        )


@dataclass(frozen=True)
class Distillation:
    """How every fine-tune here learns: from ``teacher`` (fed at its own input size, which may
    not be the student's; see ``--size``), with the loss's weight and temperature and the rate."""

    teacher: nn.Module
    teacher_size: int
    lr: float
    alpha: float
    temperature: float

    def targets(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's logits for a student batch, resized as ``train.py`` resizes a teacher's."""
        with torch.no_grad():
            if self.teacher_size and self.teacher_size != x.shape[-1]:
                x = F.interpolate(x, size=self.teacher_size, mode="bilinear", align_corners=False)
            return self.teacher(x)


def finetune(
    model: nn.Module,
    distil: Distillation,
    stream: Iterator[tuple],
    steps: int,
    decay: bool = False,
    minutes: float = 0.0,
) -> tuple[float, int]:
    """``steps`` of distillation (``distil``); returns the mean loss of the last ten and the
    steps taken.

    With ``decay`` the learning rate falls to zero on a cosine over the steps, so the model
    saved at a level has settled: at a constant rate the weights still wander, and levels a few
    points of pruning apart scored 0.81 and 0.76 AUC (2026-11-30). With ``minutes`` too, the
    cosine runs by steps or by the clock, whichever ends first (``train.progress``), and the
    fine-tune stops at its end: a machine lent for minutes (a GPU) still ends it settled.
    """
    if steps <= 0:
        return float("nan"), 0
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=distil.lr, weight_decay=1e-4)
    started = time.time()
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda i: (
            0.5 * (1 + math.cos(math.pi * progress(i, steps, time.time() - started, minutes)))
            if decay
            else 1.0
        ),
    )
    losses = []
    for _ in range(steps):
        if decay and minutes and time.time() - started > minutes * 60:
            print(f"  time budget reached after {len(losses)} of {steps} steps", flush=True)
            break
        x, y = next(stream)
        x = x.contiguous(memory_format=torch.channels_last)
        loss = distillation_loss(model(x), y, distil.targets(x), distil.alpha, distil.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        losses.append(loss.item())
        if len(losses) % 100 == 0:
            print(f"  {len(losses)}/{steps} steps, loss {np.mean(losses[-100:]):.4f}", flush=True)
    model.eval()
    return float(np.mean(losses[-10:])), len(losses)


def accumulate_taylor(model: nn.Module, stream: Iterator[tuple], count: int) -> None:
    """Leave the gradient of the hard-label loss over ``count`` batches in ``.grad``: Taylor
    importance is |weight x gradient|, the first-order change in loss from removing a channel."""
    model.eval()  # running statistics stay as trained; gradients still flow
    model.zero_grad(set_to_none=True)
    for _ in range(count):
        x, y = next(stream)
        F.binary_cross_entropy_with_logits(
            model(x.contiguous(memory_format=torch.channels_last)), y
        ).backward()


def protected_layers(model: nn.Module, prune_residual: bool = False) -> list[nn.Module]:
    """Layers whose output channels are kept: the head, and unless ``prune_residual``, the stem
    and every block's projection, which carry the residual stream.

    A channel of the residual stream is shared by every block of its stage, so removing one
    takes thousands of parameters and a feature from all those blocks at once. Taylor ranking
    found such channels cheap: on the shipped model one step removed 23 % of the parameters and
    200 distillation steps brought AUC back only to 0.750 (from 0.836). The channels inside each
    block (expansion, depthwise, the projection's input) and the head's are where EfficientNet's
    parameters are, and each belongs to one block only.
    """
    keep = [model._fc]
    if not prune_residual:
        keep += [model._conv_stem] + [block._project_conv for block in model._blocks]
    return keep


def fingerprint(path: Path) -> str:
    """A short content hash of a weights file: a pruned model is recorded with the unpruned
    weights it was cut from, and its recovery (``--base``) refuses other weights. The two halves
    of a CPU release run in different sessions, and the committed weights may be trained on
    between them; distilling a model from weights it was not cut from would go unnoticed."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def check_base(ckpt: dict, base: Path) -> None:
    """Refuse a pruned checkpoint whose recorded base (``fingerprint``) is not ``base``."""
    recorded = ckpt.get("pruning", {}).get("base_fingerprint")
    if recorded and recorded != fingerprint(base):
        raise SystemExit(
            f"the pruned checkpoint was cut from other weights than {base} (fingerprint {recorded}, "
            f"{base} is {fingerprint(base)}): prune {base} again (make release-prune), or give --base "
            "the weights it was cut from"
        )


def level_name(level: float) -> str:
    return f"p{round(level * 100):02d}"


def save_level(model: nn.Module, ckpt: dict, path: Path, pruning: dict) -> None:
    import torch_pruning as tp

    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {k: ckpt[k] for k in ("arch", "size", "args", "state") if k in ckpt}
    payload.update({"model": tp.state_dict(model), "pruned": True, "pruning": pruning})
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def save_half(model: nn.Module, ckpt_path: Path, target: Path) -> None:
    """The level saved at ``ckpt_path`` again at ``target`` with FP16 weights: the file a CPU
    release commits between its two halves (half the size; the recovery trains in FP32 again,
    ``model.load_checkpoint``)."""
    import copy

    import torch_pruning as tp

    payload = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    payload["model"] = tp.state_dict(copy.deepcopy(model).cpu().half())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(target)


def export_and_evaluate(
    ckpt_path: Path, level_dir: Path, cache: Path, videos: Path | None, limit: int = 0, weight_bits: int = 8
) -> dict:
    """FP32 and INT8 files for one level, each evaluated as served; their headline figures."""
    fp32, int8 = level_dir / "fp32", level_dir / "int8"
    export_mod.main([str(ckpt_path), "--out", str(fp32)])
    quantize_mod.main(
        [
            str(fp32 / "model.onnx"),
            str(int8 / "model.onnx"),
            "--cache",
            str(cache),
            "--weight-bits",
            str(weight_bits),
        ]
    )
    row: dict = {}
    for name, folder in (("fp32", fp32), ("int8", int8)):
        evaluate_mod.choose_thresholds_and_calibration(folder, cache)
        report = evaluate_mod.evaluate(folder, cache, "test", videos, limit)
        row[name] = {
            "auc": report["auc"],
            "dfdc_auc": report["dfdc_auc"],
            "auc_jpeg95": report["jpeg_auc"]["95"]["auc"],
            "auc_jpeg30": report["jpeg_auc"]["30"]["auc"],
            "file_mb": report["file_mb"],
            "latency_ms_per_crop_1_thread": report["latency_ms_per_crop_1_thread"],
            "videos": {v["file"]: [v["verdict"], v["fake_probability"]] for v in report.get("videos", [])},
            "videos_correct": report.get("videos_correct"),
        }
    return row


def markdown(table: list[dict]) -> str:
    lines = [
        "| removed (target) | parameters | MMACs | FP32 MB | INT8 MB | AUC FP32 | AUC INT8 "
        "| AUC INT8 JPEG 95 / 30 | ms/crop FP32 | ms/crop INT8 | videos INT8 |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in table:
        f, q = r["fp32"], r["int8"]
        lines.append(
            f"| {r['removed']:.1%} ({r['target']:.0%}) | {r['parameters']:,} | {r['macs'] / 1e6:.0f} "
            f"| {f['file_mb']} | {q['file_mb']} | {f['auc']:.4f} | {q['auc']:.4f} "
            f"| {q['auc_jpeg95']:.4f} / {q['auc_jpeg30']:.4f} | {f['latency_ms_per_crop_1_thread']} "
            f"| {q['latency_ms_per_crop_1_thread']} | {q['videos_correct']}/7 |"
        )
    return "\n".join(lines)


def _paths(args: argparse.Namespace) -> tuple[Path, Path, Path | None]:
    """Where levels are written, the crop cache, and the clips to judge (none with --no-videos)."""
    return Path(args.out), Path(args.cache), None if args.no_videos else Path(args.videos)


def control_record(cut: dict, method: str, command: str, teacher: str, steps: int) -> dict:
    """The control's pruning record. On a pruned checkpoint (``make release-recover``: the cut
    made in an earlier session) the control is the cut's second half, so the record keeps the
    cut's own (how much was removed, from which weights, by which command) and appends this run:
    the card of a model released from it then says how the whole model was made, not only its
    last fine-tune. A recovery continued in a later session (its checkpoint as the cut) adds
    its steps to the earlier ones', so ``control_steps`` counts every recovery step."""
    if not cut.get("target_removed"):
        return {"method": method, "command": command}
    return {
        **cut,
        "method": f"{cut['method']}; then {method}",
        "control_steps": cut.get("control_steps", 0) + steps,
        "control_teacher": teacher,
        "command": f"{cut['command']} && {command}",
    }


def control(
    model: nn.Module,
    distil: Distillation,
    stream: Iterator[tuple],
    ckpt: dict,
    args: argparse.Namespace,
    command: str,
    teacher: str,
) -> dict:
    """The unpruned model fine-tuned exactly as a level is, without pruning: how much of a
    level's change in AUC is the fine-tuning's own (``<out>/control.json``)."""
    out, cache, videos = _paths(args)
    started = time.time()
    model.to(memory_format=torch.channels_last)
    if args.weight_bits == 7:  # learn the 7-bit grid the file will store (detector.training.qat)
        on_the_grid(model)
    _, steps = finetune(model, distil, stream, args.control_steps, decay=True, minutes=args.minutes)
    bake(model)
    ckpt_path = out / "control" / "model.pt"
    method = f"none: {steps} distillation steps only (control)"
    if args.weight_bits == 7:
        method += ", convolution weights rounded to 7 bits in the forward pass"
    save_level(
        model, ckpt, ckpt_path, control_record(ckpt.get("pruning", {}), method, command, teacher, steps)
    )
    if args.half_copy:  # kept before the gate reads it: a refused recovery is continued next session
        save_half(model, ckpt_path, Path(args.half_copy))
    row = {
        "steps": steps,
        "parameters": count_parameters(model),
        "seconds": round(time.time() - started, 1),
    }
    if not args.no_evaluate:
        row.update(
            export_and_evaluate(ckpt_path, out / "control", cache, videos, args.limit, args.weight_bits)
        )
    (out / "control.json").write_text(json.dumps(row, indent=2) + "\n")
    shown = ("auc", "auc_jpeg95", "auc_jpeg30") if "int8" in row else ()
    print(json.dumps({"control": {"steps": steps, **{k: row["int8"][k] for k in shown}}}))
    return row


def prune(args: argparse.Namespace) -> list[dict]:
    import torch_pruning as tp

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = pick_device(args.device)
    out, cache, videos = _paths(args)
    model, ckpt = load_checkpoint(Path(args.checkpoint))
    model.to(device)
    base = Path(args.base or args.checkpoint)
    check_base(ckpt, base)
    teacher_path = Path(args.teacher or base)
    teacher_name = export_mod.as_recorded(teacher_path)  # as records name it
    teacher, teacher_ckpt = load_checkpoint(teacher_path)
    teacher_size = teacher_ckpt.get("size") or 224
    size = args.size or ckpt.get("size") or 224
    ckpt = {**ckpt, "size": size}  # what the levels are trained, exported and evaluated at
    # levels count against the unpruned base: the start itself, or (--base) the teacher by default
    if not args.base:
        unpruned = model
    elif teacher_path == base:
        unpruned = teacher
    else:
        unpruned = load_checkpoint(base)[0]
    base_params, base_macs = count_parameters(unpruned), count_macs(unpruned, size)
    del unpruned
    teacher.to(device, memory_format=torch.channels_last)
    distil = Distillation(teacher, teacher_size, args.lr, args.alpha, args.temperature)
    stream = batches(cache, draws(ckpt, args.real_weight), size, args.batch, args.seed, device, args.workers)
    table_path = out / "pruning.json"
    table = json.loads(table_path.read_text()) if table_path.exists() else []
    done = {r["target"] for r in table}
    command = "python -m detector.training.prune " + " ".join(args.argv)

    def record(target: float, ckpt_path: Path, level_seconds: float) -> None:
        row = {
            "target": target,
            "removed": round(1 - count_parameters(model) / base_params, 4),
            "parameters": count_parameters(model),
            "macs": count_macs(model, size),
            "base_macs": base_macs,
            "seconds": round(level_seconds, 1),
        }
        if args.no_evaluate:  # trained elsewhere (a GPU); export_and_evaluate runs where it serves
            print(json.dumps(row), flush=True)
            return
        row.update(
            export_and_evaluate(
                ckpt_path, out / level_name(target), cache, videos, args.limit, args.weight_bits
            )
        )
        table.append(row)
        table.sort(key=lambda r: r["target"])
        table_path.write_text(json.dumps(table, indent=2) + "\n")
        print(markdown([row]).splitlines()[-1], flush=True)

    out.mkdir(parents=True, exist_ok=True)
    start = round(1 - count_parameters(model) / base_params, 4)
    if not args.no_start and start not in done:
        record(start, Path(args.checkpoint), 0.0)
    if args.control_steps:
        return [control(model, distil, stream, ckpt, args, command, teacher_name)]
    levels = sorted(float(v) for v in args.levels.split(","))
    resume = [lv for lv in levels if lv in done and (out / level_name(lv) / "model.pt").exists()]
    if resume:
        model, _ = load_checkpoint(out / level_name(resume[-1]) / "model.pt")
    model.to(device, memory_format=torch.channels_last)

    pruner = tp.pruner.MetaPruner(
        model,
        torch.zeros(1, 3, size, size, device=device),
        importance=tp.importance.GroupTaylorImportance(),
        global_pruning=True,
        pruning_ratio=args.step_ratio * args.max_steps,
        iterative_steps=args.max_steps,
        max_pruning_ratio=0.9,
        round_to=args.round_to,
        ignored_layers=protected_layers(model, args.prune_residual),
    )
    step = 0
    for target in levels:
        if target in done:
            continue
        started = time.time()
        while 1 - count_parameters(model) / base_params < target:
            if step >= args.max_steps:
                raise SystemExit(f"{args.max_steps} pruning steps did not remove {target:.0%} of parameters")
            accumulate_taylor(model, stream, args.importance_batches)
            pruner.step()
            step += 1
            loss, _ = finetune(model, distil, stream, args.step_finetune)
            print(
                f"step {step}: {1 - count_parameters(model) / base_params:.1%} of parameters removed, "
                f"loss {loss:.4f}",
                flush=True,
            )
        if args.weight_bits == 7:  # the recovery learns the 7-bit grid too: no separate control
            on_the_grid(model)
        _, recovery = finetune(model, distil, stream, args.level_finetune, decay=True, minutes=args.minutes)
        bake(model)
        pruning = {
            "method": "torch-pruning MetaPruner, global, GroupTaylorImportance, iterative, "
            f"channels rounded to {args.round_to}, "
            + ("residual stream pruned too" if args.prune_residual else "residual stream kept"),
            "target_removed": target,
            "recovery_steps": recovery,
            "recovery_weight_bits": args.weight_bits,
            "teacher": teacher_name,
            "base": export_mod.as_recorded(base),
            "base_fingerprint": fingerprint(base),
            "command": command,
        }
        ckpt_path = out / level_name(target) / "model.pt"
        save_level(model, ckpt, ckpt_path, pruning)
        record(target, ckpt_path, time.time() - started)
        if args.half_copy and target == levels[-1]:
            save_half(model, ckpt_path, Path(args.half_copy))
    print(markdown(table))
    return table


def pick_device(name: str) -> torch.device:
    """``auto``: the GPU where there is one (the same commands run there, only faster), else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="the trained student (train.py's best.pt)")
    ap.add_argument("--out", default=".cache/pruned")
    ap.add_argument("--cache", default=str(DEFAULT_CACHE))
    ap.add_argument(
        "--base",
        default="",
        help="the unpruned model the levels are fractions of, when the checkpoint is already pruned "
        "(default: the checkpoint)",
    )
    ap.add_argument("--teacher", default="", help="distil from this checkpoint (default: the base)")
    ap.add_argument(
        "--no-start", action="store_true", help="do not evaluate the checkpoint itself as the first row"
    )
    ap.add_argument("--levels", default=",".join(str(v) for v in DEFAULT_LEVELS))
    ap.add_argument("--step-ratio", type=float, default=0.02, help="share of channels removed per step")
    ap.add_argument("--max-steps", type=int, default=40)
    ap.add_argument(
        "--prune-residual",
        action="store_true",
        help="let the residual stream's channels go too (see protected_layers)",
    )
    ap.add_argument(
        "--round-to",
        type=int,
        default=16,
        help="keep channel counts multiples of this: CPU kernels work in blocks of 8 (AVX2, NEON) or "
        "16 (AVX-512) channels, and a thinner layer off the block runs slower than the full one",
    )
    ap.add_argument("--importance-batches", type=int, default=4)
    ap.add_argument("--step-finetune", type=int, default=20, help="fine-tune steps after each pruning step")
    ap.add_argument("--level-finetune", type=int, default=150, help="fine-tune steps when a level is reached")
    ap.add_argument(
        "--control-steps",
        type=int,
        default=0,
        help="instead of pruning, fine-tune the unpruned model this many steps as a level is (see control)",
    )
    ap.add_argument(
        "--size",
        type=int,
        default=0,
        help="train, export and evaluate the student at this input size (default: the checkpoint's); "
        "the teacher keeps its own",
    )
    ap.add_argument(
        "--weight-bits",
        type=int,
        choices=[8, 7],
        default=8,
        help="7: INT8 files whose weights no CPU's 16-bit pair sums can saturate; the control "
        "fine-tune, or each level's recovery, learns that grid (detector.training.qat)",
    )
    ap.add_argument(
        "--real-weight",
        default=None,
        help="draw these sources' real faces more, e.g. political=8,ffpp=2 ('' for none; default: as "
        "the student was trained)",
    )
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto", help="auto (a GPU where there is one), cpu or cuda")
    ap.add_argument("--workers", type=int, default=1, help="processes augmenting training crops")
    ap.add_argument(
        "--minutes",
        type=float,
        default=0.0,
        help="time budget of each level's (or the control's) decaying fine-tune: its cosine ends by "
        "steps or by the clock, whichever comes first (0: steps only)",
    )
    ap.add_argument(
        "--no-evaluate",
        action="store_true",
        help="save each level's weights without exporting or evaluating them (training on a GPU "
        "machine that holds only the training crops; export and evaluate where the model serves)",
    )
    ap.add_argument(
        "--half-copy",
        default="",
        help="also write the last level (or the control) with FP16 weights here (make release-prune: the "
        "file committed between the two halves of a CPU release; make release-recover: a recovery that "
        "the next session continues from)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--videos", default=str(evaluate_mod.VIDEOS))
    ap.add_argument("--no-videos", action="store_true")
    ap.add_argument("--limit", type=int, default=0, help="evaluate on about N test crops (quick checks)")
    return ap


def main(argv: list[str] | None = None) -> int:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = [export_mod.as_recorded(a) for a in argv]
    prune(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
