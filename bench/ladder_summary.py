#!/usr/bin/env python3
"""Summarise ladder replays: median regret per method at compute points, and the compute each
method needs to reach random search's median regret at a given compute, as ratios.

Usage: ladder_summary.py [--baseline METHOD] [--grid 1000,2000,...] RUNS.jsonl [RUNS.jsonl ...]

Input: JSON lines from bench/src/bin/ladder_replay.rs and bench/optuna_ladder.py, one per
(method, seed): "improvements" = [[compute, regret], ...] where the best error so far improves
(regret in points of error against the best run in the data), "compute" = epochs used in all.
A method's key is its "method" field, with " (label)" when the line has a non-empty "label".

A method's regret after it stops is its final regret: compute it did not use cannot find
anything. Medians are over seeds. "Compute to reach" is the least compute at which the median
regret curve (a step function; evaluated at every compute where some seed improves) is at or
below the target. Standard library only.
"""

import bisect
import json
import statistics
import sys


def regret_at(improvements, c):
    """Regret after c epochs of compute: the last improvement at or before c (inf before any)."""
    computes = [p[0] for p in improvements]
    i = bisect.bisect_right(computes, c)
    return improvements[i - 1][1] if i else float("inf")


def main(argv):
    baseline = "random"
    grid = [500, 800, 1000, 2000, 4000, 8000, 16000, 24000]
    files = []
    it = iter(argv[1:])
    for a in it:
        if a == "--baseline":
            baseline = next(it)
        elif a == "--grid":
            grid = [int(x) for x in next(it).split(",")]
        else:
            files.append(a)
    by = {}
    order = []
    for f in files:
        for line in open(f):
            if not line.strip():
                continue
            r = json.loads(line)
            key = r["method"] + (" (%s)" % r["label"] if r.get("label") else "")
            if key not in by:
                by[key] = {}
                order.append(key)
            by[key][r["seed"]] = r
    if baseline not in by:
        sys.exit("no runs of the baseline %r (have: %s)" % (baseline, ", ".join(order)))
    seeds = sorted(by[baseline])
    for key in order:
        missing = set(seeds) - set(by[key])
        if missing:
            sys.exit("%s lacks seeds %s" % (key, sorted(missing)[:10]))

    def median_at(key, c):
        return statistics.median(regret_at(by[key][s]["improvements"], c) for s in seeds)

    def points(key):
        return sorted({p[0] for s in seeds for p in by[key][s]["improvements"]})

    def reach(key, target):
        for c in points(key):
            if median_at(key, c) <= target + 1e-12:
                return c
        return None

    def fmt(x):
        return "–" if x is None else ("%.2f" % x if x != float("inf") else "∞")

    print("Median regret (points of top-1 error above the best run in the data) over %d seeds, by compute (epochs):\n" % len(seeds))
    print(
        "| method | "
        + " | ".join("%s" % c for c in grid)
        + " | compute used (median) | regret at the end (median) | %s at that compute | top-rung runs (median) |" % baseline
    )
    print("|---|" + "---:|" * (len(grid) + 4))
    for key in order:
        comp = statistics.median(by[key][s]["compute"] for s in seeds)
        top = statistics.median(by[key][s].get("top", 0) for s in seeds)
        final = statistics.median(regret_at(by[key][s]["improvements"], by[key][s]["compute"]) for s in seeds)
        base_then = median_at(baseline, comp)
        cells = []
        for c in grid:
            m = median_at(key, c)
            b = median_at(baseline, c)
            cell = fmt(m)
            if key != baseline and m > b + 1e-12:
                cell = "**%s**" % cell  # worse than the baseline at equal compute
            cells.append(cell)
        end = fmt(final) if final <= base_then + 1e-12 or key == baseline else "**%s**" % fmt(final)
        print("| %s | %s | %d | %s | %s | %g |" % (key, " | ".join(cells), comp, end, fmt(base_then), top))
    print()
    print("Bold: worse than %s at equal compute. After its end a method's regret stays where it ended.\n" % baseline)
    targets = [c for c in grid if c >= 1000]
    print(
        "Compute (epochs) at which the median regret first reaches %s's median regret at C epochs; in brackets "
        "C / that compute, and the compute %s itself first reaches it at / that compute (the stricter ratio):\n"
        % (baseline, baseline)
    )
    print("| method | " + " | ".join("C = %d (regret %s)" % (c, fmt(median_at(baseline, c))) for c in targets) + " |")
    print("|---|" + "---:|" * len(targets))
    own = {c: reach(baseline, median_at(baseline, c)) for c in targets}
    for key in order:
        cells = []
        for c in targets:
            r = reach(key, median_at(baseline, c))
            cells.append("not reached" if r is None else "%d (%.2f× / %.2f×)" % (r, c / r, own[c] / r))
        print("| %s | %s |" % (key, " | ".join(cells)))
    measured = [k for k in order if any("rank_correlation" in r for s in seeds for r in by[k][s].get("rules") or [])]
    if measured:
        print()
        print("What the rank-correlation guard measured at the end (rules of rungs 0, 1, ... below the top; Spearman over the measured pairs):\n")
        print("| method | rules (seeds) | rank correlation by rung: median (10th–90th percentile, seeds measured) |")
        print("|---|---|---|")
        for key in measured:
            patterns = {}
            rhos = {}
            for s in seeds:
                rules = by[key][s]["rules"]
                p = ", ".join(r["rule"].replace("_", " ") for r in rules)
                patterns[p] = patterns.get(p, 0) + 1
                for k, r in enumerate(rules):
                    if "rank_correlation" in r:
                        rhos.setdefault(k, []).append(r["rank_correlation"])
            pats = "; ".join("%s (%d)" % (p, n) for p, n in sorted(patterns.items(), key=lambda x: -x[1]))
            cells = []
            for k in sorted(rhos):
                v = sorted(rhos[k])
                cells.append("rung %d: %.2f (%.2f–%.2f, %d)" % (k, statistics.median(v), v[len(v) // 10], v[(len(v) * 9) // 10], len(v)))
            print("| %s | %s | %s |" % (key, pats, "; ".join(cells)))


if __name__ == "__main__":
    main(sys.argv)
