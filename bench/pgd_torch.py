#!/usr/bin/python3
"""The PyTorch side of bench/pgd.sh: the adversarial workloads of issue 14
done as the paper's official code does them (utils/attack.py AttackPGD:
uniform start in the eps-ball, not clipped; k steps x <- clamp(min(max(
x + alpha sign(grad), x0 - eps), x0 + eps), 0, 1); the model's
normalisation inside the model). One workload per process; one JSON object
on the last line of stdout.

  pgd_torch.py attack   --model F [--n 10000] [--batch 500]
  pgd_torch.py advtrain --arch A --n 12800 [--batch 128] [--lr 0.05]
  pgd_torch.py advpoint --a A --b B [--points 3] [--bn-samples 10000] [--test-n 10000] [--batch 500]
Common: --threads 2, --channels-last (the model and inputs in NHWC),
--eps 0.1 --alpha 0.025 --steps 5 (the Fashion-MNIST defaults).

What is timed (time.perf_counter), matching modeconn's own figures:
  attack    clean test loss/accuracy pass, then the PGD pass (BN eval mode):
            per batch the attack and the eval forward on its examples
            (= `modeconn attack`'s "seconds")
  advtrain  one epoch of Madry training: per batch of 128 random crop pad 2,
            PGD with BN in train mode (running statistics updated by every
            attack forward, as the official code), CE on the PGD examples
            alone, backward, SGD Nesterov 0.9 wd 5e-4 (= the epoch line of
            `modeconn train --adv pgd`)
  advpoint  per point t of the straight line A-B: theta(t) into the model;
            BN reset, then per batch of training images PGD with BN in
            train mode (momentum 0 during the attack: it does not touch the
            statistics) and a cumulative-average train-mode forward on the
            examples; clean test pass and PGD test pass (= `modeconn interp
            --adv pgd`'s "evaluated T points in", per point)
"""
import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # no __pycache__ in bench/
import mcpy  # noqa: E402
import torch_side  # noqa: E402


def now():
    return time.perf_counter()


def pgd(model, x0, y, a):
    x = x0 + torch.empty_like(x0).uniform_(-a.eps, a.eps)
    for _ in range(a.steps):
        x.requires_grad_()
        with torch.enable_grad():
            loss = F.cross_entropy(model(x), y, reduction="sum")
        grad = torch.autograd.grad(loss, [x])[0]
        x = x.detach() + a.alpha * torch.sign(grad.detach())
        x = torch.min(torch.max(x, x0 - a.eps), x0 + a.eps)
        x = torch.clamp(x, 0, 1)
    return x.detach()


def prep(a, x):
    return x.contiguous(memory_format=torch.channels_last) if a.channels_last else x


def setup(a, model):
    if a.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def evaluate(a, model, x_all, y_all, n, attack):
    model.eval()
    total, hits = 0.0, 0
    for s in range(0, n, a.batch):
        x = prep(a, mcpy.to_float(x_all[s:min(n, s + a.batch)]))
        y = y_all[s:min(n, s + a.batch)]
        if attack:
            x = pgd(model, x, y, a)
        with torch.no_grad():
            logits = model(x)
        total += F.cross_entropy(logits, y, reduction="sum").item()
        hits += (logits.argmax(1) == y).sum().item()
    return total / n, hits / n


def cmd_attack(a, data):
    _, _, tex, tey = data
    model = setup(a, mcpy.load_model(a.model))
    n = a.n if 0 < a.n < tex.shape[0] else tex.shape[0]
    t0 = now()
    cl, ca = evaluate(a, model, tex, tey, n, False)
    rl, ra = evaluate(a, model, tex, tey, n, True)
    secs = now() - t0
    return {"workload": "attack", "images": n, "seconds": secs, "clean_loss": cl, "clean_accuracy": ca,
            "robust_loss": rl, "robust_accuracy": ra}


