#!/usr/bin/env python3
"""Softmax (multinomial logistic) regression trained with minibatch SGD with momentum.

Standard library only, so it runs on any machine with Python >= 3.8. It is horizon's example
trainer (`examples/logreg.toml`) and shows every part of trial protocol v1 (docs/protocol.md):

* parameters from the command line (`--learning-rate=0.05 ...`, filled in by horizon's template);
  the step budget, evaluation interval, seed and trial directory from horizon_report.trial();
* every eval_every steps and at the last step it reports train/loss, train/error and train/lr
  (over the full training set) and valid/loss, valid/error (over the validation set);
* checkpoints (JSON: weights, velocity, step, batch order and RNG state) at multiples of
  HORIZON_CHECKPOINT_EVERY and when SIGTERM arrives, announced to horizon; HORIZON_RESUME_FROM
  resumes exactly: the continued run reports what an uninterrupted one would;
* divergence: a linear model's loss cannot overflow (its gradients are bounded), so a learning
  rate far too large makes the loss huge, not NaN. This trainer calls a run diverged when the
  training loss at an evaluation exceeds --max-loss (default: ten times the loss of guessing
  uniformly, 10 * ln 4 = 13.9), or when a minibatch loss is not finite or an arithmetic error
  occurs: it reports train/loss = "nan" at that step, which horizon records as a diverged
  trial, and stops.

The data is fixed (DATA_SEED) so every trial sees the same problem: 4 overlapping Gaussian
classes in 16 features (8 informative, 4 correlated copies of them, 4 pure noise) with 10% of
the labels drawn at random, 2,000 training and 1,000 validation points.

Run it directly to debug: `python3 train_logreg.py --learning-rate=0.05 --momentum=0.9`.
"""

import argparse
import json
import math
import os
import random
import sys
from math import exp, log
from operator import mul

import horizon_report

DATA_SEED = 20240611
CLASSES, FEATURES, INFORMATIVE, CORRELATED = 4, 16, 8, 4
N_TRAIN, N_VALID, LABEL_NOISE = 2000, 1000, 0.1


def make_data():
    """(X_train, y_train, X_valid, y_valid): lists of feature lists and of class indices."""
    r = random.Random(DATA_SEED)
    means = [[r.gauss(0.0, 1.0) for _ in range(INFORMATIVE)] for _ in range(CLASSES)]
    xs, ys = [], []
    for _ in range(N_TRAIN + N_VALID):
        y = r.randrange(CLASSES)
        x = [m + r.gauss(0.0, 1.0) for m in means[y]]
        x += [0.9 * x[j] + r.gauss(0.0, 0.3) for j in range(CORRELATED)]
        x += [r.gauss(0.0, 1.0) for _ in range(FEATURES - INFORMATIVE - CORRELATED)]
        if r.random() < LABEL_NOISE:
            y = r.randrange(CLASSES)
        xs.append(x)
        ys.append(y)
    return xs[:N_TRAIN], ys[:N_TRAIN], xs[N_TRAIN:], ys[N_TRAIN:]


def evaluate(W, b, X, Y):
    """Mean cross-entropy and error rate of the model (W, b) on (X, Y)."""
    total, wrong = 0.0, 0
    for x, y in zip(X, Y):
        z = [sum(map(mul, w, x)) + bk for w, bk in zip(W, b)]
        m = max(z)
        s = 0.0
        for v in z:
            s += exp(v - m)
        total += log(s) + m - z[y]
        wrong += z.index(m) != y
    return total / len(X), wrong / len(X)


def sgd_step(st, X, Y, batch, lr, mu, wd):
    """One SGD-with-momentum step on the examples `batch`; returns their mean loss.
    v = mu * v + grad + wd * w;  w -= lr * v  (no weight decay on the biases)."""
    W, b, V, vb = st["W"], st["b"], st["V"], st["vb"]
    rows = []  # d loss / d logits, one row per example
    loss = 0.0
    for j in batch:
        x = X[j]
        z = [sum(map(mul, w, x)) + bk for w, bk in zip(W, b)]
        m = max(z)
        e = [exp(v - m) for v in z]
        s = sum(e)
        y = Y[j]
        loss += log(s) + m - z[y]
        inv = 1.0 / s
        g = [ek * inv for ek in e]
        g[y] -= 1.0
        rows.append(g)
    cols = list(zip(*[X[j] for j in batch]))  # the batch, feature by feature
    scale = 1.0 / len(batch)
    for k, ck in enumerate(zip(*rows)):
        w = W[k]
        v = [mu * vj + sum(map(mul, ck, col)) * scale + wd * wj for vj, col, wj in zip(V[k], cols, w)]
        V[k] = v
        W[k] = [wj - lr * vj for wj, vj in zip(w, v)]
        vb[k] = mu * vb[k] + sum(ck) * scale
        b[k] -= lr * vb[k]
    return loss * scale


