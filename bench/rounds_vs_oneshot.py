#!/usr/bin/env python3
"""Tuning in rounds against one quasi-random study at the production budget, at equal compute
(issue 12, evidence 2). Standard library only.

Usage: rounds_vs_oneshot.py --horizon BIN --out DIR --setting digits|replay [--seeds 0,1,2,3,4]
           [--prod 2000] [--variants 16x500:2+2,...] [--oneshot-max 16] [--eval-every 50]
           [--runs FILE.jsonl] [--oracle] [--jobs 2] [--label NAME]
       rounds_vs_oneshot.py --horizon BIN --reeval DIR/oneshot.jsonl [--replicates 4] [--jobs 2]
       rounds_vs_oneshot.py --summarize RUNS.jsonl [RUNS.jsonl ...]

Settings (the search space is the same for both approaches):
  digits  built-in digits-mlp, objective valid/loss (minimize): learning_rate log-uniform in
          [1e-3, 1], momentum uniform in [0, 0.99], warmup_steps in {0, 50, 100}, schedule
          "linear" (examples/rounds.toml). Rounds carry the schedule by horizon's rule (linear ->
          wsd with the short run's decay length), narrow learning_rate and momentum and freeze
          warmup_steps (the transfer table); the one-shot study runs linear decay over the
          production budget.
  replay  built-in replay of the 512 recorded AlexNet runs (examples/opda_to_jsonl.py; OPDA,
          "AlexNet Hyperparameter Tuning Data" (c) 2025 Nicholas Lourie, CC BY-SA 4.0), a step
          is an epoch, objective valid/error (minimize), the one parameter `run` (an index,
          searched again over its full range in every round: narrowing means nothing), so round
          2 is the carried top-k plus new random runs; a carried replay resumes where round 1
          read it, so it costs only the extra epochs.

A variant `N1xB1:C+M` is a study in two rounds ([[round]]): N1 configurations at B1 steps, then
the C best carried to the production budget --prod and M new ones drawn there (from the space the
transfer table makes of round 1's best). Per study seed s (the same seed for every study of that
seed, so the one-shot study's trial n and round 1's trial n are the same sample n of the sampler):

  rounds    `horizon run` of each variant. Compute = the `steps_run` of every rung of every
            trial (`horizon trials --json`): steps actually run, resumed rungs counting only
            their new steps, runs that stop early (diverged, a recorded run shorter than the
            budget) only what they ran. Result = the best objective among the rungs complete at
            the production budget (retrospective best; incomplete, diverged and failed rungs do
            not count).
  one-shot  one quasi-random study at the production budget, --oneshot-max trials, the default
            sampler (scrambled Halton) and seed s. At equal compute it gets its first k trials
            in trial-number order, k the largest with the sum of their steps_run <= the
            variant's compute ("as many trials as the same compute buys"); the one after them
            (k + 1, just over the compute) is shown too. Result = the best objective among its
            first k trials that completed.
  oracle    (replay, --oracle) a grid study of all 512 runs at the production budget: each
            run's value there, to place each approach's result among all runs (its rank); and
            one at each round-1 budget, to say how well round 1 ranks the runs for the production
            budget over all of them (Spearman's rho over the runs complete at both; where the
            best runs of round 1 land at the production budget; their recorded lengths).

The studies of a seed run in a rotating order (one-shot first, last, ...).

  reeval    (digits, --reeval RUNS.jsonl --replicates R, after the runs) each approach's chosen
            configuration (the rounds study's best at the production budget, with the schedule
            it ran there; the one-shot's best of its first k) trained again at the production
            budget at R fresh trainer seeds (a study of R trials of that one configuration, study
            seed 1000 + s, so trial r has the same HORIZON_SEED for both approaches). Both
            approaches report the best of several noisy runs, and a carried trial keeps its
            trainer seed (its luck) from round 1 to round 2; the re-evaluation measures the
            configuration each one found rather than the seed it found it at.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time


def setting_spec(a):
    if a.setting == "digits":
        return {"metric": "valid/loss", "workload": "digits-mlp", "params": [
            "[params.learning_rate]", 'type = "float"', "low = 1e-3", "high = 1.0", 'scale = "log"',
            "[params.momentum]", 'type = "float"', "low = 0.0", "high = 0.99",
            "[params.warmup_steps]", 'type = "discrete"', "values = [0, 50, 100]",
            "[params.schedule]", 'type = "fixed"', 'value = "linear"',
        ]}
    if a.setting == "replay":
        return {"metric": "valid/error", "workload": "replay", "params": [
            "[params.runs]", 'type = "fixed"', f"value = {json.dumps(os.path.abspath(a.runs))}",
            "[params.run]", 'type = "int"', "low = 0", "high = 511",
        ]}
    raise SystemExit(f"unknown setting {a.setting}")


def study_toml(name, a, seed, trials, rounds=None, grid=None, budget=None):
    sp = setting_spec(a)
    lines = [
        "[study]", f'name = "{name}"', f"trials = {trials}", f"max_train_steps = {budget or a.prod}",
        f"eval_every = {a.eval_every}", f"seed = {seed}",
        "[objective]", f'metric = "{sp["metric"]}"', 'direction = "minimize"',
        "[trainer]", f'workload = "{sp["workload"]}"', 'timeout = "10m"',
    ]
    if grid:
        lines += ["[sampler]", 'kind = "grid"', f"points = {grid}"]
    lines += sp["params"]
    if rounds:
        n1, b1, c, m = rounds
        lines += ["[[round]]", f"max_train_steps = {b1}", f"trials = {n1}",
                  "[[round]]", f"max_train_steps = {a.prod}", f"carry = {c}", f"trials = {m}"]
    return "\n".join(lines) + "\n"


def parse_variant(v):
    left, right = v.split(":")
    n1, b1 = (int(x) for x in left.split("x"))
    c, m = (int(x) for x in right.split("+"))
    return n1, b1, c, m


def horizon(a, *args):
    r = subprocess.run([a.horizon, *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-4000:] + r.stderr[-4000:])
        raise SystemExit(f"horizon {' '.join(args)} exited {r.returncode}")
    return r.stdout, r.stderr


def run_study(a, d, text):
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, "study.toml")
    if os.path.exists(os.path.join(d, "horizon-runs")):
        raise SystemExit(f"{d}/horizon-runs exists: use a fresh --out")
    with open(p, "w") as f:
        f.write(text)
    t0 = time.monotonic()
    out, err = horizon(a, "run", p, "--jobs", str(a.jobs))
    wall = time.monotonic() - t0
    with open(p + ".run.txt", "w") as f:
        f.write(out)
    with open(p + ".run.err", "w") as f:
        f.write(err)
    trials = [json.loads(l) for l in horizon(a, "trials", p, "--json")[0].splitlines() if l.strip()]
    status = json.loads(horizon(a, "status", p, "--json")[0])
    return wall, trials, status


def finite(v):
    return isinstance(v, (int, float)) and math.isfinite(v)


def log(msg):
    print(f"[rounds_vs_oneshot {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def rounds_result(a, trials, status):
    top = max(g["rung"] for t in trials for g in t["rungs"])
    steps = sum(g["steps_run"] for t in trials for g in t["rungs"])
    prod = []
    for t in trials:
        for g in t["rungs"]:
            if g["rung"] == top:
                prod.append({"number": t["number"], "carried": g["entry"]["kind"] != "started", "entry": g["entry"]["kind"],
                             "state": g["state"], "best_value": g["best_value"], "best_step": g["best_step"],
                             "final_value": g["final_value"], "steps_run": g["steps_run"], "budget": g["budget"],
                             "params": t["params"] if a.setting == "replay" else {k: t["params"][k] for k in t["params"]}})
    if any(p["budget"] != a.prod for p in prod):
        raise SystemExit("the last round is not at the production budget")
    ok = [p for p in prod if p["state"] == "complete" and finite(p["best_value"])]
    best = min(ok, key=lambda p: (p["best_value"], p["number"])) if ok else None
    tot = status.get("ladder", {}).get("totals", {})
    if tot and tot.get("steps_run") != steps:
        raise SystemExit(f"status says {tot.get('steps_run')} steps run, the rungs {steps}")
    r0 = [g for t in trials for g in t["rungs"] if g["rung"] == 0]
    return {"steps_run": steps, "prod": prod, "best": best["best_value"] if best else None,
            "best_trial": best["number"] if best else None, "best_carried": best["carried"] if best else None,
            "best_final": best["final_value"] if best else None,
            "complete_at_prod": len(ok), "at_prod": len(prod),
            "round1_steps": sum(g["steps_run"] for g in r0), "round1_n": len(r0),
            "report": tot}


def oneshot_at(one, budget_steps):
    """The one-shot study's first k trials whose steps fit in budget_steps."""
    acc, k = 0, 0
    for t in one:
        if acc + t["steps_run"] > budget_steps:
            break
        acc += t["steps_run"]
        k += 1
    def best_of(n):
        vs = [(t["best_value"], t["number"]) for t in one[:n] if t["state"] == "complete" and finite(t["best_value"])]
        return min(vs) if vs else (None, None)
    b, bn = best_of(k)
    b1, _ = best_of(k + 1) if k < len(one) else (None, None)
    return {"k": k, "steps": acc, "best": b, "best_trial": bn, "complete": sum(1 for t in one[:k] if t["state"] == "complete"),
            "k1_best": b1, "k1_steps": acc + one[k]["steps_run"] if k < len(one) else None, "exhausted": k == len(one)}


