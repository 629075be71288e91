#!/usr/bin/python3
"""The PyTorch side of the modeconn benchmarks: the same work as the
modeconn command, timed the same way. One workload per process, so the
driver (bench.py) can run it with and without the tuned environment
(LD_PRELOAD=tcmalloc, OPENBLAS_NUM_THREADS=1). Prints one JSON object on
the last line of stdout.

  torch_side.py train  --arch A --n N [--batch 128] [--lr 0.05] [--crop 2] [--seed 1]
  torch_side.py eval   --model F [--n N] [--batch 1000]
  torch_side.py align  --a A --b B --info INFO.txt [--samples 10000] [--batch 500] [--compare PERM.json]
  torch_side.py path   (--a A --b B | --curve C) --points T [--bn-samples N] [--test-n N] [--batch 500]
                       [--compare PATH.json]
  torch_side.py curvetrain --a A --b B --n N [--batch 128] [--lr 0.05] [--wd 5e-4] [--crop 2] [--seed 1]
  torch_side.py pstep --a A --b B --info INFO.txt --n N [--batch 128] [--lr 0.05] [--nu 1000] [--crop 2] [--seed 1]

What is timed (wall clock, time.perf_counter), matching what modeconn times:
  train       every step of one pass over the first N training images:
              batch gather + uint8->float + random crop, forward, loss,
              backward, SGD step (= modeconn's epoch line; data loading,
              model construction and the test evaluation are not timed)
  eval        uint8->float, forward, loss and accuracy over the test images
              (= `modeconn eval`'s seconds, which include its executor setup)
  align       the statistics pass of both models over the first N training
              images (hooks on every post-ReLU point, float64 moments), the
              correlation matrices summed per group, one LAP per group
              (scipy linear_sum_assignment), applying the permutations to B
              and checking B's logits on 16 images (= `alignment took`)
  path        per point: theta(t) into the model, BN reset + one train-mode
              pass over the first N training images (momentum=None: the
              cumulative average), test loss/accuracy (= `evaluated T points in`)
  curvetrain  one epoch of quadratic Bezier curve training: per batch
              t ~ U(0,1), theta(t) = (1-t)^2 a + 2t(1-t) c + t^2 b, CE at
              theta(t) (BN in train mode) + wd/2 ||theta(t)||^2, backward to
              c, SGD (Nesterov) on c (= modeconn's `curve epoch` line)
  pstep       one PAM P-step epoch, as the official code does it: a dense
              P_g per group (from `modeconn info`), per batch P(theta_B)
              by matmuls on every parameter axis, theta(t) with the control
              point a/2 + P(b)/2 + phi, CE at theta(t) (BN train mode),
              backward to every P_g, SGD without momentum, the proximal pull
              and 20 rounds of relu + affine projection
              (= modeconn's `pam P-step epoch` line)
"""
import argparse
import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # no __pycache__ in bench/
import mcpy  # noqa: E402


def now():
    return time.perf_counter()


def out(res):
    res["torch"] = torch.__version__
    res["threads"] = torch.get_num_threads()
    print(json.dumps(res))


# -------------------------------------------------------------------- train
def cmd_train(a, data):
    trx, try_, _, _ = data
    torch.manual_seed(a.seed)
    x_all, y_all = trx[:a.n], try_[:a.n]
    xf = x_all.double() / 255.0
    mean, std = [xf.mean().item()], [xf.std(unbiased=False).item()]
    del xf
    model = mcpy.build_model(a.arch, (1, 28, 28), 10, mean, std)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    model.train()
    n, B = a.n, a.batch
    steps = n // B + (1 if n % B >= 2 else 0)
    t0 = now()
    order = torch.randperm(n)
    loss_sum, hits, seen = 0.0, 0, 0
    for s in range(steps):
        idx = order[s * B:(s + 1) * B]
        x = mcpy.random_crop(mcpy.to_float(x_all[idx]), a.crop)
        y = y_all[idx]
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        k = y.numel()
        loss_sum += loss.item() * k
        hits += (logits.argmax(1) == y).sum().item()
        seen += k
    secs = now() - t0
    out({"workload": "train", "arch": a.arch, "images": seen, "steps": steps, "seconds": secs,
         "images_per_second": seen / secs, "train_loss": loss_sum / seen, "train_accuracy": hits / seen})


