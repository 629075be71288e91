#!/usr/bin/python3
"""PyTorch side of bench/googlenet.sh: GoogLeNet (tests/googlenet_ref.py, the
definition modeconn's `googlenet` is tested against) on random 3x32x32
inputs, 100 classes, the same work as build/bench_exec:

  train      forward (train mode, three heads), CE + 0.3 aux1 + 0.3 aux2,
             backward (parameter gradients; no optimiser step)
  eval       forward in eval mode (main head), no gradients
  recompute  forward in train mode under no_grad with BN momentum=None
             (a curve point's BN-statistics pass; the aux heads run too,
             as in modeconn's MC_MODE_BN_RECOMPUTE)

--tuned: channels_last memory format for model and input, and
torch.inference_mode() instead of no_grad for eval/recompute (the shell
side adds LD_PRELOAD=tcmalloc and OPENBLAS_NUM_THREADS=1).

Prints one line: median and best ms per batch and images/s over --iters
timed iterations after 2 warm-up ones.
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import googlenet_ref  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["train", "eval", "recompute"], default="train")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--tuned", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = googlenet_ref.GoogLeNet(3, a.classes, a.width)
    x = torch.rand(a.batch, 3, 32, 32)
    y = torch.arange(a.batch) % a.classes
    if a.tuned:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if a.mode == "recompute":
        for mod in model.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                mod.reset_running_stats()
                mod.momentum = None
    model.train(a.mode != "eval")
    ctx = torch.inference_mode if a.tuned else torch.no_grad
    times = []
    for it in range(-2, a.iters):
        t0 = time.perf_counter()
        if a.mode == "train":
            model.zero_grad(set_to_none=True)
            loss = googlenet_ref.GoogLeNet.loss(model(x), y)
            loss.backward()
        else:
            with ctx():
                model(x)
        if it >= 0:
            times.append(time.perf_counter() - t0)
    med, best = statistics.median(times), min(times)
    print(f"torch{'-tuned' if a.tuned else ''} {a.mode} batch {a.batch} threads {a.threads}: "
          f"median {med * 1e3:.1f} ms {a.batch / med:.1f} img/s | best {best * 1e3:.1f} ms "
          f"{a.batch / best:.1f} img/s")


if __name__ == "__main__":
    main()
