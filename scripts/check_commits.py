"""Run the fast test suite and score the shared clips at each of a range of commits, side by side.

    python -m scripts.check_commits 519164b^ 8b88e9e [--out .cache/commits.json]

Why: a structural commit (files moved, imports turned round) must leave behaviour as it was
(issue 22). Each commit from FIRST to LAST is checked out into its own worktree under
``.cache/worktrees`` (this checkout's ``.venv`` linked in), then its fast tests run
(``pytest -m "not slow"``: passed and failed counts, the failed tests by name) and ``python -m detector scan --json``
scores the seven shared clips with that commit's code and model. A commit's row differs from the
one before it only where that commit changed something; the table printed at the end says where.
Speed is not measured here: ``make bench`` at two commits, on an idle machine, does that.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

from detector.config import REPO_ROOT
from testmedia import SHARED

WORKTREES = REPO_ROOT / ".cache" / "worktrees"


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO_ROOT, check=True, capture_output=True, text=True).stdout


def commits(first: str, last: str) -> list[str]:
    """``first`` and every commit after it up to ``last``, oldest first."""
    later = _git("rev-list", "--reverse", f"{first}..{last}").split()
    return [_git("rev-parse", first).strip(), *later]


def worktree(sha: str) -> Path:
    """A checkout of ``sha`` that sees this one's ``.venv`` and, as its ``../shared``, ours."""
    shared = WORKTREES / "shared"
    if not shared.exists():
        WORKTREES.mkdir(parents=True, exist_ok=True)
        shared.symlink_to(REPO_ROOT.parent / "shared")
    path = WORKTREES / sha[:7]
    if not path.exists():
        _git("worktree", "add", "--detach", str(path), sha)
        (path / ".venv").symlink_to(REPO_ROOT / ".venv")
    return path


def run_tests(path: Path) -> dict:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-m",
            "not slow",
            "-p",
            "no:cacheprovider",
            "-rf",
            "--no-header",
        ],
        cwd=path,
        capture_output=True,
        text=True,
    )
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-300:]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|errors?|skipped|deselected)", tail)}
    failed = sorted(set(re.findall(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, re.M)))
    return {"returncode": proc.returncode, "summary": tail, "failed_tests": failed, **counts}


def score_clips(path: Path) -> dict:
    clips = sorted((SHARED / "videos").glob("*/*.mp4"))
    proc = subprocess.run(
        [sys.executable, "-m", "detector", "scan", "--json", *map(str, clips)],
        cwd=path,
        capture_output=True,
        text=True,
    )
    out = {}
    for line in proc.stdout.splitlines():
        row = json.loads(line)
        name = Path(row.get("path", "?")).name
        out[name] = {"verdict": row.get("verdict"), "p_fake": row.get("fake_probability")}
    return out or {"error": proc.stderr[-300:]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("first")
    ap.add_argument("last")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / ".cache" / "commits.json")
    args = ap.parse_args(argv)
    rows = json.loads(args.out.read_text()) if args.out.exists() else {}
    for sha in commits(args.first, args.last):
        if sha in rows:
            continue
        path = worktree(sha)
        rows[sha] = {
            "subject": _git("log", "-1", "--format=%s", sha)[:80],
            "tests": run_tests(path),
            "clips": score_clips(path),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))
        print(sha[:7], rows[sha]["tests"]["summary"], flush=True)
    previous = None
    for sha, row in rows.items():
        same = previous is not None and row["clips"] == previous
        print(
            f"{sha[:7]}  {row['tests']['summary'][:60]:<60}  clips {'same' if same else 'CHANGED' if previous else '-'}"
        )
        previous = row["clips"]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