def one_seed(a, seed, rot, oracle):
    d = os.path.join(a.out, a.label, f"seed-{seed}")
    variants = [parse_variant(v) for v in a.variants.split(",")]
    jobs = [("oneshot", None)] + [(v, parse_variant(v)) for v in a.variants.split(",")]
    jobs = jobs[rot % len(jobs):] + jobs[: rot % len(jobs)]
    res = {}
    for name, v in jobs:
        log(f"{a.label} seed {seed}: {name}")
        if v is None:
            wall, trials, status = run_study(a, os.path.join(d, "oneshot"), study_toml("oneshot", a, seed, a.oneshot_max))
        else:
            wall, trials, status = run_study(a, os.path.join(d, "rounds-" + name.replace(":", "-").replace("+", "p")),
                                             study_toml("rounds", a, seed, v[0] + v[3], rounds=v))
        res[name] = (wall, trials, status)
    wall, one_trials, _ = res["oneshot"]
    one_trials.sort(key=lambda t: t["number"])
    one = [{"number": t["number"], "state": t["state"], "best_value": t["best_value"], "best_step": t["best_step"],
            "final_value": t["final_value"], "steps_run": sum(g["steps_run"] for g in t["rungs"]),
            "params": t["params"]} for t in one_trials]
    recorded = None
    if a.setting == "replay":
        # The recorded length (epochs) of each run of the file, by index: what decides whether a
        # replay can complete the production budget.
        recorded = [json.loads(l)["max_train_steps"] for l in open(a.runs) if l.strip()]
        for t in one:
            t["recorded"] = recorded[int(t["params"]["run"])]
    out = {"label": a.label, "setting": a.setting, "seed": seed, "prod": a.prod, "jobs": a.jobs, "eval_every": a.eval_every,
           "oneshot": one, "oneshot_wall_s": wall, "variants": {}}
    for vname in a.variants.split(","):
        wall, trials, status = res[vname]
        r = rounds_result(a, trials, status)
        r["wall_s"] = wall
        if recorded is not None:
            for q in r["prod"]:
                q["recorded"] = recorded[int(q["params"]["run"])]
        r["oneshot"] = oneshot_at(one, r["steps_run"])
        if oracle:
            for key, val in (("rounds", r["best"]), ("oneshot", r["oneshot"]["best"])):
                r[f"{key}_rank"] = None if val is None else 1 + sum(1 for x in oracle if x < val)
        out["variants"][vname] = r
    return out


