#!/usr/bin/env python3
"""Optuna's SuccessiveHalvingPruner and HyperbandPruner replayed over recorded learning curves,
with the same simulated workers, orders and compute accounting as bench/src/bin/ladder_replay.rs.
Prints one JSON line per (method, seed) in the same shape.

Usage: optuna_ladder.py --data alexnet_tuning.results.jsonl.gz --orders orders.jsonl
           [--workers 4] [--eta 3] [--min-resource 1] [--max-resource 100]
           [--pruners sha,hyperband] [--divergence nan|stop] [--seeds N]

The data: OPDA's AlexNet tuning runs, "AlexNet Hyperparameter Tuning Data" (c) 2025 Nicholas
Lourie, CC BY-SA 4.0, from nicholaslourie/opda data/alexnet (see
crates/horizon-analysis/tests/data/opda-alexnet/ATTRIBUTION.md). A run's error after epoch e is
1 - top_1 of its curve's e-th point; a diverged run's curve stops where its loss became NaN, so
its loss is NaN in epoch len(curve) + 1.

Seed s's order of the runs is read from --orders (written by ladder_replay, so both sides replay
the same orders); the n-th trial Optuna asks for is the n-th run of that order. Optuna only
decides pruning here (its sampler is not used: the configurations are the recorded runs).

The workers: `study.ask()` / `trial.report()` / `trial.should_prune()` / `study.tell()` with W
trials open at once. Time advances one epoch at a time; in each, every busy worker (worker 0
first) trains one epoch of its trial: one epoch of compute, and one observation (that epoch's
error), reported at step = epoch; then `should_prune()`: a pruned trial ends there (told
PRUNED). A trial that reaches its schedule's last epoch is told COMPLETE with its best error.
Idle workers then ask for the next trial, in order, while fewer than all runs were started.
Pruners never restart a trial: a trial pruned after e epochs cost e epochs.

Divergence: with --divergence nan (default: what an objective that reports its metric gets) a
diverged run reports NaN from the epoch its loss became NaN on (Optuna's pruners prune a NaN
value at the next rung; a run that reaches its last epoch is told FAIL); with --divergence stop
the objective stops the trial in that epoch (as if it raised TrialPruned on a NaN loss), the
accounting horizon's ladder gets.

Regret at compute c: best error observed in the first c epochs of compute minus the best error in
the data, in points (x100); each line lists where it improves, [compute, regret].
"""

import argparse
import gzip
import json
import math
import sys
import time

import optuna


def load(path):
    opener = gzip.open if path.endswith(".gz") else open
    runs = []
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            errors = [1.0 - p["top_1"] for p in r["learning_curve"]]
            diverges_at = len(errors) + 1 if r["nan_train_loss"] else None
            runs.append((int(r["epochs"]), errors, diverges_at))
    return runs


def make_pruner(name, args):
    if name == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=args.min_resource, reduction_factor=args.eta, min_early_stopping_rate=0
        )
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=args.min_resource, max_resource=args.max_resource, reduction_factor=args.eta
        )
    raise SystemExit("unknown pruner %r" % name)


def simulate(runs, order, pruner_name, args, best_in_data, seed):
    study = optuna.create_study(
        study_name="replay-%s-%d" % (pruner_name, seed),
        direction="minimize",
        sampler=optuna.samplers.RandomSampler(seed=seed),
        pruner=make_pruner(pruner_name, args),
    )
    slots = [None] * args.workers  # [trial, run index, next epoch, best so far]
    launched = 0
    compute = wall = 0
    best = math.inf
    improvements = []
    top = 0  # trials that reached the top resource or completed
    pruned = 0
    while True:
        for w in range(args.workers):
            if slots[w] is None and launched < len(order):
                slots[w] = [study.ask(), order[launched], 1, math.inf]
                launched += 1
        if all(s is None for s in slots):
            break
        wall += 1
        for w in range(args.workers):
            s = slots[w]
            if s is None:
                continue
            trial, run, epoch, run_best = s
            epochs, errors, diverges_at = runs[run]
            compute += 1
            s[2] = epoch + 1
            if diverges_at is not None and epoch >= diverges_at:
                if args.divergence == "stop":
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    pruned += 1
                    slots[w] = None
                    continue
                value = float("nan")
            else:
                value = errors[epoch - 1]
                if value < best:
                    best = value
                    improvements.append([compute, 100.0 * (value - best_in_data)])
                s[3] = min(run_best, value)
            trial.report(value, epoch)
            if epoch >= epochs:
                if epoch >= args.max_resource or diverges_at is None:
                    top += 1
                if math.isfinite(s[3]) and diverges_at is None:
                    study.tell(trial, s[3])
                else:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                slots[w] = None
            elif trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                pruned += 1
                slots[w] = None
    return {
        "method": "optuna-" + pruner_name + ("" if args.divergence == "nan" else "-stop"),
        "label": "",
        "seed": seed,
        "workers": args.workers,
        "eta": args.eta,
        "improvements": improvements,
        "compute": compute,
        "wall": wall,
        "launched": launched,
        "top": top,
        "pruned": pruned,
        "best_in_data": best_in_data,
        "optuna": optuna.__version__,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--orders", required=True)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--eta", type=int, default=3)
    p.add_argument("--min-resource", type=int, default=1)
    p.add_argument("--max-resource", type=int, default=100)
    p.add_argument("--pruners", default="sha,hyperband")
    p.add_argument("--divergence", choices=["nan", "stop"], default="nan")
    p.add_argument("--seeds", type=int, default=None, help="only the first N seeds of --orders")
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    runs = load(args.data)
    best_in_data = min(e for _, errors, _ in runs for e in errors)
    orders = [json.loads(l) for l in open(args.orders) if l.strip()]
    if args.seeds is not None:
        orders = orders[: args.seeds]
    for o in orders:
        if sorted(o["order"]) != list(range(len(runs))):
            raise SystemExit("seed %d's order is not a permutation of the %d runs" % (o["seed"], len(runs)))
        for name in args.pruners.split(","):
            t = time.perf_counter()
            line = simulate(runs, o["order"], name, args, best_in_data, o["seed"])
            line["seconds"] = round(time.perf_counter() - t, 3)
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    sys.exit(main())
