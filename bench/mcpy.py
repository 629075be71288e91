"""Shared helpers for the PyTorch side of the benchmarks (run with Debian's
/usr/bin/python3: python3-torch, numpy, scipy).

- Fashion-MNIST from the IDX gz files (gzip + numpy)
- safetensors read/write with struct + json + numpy (no safetensors package)
- the modeconn architectures mlp, tinyten, resnet20 as ordinary nn.Modules
  whose state_dict names are modeconn's names (so a modeconn checkpoint
  loads with load_state_dict(strict=True)), with one nn.ReLU module per
  post-ReLU point, named as modeconn's graph names them
- parsing of `modeconn info` (relu node -> permutation group, and the
  parameter axes every group touches)
"""
import gzip
import json
import os
import re
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"


# --------------------------------------------------------------------- data
def read_idx_gz(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack_from(">I", data, 0)[0]
    ndim = magic & 0xFF
    if (magic >> 8) != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {magic:#x})")
    dims = struct.unpack_from(">" + "I" * ndim, data, 4)
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims)


def load_fashion(root=DEFAULT_DATA):
    """uint8 tensors: train_x [60000,1,28,28], train_y [60000] (int64), test_x, test_y."""
    def get(stem):
        x = read_idx_gz(os.path.join(root, f"{stem}-images-idx3-ubyte.gz"))
        y = read_idx_gz(os.path.join(root, f"{stem}-labels-idx1-ubyte.gz"))
        x = torch.from_numpy(x.copy()).unsqueeze(1)
        y = torch.from_numpy(y.astype(np.int64))
        return x, y
    trx, try_ = get("train")
    tex, tey = get("t10k")
    return trx, try_, tex, tey


def to_float(xu8):
    """uint8 batch -> float32 in [0,1] (what modeconn's batch builder does)."""
    return xu8.float().div_(255.0)


def random_crop(x, pad, gen=None):
    """Random crop with zero padding, per sample, vectorised (torchvision's
    RandomCrop(padding=pad) semantics applied to a whole batch)."""
    if pad <= 0:
        return x
    n, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    return xp[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]


# -------------------------------------------------------------- safetensors
ST_DT = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "U8": np.uint8}
ST_CODE = {np.dtype(v): k for k, v in ST_DT.items()}


def st_read(path):
    """-> (metadata dict, {name: numpy array})"""
    with open(path, "rb") as f:
        data = f.read()
    (hlen,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + hlen])
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        dt = np.dtype(ST_DT[info["dtype"]])
        b, e = info["data_offsets"]
        arr = np.frombuffer(data, dtype=dt, count=(e - b) // dt.itemsize, offset=base + b)
        out[name] = arr.reshape(info["shape"]).copy()
    return meta, out


def st_write(path, tensors, meta=None):
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        header[name] = {"dtype": ST_CODE[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [off, off + arr.nbytes]}
        blobs.append(arr.tobytes())
        off += arr.nbytes
    if meta:
        header["__metadata__"] = meta
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


# ------------------------------------------------------------------- models
class Normalize(nn.Module):
    """Per-channel (x - mean) / std: part of the model, not in the state_dict."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)

    def forward(self, x):
        return (x - self.mean) / self.std


class MLP(nn.Module):
    """modeconn `mlp` (default widths 512,512, no BN): normalize, flatten,
    fc1 relu1 fc2 relu2 fc3."""

    def __init__(self, in_shape, classes, mean, std, widths=(512, 512)):
        super().__init__()
        self.norm = Normalize(mean, std)
        c = int(np.prod(in_shape))
        self.nl = len(widths)
        for i, w in enumerate(widths, 1):
            setattr(self, f"fc{i}", nn.Linear(c, w))
            setattr(self, f"relu{i}", nn.ReLU())
            c = w
        setattr(self, f"fc{self.nl + 1}", nn.Linear(c, classes))

    def forward(self, x):
        x = self.norm(x).flatten(1)
        for i in range(1, self.nl + 1):
            x = getattr(self, f"relu{i}")(getattr(self, f"fc{i}")(x))
        return getattr(self, f"fc{self.nl + 1}")(x)


class TinyTen(nn.Module):
    """modeconn `tinyten`: 8 x (conv with bias, BN, ReLU), GAP, fc."""

    CFG = [(16, 3, 1, 1), (16, 3, 1, 1), (32, 3, 2, 1), (32, 3, 1, 1),
           (32, 3, 1, 1), (64, 3, 2, 1), (64, 3, 1, 0), (64, 1, 1, 0)]

    def __init__(self, in_shape, classes, mean, std):
        super().__init__()
        self.norm = Normalize(mean, std)
        c = in_shape[0]
        for i, (o, k, s, p) in enumerate(self.CFG, 1):
            setattr(self, f"conv{i}", nn.Conv2d(c, o, k, s, p, bias=True))
            setattr(self, f"bn{i}", nn.BatchNorm2d(o))
            setattr(self, f"relu{i}", nn.ReLU())
            c = o
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = self.norm(x)
        for i in range(1, 9):
            x = getattr(self, f"relu{i}")(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


class BasicBlock(nn.Module):
    """conv-BN-ReLU(relu1)-conv-BN, + shortcut (identity or 1x1 conv + BN),
    ReLU (out)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False),
                                          nn.BatchNorm2d(cout))
        self.out = nn.ReLU()

    def forward(self, x):
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.out(y + self.shortcut(x))


