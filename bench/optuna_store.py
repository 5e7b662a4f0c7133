"""Storage throughput of Optuna's RDBStorage on SQLite with several processes (issue 14), the
peer of bench/src/bin/store_throughput.rs; the driver is bench/run-store-throughput. With --url
(an SQLAlchemy URL, e.g. postgresql+psycopg2://user@host:port/db, of an empty database the caller
has created) the same on that database instead of a SQLite file: the PostgreSQL driver is
bench/run-store-throughput-pg. On PostgreSQL the result line has the server's settings the
workers' connections saw ("postgres": server_version, fsync, synchronous_commit, ...) instead of
"sqlite", and the psycopg2 version; the workers connect with application_name=optuna-bench-worker.

The parent creates a fresh SQLite database in a temporary directory (or --dir) with one study
(optuna.storages.RDBStorage("sqlite:///<dir>/optuna.db"), Optuna's defaults: no engine_kwargs),
then starts K copies of itself (--worker I). Each opens its own RDBStorage on the file,
load_study()s it with RandomSampler(seed=I) (the cheapest sampler, so that the sampler's cost is
not what is measured), prints "ready" and waits on stdin. When all K are ready the parent starts
the clock and tells them to go. Each worker runs study.optimize(objective, n_trials=T/K), the way
Optuna documents running one study from several processes; the objective suggests one float and
calls trial.report(value, step) for step 1..N, then returns the last value. The clock stops when
the last worker has printed its result line (interpreter start-up, imports, load_study and exit
are not timed).

After the run the parent checks that the study holds exactly T trials numbered 0..T-1, each
COMPLETE with N intermediate values at steps 1..N, and that the workers' trial numbers together
are 0..T-1 each once. It prints one JSON line in the shape of store_throughput's (claims_per_s
counts trials: a trial's creation is Optuna's claim), with the SQLite settings the workers'
connections had (journal_mode, synchronous, busy_timeout), and exits 2 if a check failed or a
worker raised.

usage: python optuna_store.py [--workers K] [--trials T] [--points N] [--dir DIR | --url URL]
       (needs optuna; psycopg2 for PostgreSQL)
"""
import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time

import optuna

STUDY = "throughput"


def quiet():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.logging.disable_default_handler()
    logging.getLogger("optuna").setLevel(logging.WARNING)


def loss(x, step):
    return (x - 2.0) ** 2 + 1.0 / step


PG_SETTINGS = ("server_version", "fsync", "synchronous_commit", "wal_sync_method", "full_page_writes",
               "default_transaction_isolation", "shared_buffers", "max_connections")


def pg_settings(storage):
    import sqlalchemy

    with storage.engine.connect() as conn:
        return {name: conn.execute(sqlalchemy.text(f"SHOW {name}")).scalar() for name in PG_SETTINGS}


def pragmas(storage):
    import sqlalchemy

    if storage.engine.dialect.name != "sqlite":
        return None
    with storage.engine.connect() as conn:
        return {
            name: conn.execute(sqlalchemy.text(f"PRAGMA {name}")).scalar()
            for name in ("journal_mode", "synchronous", "busy_timeout")
        } | {"sqlite_version": conn.execute(sqlalchemy.text("select sqlite_version()")).scalar()}


def worker_url(url):
    """A worker's connection to a server says who it is (application_name, passed by SQLAlchemy
    to psycopg2), so that the driver can tell the workers' sessions from the parent's."""
    if url.startswith("sqlite") or "application_name=" in url:
        return url
    return url + ("&" if "?" in url else "?") + "application_name=optuna-bench-worker"


def worker(args):
    quiet()
    storage = optuna.storages.RDBStorage(worker_url(args.url) if args.url else f"sqlite:///{args.db}")
    sampler = optuna.samplers.RandomSampler(seed=args.worker)
    study = optuna.load_study(study_name=STUDY, storage=storage, sampler=sampler)
    n_trials = args.trials // args.workers + (1 if args.worker < args.trials % args.workers else 0)
    numbers = []
    timing = {"objective_s": 0.0, "suggest_s": 0.0, "report_s": 0.0}
    reports = 0

    def objective(trial):
        nonlocal reports
        t0 = time.perf_counter()
        numbers.append(trial.number)
        x = trial.suggest_float("x", -5.0, 5.0)
        t1 = time.perf_counter()
        value = None
        for step in range(1, args.points + 1):
            value = loss(x, step)
            trial.report(value, step)
            reports += 1
        t2 = time.perf_counter()
        timing["suggest_s"] += t1 - t0
        timing["report_s"] += t2 - t1
        timing["objective_s"] += t2 - t0
        return value

    print("ready", flush=True)
    sys.stdin.readline()
    error = None
    t = time.perf_counter()
    try:
        study.optimize(objective, n_trials=n_trials)
    except Exception as e:  # noqa: BLE001 -- reported, the run is marked failed
        error = f"{type(e).__name__}: {e}"
        # Optuna wraps SQLAlchemy's error: keep what SQLite said ("database is locked", ...).
        cause = e.__cause__ or e.__context__
        while cause is not None and (cause.__cause__ or cause.__context__) is not None:
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            error += f" (cause: {type(cause).__name__}: {str(cause)[:200]})"
    optimize_s = time.perf_counter() - t
    out = {
        "worker": args.worker,
        "claims": len(numbers),
        "points": reports,
        "optimize_s": optimize_s,
        **timing,
        "claimed": numbers,
        "sqlite": pragmas(storage),
    }
    if storage.engine.dialect.name == "postgresql":
        out["postgres"] = pg_settings(storage)
    if error:
        out["error"] = error
    print(json.dumps(out), flush=True)
    sys.exit(1 if error else 0)