def learning_rate(args, step, total):
    """The learning rate for `step` (1-based): constant, or cosine decay to zero."""
    if args.lr_schedule == "cosine":
        return args.learning_rate * 0.5 * (1.0 + math.cos(math.pi * (step - 1) / total))
    return args.learning_rate


def save_checkpoint(ctx, st):
    """Write st to <trial_dir>/ckpt-<step>.json (atomically) and announce it."""
    name = "ckpt-%d.json" % st["step"]
    tmp = ctx.trial_dir / (name + ".tmp")
    state = dict(st, rng=st["rng"].getstate())
    with open(tmp, "w") as f:
        json.dump(state, f)  # floats round-trip exactly through repr
    os.replace(tmp, ctx.trial_dir / name)
    ctx.checkpoint_announce(st["step"], name)


def load_checkpoint(path):
    with open(path) as f:
        st = json.load(f)
    version, internal, gauss_next = st["rng"]
    st["rng"] = random.Random()
    st["rng"].setstate((version, tuple(internal), gauss_next))
    return st


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--learning-rate", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant")
    p.add_argument("--max-loss", type=float, default=10 * math.log(CLASSES),
                   help="a training loss above this counts as divergence (0: only NaN/inf)")
    g = p.add_argument_group("standalone runs (horizon sets these through the environment)")
    g.add_argument("--max-train-steps", type=int, default=600)
    g.add_argument("--eval-every", type=int, default=50)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--checkpoint-every", type=int, default=0)
    g.add_argument("--resume-from", default=None)
    args = p.parse_args()

    every = args.checkpoint_every
    ctx = horizon_report.trial(
        params={k: getattr(args, k) for k in ("learning_rate", "momentum", "weight_decay", "batch_size")},
        max_train_steps=args.max_train_steps, eval_every=args.eval_every, seed=args.seed,
        checkpoint_every=every,
        resume_from=args.resume_from)
    Xtr, Ytr, Xva, Yva = make_data()
    total, bs = ctx.max_train_steps, args.batch_size
    if not 1 <= bs <= N_TRAIN:
        sys.exit("--batch-size must be in 1..%d" % N_TRAIN)

    if ctx.resume_from is not None:
        st = load_checkpoint(ctx.resume_from)
        print("resumed from %s at step %d" % (ctx.resume_from, st["step"]), file=sys.stderr)
    else:
        rng = random.Random(ctx.seed)
        order = list(range(N_TRAIN))
        rng.shuffle(order)
        st = {"step": 0, "pos": 0, "order": order, "rng": rng,
              "W": [[0.0] * FEATURES for _ in range(CLASSES)], "b": [0.0] * CLASSES,
              "V": [[0.0] * FEATURES for _ in range(CLASSES)], "vb": [0.0] * CLASSES}

    def report(step, lr):
        """Evaluate and report; False when the training loss says the run diverged."""
        train_loss, train_error = evaluate(st["W"], st["b"], Xtr, Ytr)
        valid_loss, valid_error = evaluate(st["W"], st["b"], Xva, Yva)
        diverged = not math.isfinite(train_loss) or 0 < args.max_loss < train_loss
        if diverged:
            print("step %d: training loss %g; the run diverged" % (step, train_loss), file=sys.stderr)
        ctx.report(step, "train", loss=math.nan if diverged else train_loss, error=train_error, lr=lr)
        ctx.report(step, "valid", loss=valid_loss, error=valid_error)
        return not diverged

    if st["step"] > 0 and ctx.should_evaluate(st["step"]):
        report(st["step"], learning_rate(args, st["step"], total))  # same values again: harmless
    while st["step"] < total and not ctx.stop_requested:
        step = st["step"] + 1
        if st["pos"] + bs > N_TRAIN:  # a new epoch
            st["rng"].shuffle(st["order"])
            st["pos"] = 0
        batch = st["order"][st["pos"]:st["pos"] + bs]
        st["pos"] += bs
        lr = learning_rate(args, step, total)
        try:
            loss = sgd_step(st, Xtr, Ytr, batch, lr, args.momentum, args.weight_decay)
        except (OverflowError, ValueError, ZeroDivisionError):
            loss = math.nan
        st["step"] = step
        if not math.isfinite(loss):
            print("step %d: minibatch loss %s; the run diverged" % (step, loss), file=sys.stderr)
            ctx.report(step, "train", loss=math.nan, lr=lr)
            return 0
        if ctx.should_evaluate(step) and not report(step, lr):
            return 0
        if ctx.should_checkpoint(step):
            save_checkpoint(ctx, st)
    if st["step"] < total:  # SIGTERM: save where we are, announce it, and exit promptly
        if st["step"] > 0 and not ctx.should_checkpoint(st["step"]):
            save_checkpoint(ctx, st)
        print("SIGTERM: stopped at step %d" % st["step"], file=sys.stderr)
        return horizon_report.EXIT_STOPPED
    return 0


if __name__ == "__main__":
    sys.exit(main())