class ResNetCifar(nn.Module):
    """modeconn `resnet20/32/56`: stem conv3x3 16 + BN + ReLU (stem), three
    stages of n blocks at 16/32/64 channels, GAP, fc."""

    def __init__(self, in_shape, classes, mean, std, n=3):
        super().__init__()
        self.norm = Normalize(mean, std)
        self.conv1 = nn.Conv2d(in_shape[0], 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.stem = nn.ReLU()
        c = 16
        for s, (w, stride) in enumerate([(16, 1), (32, 2), (64, 2)], 1):
            blocks = []
            for b in range(n):
                blocks.append(BasicBlock(c, w, stride if b == 0 else 1))
                c = w
            setattr(self, f"layer{s}", nn.Sequential(*blocks))
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = self.stem(self.bn1(self.conv1(self.norm(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def build_model(arch, in_shape=(1, 28, 28), classes=10, mean=(0.0,), std=(1.0,)):
    if arch == "mlp":
        return MLP(in_shape, classes, mean, std)
    if arch == "tinyten":
        return TinyTen(in_shape, classes, mean, std)
    depth = {"resnet20": 3, "resnet32": 5, "resnet56": 9}
    if arch in depth:
        return ResNetCifar(in_shape, classes, mean, std, depth[arch])
    raise ValueError(f"architecture {arch!r} has no PyTorch definition here")


def meta_floats(s):
    return [float(v) for v in s.split(",")]


def model_from_state(meta, tensors, prefix=""):
    """Builds the model named in the modeconn metadata and loads the
    tensors under `prefix` (strict)."""
    in_shape = tuple(int(v) for v in meta.get("modeconn.input", "1x28x28").split("x"))
    m = build_model(meta["modeconn.arch"], in_shape, int(meta.get("modeconn.classes", "10")),
                    meta_floats(meta.get("modeconn.mean", "0")), meta_floats(meta.get("modeconn.std", "1")))
    sd = {k[len(prefix):]: torch.from_numpy(v) for k, v in tensors.items() if k.startswith(prefix)}
    m.load_state_dict(sd, strict=True)
    return m


def load_model(path):
    meta, t = st_read(path)
    return model_from_state(meta, t)


def trainable_names(model):
    return [n for n, _ in model.named_parameters()]


# ------------------------------------------------------------ modeconn info
_NODE = re.compile(r"^\s*\d+\s+(\S+)\s+(\w+)\s+->\s+\S+.*groups \[([^\]]*)\]")
_GROUP = re.compile(r"^\s*G(\d+)\s+\S+\s+size\s+(\d+)\s+.*axes:\s*(.*)$")
_AXIS = re.compile(r"([^\s,\[]+)\[(\d+)\]")


def parse_info(text):
    """`modeconn info --arch A` output -> (relu_group {relu node name: g},
    groups [(size, [(tensor name, axis), ...])] indexed by g)."""
    relu_group, groups = {}, {}
    for line in text.splitlines():
        m = _NODE.match(line)
        if m and m.group(2) == "relu":
            gs = m.group(3).strip()
            if gs.startswith("G") and "," not in gs:
                relu_group[m.group(1)] = int(gs[1:])
            elif gs != "fixed":
                raise ValueError(f"relu node {m.group(1)}: groups [{gs}] not supported here")
            continue
        m = _GROUP.match(line)
        if m:
            groups[int(m.group(1))] = (int(m.group(2)), [(n, int(a)) for n, a in _AXIS.findall(m.group(3))])
    return relu_group, [groups[g] for g in sorted(groups)]


def parse_flops(text):
    m = re.search(r"forward FLOPs per sample:\s*([0-9.eE+-]+)", text)
    return float(m.group(1)) if m else None
