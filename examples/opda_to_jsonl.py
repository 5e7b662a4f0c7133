#!/usr/bin/env python3
"""Convert the OPDA AlexNet tuning runs to horizon's JSON Lines import format.

Data: "AlexNet Hyperparameter Tuning Data" (c) 2025 Nicholas Lourie, licensed under
CC BY-SA 4.0 (http://creativecommons.org/licenses/by-sa/4.0/), from the public repository
nicholaslourie/opda, folder data/alexnet. 512 random-search trials of AlexNet on ImageNet with
per-epoch validation curves. Anything derived from the data (this script's output included)
keeps this attribution and the same license; every output line carries it in "source".

Mapping (docs/analysis.md, "Import formats"):
  - one run per input line, named "iteration-<iteration>";
  - params: lr, epochs, batch_size, lr_peak_epoch, momentum, weight_decay, label_smoothing;
  - max_train_steps = epochs (a step is an epoch); curve steps are 1-based epoch indices
    (the data's 0-indexed "epoch" + 1), so the evaluation after the last epoch is at the budget;
  - metrics: valid/error = 1 - top_1 (the objective, minimize), valid/top5_error = 1 - top_5,
    train/loss = train_loss;
  - nan_train_loss runs get state "diverged" (their curves stop where the loss became NaN).

Usage: python3 examples/opda_to_jsonl.py [INPUT [OUTPUT]]
  INPUT defaults to the copy in the repository,
  crates/horizon-analysis/tests/data/opda-alexnet/alexnet_tuning.results.jsonl.gz (gzip-compressed,
  otherwise the original file; see ATTRIBUTION.md there); an INPUT ending in .gz is read through
  gzip, any other as plain JSON Lines. OUTPUT defaults to standard output. Standard library only.
"""

import gzip
import json
import math
import os
import sys

SOURCE = (
    "AlexNet Hyperparameter Tuning Data (c) 2025 Nicholas Lourie, CC BY-SA 4.0 "
    "(http://creativecommons.org/licenses/by-sa/4.0/), from nicholaslourie/opda data/alexnet; "
    "converted by horizon examples/opda_to_jsonl.py (valid/error = 1 - top_1, step = epoch + 1)"
)

PARAMS = ["lr", "epochs", "batch_size", "lr_peak_epoch", "momentum", "weight_decay", "label_smoothing"]


def number(x):
    """A JSON-safe metric value: finite numbers as they are, NaN/inf as text."""
    if x is None:
        return None
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def convert(row):
    curve = []
    for point in row["learning_curve"]:
        entry = {"step": int(point["epoch"]) + 1}
        if point.get("top_1") is not None:
            entry["valid/error"] = number(1.0 - point["top_1"])
        if point.get("top_5") is not None:
            entry["valid/top5_error"] = number(1.0 - point["top_5"])
        if point.get("train_loss") is not None:
            entry["train/loss"] = number(point["train_loss"])
        curve.append(entry)
    run = {
        "name": "iteration-%d" % row["iteration"],
        "params": {k: row[k] for k in PARAMS},
        "max_train_steps": int(row["epochs"]),
        "curve": curve,
        "state": "diverged" if row["nan_train_loss"] else "complete",
        "source": SOURCE,
    }
    if row["nan_train_loss"]:
        run["message"] = "training loss became NaN after %d of %d epochs (nan_train_loss)" % (
            len(curve),
            row["epochs"],
        )
    return run


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    default = os.path.join(
        here, "..", "crates", "horizon-analysis", "tests", "data", "opda-alexnet", "alexnet_tuning.results.jsonl.gz"
    )
    src = argv[1] if len(argv) > 1 else default
    out = open(argv[2], "w", encoding="utf-8") if len(argv) > 2 else sys.stdout
    count = 0
    opener = gzip.open if src.endswith(".gz") else open
    with opener(src, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                # Serialized here too: a NaN or infinite parameter is an error naming this line.
                text = json.dumps(convert(json.loads(line)), allow_nan=False)
            except (KeyError, TypeError, ValueError) as e:
                sys.exit("%s:%d: cannot convert: %r" % (src, lineno, e))
            out.write(text + "\n")
            count += 1
    if out is not sys.stdout:
        out.close()
    print("converted %d runs from %s" % (count, src), file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv)
