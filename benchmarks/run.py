"""``make bench``: speed of the detection pipeline on a 720p clip, stage by stage, in one run.

Figures from one run on the same machine are compared as ratios, never against fixed
thresholds: these machines are noisy and small. Prints a table and writes ``var/bench.json``.

    python -m benchmarks.run [--clip PATH] [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from detector.analyze import Analyzer
from detector.annotate import AnnotatedVideoWriter, Label, draw_labels
from detector.classifier import Predictor
from detector.config import DEFAULT_MODEL_DIR, REPO_ROOT, Settings
from detector.faces import create_detector, crop_face
from detector.video import iter_frames, probe_video

DEFAULT_CLIP = REPO_ROOT.parent / "shared" / "data" / "videos" / "real" / "ffpp_634.mp4"


def _timed(fn, *args, **kwargs) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


def _per_crop_ms(predictor_or_fn, crops: np.ndarray, runs: int) -> float:
    fn = predictor_or_fn.predict if hasattr(predictor_or_fn, "predict") else predictor_or_fn
    fn(crops[:1])
    times = []
    for i in range(runs):
        t = time.perf_counter()
        fn(crops[i % len(crops) : i % len(crops) + 1])
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000)


def _torch_fp32(size: int):
    """The unpruned FP32 torch model, the reference the serving path must beat."""
    try:
        import torch

        from detector.training.model import create_model
    except ImportError:
        return None
    torch.set_num_threads(1)
    model = create_model("lite0", pretrained=False).eval()

    def run(crops: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(crops.astype(np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2)
        with torch.no_grad():
            return torch.sigmoid(model(x)).numpy()

    return run


def _stages(
    clip: Path, settings: Settings, detector, predictor: Predictor, out_dir: Path
) -> tuple[dict, np.ndarray, int]:
    """Each stage alone over the same decoded frames: milliseconds per frame (per crop).
    Decode includes the conversion to RGB, which every analysed frame needs."""
    info = probe_video(clip, settings)
    frames = [f.image for f in iter_frames(clip, info, settings)]
    n = len(frames)
    t_decode, _ = _timed(lambda: sum(f.image.shape[0] > 0 for f in iter_frames(clip, info, settings)))
    detector.detect(frames[0])
    t_detect, dets = _timed(lambda: [detector.detect(f) for f in frames])
    card = predictor.card
    crops = np.stack(
        [
            crop_face(f, d[0].box, card.crop_margin, card.input_size)
            for f, d in zip(frames, dets, strict=True)
            if d
        ]
    )
    predictor.predict(crops[:4])
    t_classify, _ = _timed(lambda: [predictor.predict(crops[i : i + 1]) for i in range(len(crops))])
    labels = [[Label(d[0].box, 0.2, card.threshold)] if d else [] for d in dets]
    t_draw, drawn = _timed(lambda: [draw_labels(f, lab) for f, lab in zip(frames, labels, strict=True)])

    def encode() -> None:
        with AnnotatedVideoWriter(out_dir / "encode.mp4", info.width, info.height, info.fps) as w:
            for f in drawn:
                w.write(f)

    t_encode, _ = _timed(encode)
    stages = {
        "decode": t_decode,
        "detect": t_detect,
        "classify": t_classify,
        "draw": t_draw,
        "encode": t_encode,
    }
    ms = {k: round(v / n * 1000, 2) for k, v in stages.items()}
    ms["classify"] = round(t_classify / max(1, len(crops)) * 1000, 2)
    return ms, crops, n


def bench(clip: Path, model_dir: Path, out_dir: Path) -> dict:
    settings = Settings(model_dir=model_dir)
    info = probe_video(clip, settings)
    detector = create_detector("blazeface")
    predictor = Predictor(model_dir, settings)
    card = predictor.card
    stage_ms, crops, n = _stages(clip, settings, detector, predictor, out_dir)
    res: dict = {
        "clip": str(clip),
        "size": f"{info.width}x{info.height}",
        "frames": n,
        "fps_source": round(info.fps, 2),
    }
    res["stage_ms_per_frame"] = stage_ms

    analyzer = Analyzer(settings, predictor=predictor, detector=detector)
    t_sampled, _ = _timed(analyzer.analyze, clip)
    t_sampled_ann, _ = _timed(analyzer.analyze, clip, out_dir)
    t_every, _ = _timed(analyzer.analyze, clip, None, True)
    t_every_ann, _ = _timed(analyzer.analyze, clip, out_dir, True)
    res["end_to_end_fps"] = {
        f"analysis, {settings.sample_frames} sampled frames": round(n / t_sampled, 1),
        "analysis + annotated video, sampled": round(n / t_sampled_ann, 1),
        "analysis, every frame": round(n / t_every, 1),
        "analysis + annotated video, every frame": round(n / t_every_ann, 1),
    }
    one = Predictor(model_dir, Settings(model_dir=model_dir, threads=1))
    res["per_crop_ms"] = {
        "onnxruntime, default threads": round(_per_crop_ms(predictor, crops, 40), 2),
        "onnxruntime, 1 thread": round(_per_crop_ms(one, crops, 40), 2),
    }
    torch_fn = _torch_fp32(card.input_size)
    if torch_fn is not None:
        res["per_crop_ms"]["torch fp32 eager, 1 thread"] = round(_per_crop_ms(torch_fn, crops, 20), 2)
        res["speedup_onnx_1thread_vs_torch_fp32"] = round(
            res["per_crop_ms"]["torch fp32 eager, 1 thread"] / res["per_crop_ms"]["onnxruntime, 1 thread"], 2
        )
    res["model"] = {
        "file": card.file,
        "mb": round((model_dir / card.file).stat().st_size / 1e6, 2),
        "version": card.version,
    }
    res["cores"] = os.cpu_count()
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "var" / "bench.json")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        res = bench(args.clip, args.model, Path(tmp))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2))
    print(f"clip {res['clip']} ({res['size']}, {res['frames']} frames), model {res['model']}")
    print("stage               ms per frame (classify: per crop)")
    for k, v in res["stage_ms_per_frame"].items():
        print(f"  {k:<18}{v:>8.2f}")
    print("end to end          frames per second")
    for k, v in res["end_to_end_fps"].items():
        print(f"  {k:<42}{v:>8.1f}")
    print("classifier          ms per crop")
    for k, v in res["per_crop_ms"].items():
        print(f"  {k:<32}{v:>8.2f}")
    if "speedup_onnx_1thread_vs_torch_fp32" in res:
        print(
            f"ratio: serving (onnx, 1 thread) is {res['speedup_onnx_1thread_vs_torch_fp32']}x faster than torch fp32 eager"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
