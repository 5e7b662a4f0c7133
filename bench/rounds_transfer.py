#!/usr/bin/env python3
"""Carrying a round-1 winner's learning-rate schedule to a 4x budget on real training (issue 12,
evidence 1): horizon's rule (Schedule::transfer) against naive stretching (Schedule::stretch).
Standard library only.

Usage: rounds_transfer.py --horizon BIN --out DIR [--seeds 0,1,2,3,4] [--families linear,wsd:50]
           [--trials 16] [--short 500] [--long 2000] [--top 2] [--replicates 3]
           [--eval-every 50] [--jobs 2] [--workload digits-mlp] [--set NAME=JSON ...] [--label L]
       rounds_transfer.py --summarize RUNS.jsonl [RUNS.jsonl ...]

A family is `linear` (linear decay to 0 at the budget), `wsd:D` (warmup-stable-decay with a final
linear decay of D steps) or `cosine`. For every family and study seed s:

  round 1   a study in rounds, `horizon run`: round 0 samples `--trials` configurations at
            `--short` steps (learning_rate log-uniform in [1e-3, 1], momentum uniform in
            [0, 0.99], warmup_steps in {0, 50, 100}, the family's schedule fixed; quasi-random,
            study seed s), round 1 carries its `--top` best on at `--long` steps and samples
            nothing new. Round 1 is horizon's own carry: the winner's schedule carried by
            `horizon_core::workloads::transfer_params`, the trial resumed from its checkpoint
            where the schedules share a prefix, at the winner's own trainer seed.
  arms      for each of the `--top` best trials of round 0 (by best objective, ties to the lower
            number: the order horizon carries them in; checked), single-configuration studies
            at `--long` steps with every parameter fixed:
              rule     the parameters horizon's rule gives (this script's port of
                       transfer_params: linear -> wsd with decay_steps = short - warmup, warmup
                       kept; wsd and cosine unchanged); checked equal to the parameters of the
                       trial horizon carried in `round 1`;
              stretch  Schedule::stretch: warmup and (wsd) decay lengths scaled by long/short
                       (rounded half up), the family unchanged: linear stays linear over the whole
                       run; the short-horizon bias the method warns about;
              rerun    (linear only) the same parameters at the longer budget: linear decay over
                       the whole run with the warmup kept in steps (the stretch without its
                       longer warmup). For wsd the rerun is the rule.
            Each arm is one study of `--replicates` trials of that one configuration, study
            seed s: trial r gets HORIZON_SEED = trial_seed(s, r), the same in every arm (paired
            by trial number), and only the trainer's randomness (initial weights, data order)
            differs between replicates. The schedule each arm ran (`rungs[].schedule` of `horizon
            trials --json`) is checked against Schedule::transfer / Schedule::stretch of the
            round-0 schedule, ported here.

For cosine the rule and the stretch differ only in the warmup (the rule keeps it in steps, the
stretch scales it); the decay is the same stretched cosine, so it is not run by default.

`--set NAME=JSON` fixes another workload parameter in every study (e.g. augment=2 for mnist-mlp).

Reported per setting (workload and family): each seed's carried trials (their parameters and
round-0 value), horizon's own round-1 value for them, every arm's best and final objective (median
over the replicates, with their range), the objective along the run, the paired differences
rule - stretch (and rerun) over every (seed, carried trial, replicate), two checks (horizon's
carry equals the rule arm bit for bit where a replicate has the carried trial's own trainer seed;
the trainer-seed noise), then a compact per-seed table and a headline table of every setting.
Results: DIR/transfer.jsonl, one line per (setting, seed), every study under DIR.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

METRIC = "valid/loss"
WARMUPS = [0, 50, 100]


def family_params(fam):
    """(schedule parameter, decay_steps or None) of a family name."""
    if fam == "linear":
        return "linear", None
    if fam == "cosine":
        return "cosine", None
    if fam.startswith("wsd:"):
        return "wsd", int(fam[4:])
    raise SystemExit(f"unknown family {fam!r} (linear, cosine, wsd:D)")


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, float):
        return repr(v)
    return str(v)


def header(name, trials, budget, seed, a):
    return [
        "[study]",
        f'name = "{name}"',
        f"trials = {trials}",
        f"max_train_steps = {budget}",
        f"eval_every = {a.eval_every}",
        f"seed = {seed}",
        "[objective]",
        f'metric = "{METRIC}"',
        'direction = "minimize"',
        "[trainer]",
        f'workload = "{a.workload}"',
        'timeout = "10m"',
    ]


def round1_toml(name, fam, seed, a):
    sched, decay = family_params(fam)
    lines = header(name, a.trials, a.long, seed, a) + [
        "[params.learning_rate]", 'type = "float"', "low = 1e-3", "high = 1.0", 'scale = "log"',
        "[params.momentum]", 'type = "float"', "low = 0.0", "high = 0.99",
        "[params.warmup_steps]", 'type = "discrete"', f"values = {WARMUPS}",
        "[params.schedule]", 'type = "fixed"', f'value = "{sched}"',
    ]
    if decay is not None:
        lines += ["[params.decay_steps]", 'type = "fixed"', f"value = {decay}"]
    for k, v in a.set.items():
        lines += [f"[params.{k}]", 'type = "fixed"', f"value = {toml_value(v)}"]
    lines += ["[[round]]", f"max_train_steps = {a.short}", f"trials = {a.trials}",
              "[[round]]", f"max_train_steps = {a.long}", f"carry = {a.top}", "trials = 0"]
    return "\n".join(lines) + "\n"


def fixed_toml(name, params, seed, a):
    lines = header(name, a.replicates, a.long, seed, a)
    for k, v in params.items():
        lines += [f"[params.{k}]", 'type = "fixed"', f"value = {toml_value(v)}"]
    return "\n".join(lines) + "\n"


# --- ports of horizon_core::schedule and workloads (checked against what horizon ran) -------

def schedule_of(p, budget):
    """horizon_core::workloads::schedule_of, as the JSON `trials --json` writes a Schedule."""
    kind = p.get("schedule", "constant")
    decay = {"linear": {"kind": "linear"}, "cosine": {"kind": "cosine"}, "constant": {"kind": "constant"},
             "rsqrt": {"kind": "rsqrt"}}.get(kind)
    if kind == "wsd":
        decay = {"kind": "constant_then_linear", "decay_steps": int(p["decay_steps"])}
    return {"base_lr": p.get("learning_rate", 0.1), "final_lr": 0.0, "warmup_steps": int(p.get("warmup_steps", 0)),
            "total_steps": budget, "decay": decay}


def transfer(s, total):
    """Schedule::transfer."""
    decay = s["decay"]
    if decay["kind"] == "linear":
        decay = {"kind": "constant_then_linear", "decay_steps": s["total_steps"] - s["warmup_steps"]}
    return dict(s, total_steps=total, decay=decay)


def stretch(s, total):
    """Schedule::stretch: lengths scaled by the ratio, rounded half away from zero."""
    ratio = total / s["total_steps"]
    scale = lambda n: min(int(math.floor(n * ratio + 0.5)), total)
    decay = s["decay"]
    if decay["kind"] == "constant_then_linear":
        decay = {"kind": "constant_then_linear", "decay_steps": max(scale(decay["decay_steps"]), 1)}
    return dict(s, total_steps=total, warmup_steps=scale(s["warmup_steps"]), decay=decay)


def params_for(s, base):
    """The trainer parameters that make schedule s (learning_rate, warmup_steps, schedule,
    decay_steps), with the other parameters of base."""
    p = {k: v for k, v in base.items() if k not in ("schedule", "decay_steps", "warmup_steps", "learning_rate")}
    p["learning_rate"] = s["base_lr"]
    p["warmup_steps"] = s["warmup_steps"]
    kind = s["decay"]["kind"]
    p["schedule"] = {"constant_then_linear": "wsd"}.get(kind, kind)
    if kind == "constant_then_linear":
        p["decay_steps"] = s["decay"]["decay_steps"]
    return p


def transfer_params(p, short, long):
    """horizon_core::workloads::transfer_params: linear -> wsd with the short run's decay length;
    the others unchanged."""
    sch = schedule_of(p, short)
    if sch["decay"]["kind"] != "linear":
        return dict(p)
    q = dict(p)
    q["schedule"] = "wsd"
    q["decay_steps"] = sch["total_steps"] - sch["warmup_steps"]
    return q


def mean_lr_share(s):
    """The mean learning rate over the run as a share of the base rate (the rate of update k is
    lr(k), k = 0..total-1; Schedule::lr)."""
    total, w = s["total_steps"], s["warmup_steps"]
    acc = 0.0
    for k in range(total):
        if k < w:
            acc += (k + 1) / w
            continue
        kind = s["decay"]["kind"]
        if kind == "constant":
            acc += 1
        elif kind == "linear":
            acc += 1 - (k - w) / max(total - w, 1)
        elif kind == "cosine":
            acc += 0.5 * (1 + math.cos(math.pi * (k - w) / max(total - w, 1)))
        elif kind == "constant_then_linear":
            start = total - s["decay"]["decay_steps"]
            acc += 1 if k < start else 1 - (k - start) / max(total - start, 1)
    return acc / total


# --- running -----------------------------------------------------------------------------

def horizon(a, *args):
    r = subprocess.run([a.horizon, *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-4000:] + r.stderr[-4000:])
        raise SystemExit(f"horizon {' '.join(args)} exited {r.returncode}")
    return r.stdout


def run_study(a, d, name, text):
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, "study.toml")
    if os.path.exists(os.path.join(d, "horizon-runs")):
        raise SystemExit(f"{d}/horizon-runs exists: use a fresh --out")
    with open(p, "w") as f:
        f.write(text)
    t0 = time.monotonic()
    out = horizon(a, "run", p, "--jobs", str(a.jobs))
    wall = time.monotonic() - t0
    with open(p + ".run.txt", "w") as f:
        f.write(out)
    trials = [json.loads(l) for l in horizon(a, "trials", p, "--json").splitlines() if l.strip()]
    return wall, trials, p


def curves(a, path):
    """trial number -> {step: objective} (the last attempt's value at each step), from
    `horizon export --format jsonl`."""
    c = {}
    for l in horizon(a, "export", path, "--format", "jsonl").splitlines():
        if l.strip():
            r = json.loads(l)
            if r["metric"] == METRIC:
                v = r["value"]
                c.setdefault(r["trial"], {})[r["step"]] = float(v)
    return c


def arm_result(t):
    r = t["rungs"][0]
    return {"state": t["state"], "best_value": t["best_value"], "best_step": t["best_step"],
            "final_value": t["final_value"], "final_step": t["final_step"], "schedule": r["schedule"],
            "steps_run": r["steps_run"]}


def one(a, fam, seed):
    d = os.path.join(a.out, (a.label or f"{a.workload}-{fam}").replace(":", "-").replace(" ", "-"), f"seed-{seed}")
    log(f"{fam} seed {seed}: round 1 ({a.trials} x {a.short}, carry {a.top} to {a.long})")
    wall, trials, _ = run_study(a, os.path.join(d, "round1"), f"rt-{fam.replace(':', '-')}-round1", round1_toml("rt-round1", fam, seed, a))
    # Round 0 results, as horizon ranks them (complete, finite, by value then number).
    r0 = []
    for t in trials:
        g = t["rungs"][0]
        if g["rung"] != 0:
            raise SystemExit(f"trial {t['number']} has no round 0")
        base = {k: v for k, v in t["params"].items() if k not in ("schedule", "decay_steps")}
        sched, decay = family_params(fam)
        base["schedule"] = sched
        if decay is not None:
            base["decay_steps"] = decay
        if schedule_of(base, a.short) != g["schedule"]:
            raise SystemExit(f"trial {t['number']}: round-0 schedule {g['schedule']} is not schedule_of({base})")
        r0.append({"number": t["number"], "params": base, "state": g["state"], "best_value": g["best_value"],
                   "best_step": g["best_step"], "final_value": g["final_value"], "steps_run": g["steps_run"],
                   "schedule": g["schedule"]})
    ok = [x for x in r0 if x["state"] == "complete" and x["best_value"] is not None and math.isfinite(x["best_value"])]
    ok.sort(key=lambda x: (x["best_value"], x["number"]))
    top = ok[: a.top]
    carried = {t["number"]: t for t in trials if len(t["rungs"]) > 1}
    if set(carried) != {x["number"] for x in top}:
        raise SystemExit(f"{fam} seed {seed}: horizon carried {sorted(carried)}, the top {a.top} are {[x['number'] for x in top]}")
    out = {"family": fam, "label": a.label or f"{a.workload} {fam}", "set": a.set, "seed": seed, "short": a.short, "long": a.long, "trials": a.trials, "top": a.top,
           "replicates": a.replicates, "eval_every": a.eval_every, "workload": a.workload, "round1_wall_s": wall,
           "round0": r0, "carried": []}
    for rank, x in enumerate(top):
        ht = carried[x["number"]]
        hr = ht["rungs"][1]
        rule_p = transfer_params(x["params"], a.short, a.long)
        if ht["params"] != rule_p:
            raise SystemExit(f"{fam} seed {seed} trial {x['number']}: horizon carried {ht['params']}, the port of transfer_params gives {rule_p}")
        short_s = x["schedule"]
        want = {"rule": transfer(short_s, a.long), "stretch": stretch(short_s, a.long)}
        if hr["schedule"] != want["rule"]:
            raise SystemExit(f"horizon's carried schedule {hr['schedule']} is not Schedule::transfer {want['rule']}")
        arms = {"rule": rule_p, "stretch": params_for(want["stretch"], x["params"])}
        if fam == "linear":
            arms["rerun"] = dict(x["params"])
            want["rerun"] = schedule_of(x["params"], a.long)
        c = {"rank": rank, "number": x["number"], "params": x["params"], "round0": {k: x[k] for k in ("best_value", "best_step", "final_value")},
             "horizon_round1": {"state": hr["state"], "best_value": hr["best_value"], "best_step": hr["best_step"],
                                "final_value": hr["final_value"], "steps_run": hr["steps_run"], "entry": hr["entry"],
                                "schedule": hr["schedule"]},
             "mean_lr_share": {k: mean_lr_share(s) for k, s in want.items()} | {"short": mean_lr_share(short_s)},
             "arms": {k: [] for k in arms}}
        names = list(arms)
        names = names[rank % len(names):] + names[: rank % len(names)]  # rotate the order
        for arm in names:
            _, ts, path = run_study(a, os.path.join(d, f"top{rank}", arm), f"rt-{arm}", fixed_toml(f"rt-{arm}", arms[arm], seed, a))
            cv = curves(a, path)
            ts.sort(key=lambda t: t["number"])
            if [t["number"] for t in ts] != list(range(a.replicates)):
                raise SystemExit(f"{arm}: trials {[t['number'] for t in ts]}")
            for t in ts:
                res = arm_result(t)
                if res["schedule"] != want[arm] or t["params"] != arms[arm]:
                    raise SystemExit(f"{arm}: ran {t['params']} {res['schedule']}, expected {arms[arm]} {want[arm]}")
                res["trial"] = t["number"]
                res["curve"] = sorted(cv.get(t["number"], {}).items())
                c["arms"][arm].append(res)
        # Where a replicate has the carried trial's own trainer seed (trial number), the rule arm
        # is horizon's carry run from scratch: it must agree bit for bit.
        if x["number"] < a.replicates:
            y = c["arms"]["rule"][x["number"]]
            c["same_seed_check"] = {"trial": x["number"], "equal": (y["best_value"], y["best_step"], y["final_value"]) ==
                                    (hr["best_value"], hr["best_step"], hr["final_value"])}
        out["carried"].append(c)
    return out


def log(msg):
    print(f"[rounds_transfer {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- summary -----------------------------------------------------------------------------

def fmt(x, d=4):
    if x is None:
        return "–"
    if isinstance(x, float):
        if not math.isfinite(x):
            return str(x)
        return f"{x:.{d}g}"
    return str(x)


def med(xs):
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return statistics.median(xs) if xs else None


def cell(vals):
    """median [min, max] of a replicate list."""
    vs = [v for v in vals if v is not None]
    if not vs:
        return "–"
    if len(vs) == 1:
        return fmt(vs[0])
    return f"{fmt(statistics.median(vs))} [{fmt(min(vs))}, {fmt(max(vs))}]"


def sched_text(s):
    k = s["decay"]["kind"]
    w = s["warmup_steps"]
    if k == "constant_then_linear":
        return f"wsd w{w} d{s['decay']['decay_steps']}"
    return f"{k} w{w}"


def quantiles(xs):
    xs = sorted(xs)
    if not xs:
        return "–"
    q = lambda p: xs[min(len(xs) - 1, max(0, int(round(p * (len(xs) - 1)))))]
    return f"median {fmt(statistics.median(xs), 3)}, quartiles [{fmt(q(0.25), 3)}, {fmt(q(0.75), 3)}], range [{fmt(xs[0], 3)}, {fmt(xs[-1], 3)}]"


def paired(rs, x, y, what):
    ds = []
    for r in rs:
        for c in r["carried"]:
            for ax, ay in zip(c["arms"][x], c["arms"][y]):
                if ax[what] is not None and ay[what] is not None:
                    ds.append(ax[what] - ay[what])
    return ds


def leh(ds):
    return f"{sum(d < 0 for d in ds)} / {sum(d == 0 for d in ds)} / {sum(d > 0 for d in ds)}"


def compact(by):
    """Per setting, the winner seed by seed: best and final of each arm (median over trainer
    seeds), then the median and range over seeds."""
    for label, rs in by.items():
        arms = list(rs[0]["carried"][0]["arms"])
        names = " / ".join(arms)
        print(f"\n#### {label}: the winner, median over {rs[0]['replicates']} trainer seeds (best and final valid/loss at {rs[0]['long']})\n")
        print(f"| seed | winner: lr, momentum, warmup | round 0 at {rs[0]['short']} | best: {names} | final: {names} |")
        print("|---|---|---:|---:|---:|")
        cols = {(a, w): [] for a in arms for w in ("best_value", "final_value")}
        r0s = []
        for r in rs:
            c = r["carried"][0]
            p = c["params"]
            for a in arms:
                for w in ("best_value", "final_value"):
                    cols[(a, w)].append(statistics.median([x[w] for x in c["arms"][a]]))
            r0s.append(c["round0"]["best_value"])
            b = " / ".join(fmt(cols[(a, "best_value")][-1]) for a in arms)
            f = " / ".join(fmt(cols[(a, "final_value")][-1]) for a in arms)
            print(f"| {r['seed']} | #{c['number']}: {p['learning_rate']:.3g}, {p['momentum']:.3g}, {p['warmup_steps']} | {fmt(r0s[-1])} | {b} | {f} |")
        for name, fn in (("median", statistics.median), ("min", min), ("max", max)):
            b = " / ".join(fmt(fn(cols[(a, "best_value")])) for a in arms)
            f = " / ".join(fmt(fn(cols[(a, "final_value")])) for a in arms)
            print(f"| **{name}** | | {fmt(fn(r0s))} | {b} | {f} |")


def headline(by):
    print("\n### Headline: every setting\n")
    print("Winner (round 0's best) at the long budget, median over seeds of the median over trainer seeds; "
          "paired rule − stretch over every (seed, carried trial, trainer seed): median, and how often the rule is lower (better)\n")
    print("| setting | round 0 (short) | rule: best | stretch: best | rerun: best | rule: final | stretch: final | rerun: final | "
          "rule − stretch, best | rule lower / equal / higher | rule − stretch, final | rule lower / equal / higher |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, rs in by.items():
        arms = list(rs[0]["carried"][0]["arms"])
        w = lambda a, what: med([statistics.median([x[what] for x in r["carried"][0]["arms"][a]]) for r in rs]) if a in arms else None
        db, df = paired(rs, "rule", "stretch", "best_value"), paired(rs, "rule", "stretch", "final_value")
        print(f"| {label} | {fmt(med([r['carried'][0]['round0']['best_value'] for r in rs]))} | {fmt(w('rule', 'best_value'))} | "
              f"{fmt(w('stretch', 'best_value'))} | {fmt(w('rerun', 'best_value'))} | {fmt(w('rule', 'final_value'))} | "
              f"{fmt(w('stretch', 'final_value'))} | {fmt(w('rerun', 'final_value'))} | {fmt(med(db), 3)} | {leh(db)} | "
              f"{fmt(med(df), 3)} | {leh(df)} |")


def summarize(lines):
    by = {}
    for r in lines:
        by.setdefault(r.get("label", r["family"]), []).append(r)
    for label, rs in by.items():
        rs.sort(key=lambda r: r["seed"])
        r0 = rs[0]
        arms = list(r0["carried"][0]["arms"])
        extra = "".join(f", {k} = {v}" for k, v in r0.get("set", {}).items())
        print(f"\n### {label}: {r0['workload']}{extra}, round 1 {r0['trials']} x {r0['short']} steps, carried to {r0['long']} "
              f"(top {r0['top']}), {r0['replicates']} trainer seeds per arm, eval_every {r0['eval_every']}\n")
        for rank in range(r0["top"]):
            who = "winner" if rank == 0 else f"round-0 rank {rank + 1}"
            print(f"{who}: best valid/loss at {r0['long']} steps, median over trainer seeds [min, max]; "
                  f"round 0 = its value at {r0['short']}; horizon = horizon's own carry (round 1 of the study, the trial's own seed)\n")
            hdr = " | ".join(f"{a}: best | final" for a in arms)
            print(f"| seed | trial | lr | momentum | warmup | round 0 | horizon | {hdr} |")
            print("|---|---:|---:|---:|---:|---:|---:|" + "---:|---:|" * len(arms))
            col = {a: ([], []) for a in arms}
            c0s, chs = [], []
            for r in rs:
                c = r["carried"][rank]
                p = c["params"]
                cells = []
                for a in arms:
                    b = [x["best_value"] for x in c["arms"][a]]
                    f = [x["final_value"] for x in c["arms"][a]]
                    col[a][0].append(statistics.median(b))
                    col[a][1].append(statistics.median(f))
                    cells += [cell(b), cell(f)]
                c0s.append(c["round0"]["best_value"])
                chs.append(c["horizon_round1"]["best_value"])
                print(f"| {r['seed']} | {c['number']} | {p['learning_rate']:.3g} | {p['momentum']:.3g} | {p['warmup_steps']} | "
                      f"{fmt(c['round0']['best_value'])} | {fmt(c['horizon_round1']['best_value'])} | " + " | ".join(cells) + " |")
            print(f"| **median** | | | | | {fmt(med(c0s))} | {fmt(med(chs))} | "
                  + " | ".join(f"{fmt(med(col[a][0]))} | {fmt(med(col[a][1]))}" for a in arms) + " |")
            print()
        # Schedules and where the best checkpoint was.
        print("Schedules (the winner's, seed by seed) and mean learning rate as a share of the base rate; best step (median over trainer seeds):\n")
        print("| seed | round 0 | " + " | ".join(arms) + " |")
        print("|---|---|" + "---|" * len(arms))
        for r in rs:
            c = r["carried"][0]
            s0 = c["round0"]
            cells = []
            for a in arms:
                x = c["arms"][a][0]
                steps = statistics.median([y["best_step"] for y in c["arms"][a]])
                cells.append(f"{sched_text(x['schedule'])}, mean lr {c['mean_lr_share'][a]:.2f}, best at {steps:.0f}")
            print(f"| {r['seed']} | {sched_text(r['round0'][[t['number'] for t in r['round0']].index(c['number'])]['schedule'])}, "
                  f"mean lr {c['mean_lr_share']['short']:.2f}, best at {s0['best_step']} | " + " | ".join(cells) + " |")
        # The objective along the run, every carried trial and trainer seed.
        marks = [m for m in (250, 500, 1000, 1500, 1750, 2000) if m <= r0["long"]]
        print(f"\n{METRIC} along the run (median over seeds, carried trials and trainer seeds):\n")
        print("| arm | " + " | ".join(f"step {m}" for m in marks) + " |")
        print("|---|" + "---:|" * len(marks))
        for a in arms:
            vals = {m: [] for m in marks}
            for r in rs:
                for c in r["carried"]:
                    for x in c["arms"][a]:
                        cv = dict(x.get("curve", []))
                        for m in marks:
                            if str(m) in cv or m in cv:
                                vals[m].append(cv.get(m, cv.get(str(m))))
            print(f"| {a} | " + " | ".join(fmt(med(vals[m])) for m in marks) + " |")
        # Paired differences.
        print("\nPaired differences over every (seed, carried trial, trainer seed), negative = the first arm lower (better):\n")
        pairs = [("rule", "stretch")] + ([("rule", "rerun"), ("rerun", "stretch")] if "rerun" in arms else [])
        for x, y in pairs:
            for what in ("best_value", "final_value"):
                ds, wins = [], 0
                for r in rs:
                    for c in r["carried"]:
                        for ax, ay in zip(c["arms"][x], c["arms"][y]):
                            if ax["best_value"] is None or ay["best_value"] is None:
                                continue
                            dd = ax[what] - ay[what]
                            ds.append(dd)
                            wins += dd < 0
                print(f"- {x} − {y}, {what.replace('_value', '')}: {quantiles(ds)}; {x} lower / equal / higher: {leh(ds)}")
        checks = [c["same_seed_check"] for r in rs for c in r["carried"] if "same_seed_check" in c]
        if checks:
            print(f"\nhorizon's carry (resumed where the schedules share a prefix) against the rule arm at the same trainer seed "
                  f"(carried trials numbered below the replicates): {sum(c['equal'] for c in checks)} of {len(checks)} bit for bit equal")
        walls = [r["round1_wall_s"] for r in rs]
        print(f"\nWall time of the round-1 study (16 x short + carried), median over seeds: {med(walls):.1f} s")
        # Noise yardstick: horizon's own carry (winner's own trainer seed) vs the rule arm.
        ds = []
        for r in rs:
            for c in r["carried"]:
                for x in c["arms"]["rule"]:
                    if x["trial"] == c["number"]:
                        continue  # the same trainer seed: equal by construction (checked above)
                    ds.append(x["best_value"] - c["horizon_round1"]["best_value"])
        print(f"Trainer-seed noise yardstick: rule arm − horizon's own carry (same parameters and schedule, other trainer seed), best: {quantiles(ds)}")
    compact(by)
    headline(by)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--horizon")
    p.add_argument("--out")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--families", default="linear,wsd:50")
    p.add_argument("--workload", default="digits-mlp")
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--short", type=int, default=500)
    p.add_argument("--long", type=int, default=2000)
    p.add_argument("--top", type=int, default=2)
    p.add_argument("--replicates", type=int, default=3)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--set", action="append", default=[], help="NAME=JSON: a fixed parameter in every study")
    p.add_argument("--label", default=None)
    p.add_argument("--summarize", nargs="*")
    a = p.parse_args()
    a.set = {k: json.loads(v) for k, v in (x.split("=", 1) for x in a.set)}
    if a.summarize is not None:
        summarize([json.loads(l) for f in a.summarize for l in open(f) if l.strip()])
        return
    if not a.horizon or not a.out:
        p.error("--horizon and --out are needed")
    os.makedirs(a.out, exist_ok=True)
    runs = os.path.join(a.out, "transfer.jsonl")
    for fam in a.families.split(","):
        for s in (int(x) for x in a.seeds.split(",")):
            r = one(a, fam, s)
            with open(runs, "a") as f:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
