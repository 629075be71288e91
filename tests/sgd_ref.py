#!/usr/bin/python3
"""torch.optim.SGD reference for tests/test_sgd.c: reads float32 arrays
p0, g1, g2, g3 (n each) from IN, runs three SGD steps with the given
hyper-parameters and writes the parameters after each step to OUT."""
import sys

import numpy as np
import torch

inp, out, n, lr, mom, wd, nesterov = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), \
    float(sys.argv[5]), float(sys.argv[6]), sys.argv[7] == "1"
a = np.fromfile(inp, dtype=np.float32).reshape(4, n)
p = torch.nn.Parameter(torch.from_numpy(a[0].copy()))
opt = torch.optim.SGD([p], lr=lr, momentum=mom, weight_decay=wd, nesterov=nesterov)
res = []
for k in range(1, 4):
    opt.zero_grad()
    p.grad = torch.from_numpy(a[k].copy())
    opt.step()
    res.append(p.detach().numpy().copy())
np.stack(res).astype(np.float32).tofile(out)