def run_oracle(a, budget):
    """Every run of the replay file at `budget`, once (a grid over the index): run index ->
    best value (None unless complete)."""
    d = os.path.join(a.out, a.label, f"oracle-{budget}")
    log(f"{a.label}: oracle, all 512 runs at {budget}")
    _, trials, _ = run_study(a, d, study_toml("oracle", a, 0, 512, grid=512, budget=budget))
    by_run = {}
    for t in trials:
        v = t["best_value"] if t["state"] == "complete" and finite(t["best_value"]) else None
        by_run[int(t["params"]["run"])] = v
    if sorted(by_run) != list(range(512)):
        raise SystemExit("the oracle grid did not visit every run once")
    return by_run


def avg_ranks(xs):
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for m in range(i, j + 1):
            r[order[m]] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(pairs):
    n = len(pairs)
    if n < 3:
        return None
    rx, ry = avg_ranks([p[0] for p in pairs]), avg_ranks([p[1] for p in pairs])
    mx, my = sum(rx) / n, sum(ry) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(rx, ry))
    sxx = sum((x - mx) ** 2 for x in rx)
    syy = sum((y - my) ** 2 for y in ry)
    return sxy / math.sqrt(sxx * syy) if sxx and syy else None


def oracle_record(a, prod, short):
    """How round 1 at each budget of `short` ranks the runs for the production budget."""
    recorded = [json.loads(l)["max_train_steps"] for l in open(a.runs) if l.strip()]
    vals = sorted(v for v in prod.values() if v is not None)
    rec = {"kind": "oracle", "label": a.label, "prod": a.prod, "runs": len(prod), "complete": len(vals),
           "best": vals[0] if vals else None, "median": med(vals), "values": vals, "short": {}}
    for b, by in sorted(short.items()):
        both = [(by[i], prod[i]) for i in range(512) if by[i] is not None and prod[i] is not None]
        ranked = sorted((v, i) for i, v in by.items() if v is not None)
        top = [i for _, i in ranked[:16]]
        rec["short"][b] = {"complete": sum(1 for v in by.values() if v is not None), "rho": spearman(both), "n_both": len(both),
                           "top16_complete_at_prod": sum(1 for i in top if prod[i] is not None),
                           "top16_prod_values": [prod[i] for i in top],
                           "top16_recorded_median": med([recorded[i] for i in top]),
                           "all_recorded_median": med(recorded)}
    return rec


