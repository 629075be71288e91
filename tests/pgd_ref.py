#!/usr/bin/python3
"""PyTorch reference for tests/test_pgd_torch.c: L-infinity PGD as the
paper's official code runs it (utils/attack.py, AttackPGD), in float32.

Usage: /usr/bin/python3 pgd_ref.py IN1 OUT1 [IN2 OUT2 ...]

IN (written by the C test, MCTR format of torch_ref.py) holds the
architecture ("meta.config" as in torch_ref.py), the normalisation, every
parameter and running statistic by its PyTorch name, the clean images
"input.x" (n, C, H, W) in [0,1], the labels "input.y", the fixed start
perturbation "input.delta0" (n, C, H, W) and "pgd.params" (eps, alpha,
steps).  The models are torch_ref.py's nn.Module definitions.

For mode in (eval, train) and start in (zero, fixed) the attack is

    x = x0 (+ delta0 for the fixed start; not clipped, as the official code)
    k times:  loss = F.cross_entropy(model(x), y, reduction="sum")
              x = x + alpha * sign(d loss / d x)
              x = min(max(x, x0 - eps), x0 + eps)
              x = clamp(x, 0, 1)

with the model in eval mode (BN running statistics as given) or in train
mode (batch statistics; every attack forward updates the running
statistics by momentum 0.1, from the given ones).  OUT holds per (mode,
start):
  MODE.START.xadv          the final examples (float32)
  MODE.START.hits / .loss  eval-mode forward (the given running statistics)
                           on them: argmax hits and mean CE
  train.START.state.NAME   running_mean / running_var after the attack
and clean.hits / clean.loss for x0.

Teacher-forced steps: PGD is chaotic in float arithmetic (a gradient
component near zero whose sign rounding decides moves that pixel by alpha,
which changes the later gradients; PyTorch float32 against float64 shows
it too), so the free-running examples of two implementations drift apart.
For every C iterate the IN file holds ("c.BACKEND.MODE.START.x1" ..
"x{steps}", BACKEND ref|dnnl), this script also takes one PyTorch step from
the C side's previous iterate (x0 (+ delta0) for the first) and writes
  tf.BACKEND.MODE.START.xs      the k one-step results, stacked (k, n, C, H, W)
  tf.BACKEND.MODE.START.grel    |grad| / max |grad| of its row, for each
                                pixel of each step (k, n, C, H, W)
  tf.BACKEND.train.START.state.NAME  running statistics after the k
                                train-mode forwards on the C iterates
"""
import copy
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_ref  # noqa: E402


def pgd_step(model, x, x0, y, eps, alpha):
    """One step of AttackPGD; returns the new x and d loss / d x."""
    x = x.detach().requires_grad_()
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), y, reduction="sum")
    grad = torch.autograd.grad(loss, [x])[0].detach()
    x = x.detach() + alpha * torch.sign(grad)
    x = torch.min(torch.max(x, x0 - eps), x0 + eps)
    return torch.clamp(x, 0, 1), grad


def pgd(model, x0, y, delta0, eps, alpha, steps):
    x = x0.detach()
    if delta0 is not None:
        x = x + delta0
    for _ in range(steps):
        x, _ = pgd_step(model, x, x0, y, eps, alpha)
    return x


def teacher_forced(model, t, key, x0, y, delta0, eps, alpha, steps, out):
    """One PyTorch step from each of the C side's iterates (see above)."""
    xs, grel = [], []
    prev = x0 + delta0 if delta0 is not None else x0
    for s in range(1, steps + 1):
        x, g = pgd_step(model, prev, x0, y, eps, alpha)
        g = g.abs()
        xs.append(x.numpy())
        grel.append((g / g.flatten(1).max(1)[0].clamp_min(1e-30).view(-1, 1, 1, 1)).numpy())
        prev = torch.from_numpy(t[f"c.{key}.x{s}"].astype(np.float32))
    out[f"tf.{key}.xs"] = np.stack(xs)
    out[f"tf.{key}.grel"] = np.stack(grel)
    if model.training:
        out.update(torch_ref.running_stats(model, f"tf.{key}.state."))


def clean_metrics(model, x, y):
    model.eval()
    with torch.no_grad():
        logits = model(x)
    hits = int((logits.argmax(1) == y).sum())
    return np.array([hits], dtype=np.int64), np.array([F.cross_entropy(logits, y).item()])


def process(inp, outp):
    t = torch_ref.read_tensors(inp)
    arch, c, h, w, classes, width, widths, bn = torch_ref.parse_config(bytes(t["meta.config"]).decode())
    norm = torch_ref.Normalize(torch.from_numpy(t["norm.mean"].astype(np.float32)),
                               torch.from_numpy(t["norm.std"].astype(np.float32)))
    model = torch_ref.build(arch, c, h, w, classes, width, widths, bn, norm).float()
    given = {k[6:]: torch.from_numpy(v.astype(np.float32)) for k, v in t.items() if k.startswith("param.")}
    res = model.load_state_dict(given, strict=False)
    bad = [k for k in res.missing_keys if not k.endswith("num_batches_tracked")]
    if bad or res.unexpected_keys:
        raise SystemExit(f"{arch}: load_state_dict: missing {bad}, unexpected {res.unexpected_keys}")
    x0 = torch.from_numpy(t["input.x"].astype(np.float32))
    y = torch.from_numpy(t["input.y"].astype(np.int64))
    delta0 = torch.from_numpy(t["input.delta0"].astype(np.float32))
    eps, alpha, steps = t["pgd.params"].tolist()
    out = {}
    out["clean.hits"], out["clean.loss"] = clean_metrics(model, x0, y)
    for mode in ("eval", "train"):
        for start in ("zero", "fixed"):
            m = copy.deepcopy(model)
            m.train(mode == "train")
            xadv = pgd(m, x0, y, delta0 if start == "fixed" else None, eps, alpha, int(steps))
            key = f"{mode}.{start}"
            out[f"{key}.xadv"] = xadv.numpy()
            if mode == "train":
                out.update(torch_ref.running_stats(m, f"{key}.state."))
            out[f"{key}.hits"], out[f"{key}.loss"] = clean_metrics(model, xadv, y)
            for be in ("ref", "dnnl"):
                if f"c.{be}.{key}.x1" in t:
                    m = copy.deepcopy(model)
                    m.train(mode == "train")
                    teacher_forced(m, t, f"{be}.{key}", x0, y, delta0 if start == "fixed" else None, eps, alpha,
                                   int(steps), out)
    torch_ref.write_tensors(outp, out)


def main(argv):
    if len(argv) < 3 or len(argv) % 2 != 1:
        raise SystemExit(__doc__)
    torch.set_num_threads(1)
    for i in range(1, len(argv), 2):
        process(argv[i], argv[i + 1])


if __name__ == "__main__":
    main(sys.argv)
