"""The trivial trainer in Python (stdlib only), speaking trial protocol v1.

Reads HORIZON_PARAMS and HORIZON_METRICS_FILE, appends 10 evaluation lines
{"step": k, "split": "valid", "metrics": {"loss": v}} (k = 1..10) and exits 0. Same objective
as bench/src/bin/trivial-trainer.rs. Its cost per trial is almost all python3's own start-up.
"""
import json
import math
import os

params = json.loads(os.environ["HORIZON_PARAMS"])
x, y = float(params["x"]), float(params["y"])
steps = int(os.environ.get("HORIZON_MAX_TRAIN_STEPS", "10"))
lines = []
for step in range(1, steps + 1):
    loss = (x - 2.0) ** 2 + (math.log(y) + 3.0) ** 2 + 1.0 / step
    lines.append(json.dumps({"step": step, "split": "valid", "metrics": {"loss": loss}}) + "\n")
with open(os.environ["HORIZON_METRICS_FILE"], "a") as f:
    f.write("".join(lines))
