"""Which crops a training batch holds: groups weighed, not frames; a real face and its fakes together.

Why groups: twelve frames of one FaceForensics++ video are near copies, and one DFDC source video
has a real crop and up to two fakes. Drawn frame by frame, a source with many frames per video
(or a video with many fakes) dominates what the model sees; drawn group by group, each video or
identity counts once, whatever it holds.

Why pairs: where a group holds a real face and fakes made from it (DFDC's source video,
FaceForensics++'s target video at the same frame, a CelebA face and its StarGAN edit), showing
them in the same batch leaves the manipulation as the only difference between the two labels:
the person, scene and camera cancel out (GenD, WACV 2026, found this essential to generalise).

The draw for batch ``i`` depends only on ``(seed, i)``, so a resumed run continues exactly.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

_FRAME = re.compile(r"_(\d+)$")


def parse_weights(text: str) -> dict[str, float]:
    """``"political=4,ffpp=2"`` -> ``{"political": 4.0, "ffpp": 2.0}``; empty -> ``{}``."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        source, sep, factor = part.partition("=")
        if not sep or float(factor) <= 0:
            raise ValueError(f"expected source=factor with factor > 0, got {part!r}")
        out[source.strip()] = float(factor)
    return out


def _pair_key(row: dict) -> tuple[str, str]:
    """How a fake names the real face it was made from, where its file name says so: the frame
    index for FaceForensics++ (``real_033_07`` and ``deepfakes_033_097_07``), the real stem as
    a prefix for StarGAN (``..._r01`` and ``..._r01_Brown_Hair``); else the group alone."""
    stem = Path(row["file"]).stem
    frame = _FRAME.search(stem)
    if row["source"] == "ffpp" and frame:
        return ("frame", frame.group(1))
    return ("stem", stem)


class GroupSampler:
    """Batches of indices into ``rows`` (then ``sbi`` self-blended fakes past its end).

    Half of each batch's draws are real and half fake (``sbi_share`` of the fake half made by
    self-blending real crops). A draw picks a source (``_source_mass``), then a group uniformly,
    then a crop of the group. ``pair_share`` of the batch comes as
    real/fake pairs from groups that hold both, the fake matched to its own real where the file
    names say which (``_pair_key``). ``pair_share=0`` and ``by_group=False`` give frame-weighted
    draws (each crop of a source equally likely), the old sampling, for comparison.

    ``real_weight`` multiplies a source's share of the real draws and of the pairs (``{"political":
    4}``): a source whose real faces are called fake gets them, and the fakes made of the same
    people, seen more often, without more of its unpaired fakes. Every other source keeps its
    relative share.
    """

    def __init__(
        self,
        rows: list[dict],
        batch: int,
        steps: int,
        sbi: int = 0,
        sbi_share: float = 0.0,
        pair_share: float = 0.5,
        by_group: bool = True,
        seed: int = 0,
        start: int = 0,
        real_weight: dict[str, float] | None = None,
    ):
        self.batch, self.steps, self.start, self.seed = batch, steps, start, seed
        self.n_rows, self.sbi, self.sbi_share = len(rows), sbi, sbi_share if sbi else 0.0
        self.pair_share = pair_share
        # label -> source -> group -> row indices
        tree: dict[int, dict[str, dict[str, list[int]]]] = defaultdict(lambda: defaultdict(dict))
        for i, r in enumerate(rows):
            key = r["group"] if by_group else f"{r['group']}#{i}"
            tree[r["label"]][r["source"]].setdefault(key, []).append(i)
        self._tree = {label: {s: list(g.values()) for s, g in by.items()} for label, by in tree.items()}
        weigh = real_weight or {}
        unknown = sorted(set(weigh) - {r["source"] for r in rows})
        if unknown:
            raise ValueError(f"real_weight names sources not among the rows: {', '.join(unknown)}")
        self._mass = {label: self._source_mass(by) for label, by in self._tree.items()}
        if 0 in self._mass:
            self._mass[0] = self._normalise({s: m * weigh.get(s, 1.0) for s, m in self._mass[0].items()})
        self._pairs = self._pairable(rows) if pair_share > 0 else {}
        self._pair_mass = self._normalise(
            {s: len(g) ** 0.5 * weigh.get(s, 1.0) for s, g in self._pairs.items()}
        )

    @classmethod
    def _source_mass(cls, by_source: dict[str, list]) -> dict[str, float]:
        """Half by the square root of a source's groups, half equal: DFDC's 2,500 videos weigh
        more than StarGAN's 700 identities, but a set whose groups are few and large (three
        politicians, hundreds of photos each) still takes its share."""
        by_size = cls._normalise({s: len(groups) ** 0.5 for s, groups in by_source.items()})
        return {s: 0.5 * m + 0.5 / len(by_size) for s, m in by_size.items()}

    @staticmethod
    def _normalise(mass: dict[str, float]) -> dict[str, float]:
        total = sum(mass.values())
        return {k: v / total for k, v in mass.items()} if total else {}

    @staticmethod
    def _pairable(rows: list[dict]) -> dict[str, list[list[tuple[int, list[int]]]]]:
        """source -> groups holding both labels -> (fake index, its matching real indices)."""
        groups: dict[tuple[str, str], dict[int, list[int]]] = defaultdict(lambda: {0: [], 1: []})
        for i, r in enumerate(rows):
            groups[(r["source"], r["group"])][r["label"]].append(i)
        out: dict[str, list] = defaultdict(list)
        for (source, _), by_label in groups.items():
            reals, fakes = by_label[0], by_label[1]
            if not reals or not fakes:
                continue
            keyed = defaultdict(list)
            for i in reals:
                keyed[_pair_key(rows[i])].append(i)
            entries = []
            for f in fakes:
                kind, key = _pair_key(rows[f])
                if kind == "frame":
                    match = keyed.get((kind, key), [])
                else:  # a real whose stem begins the fake's
                    match = [
                        i
                        for (k, stem), ids in keyed.items()
                        if k == "stem" and key.startswith(stem)
                        for i in ids
                    ]
                entries.append((f, match or reals))
            out[source].append(entries)
        return dict(out)

    def __len__(self) -> int:
        return max(0, self.steps - self.start)

    def _one(self, rng: np.random.Generator, label: int) -> int:
        if label == 1 and self.sbi_share and rng.random() < self.sbi_share:
            return self.n_rows + int(rng.integers(self.sbi))
        sources, weights = zip(*self._mass[label].items(), strict=True)
        groups = self._tree[label][sources[rng.choice(len(sources), p=weights)]]
        group = groups[rng.integers(len(groups))]
        return group[rng.integers(len(group))]

    def _pair(self, rng: np.random.Generator) -> tuple[int, int]:
        sources, weights = zip(*self._pair_mass.items(), strict=True)
        groups = self._pairs[sources[rng.choice(len(sources), p=weights)]]
        entries = groups[rng.integers(len(groups))]
        fake, reals = entries[rng.integers(len(entries))]
        return reals[rng.integers(len(reals))], fake

    def batch_at(self, step: int) -> list[int]:
        rng = np.random.default_rng((self.seed, step))
        pairs = round(self.batch * self.pair_share / 2) if self._pairs else 0
        out = [i for _ in range(pairs) for i in self._pair(rng)]
        rest = self.batch - len(out)
        labels = [0] * (rest // 2) + [1] * (rest - rest // 2)
        out += [self._one(rng, label) for label in labels]
        return out

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.steps):
            yield self.batch_at(step)
