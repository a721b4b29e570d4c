"""``python -m detector scan PATH...``: score photos and videos from a terminal.

One bad file never stops a scan: it becomes a row with status ``error`` and the exit status
is 1 at the end (2 for bad usage). ``--json`` prints exactly one JSON object per file per line.
A verdict is ``real``, ``uncertain`` or ``fake`` (``detector.results`` states the rule);
``--thresholds REAL,FAKE`` replaces the model card's two thresholds for one scan.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from .config import get_settings
from .errors import UnmaskError
from .media import IMAGE_SUFFIXES, VIDEO_SUFFIXES, sniff
from .results import AnalysisResult, Thresholds

log = logging.getLogger("detector")


def _looks_like_media(path: Path) -> bool:
    """A file in a folder scan: a known extension, or (since type is judged from content, and
    phones and messengers save files without one) first bytes that name a format we read."""
    if path.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
        return True
    try:
        with path.open("rb") as fh:
            return sniff(fh.read(64)) is not None
    except OSError:
        return False


def expand(paths: list[str]) -> Iterator[Path]:
    """Files as given, and folders walked recursively for media (by extension or content), sorted."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and _looks_like_media(child):
                    yield child
        else:
            yield path


def _kind_guess(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            media = sniff(fh.read(64))
    except OSError:
        media = None
    if media is not None:
        return media.kind
    return "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"


def scan_one(analyzer, path: Path, annotate: Path | None, every_frame: bool) -> AnalysisResult:
    try:
        return analyzer.analyze(path, annotate_dir=annotate, every_frame=every_frame)
    except UnmaskError as exc:
        result = AnalysisResult(str(path), _kind_guess(path), "error", error=str(exc), error_code=exc.code)
        result.provenance = analyzer.provenance(path)
        return result
    except Exception as exc:
        log.debug("unexpected failure on %s", path, exc_info=True)
        return AnalysisResult(
            str(path),
            _kind_guess(path),
            "error",
            error=f"unexpected error while reading the file ({type(exc).__name__})",
            error_code="internal",
        )


def _table_row(r: AnalysisResult) -> str:
    verdict = (r.verdict or r.status).upper() if r.status != "error" else "ERROR"
    score = "" if r.fake_probability is None else f"{r.fake_probability:.3f}"
    detail = r.error if r.status == "error" else (r.message or "")
    if r.kind == "video" and r.status != "error":
        detail = f"{r.frames_analyzed} frames, {len(r.tracks)} person(s)" + (f"; {detail}" if detail else "")
    elif r.status == "ok":
        detail = f"{len(r.faces)} face(s)"
    origin = (r.provenance or {}).get("label", "")
    return f"{verdict:<9} {score:>7}  {r.kind:<5}  {origin:<20}  {r.path}  {detail}"


def _thresholds(text: str) -> Thresholds:
    try:
        return Thresholds.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m detector", description="Unmask: deepfake detection for photos and videos."
    )
    sub = ap.add_subparsers(dest="command", required=True)
    scan = sub.add_parser("scan", help="analyse photos and videos (files or folders)")
    scan.add_argument("paths", nargs="+", metavar="PATH")
    scan.add_argument("--json", action="store_true", help="one JSON object per file per line")
    scan.add_argument("--annotate", type=Path, metavar="DIR", help="write annotated copies into DIR")
    scan.add_argument("--face-detector", choices=["blazeface", "haar"], default=None)
    scan.add_argument("--every-frame", action="store_true", help="analyse every video frame, not a sample")
    scan.add_argument("--model", type=Path, default=None, help="model folder (card.json + model.onnx)")
    scan.add_argument(
        "--thresholds",
        type=_thresholds,
        metavar="REAL,FAKE",
        default=None,
        help="calibrated P(fake) below REAL is real, at or above FAKE is fake, between is uncertain "
        "(default: the model card's; also UNMASK_THRESHOLDS)",
    )
    scan.add_argument("-v", "--verbose", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("GLOG_minloglevel", "2")
    from .analyze import Analyzer  # OpenCV, PyAV, ONNX Runtime: not for --help or a usage error

    try:
        settings = get_settings()
    except ValueError as exc:  # a malformed UNMASK_* variable
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.model is not None:
        settings = settings.with_overrides(model_dir=args.model)
    if args.thresholds is not None:
        settings = settings.with_overrides(thresholds=args.thresholds)
    try:
        # The Analyzer builds the predictor with the thread count its pipeline wants.
        analyzer = Analyzer(settings, detector=args.face_detector)
        analyzer.predictor.load()
    except UnmaskError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    files = list(expand(args.paths))
    if not files:
        print("error: no image or video files found", file=sys.stderr)
        return 2
    bar = None
    if sys.stderr.isatty() and len(files) > 1:
        bar = tqdm(total=len(files), unit="file", file=sys.stderr)
    failed = 0
    if not args.json:
        print(f"{'VERDICT':<9} {'P(FAKE)':>7}  KIND   {'PROVENANCE':<20}  PATH")
    for path in files:
        result = scan_one(analyzer, path, args.annotate, args.every_frame)
        failed += result.status == "error"
        line = json.dumps(result.to_json()) if args.json else _table_row(result)
        if bar is not None:
            bar.write(line, file=sys.stdout)
            bar.update(1)
        else:
            print(line, flush=True)
    if bar is not None:
        bar.close()
    return 1 if failed else 0
