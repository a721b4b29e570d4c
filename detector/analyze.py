"""Turning a photo or a video into a verdict: the pipeline every front end calls.

``Analyzer`` holds the loaded face detector and model, so a worker or a long CLI scan pays their
start-up once. Bad media raises the named errors from ``detector.errors``; a file where no face
can be judged is a result with status ``no_face``, not an error.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .annotate import AnnotatedVideoWriter, Label, draw_labels, draw_labels_yuv420, save_image
from .classifier import Predictor
from .config import Settings, get_settings
from .faces import Face, FaceDetector, create_detector, crop_face
from .media import detect_type, load_image
from .provenance import read_provenance
from .results import (
    AnalysisResult,
    FaceResult,
    FrameScore,
    Thresholds,
    TrackResult,
    face_verdict,
    file_verdict,
    person_verdict,
)
from .tracking import FaceFollower, FaceTracker
from .video import SampleClock, VideoInfo, decode_ahead, iter_frames, probe_video

Progress = Callable[[str, float], None]

# Frames decoded ahead of the analysis, and frames waiting for the encoder, in RGB bytes: enough
# to smooth out uneven stages (measured: queues of 1 to 3 frames run as fast), and at most one
# frame each from 1080p up, where every frame held costs 6 MB (models/README.md, "Pipeline speed").
QUEUE_BYTES = 6_000_000


def _queue_depth(info: VideoInfo) -> int:
    """2 frames at 720p, 3 below, 1 from 1080p up."""
    return max(1, min(3, round(QUEUE_BYTES / max(1, info.width * info.height * 3))))


def _no_progress(stage: str, fraction: float) -> None:
    pass


@dataclass
class _FrameFaces:
    index: int
    time: float
    faces: list[FaceResult]


@dataclass
class _VideoPass:
    """What the first pass over a video collects."""

    tracker: FaceTracker = field(default_factory=FaceTracker)
    evidence: dict[int, FaceResult] = field(default_factory=dict)  # largest scored face per track
    frames: list[_FrameFaces] = field(default_factory=list)  # boxes per frame, for pass two
    timeline: list[FrameScore] = field(default_factory=list)


class Analyzer:
    def __init__(
        self,
        settings: Settings | None = None,
        detector: str | FaceDetector | None = None,
        predictor: Predictor | None = None,
        keep_evidence: bool = False,
        follow_faces: bool = True,
    ) -> None:
        """``keep_evidence`` keeps each scored face's crop and class activation map on the
        results (for a results page); the heatmap comes from the same forward pass.

        A video is decoded, analysed and encoded in three overlapping threads, so the model gets
        one thread of its own unless ``UNMASK_THREADS`` says otherwise: measured on 2 cores,
        ONNX Runtime's own (spinning) pool made every-frame analysis take 1.7 times the CPU time
        and run 1.2 to 1.4 times slower, for the same scores."""
        self.settings = settings or get_settings()
        if predictor is None:
            threads = self.settings.threads or 1
            predictor = Predictor(settings=self.settings.with_overrides(threads=threads))
        self.predictor = predictor
        # the verdict's thresholds: UNMASK_THRESHOLDS / --thresholds, else the model card's
        self.thresholds: Thresholds = self.settings.thresholds or Thresholds.from_card(predictor.card)
        # the card measured the decided share at its own thresholds only
        measured = predictor.card.extra.get("metrics", {}).get("verdicts", {}).get("decided")
        self.decided_share: float | None = None if self.settings.thresholds else measured
        if detector is None or isinstance(detector, str):
            detector = create_detector(
                detector or self.settings.face_detector, self.settings.min_detection_confidence
            )
        self.detector = detector
        self.keep_evidence = keep_evidence
        self.follow_faces = follow_faces

    @property
    def threshold(self) -> float:
        """The fake threshold (``thresholds.fake``), for readers of the single-threshold API."""
        return self.thresholds.fake

    # -- faces -------------------------------------------------------------------------------
    def score_faces(self, image: np.ndarray, faces: list[Face]) -> list[FaceResult]:
        """Score every face big enough to judge; crops stay on the results only as evidence."""
        card = self.predictor.card
        judged = [f for f in faces if f.size >= self.settings.min_face_size]
        crops = [crop_face(image, f.box, card.crop_margin, card.input_size) for f in judged]
        if self.keep_evidence:
            probs, cams = self.predictor.predict_with_heatmaps(crops)
        else:
            probs, cams = self.predictor.predict(crops), None
        results, k = [], 0
        for face in faces:
            if face.size >= self.settings.min_face_size:
                p = float(probs[k])
                result = FaceResult(face.box, face.confidence, p, verdict=face_verdict(p, self.thresholds))
                if cams is not None:
                    result.crop, result.heatmap = crops[k], cams[k]
                results.append(result)
                k += 1
            else:
                results.append(FaceResult(face.box, face.confidence, None, too_small=True))
        return results

    def _labels(self, faces: list[FaceResult]) -> list[Label]:
        return [Label(f.box, f.fake_probability, self.thresholds, f.too_small) for f in faces]

    # -- entry points ------------------------------------------------------------------------
    def analyze(
        self,
        path: str | Path,
        annotate_dir: Path | None = None,
        every_frame: bool = False,
        progress: Progress | None = None,
    ) -> AnalysisResult:
        media = detect_type(path, self.settings)
        if media.kind == "image":
            target = None if annotate_dir is None else Path(annotate_dir) / f"{Path(path).stem}.annotated.jpg"
            result = self.analyze_image(path, target, progress)
        else:
            target = None if annotate_dir is None else Path(annotate_dir) / f"{Path(path).stem}.annotated.mp4"
            result = self.analyze_video(path, target, every_frame, progress)
        result.provenance = self.provenance(path)
        return result

    def provenance(self, path: str | Path) -> dict:
        """Content credentials and metadata of the file, as a JSON-ready dict (never raises)."""
        anchors = self.settings.c2pa_trust_anchors
        pem = anchors.read_text() if anchors and anchors.exists() else None
        return read_provenance(path, trust_anchors=pem).to_json()

    def analyze_image(
        self, path: str | Path, annotate_to: Path | None = None, progress: Progress | None = None
    ) -> AnalysisResult:
        progress = progress or _no_progress
        started = time.perf_counter()
        image = load_image(path, self.settings)
        progress("faces", 0.0)
        faces = self.detector.detect(image)
        progress("scoring", 0.5)
        results = self.score_faces(image, faces)
        scored = [f.fake_probability for f in results if f.fake_probability is not None]
        result = AnalysisResult(
            path=str(path),
            kind="image",
            status="ok" if scored else "no_face",
            faces=results,
            width=image.shape[1],
            height=image.shape[0],
            threshold=self.threshold,
            thresholds=self.thresholds,
            model=self.predictor.card.version,
            model_decided=self.decided_share,
        )
        if scored:
            result.fake_probability = max(scored)
            result.verdict = file_verdict(f.verdict for f in results)
        else:
            result.message = _no_face_message(results, self.settings)
        if annotate_to is not None:
            progress("encoding", 0.9)
            result.annotated_path = str(
                save_image(draw_labels(image, self._labels(results)), Path(annotate_to))
            )
        result.seconds = time.perf_counter() - started
        progress("done", 1.0)
        return result

    def analyze_video(
        self,
        path: str | Path,
        annotate_to: Path | None = None,
        every_frame: bool = False,
        progress: Progress | None = None,
    ) -> AnalysisResult:
        """Sample frames (or take all), detect, track, score; optionally render the annotated copy.

        Pass one decodes and scores; when annotating it also detects on every frame, so that
        pass two (decode, draw, encode) has a box on every frame without detecting again.
        """
        progress = progress or _no_progress
        started = time.perf_counter()
        info = probe_video(path, self.settings)
        # Every frame scored: draw and encode in the same pass. Sampled: a second pass draws
        # each frame with its person's latest score, which is only known after the first.
        with contextlib.ExitStack() as stack:
            inline = None
            if annotate_to is not None and every_frame:
                inline = stack.enter_context(self._writer(path, info, Path(annotate_to)))
            seen = self._first_pass(path, info, every_frame, annotate_to is not None, inline, progress)
            if inline is not None:
                progress("encoding", 0.97)
        tracks = self._aggregate(seen.tracker)
        for t in tracks:
            if t.track_id in seen.evidence:
                t.crop, t.heatmap = seen.evidence[t.track_id].crop, seen.evidence[t.track_id].heatmap
        result = AnalysisResult(
            path=str(path),
            kind="video",
            status="ok",
            tracks=tracks,
            timeline=seen.timeline,
            frames_analyzed=len(seen.timeline),
            width=info.width,
            height=info.height,
            duration=info.duration,
            fps=info.fps,
            threshold=self.threshold,
            thresholds=self.thresholds,
            model=self.predictor.card.version,
            model_decided=self.decided_share,
        )
        judged = [t for t in tracks if t.fake_probability is not None]
        if judged:
            best = max(judged, key=lambda t: t.fake_probability)
            result.fake_probability = best.fake_probability
            result.verdict = file_verdict(t.verdict for t in judged)
            result.faces = [
                FaceResult(
                    t.box,
                    1.0,
                    t.fake_probability,
                    track_id=t.track_id,
                    verdict=t.verdict,
                    crop=t.crop,
                    heatmap=t.heatmap,
                )
                for t in judged
            ]
        else:
            result.status = "no_face"
            result.message = "no face large enough to judge was found in the sampled frames"
        if annotate_to is not None:
            if inline is None:
                _release_free_memory()  # pass one's buffers, before pass two makes its own
                self._render(path, info, seen, Path(annotate_to), progress)
            result.annotated_path = str(annotate_to)
        _release_free_memory()
        result.seconds = time.perf_counter() - started
        progress("done", 1.0)
        return result

    def _first_pass(
        self,
        path,
        info: VideoInfo,
        every_frame: bool,
        annotating: bool,
        inline: AnnotatedVideoWriter | None,
        progress: Progress,
    ) -> _VideoPass:
        """Decode; detect and track where needed; score the sampled frames."""
        seen = _VideoPass()
        tracker, evidence, timeline = seen.tracker, seen.evidence, seen.timeline
        clock = SampleClock(info, self.settings.sample_frames)
        total = max(info.frames, 1)
        # Sampled frames only: the decoding thread drops the others before their RGB conversion.
        only_sampled = not (every_frame or annotating)
        keep = (lambda frame: clock.take(frame.time)) if only_sampled else None
        # Decoding alone keeps a core busy only when little else runs: then FFmpeg's own threads.
        decoded = iter_frames(path, info, self.settings, threads=0 if only_sampled else 1)
        # Every frame: faces are followed from frame to frame (the full detector on key frames).
        # Sampled frames always get the full detector, so their scores never depend on the others.
        detect = (
            FaceFollower(self.detector).detect if every_frame and self.follow_faces else self.detector.detect
        )
        with contextlib.closing(decode_ahead(decoded, _queue_depth(info), keep)) as frames:
            for frame in frames:
                sampled = only_sampled or every_frame or clock.take(frame.time)
                if not (sampled or annotating):
                    continue
                faces = detect(frame.image)
                ids = tracker.update(frame.time, [f.box for f in faces])
                if sampled:
                    results = self.score_faces(frame.image, faces)
                    scores = [r.fake_probability for r in results if r.fake_probability is not None]
                    timeline.append(FrameScore(frame.index, frame.time, max(scores) if scores else None))
                else:
                    results = [
                        FaceResult(f.box, f.confidence, None, too_small=f.size < self.settings.min_face_size)
                        for f in faces
                    ]
                for r, tid in zip(results, ids, strict=True):
                    r.track_id = tid
                    if sampled and r.fake_probability is not None:
                        tracker.get(tid).scores.append(r.fake_probability)
                        if r.crop is not None:
                            best = evidence.get(tid)
                            if best is None or r.box[2] * r.box[3] > best.box[2] * best.box[3]:
                                evidence[tid] = dataclasses.replace(r)
                        r.crop = r.heatmap = None  # keep memory flat on long videos
                if inline is not None:
                    # the frame is ours alone: draw on it, and the encoding thread takes it as is
                    inline.write(draw_labels(frame.image, self._labels(results), copy=False))
                else:
                    seen.frames.append(_FrameFaces(frame.index, frame.time, results))
                progress(
                    "faces",
                    min(0.99, (frame.index + 1) / total) * (0.6 if annotating and not inline else 0.95),
                )
        return seen

    def _aggregate(self, tracker: FaceTracker) -> list[TrackResult]:
        """Per-person scores; tracks scored in too few frames are dropped as detector noise."""
        scored = [t for t in tracker.tracks if t.scores]
        most = max((len(t.scores) for t in scored), default=0)
        keep = [t for t in scored if len(t.scores) >= max(1, min(3, int(0.25 * most)))]
        out = []
        for t in sorted(keep, key=lambda t: -len(t.scores)):
            p = float(np.mean(t.scores))
            out.append(
                TrackResult(
                    t.track_id,
                    p,
                    person_verdict(t.scores, self.thresholds),
                    len(t.scores),
                    t.first_time,
                    t.last_time,
                    t.largest_box or t.last_box,
                )
            )
        return out

    def _writer(self, path, info: VideoInfo, target: Path) -> AnnotatedVideoWriter:
        audio = Path(path) if info.has_audio else None
        return AnnotatedVideoWriter(
            target, info.width, info.height, info.fps, audio_from=audio, queue_depth=_queue_depth(info)
        )

    def _render(
        self,
        path,
        info: VideoInfo,
        seen: _VideoPass,
        target: Path,
        progress: Progress,
    ) -> None:
        """Second pass: every frame with its boxes, labelled with the person's latest score."""
        by_index = {f.index: f for f in seen.frames}
        latest: dict[int, float] = {}
        first_score = {t.track_id: t.scores[0] for t in seen.tracker.tracks if t.scores}
        total = max(info.frames, 1)
        frames = iter_frames(path, info, self.settings, threads=1)
        if _queue_depth(info) > 1:
            # Decoding in a thread of its own is 8 % faster here, but from 1080p up it costs a
            # worker 25 MB at its peak (one more heap, one more frame): there the decoder shares
            # this thread, which has little else to do, and the encoder keeps the other core.
            frames = decode_ahead(frames, _queue_depth(info), yuv420p=True)
        with self._writer(path, info, target) as writer, contextlib.closing(frames):
            for frame in frames:
                labels = []
                entry = by_index.get(frame.index)
                for face in entry.faces if entry else []:
                    tid = face.track_id
                    if face.fake_probability is not None:
                        latest[tid] = face.fake_probability
                    score = latest.get(tid, first_score.get(tid))
                    labels.append(Label(face.box, score, self.thresholds, face.too_small))
                # no RGB picture here: the boxes are drawn on the frame the encoder takes
                writer.write(draw_labels_yuv420(frame.yuv420p(), labels))
                if frame.index % 10 == 0:
                    progress("encoding", 0.6 + 0.39 * min(1.0, (frame.index + 1) / total))


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc only
    except (AttributeError, OSError):
        return None


def _release_free_memory() -> None:
    """Give memory already freed back to the system. glibc keeps freed frame buffers in its
    heaps; without this a worker stays at the size of its largest video (measured: 25 to 50 MB
    more at the peak of a 1080p video's second pass)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _no_face_message(results: list[FaceResult], settings: Settings) -> str:
    if results:
        return (
            f"{len(results)} face(s) found, all smaller than {settings.min_face_size} px: too small to judge"
        )
    return "no face was found"
