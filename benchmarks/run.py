"""``make bench``: speed of the detection pipeline on a 720p clip, stage by stage, in one run,
and the peak memory of a worker analysing a 1080p video.

Figures from one run on the same machine are compared as ratios, never against fixed
thresholds: these machines are noisy and small. Prints a table and writes ``var/bench.json``.

    python -m benchmarks.run [--clip PATH] [--clip-1080p PATH] [--model DIR] [--no-memory]
    python -m benchmarks.run --compare MODEL_DIR [MODEL_DIR ...]   # per crop only, side by side
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

from detector.analyze import Analyzer
from detector.annotate import AnnotatedVideoWriter, Label, draw_labels, draw_labels_yuv420
from detector.classifier import Predictor
from detector.config import DEFAULT_MODEL_DIR, REPO_ROOT, Settings
from detector.cpu import classify, this_cpu
from detector.faces import create_detector, crop_face
from detector.tracking import FaceFollower, FaceTracker
from detector.video import iter_frames, probe_video
from testmedia import SHARED, opening, write_video

DEFAULT_CLIP = SHARED / "videos" / "real" / "ffpp_634.mp4"
DEFAULT_CLIP_1080P = SHARED / "videos" / "real" / "dfdc_lynaeydofd.mp4"
# The annotated video's encoder before issue 5's work, compared in the same run.
FORMER_ENCODER = {"crf": 23, "preset": "veryfast", "x264_params": ""}


def _timed(fn, *args, **kwargs) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


def _per_crop_rounds(
    fns: dict, crops: np.ndarray | dict[str, np.ndarray], rounds: int = 8, calls: int = 10
) -> dict[str, list[float]]:
    """Milliseconds per crop (one crop per call) of each function, timed in alternating rounds.

    On this shared two-core machine the same serving code measured 2.5 ms and 3.9 ms per crop a
    few minutes apart. Taking turns round by round lets a busy spell slow every contender alike:
    the ratios hold while the absolute figures move, and the spread across rounds shows how much
    they moved. ``crops`` may be one array for all, or each contender's own (models that take
    different input sizes).
    """
    own = crops if isinstance(crops, dict) else dict.fromkeys(fns, crops)
    for name, fn in fns.items():
        fn(own[name][:1])
    out: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(rounds):
        for name, fn in fns.items():
            times = []
            batch = own[name]
            for i in range(calls):
                j = (r * calls + i) % len(batch)
                t = time.perf_counter()
                fn(batch[j : j + 1])
                times.append(time.perf_counter() - t)
            out[name].append(float(np.median(times) * 1000))
    return out


def _round_ratio(slow: list[float], fast: list[float]) -> float:
    """The median over rounds of one contender's time over another's in the same round."""
    return round(float(np.median(np.array(slow) / np.array(fast))), 2)


def _rounds_summary(rounds: dict[str, list[float]]) -> dict:
    """Each contender's median round, with its fastest and slowest to show how much they moved."""
    return {
        "per_crop_ms": {k: round(float(np.median(v)), 2) for k, v in rounds.items()},
        "per_crop_ms_fastest_round": {k: round(min(v), 2) for k, v in rounds.items()},
        "per_crop_ms_slowest_round": {k: round(max(v), 2) for k, v in rounds.items()},
    }


def _print_rounds(res: dict, header: str, width: int, speedups: dict[str, float] | None = None) -> None:
    print(header)
    for k, v in res["per_crop_ms"].items():
        fastest, slowest = res["per_crop_ms_fastest_round"][k], res["per_crop_ms_slowest_round"][k]
        ratio = f"{speedups[k]:>9.2f}x" if speedups else ""
        print(f"  {k:<{width}}{v:>8.2f}{fastest:>9.2f}{slowest:>9.2f}{ratio}")