# --------------------------------------------------------------------- eval
@torch.no_grad()
def evaluate(model, x_all, y_all, n, batch):
    model.eval()
    total, hits = 0.0, 0
    for s in range(0, n, batch):
        x = mcpy.to_float(x_all[s:min(n, s + batch)])
        y = y_all[s:min(n, s + batch)]
        logits = model(x)
        total += F.cross_entropy(logits, y, reduction="sum").item()
        hits += (logits.argmax(1) == y).sum().item()
    return total / n, hits / n


def cmd_eval(a, data):
    _, _, tex, tey = data
    model = mcpy.load_model(a.model)
    n = a.n if 0 < a.n < tex.shape[0] else tex.shape[0]
    t0 = now()
    loss, acc = evaluate(model, tex, tey, n, a.batch)
    secs = now() - t0
    out({"workload": "eval", "images": n, "seconds": secs, "images_per_second": n / secs,
         "test_loss": loss, "test_accuracy": acc})


# -------------------------------------------------------------------- align
def cmd_align(a, data):
    from scipy.optimize import linear_sum_assignment

    trx, _, _, _ = data
    with open(a.info) as f:
        relu_group, groups = mcpy.parse_info(f.read())
    meta_a, ta = mcpy.st_read(a.a)
    meta_b, tb = mcpy.st_read(a.b)
    A = mcpy.model_from_state(meta_a, ta).eval()
    Bm = mcpy.model_from_state(meta_b, tb).eval()
    mods_a = dict(A.named_modules())
    mods_b = dict(Bm.named_modules())
    for name in relu_group:
        if name not in mods_a:
            raise SystemExit(f"relu node {name} of `modeconn info` is not a module of the PyTorch model")
    n = a.samples if 0 < a.samples < trx.shape[0] else trx.shape[0]

    t0 = now()
    # float64 moments per post-ReLU point, streamed over batches
    stats = {name: None for name in relu_group}
    held = {}

    def units(t):  # [N, C, *spatial] -> [C, samples] float64
        c = t.shape[1]
        return t.transpose(0, 1).reshape(c, -1).double()

    def hold(name):
        def h(mod, inp, o):
            held[name] = o.detach()
        return h

    def accumulate(name):
        def h(mod, inp, o):
            ua = units(held.pop(name))
            ub = units(o.detach())
            s = stats[name]
            if s is None:
                c = ua.shape[0]
                z = lambda *shape: torch.zeros(*shape, dtype=torch.float64)
                s = stats[name] = {"sa": z(c), "sb": z(c), "saa": z(c), "sbb": z(c), "sab": z(c, c), "n": 0}
            s["sa"] += ua.sum(1)
            s["sb"] += ub.sum(1)
            s["saa"] += (ua * ua).sum(1)
            s["sbb"] += (ub * ub).sum(1)
            s["sab"].addmm_(ua, ub.t())
            s["n"] += ua.shape[1]
        return h

    hooks = [mods_a[nm].register_forward_hook(hold(nm)) for nm in relu_group]
    hooks += [mods_b[nm].register_forward_hook(accumulate(nm)) for nm in relu_group]
    with torch.no_grad():
        for s0 in range(0, n, a.batch):
            x = mcpy.to_float(trx[s0:min(n, s0 + a.batch)])
            A(x)
            Bm(x)
    for h in hooks:
        h.remove()
    t_stats = now()

    # Pearson correlation per point (population std + 1e-5), summed per group
    G = [torch.zeros(sz, sz, dtype=torch.float64) for sz, _ in groups]
    taps = [0] * len(groups)
    for name, s in stats.items():
        cnt = float(s["n"])
        ma, mb = s["sa"] / cnt, s["sb"] / cnt
        sa = (s["saa"] / cnt - ma * ma).clamp_min(0).sqrt() + 1e-5
        sb = (s["sbb"] / cnt - mb * mb).clamp_min(0).sqrt() + 1e-5
        r = (s["sab"] / cnt - torch.outer(ma, mb)) / torch.outer(sa, sb)
        g = relu_group[name]
        G[g] += torch.nan_to_num(r, nan=0.0, posinf=0.0, neginf=0.0)
        taps[g] += 1
    perms, corr_after = [], []
    for g, M in enumerate(G):
        Mn = M.numpy()
        _, col = linear_sum_assignment(Mn, maximize=True)
        perms.append(col)
        corr_after.append(float(Mn[np.arange(len(col)), col].mean() / max(taps[g], 1)))
    t_lap = now()

    # apply to B and check the function on 16 images
    sd = {k: torch.from_numpy(v) for k, v in tb.items()}
    for g, (_, axes) in enumerate(groups):
        p = torch.from_numpy(perms[g].astype(np.int64))
        for tname, axis in axes:
            sd[tname] = sd[tname].index_select(axis, p)
    B2 = mcpy.model_from_state(meta_b, {k: v.numpy() for k, v in sd.items()}).eval()
    with torch.no_grad():
        x = mcpy.to_float(trx[:16])
        l1, l2 = Bm(x), B2(x)
    rel = ((l1 - l2).abs().max() / l1.abs().max().clamp_min(1e-30)).item()
    secs = now() - t0
    if rel > 1e-5:
        raise SystemExit(f"permuted B computes a different function (relative logit difference {rel:g})")

    res = {"workload": "align", "images": n, "seconds": secs, "seconds_stats": t_stats - t0,
           "seconds_lap": t_lap - t_stats, "seconds_apply_check": secs - (t_lap - t0),
           "check_rel_diff": rel, "corr_after": corr_after}
    if a.compare:
        with open(a.compare) as f:
            ref = json.load(f)
        same = total = 0
        corr_diff = 0.0
        for g, grp in enumerate(ref["groups"]):
            rp = np.asarray(grp["permutation"])
            same += int((rp == perms[g]).sum())
            total += len(rp)
            corr_diff = max(corr_diff, abs(grp["mean_corr_after"] - corr_after[g]))
        res["perm_agreement"] = same / total
        res["max_corr_after_diff"] = corr_diff
    out(res)


