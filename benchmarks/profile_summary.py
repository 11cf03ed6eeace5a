"""Where the server's time went: a summary of ``py-spy record --format raw`` output.

    python benchmarks/profile_summary.py PROFILE.txt [--top 30]

Each line of the input is one sampled stack (``frame;frame;… count``, outermost first). Printed:
the share of samples per thread role (the trio loop, store writer, projections, other worker
threads), then the functions with the largest inclusive share (on the stack) and self share (at the
top of the stack). Frames are named ``function (file)``; line numbers are dropped so a function's
samples add up.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")

ROLES = (
    ("trio loop", "unrolled_run"),
    ("store writer thread", "append_encoded"),
    ("projections thread", "ProjectionRunner"),
    ("other worker threads", "WorkerThread"),
)


def frame_name(frame: str) -> str:
    match = _FRAME.match(frame)
    return f"{match['name']} ({match['file']})" if match else frame


def role_of(stack: str) -> str:
    for role, marker in ROLES:
        if marker in stack:
            return role
    return "other"


def summarize(lines: list[str], top: int) -> str:
    total = 0
    roles: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in lines:
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        roles[role_of(stack)] += count
        frames = [frame_name(frame) for frame in stack.split(";")]
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if not total:
        return "no samples"
    out = [f"{total:,} samples (active threads only)", "by thread:"]
    out += [f"  {count / total:6.1%}  {role}" for role, count in roles.most_common()]
    out.append(f"top {top} inclusive (on the stack):")
    out += [f"  {count / total:6.1%}  {name}" for name, count in inclusive.most_common(top)]
    out.append(f"top {top} self (running):")
    out += [f"  {count / total:6.1%}  {name}" for name, count in own.most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    print(summarize(Path(args.profile).read_text().splitlines(), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