def reeval(a, path):
    """Train each approach's chosen configuration again at fresh trainer seeds."""
    lines = [json.loads(l) for l in open(path) if l.strip()]
    out_path = os.path.join(os.path.dirname(path), "reeval.jsonl")
    for r in lines:
        if r.get("kind") or r["setting"] != "digits":
            continue
        seed, cache = r["seed"], {}
        a.prod = r["prod"]
        a.eval_every = r["eval_every"]
        def run(params):
            key = json.dumps(params, sort_keys=True)
            if key not in cache:
                d = os.path.join(a.out, r["label"], f"seed-{seed}", f"reeval-{len(cache)}")
                body = ["[params.%s]\ntype = \"fixed\"\nvalue = %s" % (k, json.dumps(v) if isinstance(v, str) else repr(v)) for k, v in params.items()]
                text = study_toml("reeval", a, 1000 + seed, a.replicates)
                text = text[: text.index("[params.")] + "\n".join(body) + "\n"
                log(f"{r['label']} seed {seed}: re-evaluating {params}")
                _, trials, _ = run_study(a, d, text)
                trials.sort(key=lambda t: t["number"])
                if any(t["params"] != params for t in trials):
                    raise SystemExit("re-evaluation ran other parameters")
                cache[key] = [{"trial": t["number"], "state": t["state"], "best_value": t["best_value"], "final_value": t["final_value"],
                               "best_step": t["best_step"]} for t in trials]
            return cache[key]
        rec = {"kind": "reeval", "label": r["label"], "seed": seed, "replicates": a.replicates, "study_seed": 1000 + seed, "variants": {}}
        for vname, v in r["variants"].items():
            if v["best_trial"] is None or v["oneshot"]["best_trial"] is None:
                continue
            rp = next(p["params"] for p in v["prod"] if p["number"] == v["best_trial"])
            op = next(t["params"] for t in r["oneshot"] if t["number"] == v["oneshot"]["best_trial"])
            rec["variants"][vname] = {"rounds_params": rp, "rounds": run(rp), "oneshot_params": op, "oneshot": run(op)}
        with open(out_path, "a") as f:
            f.write(json.dumps(rec) + "\n")


# --- summary -----------------------------------------------------------------------------

