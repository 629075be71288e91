#!/usr/bin/python3
"""Train-and-evaluate interop with PyTorch for tests/test_interop.c (run by
Debian's /usr/bin/python3: torch + numpy; safetensors is parsed here with
struct + json).

  torch-train OUT N     train modeconn's `mlp --widths 64,32 --bn` in PyTorch
                        for a few steps on the first N Fashion-MNIST training
                        images, write its state_dict (strict names, I64
                        num_batches_tracked) with modeconn metadata to OUT,
                        print {"loss", "accuracy"} on the first 1000 test images
  torch-eval FILE       load a modeconn checkpoint with load_state_dict(strict=True),
                        print {"loss", "accuracy"} on the first 1000 test images
"""
import gzip
import json
import struct
import sys

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

DATA = "/usr/share/datasets/fashion-mnist"
N_TEST = 1000


def idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, = struct.unpack(">I", raw[:4])
    nd = magic & 0xFF
    dims = struct.unpack(">" + "I" * nd, raw[4:4 + 4 * nd])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)


def data(split, n):
    pre = "train" if split == "train" else "t10k"
    x = idx(f"{DATA}/{pre}-images-idx3-ubyte.gz")[:n].astype(np.float32) / 255.0
    y = idx(f"{DATA}/{pre}-labels-idx1-ubyte.gz")[:n].astype(np.int64)
    return torch.from_numpy(x).reshape(-1, 1, 28, 28), torch.from_numpy(y)


class MLP(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.mean, self.std = mean, std
        self.fc1 = nn.Linear(784, 64)
        self.bn1 = nn.BatchNorm1d(64)
        self.fc2 = nn.Linear(64, 32)
        self.bn2 = nn.BatchNorm1d(32)
        self.fc3 = nn.Linear(32, 10)

    def forward(self, x):
        x = ((x - self.mean) / self.std).flatten(1)
        x = torch.relu(self.bn1(self.fc1(x)))
        x = torch.relu(self.bn2(self.fc2(x)))
        return self.fc3(x)


def read_st(path):
    with open(path, "rb") as f:
        buf = f.read()
    n, = struct.unpack("<Q", buf[:8])
    hdr = json.loads(buf[8:8 + n])
    meta = hdr.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for k, v in hdr.items():
        b, e = v["data_offsets"]
        dt = {"F32": np.float32, "I64": np.int64}[v["dtype"]]
        out[k] = torch.from_numpy(np.frombuffer(buf[base + b:base + e], dtype=dt).reshape(v["shape"]).copy())
    return out, meta


def write_st(path, tensors, meta):
    hdr, blobs, off = {"__metadata__": meta}, [], 0
    for k in sorted(tensors):
        a = tensors[k].detach().cpu().numpy()
        a = np.ascontiguousarray(a.astype(np.int64 if a.dtype == np.int64 else np.float32))
        b = a.tobytes()
        hdr[k] = {"dtype": "I64" if a.dtype == np.int64 else "F32", "shape": list(a.shape),
                  "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(hdr).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def evaluate(model):
    x, y = data("test", N_TEST)
    model.eval()
    with torch.no_grad():
        z = model(x)
        loss = F.cross_entropy(z, y).item()
        acc = (z.argmax(1) == y).float().mean().item()
    print(json.dumps({"loss": loss, "accuracy": acc}))


def main():
    torch.set_num_threads(1)
    if sys.argv[1] == "torch-train":
        out, n = sys.argv[2], int(sys.argv[3])
        torch.manual_seed(0)
        x, y = data("train", n)
        mean, std = x.mean().item(), x.std(unbiased=False).item()
        model = MLP(mean, std)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        model.train()
        for i in range(0, n - 99, 100):
            opt.zero_grad()
            F.cross_entropy(model(x[i:i + 100]), y[i:i + 100]).backward()
            opt.step()
        meta = {"modeconn.arch": "mlp", "modeconn.input": "1x28x28", "modeconn.classes": "10",
                "modeconn.widths": "64,32", "modeconn.bn": "1",
                "modeconn.mean": "%.9g" % mean, "modeconn.std": "%.9g" % std}
        write_st(out, model.state_dict(), meta)
        evaluate(model)
    elif sys.argv[1] == "torch-eval":
        tensors, meta = read_st(sys.argv[2])
        mean = float(meta["modeconn.mean"])
        std = float(meta["modeconn.std"])
        model = MLP(mean, std)
        model.load_state_dict(tensors, strict=True)
        evaluate(model)
    else:
        sys.exit("unknown mode")


if __name__ == "__main__":
    main()
