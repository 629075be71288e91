#!/usr/bin/python3
"""PyTorch interop helper for tests/test_safetensors.c (run with Debian's
/usr/bin/python3, which has torch and numpy; the `safetensors` package is
not needed: the format is read and written here with struct + json).

The model is modeconn's `mlp --widths 24,16 --bn` on 1x28x28 inputs, with
the same parameter names.  Every float value is a formula of (tensor name,
index) that is exact in float32, so both sides can check values bitwise
without sharing a file format:

  write DIR         write DIR/torch.st (with modeconn metadata),
                    DIR/torch_nometa.st (no metadata) and DIR/torch_logits.bin
                    (eval-mode logits of the input below, float32)
  check FILE OUT    load FILE (written by modeconn) into the module with
                    load_state_dict(strict=True), check every value and the
                    metadata, write the eval-mode logits to OUT

Exits non-zero on any mismatch.
"""
import json
import struct
import sys

import numpy as np
import torch
from torch import nn

N_INPUT = 4
MEAN, STD = 0.25, 0.5


class Normalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x):
        return (x - self.mean) / self.std


class MLP(nn.Module):
    # attribute names give the state_dict names modeconn uses
    def __init__(self):
        super().__init__()
        self.norm = Normalize(MEAN, STD)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(784, 24)
        self.bn1 = nn.BatchNorm1d(24)
        self.fc2 = nn.Linear(24, 16)
        self.bn2 = nn.BatchNorm1d(16)
        self.fc3 = nn.Linear(16, 10)

    def forward(self, x):
        x = self.flatten(self.norm(x))
        x = torch.relu(self.bn1(self.fc1(x)))
        x = torch.relu(self.bn2(self.fc2(x)))
        return self.fc3(x)


def formula(name, n):
    """The value of element i of tensor `name` (same formula in the C test)."""
    k = sum(name.encode()) % 97
    i = np.arange(n, dtype=np.int64)
    if name.endswith("running_var"):
        v = 0.5 + ((i * 5 + k) % 37) / 32.0
    else:
        v = (((i * 7 + k * 13) % 101) - 50) / 64.0
    return v.astype(np.float32)


def test_input():
    n = N_INPUT * 28 * 28
    j = np.arange(n, dtype=np.int64)
    x = ((j * 31) % 256).astype(np.float32) / np.float32(255)
    return torch.from_numpy(x.reshape(N_INPUT, 1, 28, 28))


DT = {"F32": np.float32, "I64": np.int64, "F64": np.float64, "I32": np.int32}


def st_read(path):
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    data = buf[8 + n:]
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        a = np.frombuffer(data[b:end], dtype=np.dtype(DT[e["dtype"]]).newbyteorder("<"))
        out[name] = (e["dtype"], a.reshape(e["shape"]))
    return out, meta


def st_write(path, tensors, meta):
    """tensors: list of (name, numpy array) in the order to write."""
    header, chunks, off = {}, [], 0
    if meta:
        header["__metadata__"] = meta
    for name, a in tensors:
        dt = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}[a.dtype]
        raw = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    h = json.dumps(header).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for c in chunks:
            f.write(c)


def fail(msg):
    print("st_torch.py: FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def logits(model):
    model.eval()
    with torch.no_grad():
        return model(test_input()).numpy().astype(np.float32)


def cmd_write(d):
    model = MLP()
    sd = model.state_dict()
    tensors = []
    with torch.no_grad():
        for name, t in sd.items():
            if t.dtype == torch.int64:
                t.fill_(123)
                tensors.append((name, t.numpy().copy()))
            else:
                t.copy_(torch.from_numpy(formula(name, t.numel()).reshape(tuple(t.shape))))
                tensors.append((name, t.numpy().copy()))
    meta = {"modeconn.arch": "mlp", "modeconn.input": "1x28x28", "modeconn.classes": "10",
            "modeconn.widths": "24,16", "modeconn.bn": "1", "modeconn.mean": repr(MEAN),
            "modeconn.std": repr(STD), "written_by": "torch " + torch.__version__}
    st_write(d + "/torch.st", tensors, meta)
    st_write(d + "/torch_nometa.st", list(reversed(tensors)), {})
    logits(model).tofile(d + "/torch_logits.bin")


def cmd_check(path, out):
    tensors, meta = st_read(path)
    want = {"modeconn.arch": "mlp", "modeconn.input": "1x28x28", "modeconn.classes": "10",
            "modeconn.widths": "24,16", "modeconn.bn": "1", "modeconn.mean": "0.25", "modeconn.std": "0.5"}
    for k, v in want.items():
        if meta.get(k) != v:
            fail("%s: metadata %s = %r, expected %r" % (path, k, meta.get(k), v))
    sd = {}
    for name, (dt, a) in tensors.items():
        if name.endswith("num_batches_tracked"):
            if dt != "I64" or a.shape != ():
                fail("%s: %s is %s %s, expected an I64 scalar" % (path, name, dt, a.shape))
            sd[name] = torch.tensor(int(a), dtype=torch.int64)
        else:
            if dt != "F32":
                fail("%s: %s is %s" % (path, name, dt))
            sd[name] = torch.from_numpy(a.copy())
    model = MLP()
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        fail("%s: load_state_dict(strict=True): %s" % (path, e))
    for name, t in model.state_dict().items():
        if t.dtype == torch.int64:
            continue
        ref = formula(name, t.numel())
        got = t.numpy().reshape(-1)
        if not np.array_equal(got.view(np.uint32), ref.view(np.uint32)):
            i = int(np.argmax(got != ref))
            fail("%s: %s[%d] = %r, expected %r" % (path, name, i, got[i], ref[i]))
    logits(model).tofile(out)
    print("st_torch.py: %s: %d tensors load into torch strictly, values equal" % (path, len(tensors)))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "write":
        cmd_write(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "check":
        cmd_check(sys.argv[2], sys.argv[3])
    else:
        fail("usage: st_torch.py write DIR | check FILE OUT_LOGITS")


if __name__ == "__main__":
    main()
