"""Bounce parser benchmark and accuracy on the bounce corpus.

    .venv/bin/python bench/bench_bounces.py [CORPUS] [--show-misses]

CORPUS defaults to $OKURU_BOUNCE_CORPUS, else ../shared/bounce-corpus relative to the repository
root. Every message in ``emails/`` is parsed (exceptions counted, time per message measured); on
``labels-dev.json`` a file agrees when the number of failed recipients, their enhanced status codes and their hard flags
all agree (a 5.0.9NN label is the labelling tool's placeholder for "no code": only its first digit
counts; rows labelled delivered or feedback are not failures). Targets: no exception,
under 50 ms per message, agreement >= 95 %.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from okuru.bounces.parsing import parse  # noqa: E402

NOT_FAILURES = {"delivered", "feedback"}


def expected_failures(rows: list) -> list[tuple[str, bool]]:
    return [(row[0], bool(row[3])) for row in rows if row[2] not in NOT_FAILURES]


def status_agrees(label: str, found: str) -> bool:
    parts = label.split(".")
    if len(parts) == 3 and parts[1] == "0" and len(parts[2]) == 3 and parts[2].startswith("9"):
        return found[:1] == label[:1]
    return found == label


def agrees(rows: list, failures: list[dict]) -> bool:
    expected = expected_failures(rows)
    if len(expected) != len(failures):
        return False
    found = [(f["status"], f["hard"]) for f in failures]
    # Recipients are not in the labels; match each expected row to some found one.
    remaining = list(found)
    for status, hard in expected:
        match = next(
            (i for i, (s, h) in enumerate(remaining) if status_agrees(status, s) and h == hard),
            None,
        )
        if match is None:
            return False
        remaining.pop(match)
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "corpus",
        nargs="?",
        default=os.environ.get("OKURU_BOUNCE_CORPUS")
        or str(ROOT.parent / "shared" / "bounce-corpus"),
    )
    ap.add_argument("--show-misses", action="store_true", help="print each disagreeing file")
    args = ap.parse_args()
    corpus = Path(args.corpus)
    files = sorted((corpus / "emails").glob("*.eml"))
    if not files:
        sys.exit(f"No messages under {corpus / 'emails'}")
    labels = json.loads((corpus / "labels-dev.json").read_text())

    times: list[float] = []
    results: dict[str, list[dict]] = {}
    delay_only: set[str] = set()
    exceptions = 0
    for path in files:
        raw = path.read_bytes()
        t0 = time.perf_counter()
        try:
            report = parse(raw)
        except Exception as e:
            exceptions += 1
            print(f"EXCEPTION {path.name}: {e!r}")
            continue
        finally:
            times.append(time.perf_counter() - t0)
        results[path.name] = [f.as_dict() for f in report.failures]
        if report.delayed and not report.failures:
            delay_only.add(path.name)

    agreeing = 0
    delays_labelled_failed = 0
    for name, rows in sorted(labels.items()):
        found = results.get(name, [])
        if agrees(rows, found):
            agreeing += 1
        elif name in delay_only and expected_failures(rows):
            # The rule: a message that reports only delays has no failures.
            delays_labelled_failed += 1
        elif args.show_misses:
            got = [(f["status"], f["reply_code"], f["kind"], int(f["hard"])) for f in found]
            print(f"MISS {name}\n  want {[tuple(r) for r in rows]}\n  got  {got}")

    total = sum(times)
    print(f"files: {len(files)}")
    print(f"exceptions: {exceptions}")
    print(f"max ms per message: {max(times) * 1000:.2f}")
    print(f"median ms per message: {statistics.median(times) * 1000:.2f}")
    print(f"agreement on labels-dev: {agreeing}/{len(labels)} = {agreeing / len(labels):.3f}")
    print(f"labelled files that report only delays (counted as misses): {delays_labelled_failed}")
    print(f"messages per second: {len(files) / total:.0f}")


if __name__ == "__main__":
    main()
