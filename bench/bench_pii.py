"""Benchmark the PII scrubber: `python bench/bench_pii.py [--repeats 3]`.

Measures `scrub_pii` in this one process (best of `--repeats`, CPU time):
  - throughput on prose with a few e-mails, phones, cards, IBANs and IPs (100 kB and 1 MB);
  - throughput on adversarial inputs, the slowest of several families built to make a
    backtracking scanner blow up (62.5 kB and 500 kB), and how the time grows for 8x the input
    (linear: ~8; quadratic: ~64);
  - the e-mail pattern this scrubber replaced, on "!" * 8000 (it took ~1 s), as the baseline.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bench._report import record  # noqa: E402
from datagen.hostile import PII_ADVERSARIAL  # noqa: E402
from mmops.data.pii import scrub_pii  # noqa: E402

BENCH = "pii"

# The e-mail pattern before issue 13: nested unbounded quantifiers, quadratic on a long atext run.
OLD_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![\w-])"
)

WORDS = ("the a of to and in is it that for on with as was at by this be from or have an they which one you "
         "were her all she there would their we him been has when who will more no if out so said what up its "
         "about into than them can only other new some could time these two may then do first any my now such "
         "like our over even most made after also did many before must through back years where much your way "
         "well down should because each just those people order 42 3.5 2024 7 15:30").split()
PII = ("jane.doe@example.org", "+44 20 7946 0958", "(555) 123-4567", "4111 1111 1111 1111",
       "GB82 WEST 1234 5698 7654 32", "192.168.1.20", "2001:db8::8a2e:370:7334")

ADVERSARIAL: dict[str, Callable[[int], str]] = PII_ADVERSARIAL


def prose(n: int, seed: int = 0, pii_rate: float = 0.01) -> str:
    """About n characters of word salad; one token in 1/pii_rate is PII."""
    rng = random.Random(seed)
    out, size = [], 0
    while size < n:
        word = rng.choice(PII) if rng.random() < pii_rate else rng.choice(WORDS)
        out.append(word)
        size += len(word) + 1
    return " ".join(out)[:n]


def cpu_seconds(fn: Callable[[str], object], text: str, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn(text)
        best = min(best, time.process_time() - start)
    return max(best, 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    for size in (100_000, 1_000_000):
        t = cpu_seconds(scrub_pii, prose(size), args.repeats)
        record(BENCH, f"prose, {size // 1000} kB", size / t / 1e6, "MB/s", "", "1% of tokens PII, CPU time")

    small, factor = 62_500, 8
    times: dict[str, tuple[float, float]] = {}
    for name, make in ADVERSARIAL.items():
        times[name] = (cpu_seconds(scrub_pii, make(small) + " 1@a:", args.repeats),
                       cpu_seconds(scrub_pii, make(small * factor) + " 1@a:", args.repeats))
        print(f"  {name:16s} {times[name][0] * 1e3:8.1f} ms -> {times[name][1] * 1e3:8.1f} ms "
              f"({times[name][1] / times[name][0]:.1f}x)")
    for i, n in enumerate((small, small * factor)):
        name = max(times, key=lambda k: times[k][i])
        record(BENCH, f"adversarial, {n / 1000:g} kB, slowest family", n / times[name][i] / 1e6, "MB/s", "",
               f"'{name}': {times[name][i] * 1e3:.0f} ms")
    name = max(times, key=lambda k: times[k][1])
    record(BENCH, f"adversarial, time for {factor}x the input", times[name][1] / times[name][0], "x",
           "< 20 (linear ~8, quadratic ~64)", f"the slowest family, '{name}'")

    text = "!" * 8000
    old = cpu_seconds(lambda s: OLD_EMAIL.sub("[EMAIL]", s), text, 1)
    new = cpu_seconds(scrub_pii, text + " 1@a:", args.repeats)
    record(BENCH, "'!' x 8000: old e-mail pattern ÷ new scrubber", old / new, "x", "",
           f"old {old * 1e3:.0f} ms, new {new * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
