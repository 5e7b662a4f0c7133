"""Summary tables of bench/run-recording's raw runs (runs.jsonl), in markdown.

usage: python3 bench/recording_summary.py RUNS_JSONL ROUNDS AFTER_REV BEFORE_REV
"""
import json, statistics, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
runs = int(sys.argv[2])
after_rev, before_rev = sys.argv[3], sys.argv[4]
by = {}
for r in rows:
    by.setdefault((r["variant"], r["result"]["evals"]), []).append(r["result"])

labels = {
    "after": f"horizon after ({after_rev})",
    "before": f"horizon before ({before_rev})",
    "optuna-memory": "Optuna `trial.report`, InMemoryStorage (in-process call)",
    "optuna-sqlite": "Optuna `trial.report`, SQLite storage (in-process call)",
}

def fmt_s(rs):
    if any(r.get("capped") for r in rs):
        return f"> {rs[0]['wall_s']:.0f}", "", ""
    w = [r["wall_s"] for r in rs]
    return f"{statistics.median(w):.3f}", f"{min(w):.3f}–{max(w):.3f}", f"{statistics.median(w) * 1e6 / rs[0]['evals']:.2f}"

def med(rs, k):
    v = [r[k] for r in rs if r.get(k) is not None]
    return statistics.median(v) if v else None

print(f"Medians of the rounds run ({runs} planned; n = runs behind each median).\n")
print("| variant | evaluations | n | wall s (median) | min–max | µs per evaluation | after the trainer s | peak RSS MiB | RSS at start MiB | best step ok | values read 1 ULP off |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
for variant in ["after", "before", "optuna-memory", "optuna-sqlite"]:
    for (v, n), rs in sorted(by.items(), key=lambda kv: kv[0][1]):
        if v != variant:
            continue
        wall, spread, per = fmt_s(rs)
        capped = any(r.get("capped") for r in rs)
        after = med(rs, "after_trainer_s")
        peak = med(rs, "peak_rss_mib")
        start = med(rs, "rss_start_mib")
        off = med(rs, "inexact")
        inexact = "" if off is None else f"{off:,.0f}"
        ok = "" if capped else ("yes" if all(r.get("best_step") == r.get("expected_best_step") for r in rs) else "NO")
        print(f"| {labels[v]} | {n:,} | {len(rs)} | {wall} | {spread} | {per} | "
              f"{'' if after is None else f'{after:.2f}'} | {'' if peak is None else ('≥ ' if capped else '') + f'{peak:.1f}'} | "
              f"{'' if start is None else f'{start:.1f}'} | {ok} | {inexact} |")

print("\nRatios, same size, same run (medians): before ÷ after, Optuna ÷ after\n")
print("| evaluations | before ÷ after | Optuna memory ÷ after | Optuna SQLite ÷ after (per evaluation) |")
print("|---:|---:|---:|---:|")
for n in sorted({n for (_, n) in by}):
    a = by.get(("after", n))
    if not a:
        continue
    am = statistics.median(r["wall_s"] for r in a)
    cells = []
    for v in ["before", "optuna-memory"]:
        rs = by.get((v, n))
        if not rs:
            cells.append("")
        elif any(r.get("capped") for r in rs):
            cells.append(f"> {rs[0]['wall_s'] / am:.0f}×")
        else:
            cells.append(f"{statistics.median(r['wall_s'] for r in rs) / am:.1f}×")
    sq = [rs for (v, m), rs in by.items() if v == "optuna-sqlite"]
    if sq:
        per_sq = statistics.median(r["per_eval_us"] for r in sq[0])
        cells.append(f"{per_sq / (am * 1e6 / n):.0f}× (at {sq[0][0]['evals']:,})")
    else:
        cells.append("")
    print(f"| {n:,} | " + " | ".join(cells) + " |")

print("\nWhere horizon's time goes (`--floors`, timed alone after each run; medians): parsing every line with"
      " `protocol::parse_line`, storing the N points with `append_metrics` (one call per 4 MiB of lines) into a fresh"
      " database; the rest is the recorder's own work per value, the file reads, and the attempt around them\n")
print("| variant | evaluations | wall s | parse alone s | store alone s | rest s | rest µs per evaluation |")
print("|---|---:|---:|---:|---:|---:|---:|")
for variant in ["after", "before"]:
    for (v, n), rs in sorted(by.items(), key=lambda kv: kv[0][1]):
        if v != variant or any(r.get("capped") for r in rs) or med(rs, "floor_parse_s") is None:
            continue
        w, p, st = med(rs, "wall_s"), med(rs, "floor_parse_s"), med(rs, "floor_store_s")
        print(f"| {labels[v]} | {n:,} | {w:.3f} | {p:.3f} | {st:.3f} | {w - p - st:.3f} | {(w - p - st) * 1e6 / n:.2f} |")

stops = [(v, n, rs) for (v, n), rs in by.items() if v.endswith("-stop")]
if stops:
    print("\nStop latency: Control::Terminate (what SIGTERM does) sent when the trainer has written everything; kill_grace = 1s\n")
    print("| variant | evaluations | n | stop → Worker::run returns, s (median) | min–max | values stored when stopped (median) | trial state |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for v, n, rs in sorted(stops):
        if any(r.get("capped") for r in rs):
            print(f"| {labels[v[:-5]]} | {n:,} | {len(rs)} | > {rs[0]['wall_s']:.0f} (run capped) | | | |")
            continue
        s = [r["stop_s"] for r in rs]
        print(f"| {labels[v[:-5]]} | {n:,} | {len(rs)} | {statistics.median(s):.2f} | {min(s):.2f}–{max(s):.2f} | "
              f"{statistics.median(r['stored'] for r in rs):,.0f} | {', '.join(sorted({r['state'] for r in rs}))} |")