def psycopg2_version():
    try:
        import psycopg2
    except ImportError:
        return None
    return psycopg2.__version__


def check(study, trials, points, reports):
    problems = []
    claimed = sorted(n for r in reports for n in r.get("claimed", []))
    if claimed != list(range(trials)):
        problems.append(f"worker trial numbers are not 0..{trials} each once: "
                        f"{len(claimed)} trials, {len(set(claimed))} distinct")
    stored = study.get_trials(deepcopy=False)
    if sorted(t.number for t in stored) != list(range(trials)):
        problems.append(f"stored trial numbers are not 0..{trials}: {len(stored)} trials")
    for t in stored:
        if t.state != optuna.trial.TrialState.COMPLETE:
            problems.append(f"trial {t.number}: state {t.state.name}")
        if sorted(t.intermediate_values) != list(range(1, points + 1)):
            problems.append(f"trial {t.number}: {len(t.intermediate_values)} intermediate values, "
                            f"expected {points} at steps 1..{points}")
    if len(problems) > 20:
        problems = problems[:20] + [f"... and {len(problems) - 20} more"]
    return problems


def parent(args):
    quiet()
    tmp = None
    if args.url:
        directory = None
    elif args.dir:
        directory = args.dir
        os.makedirs(directory, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="optuna-store-throughput-")
        directory = tmp.name
    db = None
    if args.url:
        url = args.url
    else:
        db = os.path.join(directory, "optuna.db")
        for suffix in ("", "-journal", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.remove(db + suffix)
        url = f"sqlite:///{db}"
    storage = optuna.storages.RDBStorage(url)
    optuna.create_study(study_name=STUDY, storage=storage, direction="minimize")

    children = [
        subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", str(i)]
            + (["--url", args.url] if args.url else ["--db", db])
            + ["--workers", str(args.workers), "--trials", str(args.trials), "--points", str(args.points)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        for i in range(args.workers)
    ]
    for i, c in enumerate(children):
        line = c.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit(f"worker {i} did not get ready: {line!r}")
    started = time.perf_counter()
    started_unix = time.time()
    for c in children:
        c.stdin.write("go\n")
        c.stdin.flush()
    results = [None] * len(children)

    def read(i, c):
        results[i] = (c.stdout.readline(), time.perf_counter())

    threads = [threading.Thread(target=read, args=(i, c)) for i, c in enumerate(children)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall_s = max(at for _, at in results) - started
    problems, reports = [], []
    for i, (line, _) in enumerate(results):
        try:
            r = json.loads(line)
        except ValueError:
            problems.append(f"worker {i}: no result line ({line!r})")
            continue
        if "error" in r:
            problems.append(f"worker {i}: {r['error']}")
        reports.append(r)
    for i, c in enumerate(children):
        if c.wait() != 0:
            problems.append(f"worker {i} exited with {c.returncode}")
    study = optuna.load_study(study_name=STUDY, storage=storage)
    problems += check(study, args.trials, args.points, reports)

    claims = sum(r["claims"] for r in reports)
    points = sum(r["points"] for r in reports)

    def total(key):
        return sum(r[key] for r in reports)

    backend = storage.engine.dialect.name
    if db:
        db_bytes = sum(os.path.getsize(db + s) for s in ("", "-journal", "-wal", "-shm") if os.path.exists(db + s))
    else:
        db_bytes = None
    out = {
        "tool": "optuna",
        "backend": backend,
        "variant": f"rdb-{backend}",
        "batch": 1,
        "workers": args.workers,
        "trials": args.trials,
        "points_per_trial": args.points,
        "started_unix": started_unix,
        "wall_s": wall_s,
        "claims": claims,
        "points": points,
        "claims_per_s": claims / wall_s,
        "points_per_s": points / wall_s,
        "report_ms_mean": total("report_s") * 1e3 / max(points, 1),
        "suggest_ms_mean": total("suggest_s") * 1e3 / max(claims, 1),
        "outside_objective_ms_mean": (total("optimize_s") - total("objective_s")) * 1e3 / max(claims, 1),
        "busy_share": total("optimize_s") / len(reports) / wall_s if reports else 0.0,
        "claims_per_worker": [r["claims"] for r in reports],
        "sqlite": reports[0]["sqlite"] if reports else None,
        "postgres": reports[0].get("postgres") if reports else None,
        "db_bytes": db_bytes,
        "optuna": optuna.__version__,
        "psycopg2": psycopg2_version(),
        "ok": not problems,
        "problems": problems,
    }
    print(json.dumps(out))
    if tmp:
        tmp.cleanup()
    sys.exit(0 if not problems else 2)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--worker", type=int)
    p.add_argument("--db")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--trials", type=int, default=320)
    p.add_argument("--points", type=int, default=20)
    p.add_argument("--dir")
    p.add_argument("--url")
    args = p.parse_args()
    if args.url and args.dir:
        p.error("--dir is for a SQLite file in a directory; --url names the database: give one of them")
    if args.worker is not None:
        worker(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()
