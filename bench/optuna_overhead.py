"""Orchestration overhead per trial of Optuna (issue 2), the reference for bench/run-overhead.

Optuna's QMCSampler (scrambled Halton, like horizon's default) on SQLite storage in a fresh temp
dir; the objective samples the same two parameters as bench/src/bin/overhead.rs, reports 10
intermediate values with trial.report(value, step) and returns the last. Prints one JSON line:
{"path": "optuna-inprocess", "trials": N, "wall_s": ..., "per_trial_ms": ..., ...}.
wall_s times study.optimize alone; setup_s (create_study) is reported beside it.

usage: python optuna_overhead.py [--trials N]   (needs optuna and scipy)
"""
import argparse
import json
import logging
import math
import os
import tempfile
import time
import warnings

import optuna

STEPS = 10


def loss(x, y, step):
    return (x - 2.0) ** 2 + (math.log(y) + 3.0) ** 2 + 1.0 / step


def objective(trial):
    x = trial.suggest_float("x", -10.0, 10.0)
    y = trial.suggest_float("y", 1e-3, 1.0, log=True)
    value = None
    for step in range(1, STEPS + 1):
        value = loss(x, y, step)
        trial.report(value, step)
    return value


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=2000)
    args = parser.parse_args()

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.logging.disable_default_handler()
    logging.getLogger("optuna").setLevel(logging.WARNING)
    # QMCSampler warns that it is experimental; keep the output to one JSON line.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    with tempfile.TemporaryDirectory(prefix="optuna-overhead-") as tmp:
        db = os.path.join(tmp, "optuna.db")
        setup = time.perf_counter()
        sampler = optuna.samplers.QMCSampler(qmc_type="halton", scramble=True, seed=0)
        study = optuna.create_study(
            study_name="overhead", storage=f"sqlite:///{db}", sampler=sampler, direction="minimize"
        )
        setup_s = time.perf_counter() - setup

        started = time.perf_counter()
        study.optimize(objective, n_trials=args.trials)
        wall_s = time.perf_counter() - started

        trials = study.get_trials(deepcopy=False)
        complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
        reported = sum(len(t.intermediate_values) for t in trials)
        if complete != args.trials or reported != args.trials * STEPS:
            raise SystemExit(f"expected {args.trials} complete trials with {STEPS} values each, "
                             f"got {complete} complete and {reported} values")
        db_bytes = sum(os.path.getsize(db + s) for s in ("", "-wal", "-shm") if os.path.exists(db + s))

    print(json.dumps({
        "path": "optuna-inprocess",
        "trials": args.trials,
        "jobs": 1,
        "wall_s": wall_s,
        "per_trial_ms": wall_s * 1e3 / args.trials,
        "setup_s": setup_s,
        "db_bytes": db_bytes,
        "optuna": optuna.__version__,
    }))


if __name__ == "__main__":
    main()