def fmt(x, d=4):
    if x is None:
        return "–"
    if isinstance(x, float) and abs(x) >= 100:
        return f"{x:.0f}" if x == int(x) else f"{x:.1f}"
    if isinstance(x, float):
        return f"{x:.{d}g}"
    return str(x)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize_reeval(recs):
    by = {}
    for r in recs:
        by.setdefault(r["label"], []).append(r)
    for label, rs in by.items():
        rs.sort(key=lambda r: r["seed"])
        print(f"\n### {label}: the chosen configurations trained again at {rs[0]['replicates']} fresh trainer seeds "
              f"(study seed 1000 + s), median [min, max] of the best valid/loss\n")
        for vname in rs[0]["variants"]:
            print(f"**{vname}**\n")
            print("| seed | rounds' choice | re-evaluated | one-shot's choice | re-evaluated | rounds − one-shot (medians) |")
            print("|---|---|---:|---|---:|---:|")
            ds, rm, om = [], [], []
            for r in rs:
                v = r["variants"].get(vname)
                if not v:
                    continue
                desc = lambda p: f"lr {p['learning_rate']:.3g}, m {p['momentum']:.3g}, w {p['warmup_steps']}, {p['schedule']}" + (f" d{p['decay_steps']}" if "decay_steps" in p else "")
                cell = lambda xs: f"{fmt(statistics.median(xs))} [{fmt(min(xs))}, {fmt(max(xs))}]"
                rb = [x["best_value"] for x in v["rounds"] if x["best_value"] is not None]
                ob = [x["best_value"] for x in v["oneshot"] if x["best_value"] is not None]
                d = statistics.median(rb) - statistics.median(ob)
                ds.append(d)
                rm.append(statistics.median(rb))
                om.append(statistics.median(ob))
                print(f"| {r['seed']} | {desc(v['rounds_params'])} | {cell(rb)} | {desc(v['oneshot_params'])} | {cell(ob)} | {fmt(d, 3)} |")
            print(f"| **median** | | {fmt(med(rm))} | | {fmt(med(om))} | {fmt(med(ds), 3)} |")
            print(f"\nrounds' choice better in {sum(d < 0 for d in ds)}, equal in {sum(d == 0 for d in ds)}, worse in {sum(d > 0 for d in ds)} of {len(ds)} seeds\n")


