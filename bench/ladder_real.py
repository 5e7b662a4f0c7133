#!/usr/bin/env python3
"""Real training on a ladder (issue: evidence 2): schedule-consistent rungs with resume, the same
ladder restarted from scratch at each rung, and truncated rungs read part-way through one long
schedule, on a built-in workload, for several study seeds. Standard library only.

Usage: ladder_real.py --horizon BIN --out DIR [--seeds 0,1,2] [--workload digits-mlp]
           [--trials 27] [--min-steps 100] [--eta 3] [--max-steps 2700] [--decay-steps 33]
           [--eval-every 50] [--jobs 2] [--lr-low 1e-3] [--lr-high 1.0] [--label NAME]
       ladder_real.py --summarize RUNS.jsonl [RUNS.jsonl ...]

For every seed it runs, with `horizon run STUDY --jobs J`, five kinds of study that share the
search space, the sampler, the study seed and hence the configurations (trial n is sample n, with
HORIZON_SEED = trial_seed(seed, n), in every study; checked):

  resume     [ladder] min_steps, eta, resume = true: each rung a complete WSD schedule for its
             budget, a promoted trial resumes from its checkpoint at the rung's decay start;
  restart    the same ladder with resume = false: every rung run from scratch;
  full       no ladder, every configuration at the top budget (one long schedule each): the
             curves the truncated approach reads, and the schedule-consistent top-rung value of
             every configuration;
  ref-K      no ladder, every configuration at rung K's budget, for each rung below the top:
             the schedule-consistent rung-K value of every configuration (reference only: no
             approach is charged for them).

The studies run in a rotating order per seed, so drift on a shared machine hits all alike.

Then, per seed:

  truncated  each configuration's rung-K value is the retrospective best of the objective up to
             step b_K of its `full` run (what Optuna's and Ray Tune's pruners see: a rung read
             part-way through one schedule for the top budget). ASHA's promotion rule
             (horizon_core::ladder::next: promote from the highest rung down the best
             floor(n_K / eta) not yet promoted, ties to the lower number; else launch; else wait;
             with Ladder::rules' rank-correlation guard where the ladder is big enough for it,
             as in setting B) is replayed over these values with J simulated workers, time in training steps, in
             trial-number order. A trial stopped at rung K costs b_K steps (its long run stopped
             there); a promoted one continues the same run, b_{K+1} - b_K more.
  replay     the same simulator over the schedule-consistent values (ref-K, full), charging
             what resuming costs (b_{K+1} - resume step): the real ladder's rule without its
             timing, the like-for-like partner of `truncated`.

Reported: steps run by resume and restart (and the saved share), the ladder report's own totals,
whether resume and restart agree bit for bit on every (trial, rung) both ran and on the
promotions, whether each ladder's rung values equal the reference runs at the same budget, the
best top-rung objective each approach reaches, and Spearman's rho of each rung's values with the
top rung's: over all configurations (ref-K or truncated at b_K against full), and within each
real ladder over the trials finished at both rungs.
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


def study_toml(name, a, seed, budget, ladder=None):
    lines = [
        "[study]",
        f'name = "{name}"',
        f"trials = {a.trials}",
        f"max_train_steps = {budget}",
        f"eval_every = {a.eval_every}",
        f"seed = {seed}",
        "[objective]",
        f'metric = "{METRIC}"',
        'direction = "minimize"',
        "[trainer]",
        f'workload = "{a.workload}"',
    ]
    if ladder is not None:
        lines += ["[ladder]", f"min_steps = {a.min_steps}", f"eta = {a.eta}", f"resume = {'true' if ladder else 'false'}"]
    lines += [
        "[params.learning_rate]",
        'type = "float"',
        f"low = {a.lr_low!r}",
        f"high = {a.lr_high!r}",
        'scale = "log"',
        "[params.momentum]",
        'type = "float"',
        "low = 0.0",
        "high = 0.99",
        "[params.schedule]",
        'type = "fixed"',
        'value = "wsd"',
        "[params.decay_steps]",
        'type = "fixed"',
        f"value = {a.decay_steps}",
    ]
    return "\n".join(lines) + "\n"


def horizon(a, *args, capture=True):
    r = subprocess.run([a.horizon, *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-4000:] + r.stderr[-4000:])
        raise SystemExit(f"horizon {' '.join(args)} exited {r.returncode}")
    return r.stdout


def run_study(a, path):
    t0 = time.monotonic()
    out = horizon(a, "run", path, "--jobs", str(a.jobs))
    wall = time.monotonic() - t0
    with open(path + ".run.txt", "w") as f:
        f.write(out)
    trials = [json.loads(l) for l in horizon(a, "trials", path, "--json").splitlines() if l.strip()]
    status = json.loads(horizon(a, "status", path, "--json"))
    return wall, trials, status


def curves(a, path):
    """trial number -> [(step, value)] of the objective, from `horizon export --format jsonl`."""
    c = {}
    for l in horizon(a, "export", path, "--format", "jsonl").splitlines():
        if not l.strip():
            continue
        r = json.loads(l)
        if r["metric"] == METRIC:
            v = r["value"]
            c.setdefault(r["trial"], []).append((r["step"], float(v) if not isinstance(v, str) else float(v)))
    return c


def rungs_of(budget_top, min_steps, eta):
    """horizon_core::ladder::Ladder::geometric."""
    rungs, b = [], min_steps
    while b < budget_top:
        rungs.append(b)
        b *= eta
    if len(rungs) > 1 and budget_top / rungs[-1] < math.sqrt(eta):
        rungs.pop()
    rungs.append(budget_top)
    return rungs


def finite(v):
    return v is not None and isinstance(v, float) and math.isfinite(v)


# --- ASHA replay (horizon_core::ladder::next, minimize) -------------------------------------
#
# With the guard of commit 4eb6efc (Ladder::rules): where planned >= eta^2 * calibration
# (calibration = 2 eta^2, the default; setting B: 32 >= 4 * 8), the first `calibration`
# finishers of a rung (by number) go on whatever their rank, to measure the rung's Spearman rho
# with the next; a rung with rho >= 0.7 decides (quota), one below passes every trial with a
# value and the next rung is measured. Below that size (setting A: 27 < 9 * 18) plain ASHA.

MIN_RANK_CORRELATION = 0.7


def value_at(t, k):
    r = t["rungs"]
    return r[k] if len(r) > k and r[k] not in ("P", "X") else None


def rank_correlation(pairs):
    """horizon_core::ladder::rank_correlation (0 where one side has no spread)."""
    rho, _ = spearman(pairs)
    return 0.0 if rho is None else rho


def rules(hist, eta, top, planned):
    """horizon_core::ladder::Ladder::rules: one of ("quota",), ("measure", [numbers]),
    ("decides", rho), ("passes_all", rho) per rung below the top."""
    out = [("quota",)] * top
    m = 2 * eta * eta
    if m < 3 or planned < eta * eta * m:
        return out
    numbered = sorted(hist, key=lambda t: t["n"])
    for k in range(top):
        members, pairs, counted = [], [], 0
        for t in numbered:
            if value_at(t, k) is None:
                continue
            if counted == m:
                break
            members.append(t["n"])
            failed_next = len(t["rungs"]) > k + 1 and t["rungs"][k + 1] != "P" and value_at(t, k + 1) is None
            if not failed_next:
                counted += 1
                if value_at(t, k + 1) is not None:
                    pairs.append((value_at(t, k), value_at(t, k + 1)))
        if len(pairs) < m:
            out[k] = ("measure", members)
            return out
        rho = rank_correlation(pairs)
        if rho >= MIN_RANK_CORRELATION:
            out[k] = ("decides", rho)
            return out
        out[k] = ("passes_all", rho)
    return out


def promotable(hist, k, eta, rule):
    if rule[0] == "measure":
        for n in rule[1]:
            if not len(hist[n]["rungs"]) > k + 1:
                return n
    finished = [t for t in hist if len(t["rungs"]) > k and t["rungs"][k] != "P"]
    ranked = sorted(
        ((t["rungs"][k], t["n"], len(t["rungs"]) > k + 1) for t in finished if t["rungs"][k] not in ("P", "X")),
        key=lambda x: (x[0], x[1]),
    )
    quota = len(ranked) if rule[0] == "passes_all" else len(finished) // eta
    for v, n, promoted in ranked[:quota]:
        if not promoted:
            return n
    return None


def decide(hist, rungs, eta, planned):
    top = len(rungs) - 1
    rs = rules(hist, eta, top, planned)
    for k in range(top - 1, -1, -1):
        n = promotable(hist, k, eta, rs[k])
        if n is not None:
            return ("promote", n, k + 1)
    if len(hist) < planned:
        return ("launch",)
    if any(t["rungs"][-1] == "P" for t in hist):
        return ("wait",)
    return ("done",)


def replay(rungs, eta, planned, workers, value, cost):
    """Simulate the ladder: value(n, k) -> float or None (infeasible); cost(k) -> steps to run
    rung k of a trial that is at rung k - 1 (k = 0: a launch). Returns {n: highest rung}, total
    steps, and the rungs' rules at the end (rules())."""
    hist = []
    busy = {}  # worker -> (finish time, n, k)
    now, steps = 0, 0
    idle = list(range(workers))
    while True:
        for w in sorted(idle):
            d = decide(hist, rungs, eta, planned)
            if d[0] == "launch":
                n = len(hist)
                hist.append({"n": n, "rungs": ["P"]})
                busy[w] = (now + cost(0), n, 0)
                steps += cost(0)
                idle.remove(w)
            elif d[0] == "promote":
                _, n, k = d
                hist[n]["rungs"].append("P")
                busy[w] = (now + cost(k), n, k)
                steps += cost(k)
                idle.remove(w)
            else:
                break
        if not busy:
            break
        w = min(busy, key=lambda w: (busy[w][0], w))
        now, n, k = busy.pop(w)
        v = value(n, k)
        hist[n]["rungs"][k] = v if finite(v) else "X"
        idle.append(w)
    reached = {t["n"]: len(t["rungs"]) - 1 for t in hist}
    return reached, steps, rules(hist, eta, len(rungs) - 1, planned)


