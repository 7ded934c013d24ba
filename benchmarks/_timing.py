"""What every benchmark shares: time two variants alternately in one run, print medians and A/B.

Timing goals are ratios measured in one run, not absolute times: the machine's load changes from
minute to minute (other work shares its cores), so A and B run in turns (A B, then B A, so neither
always goes first) and each is summed up by its median, which ignores the odd slow round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from esremote.errors import EsRemoteError


@dataclass
class Variant:
    """One side of a comparison: the timed work, and untimed clean-up after each run."""

    name: str
    run: Callable[[], object]
    after: Callable[[], object] | None = None
    times: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def arguments(doc: str | None, *, rounds: int, warmup: int = 1) -> argparse.ArgumentParser:
    """A parser with the options every benchmark takes; scripts add their own."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=rounds, help=f"timed rounds (default {rounds})")
    parser.add_argument("--warmup", type=int, default=warmup, help=f"untimed rounds first (default {warmup})")
    return parser


def alternate(a: Variant, b: Variant, *, rounds: int, warmup: int = 0) -> None:
    """Run A and B in turns, `warmup` untimed rounds then `rounds` timed ones (into `.times`)."""
    if rounds < 1 or warmup < 0:
        sys.exit("--rounds must be at least 1 and --warmup at least 0")
    print(machine(), flush=True)
    for number in range(warmup + rounds):
        timed = number >= warmup
        for variant in (a, b) if number % 2 == 0 else (b, a):
            elapsed = _timed(variant)
            if timed:
                variant.times.append(elapsed)
        if timed:
            print(f"  round {number - warmup + 1}: {a.name} {seconds(a.times[-1])}, "
                  f"{b.name} {seconds(b.times[-1])} (A/B {a.times[-1] / b.times[-1]:.3g})", flush=True)


def _timed(variant: Variant) -> float:
    start = time.perf_counter()
    try:
        variant.run()
        return time.perf_counter() - start
    finally:
        if variant.after is not None:
            variant.after()


def report(a: Variant, b: Variant, *, goal: str, met: bool | None) -> float:
    """Print both medians, the ratio A/B and the goal (with a verdict unless `met` is None)."""
    ratio = a.median / b.median
    for label, variant in (("A", a), ("B", b)):
        print(f"{label}: {variant.name}: median {seconds(variant.median)} over {len(variant.times)} rounds "
              f"(min {seconds(min(variant.times))}, max {seconds(max(variant.times))})")
    print(f"A/B = {ratio:.3g}   (B/A = {1 / ratio:.3g})")
    verdict = "" if met is None else f": {'met' if met else 'NOT met'}"
    print(f"goal: {goal}{verdict}")
    return ratio


def machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
            f"load average {load}")


def seconds(value: float) -> str:
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def run(main: Callable[[], None]) -> None:
    """Run a benchmark's main: an esremote error or Ctrl-C ends it with one line, no traceback."""
    try:
        main()
    except EsRemoteError as exc:
        sys.exit(f"benchmark failed: {exc}")
    except KeyboardInterrupt:
        sys.exit("benchmark interrupted")