# --------------------------------------------------------------------- path
def bn_reset_cumulative(model):
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative (exact) average over the pass


@torch.no_grad()
def bn_recompute(model, x_all, n, batch):
    bn_reset_cumulative(model)
    model.train()
    for s in range(0, n, batch):
        k = min(n, s + batch) - s
        if k < 2 and s > 0:
            break
        model(mcpy.to_float(x_all[s:s + k]))


def bezier_coeffs(kind, t):
    if kind == "linear":
        return 1 - t, t, 0.0
    return (1 - t) ** 2, t * t, 2 * t * (1 - t)


def cmd_path(a, data):
    trx, _, tex, tey = data
    if a.curve:
        meta, ts = mcpy.st_read(a.curve)
        kind, bends = meta.get("modeconn.curve.kind"), int(meta.get("modeconn.curve.bends", "1"))
        if kind != "bezier" or bends != 1:
            raise SystemExit(f"{a.curve}: only quadratic Bezier curves (1 bend) here (got {kind}, {bends})")
        model = mcpy.model_from_state(meta, ts, "a.")
        names = mcpy.trainable_names(model)
        pa = {k: torch.from_numpy(ts["a." + k]) for k in names}
        pb = {k: torch.from_numpy(ts["b." + k]) for k in names}
        pc = {k: torch.from_numpy(ts["bend1." + k]) for k in names}
        kind = "bezier"
    else:
        meta, ta = mcpy.st_read(a.a)
        _, tb = mcpy.st_read(a.b)
        model = mcpy.model_from_state(meta, ta)
        names = mcpy.trainable_names(model)
        pa = {k: torch.from_numpy(ta[k]) for k in names}
        pb = {k: torch.from_numpy(tb[k]) for k in names}
        pc = None
        kind = "linear"
    params = dict(model.named_parameters())
    nbn = a.bn_samples if 0 < a.bn_samples < trx.shape[0] else trx.shape[0]
    nte = a.test_n if 0 < a.test_n < tex.shape[0] else tex.shape[0]
    T = a.points
    ts_, losses, accs = [], [], []
    t0 = now()
    # modeconn also evaluates t = 1/2 when T is even (for the midpoint barrier)
    tlist = [i / (T - 1) for i in range(T)] + ([0.5] if T % 2 == 0 else [])
    for i, t in enumerate(tlist):
        wa, wb, wc = bezier_coeffs(kind, t)
        with torch.no_grad():
            for k in names:
                v = wa * pa[k] + wb * pb[k]
                if pc is not None:
                    v += wc * pc[k]
                params[k].copy_(v)
        bn_recompute(model, trx, nbn, a.batch)
        loss, acc = evaluate(model, tex, tey, nte, a.batch)
        if i < T:
            ts_.append(t)
            losses.append(loss)
            accs.append(acc)
    secs = now() - t0
    res = {"workload": "path", "kind": kind, "points": T, "bn_images": nbn, "test_images": nte,
           "seconds": secs, "seconds_per_point": secs / T, "test_loss": losses, "test_accuracy": accs}
    if a.compare:
        with open(a.compare) as f:
            ref = json.load(f)
        res["max_acc_diff"] = max(abs(x - y) for x, y in zip(ref["test_accuracy"], accs))
        res["max_loss_diff"] = max(abs(x - y) for x, y in zip(ref["test_loss"], losses))
    out(res)