# --- statistics --------------------------------------------------------------------------

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
    pairs = [(x, y) for x, y in pairs if finite(x) and finite(y)]
    n = len(pairs)
    if n < 3:
        return None, n
    rx, ry = avg_ranks([p[0] for p in pairs]), avg_ranks([p[1] for p in pairs])
    mx, my = sum(rx) / n, sum(ry) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None, n
    return sxy / math.sqrt(sxx * syy), n


# --- one seed ----------------------------------------------------------------------------

def one_seed(a, seed, rot):
    rungs = rungs_of(a.max_steps, a.min_steps, a.eta)
    top = len(rungs) - 1
    for b in rungs:
        if b % a.eval_every:
            raise SystemExit(f"rung budget {b} is not a multiple of eval_every {a.eval_every}: truncated reads need an evaluation there")
    d = os.path.join(a.out, a.label, f"seed-{seed}")
    os.makedirs(d, exist_ok=True)
    studies = {
        "resume": study_toml("ladder-real-resume", a, seed, a.max_steps, ladder=True),
        "restart": study_toml("ladder-real-restart", a, seed, a.max_steps, ladder=False),
        "full": study_toml("ladder-real-full", a, seed, a.max_steps),
    }
    for k in range(top):
        studies[f"ref-{k}"] = study_toml(f"ladder-real-ref-{k}", a, seed, rungs[k])
    names = list(studies)
    names = names[rot % len(names):] + names[: rot % len(names)]
    res = {}
    for name in names:
        sd = os.path.join(d, name)
        os.makedirs(sd, exist_ok=True)
        p = os.path.join(sd, "study.toml")
        with open(p, "w") as f:
            f.write(studies[name])
        if os.path.exists(os.path.join(sd, "horizon-runs")):
            raise SystemExit(f"{sd}/horizon-runs exists: use a fresh --out")
        print(f"[ladder_real {time.strftime('%H:%M:%S')}] {a.label} seed {seed}: {name}", file=sys.stderr, flush=True)
        wall, trials, status = run_study(a, p)
        res[name] = {"wall_s": wall, "trials": trials, "status": status, "path": p}
    full_curves = curves(a, res["full"]["path"])

    # The same configurations in every study.
    params = {name: {t["number"]: t["params"] for t in r["trials"]} for name, r in res.items()}
    for name in names:
        if params[name] != params["full"]:
            raise SystemExit(f"seed {seed}: study {name} sampled other configurations than full")

    def rung_records(name):
        return {(t["number"], r["rung"]): r for t in res[name]["trials"] for r in t["rungs"]}

    lad = {name: rung_records(name) for name in ("resume", "restart")}
    # Schedule-consistent value of configuration n at rung k: ref-k's (or full's) best.
    ref = {k: {t["number"]: (t["best_value"] if t["state"] == "complete" else None) for t in res[f"ref-{k}" if k < top else "full"]["trials"]} for k in range(top + 1)}
    ref_step = {k: {t["number"]: t["best_step"] for t in res[f"ref-{k}" if k < top else "full"]["trials"]} for k in range(top + 1)}

    def trunc(n, k):
        pts = [v for s, v in full_curves.get(n, []) if s <= rungs[k]]
        if not pts or not all(math.isfinite(v) for v in pts):
            return None
        return min(pts)

    ntr = a.trials
    out = {"label": a.label, "seed": seed, "workload": a.workload, "rungs": rungs, "eta": a.eta, "trials": ntr,
           "decay_steps": a.decay_steps, "eval_every": a.eval_every, "jobs": a.jobs,
           "wall_s": {name: r["wall_s"] for name, r in res.items()}}

    def ladder_history(recs):
        """The finished ladder as rules() reads it: a trial's value at each rung it ran."""
        hist = []
        for n in range(ntr):
            ks = sorted(k for (m, k) in recs if m == n)
            vals = [recs[(n, k)]["best_value"] if recs[(n, k)]["state"] == "complete" and finite(recs[(n, k)]["best_value"]) else "X" for k in ks]
            hist.append({"n": n, "rungs": vals})
        return hist

    # Real ladders: steps, report totals, best at the top rung, agreement.
    for name in ("resume", "restart"):
        recs = lad[name]
        tot = res[name]["status"]["ladder"]["totals"]
        steps = sum(r["steps_run"] for r in recs.values())
        tops = [(r["best_value"], n) for (n, k), r in recs.items() if k == top and r["state"] == "complete" and finite(r["best_value"])]
        best = min(tops) if tops else (None, None)
        reached = {}
        for (n, k) in recs:
            reached[n] = max(reached.get(n, 0), k)
        # The ladder's rung values against the reference runs at the same budget.
        same_ref = diff_ref = 0
        ref_diffs = []
        for (n, k), r in sorted(recs.items()):
            if r["state"] != "complete":
                continue
            if r["best_value"] == ref[k][n] and r["best_step"] == ref_step[k][n]:
                same_ref += 1
            else:
                diff_ref += 1
                ref_diffs.append({"trial": n, "rung": k, "entry": r["entry"], "ladder": [r["best_step"], r["best_value"]],
                                  "reference": [ref_step[k][n], ref[k][n]], "final_equal": r["final_value"] == (
                                      next(t["final_value"] for t in res[f"ref-{k}" if k < top else "full"]["trials"] if t["number"] == n))})
        # Spearman within the ladder: rung k vs top, trials finished at both.
        within = {}
        for k in range(top):
            pairs = [(recs[(n, k)]["best_value"], recs[(n, top)]["best_value"]) for (n, kk) in recs if kk == top and (n, k) in recs
                     and recs[(n, k)]["state"] == "complete" and recs[(n, top)]["state"] == "complete"]
            rho, nn = spearman(pairs)
            within[k] = {"rho": rho, "n": nn}
        out[name] = {"steps_run": steps, "report": tot, "best_top": best[0], "best_trial": best[1],
                     "best_top_full": ref[top][best[1]] if best[1] is not None else None,
                     "reached": reached, "rung_sizes": [sum(1 for (n, kk) in recs if kk == k) for k in range(top + 1)],
                     "equal_reference": same_ref, "differ_reference": diff_ref, "reference_diffs": ref_diffs,
                     "rho_within_to_top": within, "report_to_top": res[name]["status"]["ladder"]["to_top"],
                     "report_consecutive": res[name]["status"]["ladder"]["consecutive"],
                     "rules": [list(x) for x in rules(ladder_history(recs), a.eta, top, ntr)]}

    # Resume against restart, bit for bit.
    common = sorted(set(lad["resume"]) & set(lad["restart"]))
    diffs = []
    for key in common:
        x, y = lad["resume"][key], lad["restart"][key]
        fx = (x["state"], x["best_step"], x["best_value"], x["final_step"], x["final_value"])
        fy = (y["state"], y["best_step"], y["best_value"], y["final_step"], y["final_value"])
        if fx != fy:
            diffs.append({"trial": key[0], "rung": key[1], "resume": fx, "restart": fy, "resume_entry": x["entry"]})
    out["resume_vs_restart"] = {"common": len(common), "identical": len(common) - len(diffs), "diffs": diffs,
                                "same_promotions": set(lad["resume"]) == set(lad["restart"])}

    # Replays over all configurations.
    def cons_value(n, k):
        return ref[k][n]

    resume_step = lambda k: max(rungs[k] - a.decay_steps, 0)
    reached_t, steps_t, rules_t = replay(rungs, a.eta, ntr, a.jobs, trunc, lambda k: rungs[0] if k == 0 else rungs[k] - rungs[k - 1])
    reached_c, steps_c, rules_c = replay(rungs, a.eta, ntr, a.jobs, cons_value, lambda k: rungs[0] if k == 0 else rungs[k] - resume_step(k - 1))
    _, steps_c_rst, _ = replay(rungs, a.eta, ntr, a.jobs, cons_value, lambda k: rungs[k])
    for name, reached, steps, rl in (("truncated", reached_t, steps_t, rules_t), ("replay", reached_c, steps_c, rules_c)):
        tops = [(ref[top][n], n) for n, k in reached.items() if k == top and finite(ref[top][n])]
        best = min(tops) if tops else (None, None)
        out[name] = {"steps_run": steps, "best_top": best[0], "best_trial": best[1],
                     "rung_sizes": [sum(1 for k in reached.values() if k >= j) for j in range(top + 1)],
                     "reached": reached, "rules": [list(r) for r in rl]}
    out["replay"]["steps_restart"] = steps_c_rst

    # Spearman of each rung with the top, over all configurations.
    out["rho_all_to_top"] = {
        "consistent": {k: dict(zip(("rho", "n"), spearman([(ref[k][n], ref[top][n]) for n in range(ntr)]))) for k in range(top)},
        "truncated": {k: dict(zip(("rho", "n"), spearman([(trunc(n, k), ref[top][n]) for n in range(ntr)]))) for k in range(top)},
    }
    finite_top = [ref[top][n] for n in range(ntr) if finite(ref[top][n])]
    out["oracle_best"] = min(finite_top) if finite_top else None
    out["top_best_step"] = {n: ref_step[top][n] for n in range(ntr)}
    return out