def _torch_fp32():
    """The unpruned FP32 torch model at its own input size, the reference the serving path must
    beat; crops of another size (a model served smaller) are resized for it, which costs it
    about 0.05 ms of its tens."""
    try:
        import torch  # optional (no torch: no such contender) and slow to import: only here

        from detector.training.model import ARCHS, create_model
    except ImportError:
        return None
    torch.set_num_threads(1)
    model = create_model("lite0", pretrained=False).eval()
    size = ARCHS["lite0"].input_size

    def run(crops: np.ndarray) -> np.ndarray:
        if crops.shape[1] != size:
            crops = np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_LINEAR) for c in crops])
        x = torch.from_numpy(crops.astype(np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2)
        with torch.no_grad():
            return torch.sigmoid(model(x)).numpy()

    return run


def _psnr_y(path: Path, reference: list[np.ndarray]) -> float:
    """Luma PSNR of an encoded file against the yuv420p frames it was made from."""
    errors = []
    with av.open(str(path)) as container:
        for frame, ref in zip(container.decode(video=0), reference, strict=False):
            h = frame.height
            diff = frame.to_ndarray(format="yuv420p")[:h].astype(np.float32) - ref[:h]
            errors.append(float(np.mean(diff * diff)))
    return round(10 * np.log10(255**2 / max(np.mean(errors), 1e-9)), 2)


def _encode(frames: list[np.ndarray], info, target: Path, **options) -> dict:
    def run() -> None:
        with AnnotatedVideoWriter(target, info.width, info.height, info.fps, **options) as w:
            for f in frames:
                w.write(f)

    seconds, _ = _timed(run)
    reference = [
        cv2.cvtColor(f[: info.height // 2 * 2, : info.width // 2 * 2], cv2.COLOR_RGB2YUV_I420) for f in frames
    ]
    return {
        "ms_per_frame": round(seconds / len(frames) * 1000, 2),
        "kb": round(target.stat().st_size / 1024),
        "psnr_y_db": _psnr_y(target, reference),
    }


def _stages(
    clip: Path, settings: Settings, detector, predictor: Predictor, out_dir: Path
) -> tuple[dict, dict, np.ndarray, int]:
    """Each stage alone over the same decoded frames: milliseconds per frame (per crop).
    Decode includes the conversion the next stage needs (RGB to analyse, yuv420p to draw on)."""
    info = probe_video(clip, settings)
    frames = [f.image for f in iter_frames(clip, info, settings)]
    n = len(frames)
    t_decode, _ = _timed(lambda: sum(f.image.shape[0] > 0 for f in iter_frames(clip, info, settings)))
    t_decode_yuv, yuv = _timed(lambda: [f.yuv420p() for f in iter_frames(clip, info, settings, threads=1)])
    detector.detect(frames[0])
    t_detect, dets = _timed(lambda: [detector.detect(f) for f in frames])
    follower = FaceFollower(detector)
    t_follow, _ = _timed(lambda: [follower.detect(f) for f in frames])
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
    t_draw, drawn = _timed(
        lambda: [draw_labels(f, lab, copy=False) for f, lab in zip(frames, labels, strict=True)]
    )
    t_draw_yuv, _ = _timed(lambda: [draw_labels_yuv420(f, lab) for f, lab in zip(yuv, labels, strict=True)])
    yuv.clear()  # 1.4 MB a frame at 720p: not kept for the rest of the run
    encoders = {
        "default": _encode(drawn, info, out_dir / "encode.mp4"),
        "former (veryfast, CRF 23)": _encode(drawn, info, out_dir / "former.mp4", **FORMER_ENCODER),
    }
    stages = {
        "decode (RGB)": t_decode,
        "decode (yuv420p to draw on)": t_decode_yuv,
        "detect (full)": t_detect,
        "detect (followed)": t_follow,
        "classify": t_classify,
        "draw (RGB, in place)": t_draw,
        "draw (yuv420p)": t_draw_yuv,
    }
    ms = {k: round(v / n * 1000, 2) for k, v in stages.items()}
    ms["classify"] = round(t_classify / max(1, len(crops)) * 1000, 2)
    ms["encode"] = encoders["default"]["ms_per_frame"]
    ms["encode (former veryfast)"] = encoders["former (veryfast, CRF 23)"]["ms_per_frame"]
    ms["follower key frames (of all frames)"] = round(follower.key_frames / n, 2)
    return ms, encoders, crops, n


def _former_every_frame_annotated(clip: Path, settings: Settings, detector, out: Path) -> None:
    """The every-frame annotated path as it was before issue 5's work, for a ratio in the same
    run: one thread, the full detector on every frame, ONNX Runtime's own thread pool, a copy
    per drawn frame, x264 veryfast."""
    info = probe_video(clip, settings)
    former = Analyzer(settings, detector=detector, predictor=Predictor(settings=settings), follow_faces=False)
    tracker = FaceTracker()
    with AnnotatedVideoWriter(out, info.width, info.height, info.fps, **FORMER_ENCODER) as writer:
        for frame in iter_frames(clip, info, settings):
            faces = detector.detect(frame.image)
            results = former.score_faces(frame.image, faces)
            tracker.update(frame.time, [f.box for f in faces])
            labels = [Label(r.box, r.fake_probability, former.threshold, r.too_small) for r in results]
            writer.write(draw_labels(frame.image, labels))


def bench(clip: Path, model_dir: Path, out_dir: Path) -> dict:
    settings = Settings(model_dir=model_dir)
    info = probe_video(clip, settings)
    detector = create_detector("blazeface")
    predictor = Predictor(model_dir, settings)  # ONNX Runtime's default threads
    one = Predictor(model_dir, settings.with_overrides(threads=1))  # what the Analyzer uses
    card = predictor.card
    stage_ms, encoders, crops, n = _stages(clip, settings, detector, one, out_dir)
    res: dict = {
        "clip": str(clip),
        "size": f"{info.width}x{info.height}",
        "frames": n,
        "fps_source": round(info.fps, 2),
    }
    res["stage_ms_per_frame"] = stage_ms
    res["encoder"] = encoders

    analyzer = Analyzer(settings, predictor=one, detector=detector)
    full = Analyzer(settings, predictor=one, detector=detector, follow_faces=False)
    t_sampled, _ = _timed(analyzer.analyze, clip)
    t_sampled_ann, _ = _timed(analyzer.analyze, clip, out_dir)
    t_every, _ = _timed(analyzer.analyze, clip, None, True)
    t_every_ann, _ = _timed(analyzer.analyze, clip, out_dir, True)
    t_full_ann, _ = _timed(full.analyze, clip, out_dir, True)
    t_former, _ = _timed(_former_every_frame_annotated, clip, settings, detector, out_dir / "former-path.mp4")
    res["end_to_end_fps"] = {
        f"analysis, {settings.sample_frames} sampled frames": round(n / t_sampled, 1),
        "analysis + annotated video, sampled": round(n / t_sampled_ann, 1),
        "analysis, every frame": round(n / t_every, 1),
        "analysis + annotated video, every frame": round(n / t_every_ann, 1),
        "  same, full detector on every frame": round(n / t_full_ann, 1),
        "  same, the former serial path": round(n / t_former, 1),
    }
    res["speedup_every_frame_annotated_vs_former"] = round(t_former / t_every_ann, 2)
    as_file = Predictor(model_dir, settings.with_overrides(threads=1), rewrite=False)  # no detector.graph
    # the other CPU class's weight encoding, run here: exact without VNNI (uint8) or, on a CPU
    # without VNNI, the int8 encoding VNNI serves (which saturates here: timed, never served)
    cpu = this_cpu()
    other_cpu = classify("x86_64", {"avx2"}) if cpu.int8_sums_exact else classify("x86_64", {"avx512_vnni"})
    other = Predictor(model_dir, settings.with_overrides(threads=1), cpu=other_cpu)
    other_name = f"onnxruntime, 1 thread, as served on {other_cpu.name}"
    contenders = {
        "onnxruntime, default threads": predictor.predict,
        "onnxruntime, 1 thread": one.predict,
        "onnxruntime, 1 thread, file's graph": as_file.predict,
        other_name: other.predict,
        "preprocessing alone (served)": one.model_input,
        "preprocessing alone (file's float input)": one.preprocess,
        "preprocessing alone (step by step)": one.preprocess_stepwise,
    }
    torch_fn = _torch_fp32()
    if torch_fn is not None:
        contenders["torch fp32 eager, 1 thread"] = torch_fn
    rounds = _per_crop_rounds(contenders, crops)
    res.update(_rounds_summary(rounds))
    res["speedup_preprocessing_vs_stepwise"] = _round_ratio(
        rounds["preprocessing alone (step by step)"], rounds["preprocessing alone (served)"]
    )
    res["cpu"] = {"class": cpu.name, "served_rewrites": list(one.rewrites)}
    res["cpu"]["other_class"] = {"as": other_cpu.name, "rewrites": list(other.rewrites)}
    res["cpu"]["other_class"]["time_ratio_to_served"] = _round_ratio(
        rounds[other_name], rounds["onnxruntime, 1 thread"]
    )
    res["cpu"]["other_class"]["exact_here"] = cpu.int8_sums_exact or "uint8 weights" not in one.rewrites
    res["speedup_served_graph_vs_file"] = _round_ratio(
        rounds["onnxruntime, 1 thread, file's graph"], rounds["onnxruntime, 1 thread"]
    )
    if torch_fn is not None:
        res["speedup_onnx_1thread_vs_torch_fp32"] = _round_ratio(
            rounds["torch fp32 eager, 1 thread"], rounds["onnxruntime, 1 thread"]
        )
    res["model"] = {
        "file": card.file,
        "mb": round((model_dir / card.file).stat().st_size / 1e6, 2),
        "version": card.version,
    }
    res["cores"] = os.cpu_count()
    res["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return res


def compare(clip: Path, model_dirs: list[Path], rounds: int = 16) -> dict:
    """Per crop on one thread, several models side by side in alternating rounds, each on the
    clip's faces cropped as it serves them (its own input size and margin): what a smaller or
    thinner candidate saves, as a ratio to the first model measured in the same run."""
    settings = Settings()
    info = probe_video(clip, settings)
    detector = create_detector("blazeface")
    faces = []
    for frame in iter_frames(clip, info, settings):
        found = detector.detect(frame.image) if frame.index % 4 == 0 else None
        if found:
            faces.append((frame.image, found[0].box))  # a quarter of the frames, never all at once
    fns, crops = {}, {}
    for folder in model_dirs:
        predictor = Predictor(folder, settings.with_overrides(model_dir=folder, threads=1))
        card, name = predictor.card, f"{folder} ({predictor.card.version}, {predictor.input_size} px)"
        crops[name] = np.stack([crop_face(f, box, card.crop_margin, card.input_size) for f, box in faces])
        fns[name] = predictor.predict
    ms = _per_crop_rounds(fns, crops, rounds=rounds)
    first = next(iter(ms))
    return {
        "clip": str(clip),
        "crops": len(faces),
        **_rounds_summary(ms),
        "speedup_vs_first": {k: _round_ratio(ms[first], v) for k, v in ms.items()},
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def upscale_to_1080p(source: Path, target: Path, seconds: float = 10.0) -> Path:
    """A 1920x1080 H.264 copy of (the first ``seconds`` of) ``source``, made with PyAV."""
    rate, _, frames = opening(source, seconds)
    options = {"crf": "20", "preset": "veryfast"}
    return write_video(target, frames, rate.limit_denominator(1001), (1920, 1080), stream_options=options)


# Runs in a fresh interpreter: the worker's analyzer (evidence kept, settings from UNMASK_*),
# one video, and the process's own peak resident memory.
_CHILD = """
import json, resource, sys, tempfile, time
from pathlib import Path

import numpy as np

def rss(field="VmRSS"):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

out = {"python_mb": rss()}
from detector.analyze import Analyzer
from detector.config import get_settings

analyzer = Analyzer(get_settings().with_overrides(model_dir=Path(sys.argv[2])), keep_evidence=True)
analyzer.predictor.rewrite = sys.argv[4] == "served"
analyzer.predictor.load()
analyzer.detector.detect(np.zeros((400, 640, 3), dtype=np.uint8))  # MediaPipe's graphs load on first use
out["loaded_mb"] = rss()
with tempfile.TemporaryDirectory() as tmp:
    t = time.perf_counter()
    result = analyzer.analyze(sys.argv[1], annotate_dir=Path(tmp), every_frame=sys.argv[3] == "every")
    out["seconds"] = time.perf_counter() - t
out["after_mb"] = rss()
out["peak_mb"] = rss("VmHWM")  # this interpreter's own high-water mark (ru_maxrss counts the parent's pages)
out["verdict"] = result.verdict
print(json.dumps(out))
"""


def peak_memory(clip: Path, model_dir: Path, every_frame: bool = False, served: bool = True) -> dict:
    """Peak resident memory of a fresh process analysing ``clip`` as a worker does (``served``:
    the graph ``detector.graph`` rewrites, as workers load it; else the file's)."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _CHILD,
            str(clip),
            str(model_dir),
            "every" if every_frame else "sampled",
            "served" if served else "file",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in out.items()}


def memory(clip_1080p: Path | None, source: Path, model_dir: Path, tmp: Path) -> dict:
    clip = clip_1080p if clip_1080p and clip_1080p.exists() else upscale_to_1080p(source, tmp / "1080p.mp4")
    with av.open(str(clip)) as c:
        stream = c.streams.video[0]
        size = f"{stream.codec_context.width}x{stream.codec_context.height}"
    res = {
        "clip": str(clip),
        "size": size,
        "worker (sampled + annotated, evidence kept)": peak_memory(clip, model_dir),
        "every frame + annotated": peak_memory(clip, model_dir, every_frame=True),
        "worker, the file's graph (no detector.graph)": peak_memory(clip, model_dir, served=False),
    }
    # the kernel's account of the largest child waited for (counts this process's pages at the fork)
    res["largest_child_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    ap.add_argument("--clip-1080p", type=Path, default=DEFAULT_CLIP_1080P, help="made from --clip if missing")
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    ap.add_argument("--no-memory", action="store_true", help="skip the 1080p peak-memory runs")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "var" / "bench.json")
    ap.add_argument(
        "--compare",
        type=Path,
        nargs="+",
        metavar="MODEL_DIR",
        help="only time these models per crop, side by side (ratios to the first)",
    )
    args = ap.parse_args(argv)
    if args.compare:
        res = compare(args.clip, args.compare)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2))
        print(f"clip {res['clip']}, {res['crops']} faces, load average {res['load_average']}")
        header = "one crop per call, 1 thread           ms per crop: median  fastest  slowest   speedup"
        _print_rounds(res, header, 44, res["speedup_vs_first"])
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        # memory first, while this process is small: a child starts as a copy of its parent
        mem = None if args.no_memory else memory(args.clip_1080p, args.clip, args.model, Path(tmp))
        res = bench(args.clip, args.model, Path(tmp))
        if mem is not None:
            res["memory_1080p"] = mem
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2))
    print(
        f"CPU: {res['cpu']['class']}; served with {', '.join(res['cpu']['served_rewrites']) or 'no rewrites'}"
    )
    print(f"clip {res['clip']} ({res['size']}, {res['frames']} frames), model {res['model']}")
    print(
        f"{res['cores']} cores, load average {res['load_average']} (other work on the machine slows every figure)"
    )
    print("stage                                ms per frame (classify: per crop)")
    for k, v in res["stage_ms_per_frame"].items():
        print(f"  {k:<38}{v:>8.2f}")
    print("encoder (the same drawn frames)      ms per frame      KB   PSNR-Y dB")
    for k, v in res["encoder"].items():
        print(f"  {k:<32}{v['ms_per_frame']:>10.2f}{v['kb']:>10}{v['psnr_y_db']:>10.2f}")
    print("end to end                           frames per second")
    for k, v in res["end_to_end_fps"].items():
        print(f"  {k:<42}{v:>8.1f}")
    print(
        f"ratio: every frame + annotated is {res['speedup_every_frame_annotated_vs_former']}x the former serial path"
    )
    _print_rounds(res, "classifier, one crop per call       ms per crop: median  fastest  slowest round", 36)
    print(
        f"ratio: served preprocessing is {res['speedup_preprocessing_vs_stepwise']}x faster than step by step"
    )
    print(
        f"ratio: the served graph (detector.graph) is {res['speedup_served_graph_vs_file']}x faster per crop"
        " than the file's, preprocessing included"
    )
    other = res["cpu"]["other_class"]
    exact = "exact here" if other["exact_here"] else "saturates here, never served"
    print(
        f"ratio: as served on {other['as']} ({', '.join(other['rewrites'])}; {exact}) a crop takes"
        f" {other['time_ratio_to_served']}x this CPU's served time"
    )
    if "speedup_onnx_1thread_vs_torch_fp32" in res:
        print(
            f"ratio: serving (onnx, 1 thread) is {res['speedup_onnx_1thread_vs_torch_fp32']}x faster than torch fp32 eager"
            " (median of the rounds' ratios)"
        )
    if "memory_1080p" in res:
        mem = res["memory_1080p"]
        print(f"peak memory, fresh process, {mem['size']} clip {Path(mem['clip']).name}")
        for k, v in mem.items():
            if isinstance(v, dict):
                print(
                    f"  {k:<44} peak {v['peak_mb']:>6.0f} MB (models loaded {v['loaded_mb']:.0f} MB, "
                    f"{v['seconds']:.1f} s)"
                )
        print(f"  largest child by getrusage(RUSAGE_CHILDREN): {mem['largest_child_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
