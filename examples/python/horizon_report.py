"""The trainer side of horizon's trial protocol v1, in one standard-library file.

Copy this file next to your training script (Python >= 3.8)::

    import horizon_report

    ctx = horizon_report.trial(max_train_steps=500, eval_every=50)   # defaults for standalone runs
    for step in range(1, ctx.max_train_steps + 1):
        ...                                                  # one optimizer step
        if ctx.should_evaluate(step):
            ctx.report(step, "valid", loss=0.41, error=0.12)  # stored as valid/loss, valid/error
        if ctx.should_checkpoint(step) or ctx.stop_requested:
            ...                                              # write ckpt-<step>.json into ctx.trial_dir
            ctx.checkpoint_announce(step, "ckpt-%d.json" % step)
        if ctx.stop_requested:                               # horizon sent SIGTERM
            sys.exit(horizon_report.EXIT_STOPPED)

Under horizon (``HORIZON_PROTOCOL`` is set) everything comes from the ``HORIZON_*`` environment
variables and each report is appended as one JSON line to ``$HORIZON_METRICS_FILE``. Run
directly, the keyword arguments of :func:`trial` are used and the lines go to stdout, so the
script can be debugged without horizon. The protocol is described in ``docs/protocol.md``.
"""

import json
import math
import os
import signal
import sys
import tempfile
from pathlib import Path

PROTOCOL_VERSION = 1
#: The exit status for a run that stopped early because of SIGTERM (128 + 15, as a shell reports
#: it). Horizon knows why it stopped the run; a non-zero status keeps anyone else's SIGTERM from
#: passing for a finished run.
EXIT_STOPPED = 143


def _number(value):
    """A metric value as JSON: a finite float, or the strings "nan", "inf", "-inf"."""
    x = float(value)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


class Trial:
    """One run of a training program: its settings, and the channel to report through."""

    def __init__(self, params, max_train_steps, eval_every, seed, trial_dir, checkpoint_steps,
                 checkpoint_every, resume_from, attempt, number, study, metrics_file, under_horizon):
        self.params = params                      # dict, in declaration order
        self.max_train_steps = max_train_steps    # int: train for exactly this many steps
        self.eval_every = eval_every              # int
        self.seed = seed                          # int, the same on every attempt of a trial
        self.trial_dir = trial_dir                # Path, exists; write checkpoints here
        self.checkpoint_steps = checkpoint_steps  # set of int
        self.checkpoint_every = checkpoint_every  # int, 0 = none
        self.resume_from = resume_from            # Path of a checkpoint to resume from, or None
        self.attempt = attempt                    # int, 1 for the first launch
        self.number = number                      # int, the trial's number in its study
        self.study = study                        # str
        self.under_horizon = under_horizon        # bool
        self._out = open(metrics_file, "a", encoding="utf-8") if metrics_file else sys.stdout
        self._stop = False

    @property
    def stop_requested(self):
        """True once SIGTERM arrived: save a checkpoint if you can, announce it, and exit."""
        return self._stop

    def install_sigterm_handler(self):
        """Turn SIGTERM into :attr:`stop_requested` instead of an immediate exit."""
        def handler(signum, frame):
            self._stop = True
        try:
            signal.signal(signal.SIGTERM, handler)
        except ValueError:  # not the main thread: keep the default (exit at once)
            pass

    def should_evaluate(self, step):
        """Whether `step` is an evaluation step: a multiple of eval_every, or the last step."""
        return step % self.eval_every == 0 or step == self.max_train_steps

    def should_checkpoint(self, step):
        """Whether horizon asked for a checkpoint at `step`."""
        every = self.checkpoint_every
        return step in self.checkpoint_steps or (every > 0 and step % every == 0)

    def report(self, step, split=None, metrics=None, **more):
        """Report metrics at `step`: ``report(100, "valid", loss=0.4)`` or
        ``report(100, "valid", {"loss": 0.4})``. Names are stored as ``split/name``; with
        ``split=None`` as the bare name. NaN and infinities are written as "nan", "inf", "-inf".
        """
        values = dict(metrics or {})
        values.update(more)
        if not values:
            raise ValueError("report() needs at least one metric")
        line = {"step": int(step)}
        if split is not None:
            if not split or "/" in split:
                raise ValueError("split must be a non-empty name without '/', got %r" % (split,))
            line["split"] = split
        line["metrics"] = {str(k): _number(v) for k, v in values.items()}
        self._write(line)

    def checkpoint_announce(self, step, path):
        """Tell horizon that a complete checkpoint for `step` now exists at `path` (relative to
        trial_dir, or absolute). Announce only after the file or directory is fully written:
        horizon may delete it again when a better or later one is announced."""
        path = Path(path)
        if path.is_absolute():
            try:  # announce paths inside the trial directory relative to it
                path = path.relative_to(self.trial_dir)
            except ValueError:
                pass
        self._write({"event": "checkpoint", "step": int(step), "path": str(path)})

    def _write(self, obj):
        if obj["step"] < 0:
            raise ValueError("step must be a non-negative integer, got %r" % (obj["step"],))
        self._out.write(json.dumps(obj, allow_nan=False) + "\n")
        self._out.flush()


def _env(name, default=None):
    value = os.environ.get(name)
    return default if value is None else value


def trial(params=None, max_train_steps=100, eval_every=10, seed=0, trial_dir=None,
          checkpoint_steps=(), checkpoint_every=0, resume_from=None, handle_sigterm=True):
    """The current trial. Under horizon, read it from the environment; run directly, build it
    from the keyword arguments (`trial_dir` defaults to a new temporary directory) and report
    to stdout. With `handle_sigterm`, SIGTERM sets :attr:`Trial.stop_requested`."""
    if os.environ.get("HORIZON_PROTOCOL") is None:
        if trial_dir is None:
            trial_dir = tempfile.mkdtemp(prefix="horizon-trial-")
            print("horizon_report: not run by horizon; trial_dir is %s" % trial_dir, file=sys.stderr)
        ctx = Trial(dict(params or {}), int(max_train_steps), int(eval_every), int(seed), Path(trial_dir),
                    set(int(s) for s in checkpoint_steps), int(checkpoint_every),
                    Path(resume_from) if resume_from else None, 1, 0, "standalone", None, False)
    else:
        version = os.environ["HORIZON_PROTOCOL"]
        if version != str(PROTOCOL_VERSION):
            print("horizon_report: HORIZON_PROTOCOL=%s, this file speaks %d" % (version, PROTOCOL_VERSION),
                  file=sys.stderr)
        trial_dir = Path(os.environ["HORIZON_TRIAL_DIR"])
        resume = _env("HORIZON_RESUME_FROM", "")
        steps = _env("HORIZON_CHECKPOINT_STEPS", "")
        ctx = Trial(json.loads(_env("HORIZON_PARAMS", "{}")),
                    int(os.environ["HORIZON_MAX_TRAIN_STEPS"]),
                    int(os.environ["HORIZON_EVAL_EVERY"]),
                    int(_env("HORIZON_SEED", "0")),
                    trial_dir,
                    set(int(s) for s in steps.split(",") if s.strip()),
                    int(_env("HORIZON_CHECKPOINT_EVERY", "") or 0),
                    trial_dir / resume if resume else None,  # an absolute path stays absolute
                    int(_env("HORIZON_ATTEMPT", "1")),
                    int(_env("HORIZON_TRIAL_NUMBER", "0")),
                    _env("HORIZON_STUDY", ""),
                    os.environ["HORIZON_METRICS_FILE"],
                    True)
    if handle_sigterm:
        ctx.install_sigterm_handler()
    return ctx
