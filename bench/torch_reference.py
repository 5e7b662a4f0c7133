#!/usr/bin/env python3
"""PyTorch CPU reference for horizon's built-in workloads (issue 3).

The same models as crates/horizon-workloads at their catalog defaults, on one thread:

* digits-mlp: MLP 64-128-128-10, ReLU, batch 64
* mnist-mlp:  MLP 784-256-256-10, ReLU, batch 64
* jargon-lm:  character GPT, vocab 146, context 64, d_model 64, 4 heads, 2 pre-norm blocks
              (layer norm, causal attention via scaled_dot_product_attention, projection;
              layer norm, GELU MLP of width 4*d_model), final layer norm, linear head; batch 64

Optimizer: SGD, momentum 0.9 (no dampening), learning rate 0.1, constant; dropout 0, label
smoothing 0. Like horizon's training loop, each step also reads the loss as a float and computes
the global gradient norm (horizon reports both). Data are random tensors of the right shape
(throughput only). Steps/s exclude evaluation and data loading from disk.

Usage:
  torch_reference.py steps NAME STEPS [WARMUP]   -> {"workload":..,"steps_per_s":..,...}
  torch_reference.py import-time [N]             -> median wall time of `python3 -c "import torch"`
"""
import json
import os
import statistics
import subprocess
import sys
import time


def build(name, torch, nn):
    F = nn.functional
    if name in ("digits-mlp", "mnist-mlp"):
        d_in, hidden = (64, 128) if name == "digits-mlp" else (784, 256)
        model = nn.Sequential(
            nn.Linear(d_in, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 10),
        )
        n_train = 1397 if name == "digits-mlp" else 4000
        xs = torch.rand(n_train, d_in)
        ys = torch.randint(0, 10, (n_train,))

        def batch(g):
            idx = torch.randint(0, n_train, (64,), generator=g)
            return xs[idx], ys[idx]

        def loss_fn(b):
            x, y = b
            return F.cross_entropy(model(x), y)

        return model, batch, loss_fn

    if name == "jargon-lm":
        vocab, context, d, heads, layers, bs = 146, 64, 64, 4, 2, 64

        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.ln1 = nn.LayerNorm(d)
                self.qkv = nn.Linear(d, 3 * d)
                self.proj = nn.Linear(d, d)
                self.ln2 = nn.LayerNorm(d)
                self.fc = nn.Linear(d, 4 * d)
                self.out = nn.Linear(4 * d, d)

            def forward(self, x):
                b, t, _ = x.shape
                q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
                q, k, v = (z.view(b, t, heads, d // heads).transpose(1, 2) for z in (q, k, v))
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
                return x + self.out(F.gelu(self.fc(self.ln2(x))))

        class Lm(nn.Module):
            def __init__(self):
                super().__init__()
                self.tok = nn.Embedding(vocab, d)
                self.pos = nn.Parameter(torch.randn(context, d) * 0.02)
                self.blocks = nn.ModuleList(Block() for _ in range(layers))
                self.ln_f = nn.LayerNorm(d)
                self.head = nn.Linear(d, vocab)

            def forward(self, ids):
                x = self.tok(ids) + self.pos[: ids.shape[1]]
                for block in self.blocks:
                    x = block(x)
                return self.head(self.ln_f(x))

        model = Lm()
        text = torch.randint(0, vocab, (1_513_635,))

        def batch(g):
            starts = torch.randint(0, text.numel() - context - 1, (bs,), generator=g)
            w = torch.stack([text[s : s + context + 1] for s in starts.tolist()])
            return w[:, :-1], w[:, 1:]

        def loss_fn(b):
            x, y = b
            return F.cross_entropy(model(x).reshape(-1, vocab), y.reshape(-1))

        return model, batch, loss_fn

    raise SystemExit(f"unknown workload {name}")


def steps(name, n, warmup):
    t0 = time.perf_counter()
    import torch
    from torch import nn

    import_s = time.perf_counter() - t0
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    torch.manual_seed(1)
    model, batch, loss_fn = build(name, torch, nn)
    params = [p for p in model.parameters()]
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(2)

    def step():
        b = batch(g)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(b)
        loss.backward()
        loss_value = loss.item()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, float("inf")).item()
        opt.step()
        return loss_value, grad_norm

    for _ in range(warmup):
        step()
    w0, c0 = time.perf_counter(), time.thread_time()
    for _ in range(n):
        last = step()
    wall, cpu = time.perf_counter() - w0, time.thread_time() - c0
    print(json.dumps({
        "workload": name, "steps": n, "warmup": warmup,
        "steps_per_s": n / wall, "steps_per_s_cpu": n / cpu if cpu > 0 else None,
        "ms_per_step": wall / n * 1e3, "loss": last[0], "grad_norm": last[1],
        "params": sum(p.numel() for p in params), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "import_s": import_s,
    }))


def import_time(n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True)
        times.append(time.perf_counter() - t)
    print(json.dumps({"import_torch_s": statistics.median(times), "runs": times}))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if len(sys.argv) >= 3 and sys.argv[1] == "steps":
        steps(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 200,
              int(sys.argv[4]) if len(sys.argv) > 4 else 20)
    elif len(sys.argv) >= 2 and sys.argv[1] == "import-time":
        import_time(int(sys.argv[2]) if len(sys.argv) > 2 else 5)
    else:
        raise SystemExit(__doc__)