def summarize(lines):
    by = {}
    reevals = [r for r in lines if r.get("kind") == "reeval"]
    for r in lines:
        if r.get("kind") in ("oracle", "reeval"):
            continue
        by.setdefault(r["label"], []).append(r)
    oracles = {r["label"]: r for r in lines if r.get("kind") == "oracle"}
    for label, rs in by.items():
        rs.sort(key=lambda r: r["seed"])
        r0 = rs[0]
        orc = oracles.get(label)
        ot = ""
        if orc:
            ot = (f"; oracle: {orc['complete']} of {orc['runs']} runs complete at {r0['prod']}, best {fmt(orc['best'])}, "
                  f"median {fmt(orc['median'])}")
        print(f"\n### {label}: {r0['setting']}, production budget {r0['prod']}, {len(rs)} seeds, --jobs {r0['jobs']}{ot}\n")
        if orc:
            for b, x in orc.get("short", {}).items():
                ranks = sorted(1 + sum(1 for y in orc["values"] if y < v) for v in x["top16_prod_values"] if v is not None)
                print(f"- all 512 runs at {b} against {r0['prod']}: Spearman rho {fmt(x['rho'], 2)} over the {x['n_both']} runs complete at both; "
                      f"the best 16 at {b}: {x['top16_complete_at_prod']} complete at {r0['prod']}, there ranked {ranks} of {orc['complete']}; "
                      f"their recorded length median {fmt(x['top16_recorded_median'])} epochs (all runs: {fmt(x['all_recorded_median'])})")
            print()
        for vname in r0["variants"]:
            n1, b1, c, m = parse_variant(vname)
            print(f"**{vname}**: round 1 {n1} x {b1}, round 2 carry {c} + {m} new at {r0['prod']}; one-shot: its first k trials "
                  f"at {r0['prod']} within the same compute (k+1: one more)\n")
            rank = orc is not None
            print("| seed | rounds: steps | complete at prod (carried+new) | best | winner | one-shot: k | steps | best | k+1: best |"
                  + (" rank of rounds / one-shot (of all runs) |" if rank else "") + " rounds − one-shot |")
            print("|---|---:|---|---:|---|---:|---:|---:|---:|" + ("---:|" if rank else "") + "---:|")
            rows = []
            for r in rs:
                v = r["variants"][vname]
                o = v["oneshot"]
                cc = sum(1 for p in v["prod"] if p["carried"] and p["state"] == "complete")
                nc = sum(1 for p in v["prod"] if not p["carried"] and p["state"] == "complete")
                win = "–" if v["best_trial"] is None else f"#{v['best_trial']} ({'carried' if v['best_carried'] else 'new'})"
                diff = v["best"] - o["best"] if v["best"] is not None and o["best"] is not None else None
                rows.append({"steps": v["steps_run"], "best": v["best"], "k": o["k"], "osteps": o["steps"], "obest": o["best"],
                             "k1": o["k1_best"], "diff": diff, "rr": v.get("rounds_rank"), "orr": v.get("oneshot_rank")})
                ex = " (all: raise --oneshot-max)" if o["exhausted"] else ""
                print(f"| {r['seed']} | {v['steps_run']} | {cc}+{nc} of {v['at_prod']} | {fmt(v['best'])} | {win} | {o['k']}{ex} | {o['steps']} | "
                      f"{fmt(o['best'])} | {fmt(o['k1_best'])} |" + (f" {fmt(v.get('rounds_rank'))} / {fmt(v.get('oneshot_rank'))} |" if rank else "")
                      + f" {fmt(diff, 3)} |")
            mm = lambda k: med([x[k] for x in rows])
            print(f"| **median** | {fmt(mm('steps'))} | | {fmt(mm('best'))} | | {fmt(mm('k'))} | {fmt(mm('osteps'))} | {fmt(mm('obest'))} | "
                  f"{fmt(mm('k1'))} |" + (f" {fmt(mm('rr'))} / {fmt(mm('orr'))} |" if rank else "") + f" {fmt(mm('diff'), 3)} |")
            ds = [x["diff"] for x in rows if x["diff"] is not None]
            w = sum(1 for x in ds if x < 0)
            t = sum(1 for x in ds if x == 0)
            none_r = sum(1 for x in rows if x["best"] is None)
            none_o = sum(1 for x in rows if x["obest"] is None)
            if r0["setting"] == "replay":
                rec = lambda sel: [p["recorded"] for r in rs for p in r["variants"][vname]["prod"] if sel(p)]
                one_rec = [t["recorded"] for r in rs for t in r["oneshot"][: r["variants"][vname]["oneshot"]["k"]]]
                need = math.ceil(0.9 * r0["prod"])
                share = lambda xs: f"median {fmt(med(xs))} epochs, {sum(1 for x in xs if x >= need)} of {len(xs)} recorded >= {need}"
                print(f"\nrecorded length of the runs at the production budget (a run recorded shorter than {need} epochs cannot complete it): "
                      f"carried {share(rec(lambda p: p['carried']))}; new {share(rec(lambda p: not p['carried']))}; "
                      f"one-shot (first k) {share(one_rec)}")
            print(f"\nrounds better in {w}, equal in {t}, worse in {len(ds) - w - t} of {len(ds)} seeds with both"
                  + (f"; no complete trial at the production budget: rounds {none_r}, one-shot {none_o}" if none_r or none_o else "") + "\n")
        walls = [r["oneshot_wall_s"] for r in rs]
        vw = {v: med([r["variants"][v]["wall_s"] for r in rs]) for v in r0["variants"]}
        print("Wall time per study, median over seeds (s): one-shot " + f"{med(walls):.1f}, " + ", ".join(f"{k} {w:.1f}" for k, w in vw.items()))
    if reevals:
        summarize_reeval(reevals)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--horizon")
    p.add_argument("--out")
    p.add_argument("--setting", choices=["digits", "replay"], default="digits")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--prod", type=int, default=2000)
    p.add_argument("--variants", default="16x500:2+2")
    p.add_argument("--oneshot-max", type=int, default=16)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--runs", default=None, help="replay: the JSON Lines file of recorded runs")
    p.add_argument("--oracle", action="store_true")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--label", default=None)
    p.add_argument("--reeval", default=None, help="digits: RUNS.jsonl whose chosen configurations to train again")
    p.add_argument("--replicates", type=int, default=4)
    p.add_argument("--summarize", nargs="*")
    a = p.parse_args()
    if a.summarize is not None:
        summarize([json.loads(l) for f in a.summarize for l in open(f) if l.strip()])
        return
    if a.reeval:
        if not a.horizon:
            p.error("--horizon is needed")
        a.out = os.path.dirname(a.reeval)
        reeval(a, a.reeval)
        return
    if not a.horizon or not a.out:
        p.error("--horizon and --out are needed")
    if a.setting == "replay" and not a.runs:
        p.error("--runs is needed for replay")
    a.label = a.label or f"{a.setting}-{a.prod}"
    os.makedirs(a.out, exist_ok=True)
    runs = os.path.join(a.out, "oneshot.jsonl")
    oracle = None
    if a.oracle:
        prod = run_oracle(a, a.prod)
        short = {b: run_oracle(a, b) for b in sorted({parse_variant(v)[1] for v in a.variants.split(",")})}
        rec = oracle_record(a, prod, short)
        oracle = rec["values"]
        with open(runs, "a") as f:
            f.write(json.dumps(rec) + "\n")
    for i, s in enumerate(int(x) for x in a.seeds.split(",")):
        r = one_seed(a, s, i, oracle)
        with open(runs, "a") as f:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