# --------------------------------------------------------------- curvetrain
def cmd_curvetrain(a, data):
    from torch.nn.utils.stateless import functional_call

    trx, try_, _, _ = data
    torch.manual_seed(a.seed)
    meta, ta = mcpy.st_read(a.a)
    _, tb = mcpy.st_read(a.b)
    model = mcpy.model_from_state(meta, ta)
    names = mcpy.trainable_names(model)
    shapes = [tuple(ta[k].shape) for k in names]
    sizes = [int(np.prod(s)) for s in shapes]
    fa = torch.cat([torch.from_numpy(ta[k]).reshape(-1) for k in names])
    fb = torch.cat([torch.from_numpy(tb[k]).reshape(-1) for k in names])
    bend = torch.nn.Parameter((fa + fb) / 2)  # initialised on the line
    opt = torch.optim.SGD([bend], lr=a.lr, momentum=0.9, nesterov=True, weight_decay=0.0)
    model.train()
    x_all, y_all = trx[:a.n], try_[:a.n]
    n, B = a.n, a.batch
    steps = n // B + (1 if n % B >= 2 else 0)
    t0 = now()
    order = torch.randperm(n)
    loss_sum, seen = 0.0, 0
    for s in range(steps):
        idx = order[s * B:(s + 1) * B]
        x = mcpy.random_crop(mcpy.to_float(x_all[idx]), a.crop)
        y = y_all[idx]
        t = torch.rand(()).item()
        theta = (1 - t) ** 2 * fa + (2 * t * (1 - t)) * bend + t * t * fb
        views = {k: v.view(sh) for k, v, sh in zip(names, torch.split(theta, sizes), shapes)}
        logits = functional_call(model, views, (x,))
        loss = F.cross_entropy(logits, y) + 0.5 * a.wd * theta.pow(2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.item() * y.numel()
        seen += y.numel()
    secs = now() - t0
    out({"workload": "curvetrain", "images": seen, "steps": steps, "seconds": secs,
         "images_per_second": seen / secs, "train_loss": loss_sum / seen})


# -------------------------------------------------------------------- pstep
def cmd_pstep(a, data):
    from torch.nn.utils.stateless import functional_call

    trx, try_, _, _ = data
    torch.manual_seed(a.seed)
    meta, ta = mcpy.st_read(a.a)
    _, tb = mcpy.st_read(a.b)
    model = mcpy.model_from_state(meta, ta)
    names = mcpy.trainable_names(model)
    with open(a.info) as f:
        _, groups = mcpy.parse_info(f.read())
    axes = {}  # tensor name -> {axis: group}
    for g, (_, members) in enumerate(groups):
        for name, ax in members:
            axes.setdefault(name, {})[ax] = g
    fa = {k: torch.from_numpy(ta[k]) for k in names}
    fb = {k: torch.from_numpy(tb[k]) for k in names}
    P = [torch.eye(size, requires_grad=True) for size, _ in groups]
    P0 = [p.detach().clone() for p in P]
    phi = {k: torch.zeros_like(v) for k, v in fa.items()}

    def permuted(k, w):
        ax = axes.get(k, {})
        if 0 in ax:
            w = torch.tensordot(P[ax[0]], w, dims=([1], [0]))
        if 1 in ax:
            w = torch.tensordot(w, P[ax[1]], dims=([1], [1])).movedim(-1, 1)
        return w

    opt = torch.optim.SGD(P, lr=a.lr, momentum=0.0)
    model.train()
    x_all, y_all = trx[:a.n], try_[:a.n]
    n, B = a.n, a.batch
    steps = n // B + (1 if n % B >= 2 else 0)
    r = a.lr / a.nu
    t0 = now()
    order = torch.randperm(n)
    loss_sum, seen = 0.0, 0
    for s in range(steps):
        idx = order[s * B:(s + 1) * B]
        x = mcpy.random_crop(mcpy.to_float(x_all[idx]), a.crop)
        y = y_all[idx]
        t = torch.rand(()).item()
        views = {}
        for k in names:
            pb = permuted(k, fb[k])
            c = 0.5 * fa[k] + 0.5 * pb + phi[k]
            views[k] = (1 - t) ** 2 * fa[k] + (2 * t * (1 - t)) * c + t * t * pb
        logits = functional_call(model, views, (x,))
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for p, p0 in zip(P, P0):
                p.data = (p + r * p0) / (1 + r)
                k = p.shape[0]
                for _ in range(20):
                    p.data = F.relu(p)
                    proxy = -(p.sum(1, keepdim=True) - 1) / k - (p.sum(0, keepdim=True) - 1) / k
                    p.data += proxy + (p.sum() - k) / k ** 2
        loss_sum += loss.item() * y.numel()
        seen += y.numel()
    secs = now() - t0
    out({"workload": "pstep", "images": seen, "steps": steps, "seconds": secs,
         "images_per_second": seen / secs, "train_loss": loss_sum / seen})


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", default=mcpy.DEFAULT_DATA)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("train")
    s.add_argument("--arch", required=True)
    s.add_argument("--n", type=int, required=True)
    s.add_argument("--batch", type=int, default=128)
    s.add_argument("--lr", type=float, default=0.05)
    s.add_argument("--crop", type=int, default=2)
    s.add_argument("--seed", type=int, default=1)
    s = sub.add_parser("eval")
    s.add_argument("--model", required=True)
    s.add_argument("--n", type=int, default=0)
    s.add_argument("--batch", type=int, default=1000)
    s = sub.add_parser("align")
    s.add_argument("--a", required=True)
    s.add_argument("--b", required=True)
    s.add_argument("--info", required=True)
    s.add_argument("--samples", type=int, default=10000)
    s.add_argument("--batch", type=int, default=500)
    s.add_argument("--compare")
    s = sub.add_parser("path")
    s.add_argument("--a")
    s.add_argument("--b")
    s.add_argument("--curve")
    s.add_argument("--points", type=int, default=25)
    s.add_argument("--bn-samples", type=int, default=0)
    s.add_argument("--test-n", type=int, default=0)
    s.add_argument("--batch", type=int, default=500)
    s.add_argument("--compare")
    s = sub.add_parser("curvetrain")
    s.add_argument("--a", required=True)
    s.add_argument("--b", required=True)
    s.add_argument("--n", type=int, required=True)
    s.add_argument("--batch", type=int, default=128)
    s.add_argument("--lr", type=float, default=0.05)
    s.add_argument("--wd", type=float, default=5e-4)
    s.add_argument("--crop", type=int, default=2)
    s.add_argument("--seed", type=int, default=1)
    s = sub.add_parser("pstep")
    s.add_argument("--a", required=True)
    s.add_argument("--b", required=True)
    s.add_argument("--info", required=True)
    s.add_argument("--n", type=int, required=True)
    s.add_argument("--batch", type=int, default=128)
    s.add_argument("--lr", type=float, default=0.05)
    s.add_argument("--nu", type=float, default=1000.0)
    s.add_argument("--crop", type=int, default=2)
    s.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    data = mcpy.load_fashion(a.data)
    {"train": cmd_train, "eval": cmd_eval, "align": cmd_align, "path": cmd_path,
     "curvetrain": cmd_curvetrain, "pstep": cmd_pstep}[a.cmd](a, data)


if __name__ == "__main__":
    main()
