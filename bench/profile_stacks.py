"""Read py-spy's collapsed stacks (``--format raw``) and print where the CPU went: top functions by own
samples and by inclusive samples, and the share of top-level groups you name.

Why: the flame graphs of a 200-node run are too wide to read in a terminal; these tables are what
docs/performance.md quotes.

    .venv/bin/python bench/profile_stacks.py DIR/devcloud.txt [--top 25] [--match paramiko --match json]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def read_stacks(path: Path) -> list[tuple[list[str], int]]:
    """(frames from the root down, samples) per line of a collapsed-stack file."""
    stacks = []
    for line in path.read_text().splitlines():
        head, _, count = line.rpartition(" ")
        if head and count.isdigit():
            stacks.append((head.split(";"), int(count)))
    return stacks


def label(frame: str) -> str:
    """``func (path/to/module.py:12)`` -> ``func (module.py)``: lines apart would split one function."""
    m = _FRAME.match(frame)
    if not m:
        return frame
    file = m.group("file")
    short = "/".join(file.split("/")[-2:]) if file else ""
    return f"{m.group('func')} ({short})"


def tables(stacks: list[tuple[list[str], int]]) -> tuple[int, Counter, Counter]:
    total, own, inclusive = 0, Counter(), Counter()
    for frames, n in stacks:
        total += n
        labels = [label(f) for f in frames]
        if labels:
            own[labels[-1]] += n
        for lab in set(labels):
            inclusive[lab] += n
    return total, own, inclusive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", action="append", default=[], help="share of samples with a frame containing this")
    args = parser.parse_args()
    for path in args.files:
        stacks = read_stacks(path)
        total, own, inclusive = tables(stacks)
        print(f"== {path}: {total} samples")
        print("-- own (self) samples")
        for lab, n in own.most_common(args.top):
            print(f"{100 * n / total:5.1f}%  {lab}")
        print("-- inclusive samples")
        for lab, n in inclusive.most_common(args.top):
            print(f"{100 * n / total:5.1f}%  {lab}")
        for word in args.match:
            n = sum(c for frames, c in stacks if any(word in f for f in frames))
            print(f"match {word!r}: {100 * n / max(total, 1):.1f}%")


if __name__ == "__main__":
    main()
