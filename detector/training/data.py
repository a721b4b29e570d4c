"""The crops training reads: the prepared cache's manifest, the crops themselves, the split's rows
and a torch data set over them that augments and self-blends as training asks.

Every stage (train, prune, quantize, evaluate, release) reads crops through here, so a crop is
loaded, masked and normalised one way whoever asks. Which crops a batch holds is
``detector.training.sampling``'s job.
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..classifier import Predictor
from ..config import REPO_ROOT
from ..faces import mask_frame
from .augment import augment
from .model import ARCHS
from .sbi import face_ellipse, self_blend

DEFAULT_CACHE = REPO_ROOT / ".cache" / "crops"


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
        arch: str = "lite0",
        degrade: Callable[[np.ndarray], np.ndarray] | None = None,
    ):
        self.cache, self.rows, self.train, self.size = cache, rows, train, size
        self.degrade = degrade  # applied to every crop as stored, e.g. as a shared video makes it
        self.arch = arch
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
        if self.degrade is not None:
            image = self.degrade(image)
        if self.train:
            image = augment(image, rng)
            if self.background_dropout and rng.random() < self.background_dropout:
                image = drop_background(image)
        image = mask_frame(image, self.frame_mask)
        if image.shape[0] != self.size:
            image = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        return to_tensor(image, self.arch), torch.tensor([float(label)])


def validation_sample(rows: list[dict], val_max: int) -> list[dict]:
    """Every k-th validation row, about ``val_max`` of them: what training scores itself on
    (the whole split takes minutes on 2 cores), the same rows in every run and comparison."""
    return rows[:: max(1, len(rows) // val_max)]


def drop_background(image: np.ndarray) -> np.ndarray:
    """Everything outside the fixed face ellipse blacked out, for every class alike: a model that
    sometimes sees only the face cannot lean on the background (a GAN set's studio backdrops) and
    is scored on the face alone in distribution (``evaluate.background_check``)."""
    return image * (face_ellipse(image.shape[:2]) > 0)[..., None].astype(image.dtype)


def to_tensor(image: np.ndarray, arch: str = "lite0") -> torch.Tensor:
    """An RGB uint8 crop as the architecture's network takes it (its own normalisation)."""
    spec = ARCHS[arch]
    x = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).float().div_(255)
    mean = torch.tensor(spec.mean).view(3, 1, 1)
    std = torch.tensor(spec.std).view(3, 1, 1)
    return (x - mean) / std


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


def served_batches(
    cache: Path, count: int, predictor: Predictor, seed: int = 0, batch: int = 8
) -> list[np.ndarray]:
    """About ``count`` training crops, balanced over sources and labels so no set dominates,
    preprocessed exactly as the model card says serving will (frame mask, normalisation): what
    statistics of a model's activations (quantization ranges, batch norms) are measured on."""
    rows = [r for r in read_manifest(cache) if r["split"] == "train"]
    rng = np.random.default_rng(seed)
    by_cell: dict[tuple, list[dict]] = {}
    for r in rows:
        by_cell.setdefault((r["source"], r["label"]), []).append(r)
    per_cell = max(1, count // len(by_cell))
    picked = [r for cell in by_cell.values() for r in rng.permutation(cell)[:per_cell]]
    crops = load_crops(cache, picked, predictor.input_size)
    return [predictor.preprocess(crops[i : i + batch]) for i in range(0, len(crops), batch)]
