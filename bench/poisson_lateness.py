"""How late does the Poisson scenario's harness start a query, and what does it add to the
latency? A sleep alone wakes tens to hundreds of microseconds late, and that lateness was
billed to the device; the harness now sleeps to SPIN_NS before an arrival and spins the rest.

A busy-wait of --service-ms stands in for the device (so the service time is known), at
--rate arrivals per second (4 % load by default); each round runs the scenario with the
spin (as shipped) and without it (SPIN_NS = 0: sleep only), alternating. Printed per mode:
latency p50 from the scheduled arrival, the service p50, their difference, and the
harness's own lateness p50/p99 (what it reports in scenario_report).

Usage: .venv/bin/python bench/poisson_lateness.py [--rate 200] [--service-ms 0.2]
       [--queries 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

from agents.measurement import scenarios
from agents.measurement.timing import StoppingRule


def busy(ms: float):  # noqa: ANN201
    def run() -> None:
        end = time.perf_counter() + ms / 1000
        while time.perf_counter() < end:
            pass

    return run


def one(rate: float, service_ms: float, queries: int, spin_ns: int) -> dict:
    scenarios.SPIN_NS = spin_ns
    rule = StoppingRule(0, queries, 0, 600, queries)
    outcome = scenarios.run("poisson", busy(service_ms), rule, {"rate": rate, "seed": 1})
    report = outcome.report
    latency_p50 = statistics.median(outcome.samples_ns) / 1e6
    return {
        "latency_p50_ms": latency_p50,
        "service_p50_ms": report["service_p50_ms"],
        "added_ms": latency_p50 - report["service_p50_ms"],
        "late_p50_us": report["harness_late_p50_us"],
        "late_p99_us": report["harness_late_p99_us"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--service-ms", type=float, default=0.2)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    shipped = scenarios.SPIN_NS
    modes = {f"sleep + spin ({shipped / 1000:.0f} us)": shipped, "sleep only": 0}
    figures: dict[str, list[dict]] = {name: [] for name in modes}
    for _ in range(args.rounds):
        for name, spin_ns in modes.items():
            figures[name].append(one(args.rate, args.service_ms, args.queries, spin_ns))
    scenarios.SPIN_NS = shipped
    load = args.rate * args.service_ms / 1000
    print(f"{args.rate:g}/s arrivals, {args.service_ms} ms service ({load:.0%} load), "
          f"{args.queries} queries, median of {args.rounds} rounds")  # fmt: skip
    print("mode                    latency p50  service p50  added     late p50   late p99")
    for name, rounds in figures.items():
        pick = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        print(
            f"{name:22}  {pick['latency_p50_ms']:8.4f} ms  {pick['service_p50_ms']:8.4f} ms  "
            f"{pick['added_ms'] * 1000:+6.1f} us  {pick['late_p50_us']:7.1f} us  "
            f"{pick['late_p99_us']:7.1f} us"
        )


if __name__ == "__main__":
    main()
