"""Export a trained checkpoint to ONNX with its model card, and check the two agree.

    python -m detector.training.export ~/.cache/unmask/runs/lite0-v1/best.pt --out models/unmask-lite0

The ONNX graph has one input ``image`` (N x 3 x S x S, normalised as the card says) and two
outputs: ``logit`` (N x 1) and ``cam`` (N x 1 x h x w, the class activation map).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from ..faces import DETECTION_BORDER
from .model import ARCHS, LogitAndCam, load_checkpoint
from .prepare import CROP_MARGIN


def as_recorded(text: str | Path) -> str:
    """A path or command as cards and run logs keep it: the home folder as ``~``, so a record
    reads the same whoever ran it and carries no user name."""
    return str(text).replace(str(Path.home()), "~")


def export_onnx(model: torch.nn.Module, size: int, path: Path) -> None:
    wrapper = LogitAndCam(model).eval()
    dummy = torch.zeros(1, 3, size, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        wrapper,
        dummy,
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["image"],
        output_names=["logit", "cam"],
        dynamic_axes={"image": {0: "batch"}, "logit": {0: "batch"}, "cam": {0: "batch"}},
    )
    wrapper.eval()  # export leaves modules in training mode


def check_parity(model: torch.nn.Module, onnx_path: Path, size: int) -> float:
    """Largest absolute logit difference between torch and ONNX Runtime on random inputs."""
    import onnxruntime as ort

    model.eval()
    x = torch.randn(4, 3, size, size)
    with torch.no_grad():
        expected = model(x).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(["logit"], {"image": x.numpy()})[0]
    return float(np.abs(expected - got).max())


def _training_data(cache: Path) -> dict:
    """What the crops cache says it was built from: per-source faces found, split file, terms."""
    report_path = cache / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return {
        "sources": {k: v.get("found") for k, v in report.get("sources", {}).items()},
        "face_detector": report.get("detector"),
        "split": "splits/faces.csv (by group: DFDC source video, StarGAN identity, image otherwise)",
        "terms": "; ".join(TERMS[s] for s in report.get("sources", {}) if s in TERMS),
    }


# What each face set's licence allows (../shared/data/README.md): the model inherits them all.
TERMS = {
    "dfdc": "DFDC: research, non-commercial",
    "gan": "FFHQ: research, non-commercial; SFHQ: MIT",
    "diffusion": "SFHQ-T2I: MIT",
    "stargan": "CelebA/StarGAN: research, non-commercial",
    "photoshop": "Yonsei real and fake faces: research, non-commercial",
    "utkface": "UTKFace: research, non-commercial",
    "ffpp": "FaceForensics++: research, non-commercial",
    "political": "political deepfakes: MIT",
    "sdfd": "SDFD: research use (no licence file)",
}


def _cli_args(train_args: dict) -> list[str]:
    skip = {"cache", "threads", "workers", "ckpt_every", "val_max"}
    out = []
    for key, value in train_args.items():
        if key in skip or value in ("", None, False):
            continue
        flag = "--" + key.replace("_", "-")
        out.append(flag if value is True else f"{flag} {value}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--out", type=Path, default=Path("models/unmask-lite0"))
    ap.add_argument("--name", default="unmask-lite0")
    ap.add_argument("--version", default="0.1.0")
    ap.add_argument("--threshold", type=float, default=0.5)
    args = ap.parse_args(argv)

    model, ckpt = load_checkpoint(args.checkpoint)
    size = ckpt.get("size") or ARCHS[ckpt["arch"]].input_size
    onnx_path = args.out / "model.onnx"
    export_onnx(model, size, onnx_path)
    diff = check_parity(model, onnx_path, size)
    if diff > 1e-3:
        raise SystemExit(f"ONNX and torch disagree by {diff:.5f} on the logit")
    card_path = args.out / "card.json"
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    train_args = ckpt.get("args", {})
    state = ckpt.get("state") or {}
    card.update(
        {
            "name": args.name,
            "version": args.version,
            "architecture": ARCHS[ckpt["arch"]].name,
            "file": onnx_path.name,
            "input_size": size,
            "mean": list(ARCHS[ckpt["arch"]].mean),
            "std": list(ARCHS[ckpt["arch"]].std),
            "crop_margin": CROP_MARGIN,
            "frame_mask": train_args.get("frame_mask", 0.0),
            "detection_border": DETECTION_BORDER,
            "face_detector": "blazeface",
            "threshold": args.threshold,
            "outputs": {
                "logit": "fake logit, sigmoid gives P(fake)",
                "cam": "class activation map, sigmoid per cell",
            },
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "file_bytes": onnx_path.stat().st_size,
            "onnx_parity_max_abs_logit_diff": diff,
            "training_data": _training_data(Path(train_args.get("cache", ""))),
            # a training run's checkpoint knows its steps; committed weights and what is pruned
            # from them do not (their run log does: the release card's "weights")
            "training": {
                "run": train_args.get("run"),
                "steps": state.get("step", 0),
                "minutes": round(state.get("seconds", 0.0) / 60, 1),
                "best_val_auc": state.get("best_auc"),
                "args": train_args,
            },
        }
    )
    if ckpt.get("pruning"):
        card["pruning"] = ckpt["pruning"]
        card.setdefault("commands", {})["prune"] = ckpt["pruning"]["command"]
    else:
        card.pop("pruning", None)
    card.setdefault("commands", {}).update(
        {
            "prepare": "make prepare",
            "train": "python -m detector.training.train " + " ".join(_cli_args(train_args)),
            "export": as_recorded(f"python -m detector.training.export {args.checkpoint} --out {args.out}"),
        }
    )
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps({"onnx": str(onnx_path), "bytes": onnx_path.stat().st_size, "parity": diff}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
