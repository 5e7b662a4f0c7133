"""Recording many intermediate values in one trial with Optuna (issue 9), the peer of
bench/src/bin/recording.rs for bench/run-recording.

One trial (study.ask), N calls of trial.report(value, step) for step = 1..N with the same curve
as recording.rs (bit for bit), then study.tell with the best reported value. The values are
generated into an array('d') before the timed part (8 bytes each, counted in rss_start_mib).
Prints one JSON line: {"path": "optuna-memory" | "optuna-sqlite", "evals": N, "wall_s": ...,
"peak_rss_mib": ..., "rss_start_mib": ..., "stored": ..., "best_step": ...}.

wall_s times the report loop and tell. peak_rss_mib is getrusage(RUSAGE_SELF).ru_maxrss at the
end: the peak over the whole process, imports included (Python cannot reset it); rss_start_mib is
the resident set just before the loop (/proc/self/status VmRSS), so the growth is the difference.
After the run the trial is read back (study.get_trials) and must hold N values with the
expected best step, or the script fails.

Note what is compared: trial.report is a call inside the process that trains; horizon instead
parses lines that another process wrote to a file.

usage: python optuna_recording.py --evals N [--storage memory|sqlite]   (needs optuna)
"""
import argparse
import array
import json
import logging
import math
import os
import resource
import tempfile
import time

import optuna

MASK = (1 << 64) - 1


def value_at(step, n):
    """recording.rs's value_at: splitmix64 noise on a decreasing exponential."""
    z = (step + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    z ^= z >> 31
    noise = (z >> 11) / float(1 << 53) - 0.5
    return 2.0 * math.exp(-3.0 * step / n) + 0.1 + 0.05 * noise


def rss_kib(field="VmRSS"):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--evals", type=int, default=100_000)
    parser.add_argument("--storage", choices=["memory", "sqlite"], default="memory")
    args = parser.parse_args()
    n = args.evals

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.logging.disable_default_handler()
    logging.getLogger("optuna").setLevel(logging.WARNING)

    values = array.array("d", (value_at(s, n) for s in range(1, n + 1)))
    best_step = min(range(n), key=lambda i: (values[i], i)) + 1

    with tempfile.TemporaryDirectory(prefix="optuna-recording-") as tmp:
        db = os.path.join(tmp, "optuna.db")
        storage = None if args.storage == "memory" else f"sqlite:///{db}"
        study = optuna.create_study(study_name="recording", storage=storage, direction="minimize")
        rss_start = rss_kib()

        started = time.perf_counter()
        trial = study.ask()
        for step in range(1, n + 1):
            trial.report(values[step - 1], step)
        study.tell(trial, min(values))
        wall_s = time.perf_counter() - started
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        rss_end = rss_kib()

        (stored_trial,) = study.get_trials(deepcopy=False)
        iv = stored_trial.intermediate_values
        stored = len(iv)
        got_best = min(iv.items(), key=lambda kv: (kv[1], kv[0]))[0] if iv else None
        if stored != n or got_best != best_step or any(iv[s] != values[s - 1] for s in range(1, n + 1)):
            raise SystemExit(f"expected {n} values with best step {best_step}, got {stored} with best {got_best}")
        db_bytes = sum(os.path.getsize(db + s) for s in ("", "-wal", "-journal") if os.path.exists(db + s))

    print(json.dumps({
        "path": f"optuna-{args.storage}",
        "evals": n,
        "wall_s": wall_s,
        "per_eval_us": wall_s * 1e6 / n,
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "rss_start_mib": round(rss_start / 1024, 1),
        "rss_end_mib": round(rss_end / 1024, 1),
        "stored": stored,
        "best_step": got_best,
        "expected_best_step": best_step,
        "db_bytes": db_bytes,
        "optuna": optuna.__version__,
    }))


if __name__ == "__main__":
    main()
