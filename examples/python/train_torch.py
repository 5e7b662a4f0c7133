#!/usr/bin/env python3
"""A small PyTorch MLP trained under horizon (trial protocol v1, docs/protocol.md).

The data is generated with torch from a fixed seed, so every trial sees the same problem and
nothing is downloaded: points in `--features` dimensions labelled by a random "teacher" network,
with some label noise. The model is an MLP (`--width`, `--depth`) trained with AdamW or SGD
(`--optimizer`) and a constant or cosine learning rate (`--schedule`).

Every eval_every steps and at the last step it reports train/loss, train/error, train/lr (over
a fixed 4,096-point subset of the training set), valid/loss, valid/error and
perf/steps_per_second. Checkpoints (torch.save of model, optimizer, step and RNG states) are
written at every multiple of HORIZON_CHECKPOINT_EVERY and when SIGTERM arrives, and announced;
HORIZON_RESUME_FROM resumes from one. A learning rate that is far too large gives a NaN loss,
which is reported as is: horizon records the trial as diverged.

The device is `cuda` when available (horizon sets CUDA_VISIBLE_DEVICES when the study lists
trainer.gpus, so each trial sees its one GPU as cuda:0), else the CPU.

Run it directly to debug: `python3 train_torch.py --learning-rate=1e-3 --max-train-steps=300`.
"""

import argparse
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

import horizon_report

DATA_SEED = 1234
N_TRAIN, N_VALID, N_TRAIN_EVAL = 20000, 5000, 4096


def make_data(features, classes, noise, device):
    """Train and valid (x, y) tensors labelled by a fixed random teacher network."""
    g = torch.Generator().manual_seed(DATA_SEED)
    x = torch.randn(N_TRAIN + N_VALID, features, generator=g)
    w1 = torch.randn(features, 64, generator=g) / math.sqrt(features)
    w2 = torch.randn(64, classes, generator=g) / 8.0
    y = (torch.tanh(x @ w1) @ w2).argmax(dim=1)
    flip = torch.rand(len(y), generator=g) < noise
    y[flip] = torch.randint(classes, (int(flip.sum()),), generator=g)
    x, y = x.to(device), y.to(device)
    return (x[:N_TRAIN], y[:N_TRAIN]), (x[N_TRAIN:], y[N_TRAIN:])


def make_model(features, classes, width, depth):
    layers, d = [], features
    for _ in range(depth):
        layers += [torch.nn.Linear(d, width), torch.nn.ReLU()]
        d = width
    layers.append(torch.nn.Linear(d, classes))
    return torch.nn.Sequential(*layers)


@torch.no_grad()
def evaluate(model, x, y):
    """Mean cross-entropy and error rate."""
    model.eval()
    logits = model(x)
    loss = F.cross_entropy(logits, y).item()
    error = (logits.argmax(dim=1) != y).float().mean().item()
    model.train()
    return loss, error


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (AdamW: beta1)")
    p.add_argument("--schedule", choices=["cosine", "constant"], default="cosine")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--features", type=int, default=32)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--label-noise", type=float, default=0.1)
    g = p.add_argument_group("standalone runs (horizon sets these through the environment)")
    g.add_argument("--max-train-steps", type=int, default=2000)
    g.add_argument("--eval-every", type=int, default=100)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--checkpoint-every", type=int, default=0)
    g.add_argument("--resume-from", default=None)
    args = p.parse_args()

    every = args.checkpoint_every
    ctx = horizon_report.trial(
        max_train_steps=args.max_train_steps, eval_every=args.eval_every,
        seed=args.seed, checkpoint_every=every,
        resume_from=args.resume_from)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print("device: %s (%s), CUDA_VISIBLE_DEVICES=%s" % (device, name, os.environ.get("CUDA_VISIBLE_DEVICES", "")),
          file=sys.stderr)

    torch.manual_seed(ctx.seed)
    (xtr, ytr), (xva, yva) = make_data(args.features, args.classes, args.label_noise, device)
    xtr_eval, ytr_eval = xtr[:N_TRAIN_EVAL], ytr[:N_TRAIN_EVAL]
    model = make_model(args.features, args.classes, args.width, args.depth).to(device)
    if args.optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay,
                                betas=(args.momentum, 0.999))
    else:
        opt = torch.optim.SGD(model.parameters(), lr=args.learning_rate, momentum=args.momentum,
                              weight_decay=args.weight_decay)
    batches = torch.Generator().manual_seed(ctx.seed)  # the order of minibatches, on the CPU
    total, step = ctx.max_train_steps, 0

    def lr_at(step):
        if args.schedule == "cosine":
            return args.learning_rate * 0.5 * (1.0 + math.cos(math.pi * (step - 1) / total))
        return args.learning_rate

    def save_checkpoint(step):
        name = "ckpt-%d.pt" % step
        tmp = ctx.trial_dir / (name + ".tmp")
        torch.save({"step": step, "model": model.state_dict(), "optimizer": opt.state_dict(),
                    "batches": batches.get_state(), "torch_rng": torch.get_rng_state()}, tmp)
        os.replace(tmp, ctx.trial_dir / name)  # complete before it is announced
        ctx.checkpoint_announce(step, name)

    if ctx.resume_from is not None:
        state = torch.load(ctx.resume_from, map_location=device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        batches.set_state(state["batches"])
        torch.set_rng_state(state["torch_rng"])
        step = state["step"]
        print("resumed from %s at step %d" % (ctx.resume_from, step), file=sys.stderr)

    model.train()
    timer_start, timer_steps = time.perf_counter(), 0
    while step < total and not ctx.stop_requested:
        step += 1
        lr = lr_at(step)
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(N_TRAIN, (args.batch_size,), generator=batches).to(device)
        loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        timer_steps += 1

        if ctx.should_evaluate(step):
            if device.type == "cuda":
                torch.cuda.synchronize()
            steps_per_second = timer_steps / (time.perf_counter() - timer_start)
            train_loss, train_error = evaluate(model, xtr_eval, ytr_eval)
            valid_loss, valid_error = evaluate(model, xva, yva)
            ctx.report(step, "train", loss=train_loss, error=train_error, lr=lr)  # NaN -> "nan"
            ctx.report(step, "valid", loss=valid_loss, error=valid_error)
            ctx.report(step, "perf", steps_per_second=steps_per_second)
            timer_start, timer_steps = time.perf_counter(), 0
        if ctx.should_checkpoint(step):
            save_checkpoint(step)

    if step < total:  # SIGTERM: save where we are, announce it, and exit promptly
        if step > 0 and not ctx.should_checkpoint(step):
            save_checkpoint(step)
        print("SIGTERM: stopped at step %d" % step, file=sys.stderr)
        return horizon_report.EXIT_STOPPED
    return 0


if __name__ == "__main__":
    sys.exit(main())