# --- summary -----------------------------------------------------------------------------

def fmt(x, d=4):
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{d}g}"
    return str(x)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(lines):
    by = {}
    for r in lines:
        by.setdefault(r["label"], []).append(r)
    for label, rs in by.items():
        rs.sort(key=lambda r: r["seed"])
        r0 = rs[0]
        rungs = r0["rungs"]
        top = len(rungs) - 1
        print(f"\n### {label}: {r0['workload']}, {r0['trials']} configurations, rungs {rungs}, eta {r0['eta']}, "
              f"WSD decay_steps {r0['decay_steps']}, eval_every {r0['eval_every']}, --jobs {r0['jobs']}\n")
        print("| seed | steps: resume | restart | saved | report's saved share | truncated (replay) | consistent replay: resume / restart | "
              "resume = restart (trial-rungs) | same promotions | best top: resume | restart | truncated | oracle (all at top) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
        rows = []
        for r in rs:
            sr, st = r["resume"]["steps_run"], r["restart"]["steps_run"]
            saved = 1 - sr / st
            rvr = r["resume_vs_restart"]
            row = dict(seed=r["seed"], sr=sr, st=st, saved=saved, rep=r["resume"]["report"]["saved_fraction"],
                       tr=r["truncated"]["steps_run"], cr=r["replay"]["steps_run"], crr=r["replay"]["steps_restart"],
                       ident=f"{rvr['identical']}/{rvr['common']}", prom="yes" if rvr["same_promotions"] else "no",
                       br=r["resume"]["best_top"], bs=r["restart"]["best_top"], bt=r["truncated"]["best_top"], bo=r["oracle_best"])
            rows.append(row)
            print(f"| {row['seed']} | {sr} | {st} | {100 * saved:.1f}% | {100 * row['rep']:.1f}% | {row['tr']} | {row['cr']} / {row['crr']} "
                  f"({100 * (1 - row['cr'] / row['crr']):.1f}% saved) | {row['ident']} | {row['prom']} | {fmt(row['br'])} | {fmt(row['bs'])} | {fmt(row['bt'])} | {fmt(row['bo'])} |")
        m = lambda k: med([x[k] for x in rows])
        print(f"| **median** | {m('sr'):.0f} | {m('st'):.0f} | {100 * m('saved'):.1f}% | {100 * m('rep'):.1f}% | {m('tr'):.0f} | "
              f"{m('cr'):.0f} / {m('crr'):.0f} | | | {fmt(m('br'))} | {fmt(m('bs'))} | {fmt(m('bt'))} | {fmt(m('bo'))} |")

        print("\nSpearman rho of rung k with the top rung (all configurations; schedule-consistent = complete schedule at b_k, "
              "truncated = best up to b_k of the top-budget run), and within each real ladder (trials finished at both, n):\n")
        hdr = " | ".join(f"rung {k} ({rungs[k]})" for k in range(top))
        print(f"| seed | rungs | {hdr} |")
        print("|---|---|" + "---:|" * top)
        agg = {"consistent": {k: [] for k in range(top)}, "truncated": {k: [] for k in range(top)}}
        for r in rs:
            for kind in ("consistent", "truncated"):
                cells = []
                for k in range(top):
                    x = r["rho_all_to_top"][kind][str(k)] if str(k) in r["rho_all_to_top"][kind] else r["rho_all_to_top"][kind][k]
                    agg[kind][k].append(x["rho"])
                    cells.append(f"{fmt(x['rho'], 2)} (n {x['n']})")
                print(f"| {r['seed']} | {kind} | " + " | ".join(cells) + " |")
            for name in ("resume", "restart"):
                w = r[name]["rho_within_to_top"]
                cells = []
                for k in range(top):
                    x = w[str(k)] if str(k) in w else w[k]
                    cells.append(f"{fmt(x['rho'], 2)} (n {x['n']})")
                print(f"| {r['seed']} | within {name} ladder | " + " | ".join(cells) + " |")
        for kind in ("consistent", "truncated"):
            print(f"| **median** | {kind} | " + " | ".join(fmt(med(agg[kind][k]), 2) for k in range(top)) + " |")

        print("\nRung sizes (trials reaching each rung) and best trial:\n")
        for r in rs:
            print(f"- seed {r['seed']}: resume {r['resume']['rung_sizes']} best #{r['resume']['best_trial']}; restart {r['restart']['rung_sizes']} "
                  f"best #{r['restart']['best_trial']}; truncated {r['truncated']['rung_sizes']} best #{r['truncated']['best_trial']}; "
                  f"consistent replay {r['replay']['rung_sizes']} best #{r['replay']['best_trial']}; "
                  f"ladder rung values = reference runs: resume {r['resume']['equal_reference']}/{r['resume']['equal_reference'] + r['resume']['differ_reference']}, "
                  f"restart {r['restart']['equal_reference']}/{r['restart']['equal_reference'] + r['restart']['differ_reference']}")
            rl = lambda rules: ", ".join(x[0] + (f" {x[1]:.2f}" if len(x) > 1 and isinstance(x[1], float) else "") for x in rules) if rules else "–"
            print(f"  - rung rules at the end (Ladder::rules): resume [{rl(r['resume'].get('rules'))}]; restart [{rl(r['restart'].get('rules'))}]; "
                  f"truncated [{rl(r['truncated'].get('rules'))}]; consistent replay [{rl(r['replay'].get('rules'))}]")
            for dd in r["resume_vs_restart"]["diffs"]:
                print(f"  - resume ≠ restart: trial {dd['trial']} rung {dd['rung']} (entry {dd['resume_entry']}): "
                      f"resume (state, best step, best, final step, final) {dd['resume']}, restart {dd['restart']}")
        walls = {}
        for r in rs:
            for k, v in r["wall_s"].items():
                walls.setdefault(k, []).append(v)
        print("\nWall time per study, median over seeds (s): " + ", ".join(f"{k} {med(v):.1f}" for k, v in walls.items()))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--horizon")
    p.add_argument("--out")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--workload", default="digits-mlp")
    p.add_argument("--trials", type=int, default=27)
    p.add_argument("--min-steps", type=int, default=100)
    p.add_argument("--eta", type=int, default=3)
    p.add_argument("--max-steps", type=int, default=2700)
    p.add_argument("--decay-steps", type=int, default=33)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--lr-low", type=float, default=1e-3)
    p.add_argument("--lr-high", type=float, default=1.0)
    p.add_argument("--label", default=None)
    p.add_argument("--summarize", nargs="*")
    a = p.parse_args()
    if a.summarize is not None:
        lines = [json.loads(l) for f in a.summarize for l in open(f) if l.strip()]
        summarize(lines)
        return
    if not a.horizon or not a.out:
        p.error("--horizon and --out are needed")
    a.label = a.label or f"{a.workload}-eta{a.eta}-min{a.min_steps}-max{a.max_steps}-d{a.decay_steps}"
    os.makedirs(a.out, exist_ok=True)
    runs = os.path.join(a.out, "runs.jsonl")
    for i, s in enumerate(int(x) for x in a.seeds.split(",")):
        r = one_seed(a, s, i)
        with open(runs, "a") as f:
            f.write(json.dumps(r) + "\n")
        print(json.dumps({k: r[k] for k in ("label", "seed")} | {"saved": 1 - r["resume"]["steps_run"] / r["restart"]["steps_run"],
                                                              "resume_vs_restart": {k: r["resume_vs_restart"][k] for k in ("common", "identical", "same_promotions")}}),
              file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