def cmd_advtrain(a, data):
    trx, try_, _, _ = data
    torch.manual_seed(1)
    x_all, y_all = trx[:a.n], try_[:a.n]
    xf = x_all.double() / 255.0
    mean, std = [xf.mean().item()], [xf.std(unbiased=False).item()]
    del xf
    model = setup(a, mcpy.build_model(a.arch, (1, 28, 28), 10, mean, std))
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    model.train()
    n, B = a.n, a.batch
    steps = n // B + (1 if n % B >= 2 else 0)
    t0 = now()
    order = torch.randperm(n)
    loss_sum, hits, seen = 0.0, 0, 0
    for s in range(steps):
        idx = order[s * B:(s + 1) * B]
        x = prep(a, mcpy.random_crop(mcpy.to_float(x_all[idx]), 2))
        y = y_all[idx]
        xadv = pgd(model, x, y, a)
        logits = model(xadv)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.item() * y.numel()
        hits += (logits.argmax(1) == y).sum().item()
        seen += y.numel()
    secs = now() - t0
    return {"workload": "advtrain", "arch": a.arch, "images": seen, "seconds": secs,
            "images_per_second": seen / secs, "train_loss": loss_sum / seen, "train_accuracy": hits / seen}


def bn_momentum(model, m):
    for mod in model.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.momentum = m


def cmd_advpoint(a, data):
    trx, try_, tex, tey = data
    meta, ta = mcpy.st_read(a.a)
    _, tb = mcpy.st_read(a.b)
    model = setup(a, mcpy.model_from_state(meta, ta))
    names = mcpy.trainable_names(model)
    pa = {k: torch.from_numpy(ta[k]) for k in names}
    pb = {k: torch.from_numpy(tb[k]) for k in names}
    params = dict(model.named_parameters())
    nbn = a.bn_samples if 0 < a.bn_samples < trx.shape[0] else trx.shape[0]
    nte = a.test_n if 0 < a.test_n < tex.shape[0] else tex.shape[0]
    res = {"clean_accuracy": [], "robust_accuracy": []}
    t0 = now()
    for i in range(a.points):
        t = i / (a.points - 1)
        with torch.no_grad():
            for k in names:
                params[k].copy_((1 - t) * pa[k] + t * pb[k])
        torch_side.bn_reset_cumulative(model)
        for s in range(0, nbn, a.batch):
            k = min(nbn, s + a.batch) - s
            if k < 2 and s > 0:
                break
            x = prep(a, mcpy.to_float(trx[s:s + k]))
            model.train()
            bn_momentum(model, 0.0)  # the attack's forwards leave the statistics alone
            xadv = pgd(model, x, try_[s:s + k], a)
            bn_momentum(model, None)
            with torch.no_grad():
                model(xadv)
        _, ca = evaluate(a, model, tex, tey, nte, False)
        _, ra = evaluate(a, model, tex, tey, nte, True)
        res["clean_accuracy"].append(ca)
        res["robust_accuracy"].append(ra)
    secs = now() - t0
    res.update({"workload": "advpoint", "points": a.points, "bn_images": nbn, "test_images": nte,
                "seconds": secs, "seconds_per_point": secs / a.points})
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", default=mcpy.DEFAULT_DATA)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--alpha", type=float, default=0.025)
    p.add_argument("--steps", type=int, default=5)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("attack")
    s.add_argument("--model", required=True)
    s.add_argument("--n", type=int, default=10000)
    s.add_argument("--batch", type=int, default=500)
    s = sub.add_parser("advtrain")
    s.add_argument("--arch", required=True)
    s.add_argument("--n", type=int, default=12800)
    s.add_argument("--batch", type=int, default=128)
    s.add_argument("--lr", type=float, default=0.05)
    s = sub.add_parser("advpoint")
    s.add_argument("--a", required=True)
    s.add_argument("--b", required=True)
    s.add_argument("--points", type=int, default=3)
    s.add_argument("--bn-samples", type=int, default=10000)
    s.add_argument("--test-n", type=int, default=10000)
    s.add_argument("--batch", type=int, default=500)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    data = mcpy.load_fashion(a.data)
    res = {"attack": cmd_attack, "advtrain": cmd_advtrain, "advpoint": cmd_advpoint}[a.cmd](a, data)
    res.update({"torch": torch.__version__, "threads": torch.get_num_threads(), "channels_last": a.channels_last,
                "mkldnn": torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled})
    print(json.dumps(res))


if __name__ == "__main__":
    main()
