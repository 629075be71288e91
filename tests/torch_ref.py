#!/usr/bin/python3
"""PyTorch reference for tests/test_torch_ref.c.

Usage: /usr/bin/python3 torch_ref.py IN1 OUT1 [IN2 OUT2 ...]

Each IN file (written by the C test) holds the architecture ("meta.config",
a text line "arch=... in=CxHxW classes=K width=W widths=A,B bn=0|1"), the
input normalisation, every parameter and BN running statistic by its
PyTorch name, an input batch, labels and the dropout masks the C executor
drew in train mode.  The architectures are defined here independently, as
ordinary nn.Module classes whose parameter names are the modeconn names.

The reference runs in float64 (the C side is float32, so the comparison
measures the C side's error).  For each file it writes OUT with:
  meta.nparams            sum(p.numel() for p in model.parameters())
  meta.names              state_dict keys minus num_batches_tracked (text)
  (googlenet also: argmax.{eval,train}.NAME, the C executor's max-pool
  argmax per mode, and relumask.{eval,train}.NAME, where each ReLU's
  output is positive: FixedIndexMaxPool and FixedMaskReLU route the
  gradient as the C side does at float32 near-ties)
  {eval,train}.logits     logits of the eval- / train-mode forward
  train.head{K}.logits    train mode, models with several heads (googlenet):
                          head K's logits, K = 1, 2 (aux1, aux2)
  {eval,train}.loss       F.cross_entropy (mean); several heads: the
                          weighted sum CE + 0.3 CE(aux1) + 0.3 CE(aux2)
  {eval,train}.grad.NAME  d loss / d parameter
  {eval,train}.dx         d loss / d input
  train.state.NAME        running_mean / running_var after the train step
                          (momentum 0.1, unbiased running variance)
  recompute.state.NAME    running statistics after reset_running_stats() and
                          two train-mode batches (input.x, input.x2) with
                          momentum=None: the exact cumulative average
                          (modeconn's MC_MODE_BN_RECOMPUTE)
  googlenet only (the definition in googlenet_ref.py against torchvision's):
  meta.tv_names           "name dim0xdim1.." lines of torchvision 0.14's
                          GoogLeNet (as modified by the official code) at
                          width 1 for this case's input channels and classes
  meta.tv_err             max relative difference between that module and
                          googlenet_ref.GoogLeNet, same random weights, eval
                          logits and the three train-mode heads (dropout 0)

File format (little endian): b"MCTR", u32 version 1, u32 count, then per
tensor: u32 name length, name bytes, u32 dtype (0 f32, 1 f64, 2 i32, 3 i64,
4 u8), u32 ndim, i64 dims[ndim], raw data.
"""
import math
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import googlenet_ref

DTYPES = {0: np.float32, 1: np.float64, 2: np.int32, 3: np.int64, 4: np.uint8}
CODES = {np.dtype(v): k for k, v in DTYPES.items()}


def read_tensors(path):
    out = {}
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"MCTR":
        raise ValueError(f"{path}: bad magic")
    version, count = struct.unpack_from("<II", data, 4)
    if version != 1:
        raise ValueError(f"{path}: version {version}")
    pos = 12
    for _ in range(count):
        (nlen,) = struct.unpack_from("<I", data, pos)
        pos += 4
        name = data[pos:pos + nlen].decode()
        pos += nlen
        dtype, ndim = struct.unpack_from("<II", data, pos)
        pos += 8
        dims = struct.unpack_from(f"<{ndim}q", data, pos)
        pos += 8 * ndim
        dt = np.dtype(DTYPES[dtype])
        n = int(np.prod(dims)) if ndim else 1
        arr = np.frombuffer(data, dtype=dt, count=n, offset=pos).reshape(dims)
        pos += n * dt.itemsize
        out[name] = arr.copy()
    if pos != len(data):
        raise ValueError(f"{path}: {len(data) - pos} trailing bytes")
    return out


def write_tensors(path, tensors):
    with open(path, "wb") as f:
        f.write(b"MCTR" + struct.pack("<II", 1, len(tensors)))
        for name, arr in tensors.items():
            arr = np.ascontiguousarray(arr)
            nb = name.encode()
            f.write(struct.pack("<I", len(nb)) + nb)
            f.write(struct.pack("<II", CODES[arr.dtype], arr.ndim))
            f.write(struct.pack(f"<{arr.ndim}q", *arr.shape))
            f.write(arr.tobytes())


def scaled(c, w):
    """modeconn's width scaling: max(1, llround(c * w))."""
    return max(1, int(math.floor(c * w + 0.5)))


class Normalize(nn.Module):
    """Per-channel (x - mean) / std; not a parameter, not in the state_dict."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.as_tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x):
        return (x - self.mean) / self.std


class FixedMaskDropout(nn.Dropout):
    """nn.Dropout whose train-mode mask (0 or 1/(1-p)) is supplied from
    outside, so the reference sees the mask the C executor drew."""

    mask = None

    def forward(self, x):
        if not self.training:
            return x
        if self.mask is None:
            raise RuntimeError("train-mode dropout without a fixed mask")
        return x * self.mask


class FixedIndexMaxPool(nn.MaxPool2d):
    """nn.MaxPool2d that, where given (index[training]: the C executor's
    argmax, (N, C, OH, OW) flat offsets into each input plane), takes the
    maximum's position from it, so the gradient goes where the C side's
    does even at near-ties that float32 and float64 break differently.  The
    given positions are checked to hold a maximum (to 1e-6 relative)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.index = {}

    def forward(self, x):
        ref = super().forward(x)
        idx = self.index.get(self.training)
        if idx is None:
            return ref
        y = x.flatten(2).gather(2, idx.flatten(2)).view(ref.shape)
        bad = (y - ref).abs().max().item()
        if bad > 1e-6 * max(ref.abs().max().item(), 1e-30):
            raise SystemExit(f"maxpool: the C executor's argmax is not a maximum (off by {bad:.3g})")
        return y


class FixedMaskReLU(nn.Module):
    """ReLU that, where given (mask[training]: 1 where the C executor's ReLU
    output is positive), passes exactly those units, so a pre-activation
    within float32 noise of 0 -- which float32 and float64 can put on
    different sides -- routes the gradient as the C side does.  Disagreeing
    units must lie within 1e-4 of the layer's largest |x| of zero."""

    def __init__(self):
        super().__init__()
        self.mask = {}

    def forward(self, x):
        m = self.mask.get(self.training)
        if m is None:
            return F.relu(x)
        m = m.view(x.shape)
        off = ((x > 0).to(x.dtype) != m) & (x.abs() > 1e-4 * x.abs().max())
        if off.any():
            raise SystemExit(f"relu: the C executor's mask differs at {int(off.sum())} clearly nonzero units")
        return x * m


class TinyTen(nn.Module):
    CFG = [(16, 3, 1, 1), (16, 3, 1, 1), (32, 3, 2, 1), (32, 3, 1, 1),
           (32, 3, 1, 1), (64, 3, 2, 1), (64, 3, 1, 0), (64, 1, 1, 0)]

    def __init__(self, in_c, classes, width, norm):
        super().__init__()
        self.norm = norm
        c = in_c
        for i, (o, k, s, p) in enumerate(self.CFG, 1):
            o = scaled(o, width)
            setattr(self, f"conv{i}", nn.Conv2d(c, o, k, s, p, bias=True))
            setattr(self, f"bn{i}", nn.BatchNorm2d(o))
            c = o
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = self.norm(x)
        for i in range(1, 9):
            x = F.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    def __init__(self, depth, in_c, classes, width, norm):
        super().__init__()
        n = (depth - 2) // 6
        ch = [scaled(16, width), scaled(32, width), scaled(64, width)]
        self.norm = norm
        self.conv1 = nn.Conv2d(in_c, ch[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch[0])
        cin = ch[0]
        for s in range(3):
            blocks = []
            for i in range(n):
                stride = 2 if (s > 0 and i == 0) else 1
                blocks.append(BasicBlock(cin, ch[s], stride))
                cin = ch[s]
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(self.norm(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class MLP(nn.Module):
    def __init__(self, in_features, widths, classes, width, bn, norm):
        super().__init__()
        self.norm = norm
        self.nhidden = len(widths)
        self.bn = bn
        f = in_features
        for k, w in enumerate(widths, 1):
            o = scaled(w, width)
            setattr(self, f"fc{k}", nn.Linear(f, o))
            if bn:
                setattr(self, f"bn{k}", nn.BatchNorm1d(o))
            f = o
        setattr(self, f"fc{self.nhidden + 1}", nn.Linear(f, classes))

    def forward(self, x):
        x = self.norm(x).flatten(1)
        for k in range(1, self.nhidden + 1):
            x = getattr(self, f"fc{k}")(x)
            if self.bn:
                x = getattr(self, f"bn{k}")(x)
            x = F.relu(x)
        return getattr(self, f"fc{self.nhidden + 1}")(x)


class VGG16BN(nn.Module):
    """torchvision's vgg16_bn `features` (make_layers(cfg "D", batch_norm=True))
    with a single Linear `classifier`; a max-pool that would see an input
    smaller than 2x2 (the 5th one for 28x28 inputs) becomes nn.Identity, so
    the module indices stay torchvision's."""

    CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
           512, 512, 512, "M", 512, 512, 512, "M"]

    def __init__(self, in_c, h, w, classes, width, norm):
        super().__init__()
        self.norm = norm
        layers = []
        c = in_c
        for v in self.CFG:
            if v == "M":
                if h >= 2 and w >= 2:
                    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                    h, w = h // 2, w // 2
                else:
                    layers.append(nn.Identity())
            else:
                o = scaled(v, width)
                layers += [nn.Conv2d(c, o, kernel_size=3, padding=1),
                           nn.BatchNorm2d(o), nn.ReLU(inplace=True)]
                c = o
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c * h * w, classes)

    def forward(self, x):
        return self.classifier(self.features(self.norm(x)).flatten(1))


class ConvBN(nn.Module):
    def __init__(self, cin, cout, k, p):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, 1, p, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class BranchNet(nn.Module):
    """conv1-bn1-relu; two branches a (3x3, 6) and b (1x1, 4) concatenated;
    avgpool 2; conv2-bn2-relu; maxpool 2; fc1-bn3-relu-dropout(0.1); fc2."""

    def __init__(self, in_c, h, w, classes, norm):
        super().__init__()
        self.norm = norm
        self.conv1 = nn.Conv2d(in_c, 8, 3, 1, 1, bias=True)
        self.bn1 = nn.BatchNorm2d(8)
        self.a = ConvBN(8, 6, 3, 1)
        self.b = ConvBN(8, 4, 1, 0)
        self.conv2 = nn.Conv2d(10, 8, 3, 1, 1, bias=True)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc1 = nn.Linear(8 * (h // 2 // 2) * (w // 2 // 2), 32)
        self.bn3 = nn.BatchNorm1d(32)
        self.drop = FixedMaskDropout(0.1)
        self.fc2 = nn.Linear(32, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(self.norm(x))))
        x = torch.cat([self.a(x), self.b(x)], dim=1)
        x = F.avg_pool2d(x, 2, 2)
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.max_pool2d(x, 2, 2).flatten(1)
        x = self.drop(F.relu(self.bn3(self.fc1(x))))
        return self.fc2(x)


def parse_config(text):
    cfg = dict(kv.split("=", 1) for kv in text.split())
    c, h, w = (int(v) for v in cfg["in"].split("x"))
    return cfg["arch"], c, h, w, int(cfg["classes"]), float(cfg["width"]), \
        [int(v) for v in cfg.get("widths", "512,512").split(",") if v], cfg.get("bn", "0") == "1"


def build(arch, c, h, w, classes, width, widths, bn, norm):
    if arch == "tinyten":
        return TinyTen(c, classes, width, norm)
    if arch in ("resnet20", "resnet32", "resnet56"):
        return ResNetCifar(int(arch[6:]), c, classes, width, norm)
    if arch == "mlp":
        return MLP(c * h * w, widths, classes, width, bn, norm)
    if arch == "vgg16-bn":
        return VGG16BN(c, h, w, classes, width, norm)
    if arch == "branchnet":
        return BranchNet(c, h, w, classes, norm)
    if arch == "googlenet":
        return googlenet_ref.GoogLeNet(c, classes, width, norm, dropout=FixedMaskDropout,
                                       maxpool=FixedIndexMaxPool, relu=FixedMaskReLU)
    raise ValueError(f"unknown architecture {arch}")


def run(model, x, y, train, out, prefix):
    model.train(train)
    model.zero_grad(set_to_none=True)
    xx = x.clone().requires_grad_(True)
    res = model(xx)
    if isinstance(res, tuple):  # several heads: logits first
        loss = googlenet_ref.GoogLeNet.loss(res, y)
        for k, head in enumerate(res[1:], 1):
            out[f"{prefix}.head{k}.logits"] = head.detach().numpy()
        logits = res[0]
    else:
        logits = res
        loss = F.cross_entropy(logits, y)
    loss.backward()
    out[f"{prefix}.logits"] = logits.detach().numpy()
    out[f"{prefix}.loss"] = np.array([loss.item()])
    for name, p in model.named_parameters():
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        out[f"{prefix}.grad.{name}"] = g.numpy()
    out[f"{prefix}.dx"] = xx.grad.numpy()


def process(inp, outp):
    t = read_tensors(inp)
    arch, c, h, w, classes, width, widths, bn, = parse_config(bytes(t["meta.config"]).decode())
    torch.manual_seed(0)
    norm = Normalize(torch.from_numpy(t["norm.mean"].astype(np.float64)),
                     torch.from_numpy(t["norm.std"].astype(np.float64)))
    model = build(arch, c, h, w, classes, width, widths, bn, norm).double()

    sd_keys = [k for k in model.state_dict().keys() if not k.endswith("num_batches_tracked")]
    given = {k[6:]: v for k, v in t.items() if k.startswith("param.")}
    missing = sorted(set(sd_keys) - set(given))
    unexpected = sorted(set(given) - set(sd_keys))
    if missing or unexpected:
        raise SystemExit(f"{arch}: parameter names differ from the PyTorch module: "
                         f"missing {missing}, unexpected {unexpected}")
    sd = {k: torch.from_numpy(v.astype(np.float64)) for k, v in given.items()}
    res = model.load_state_dict(sd, strict=False)
    bad = [k for k in res.missing_keys if not k.endswith("num_batches_tracked")]
    if bad or res.unexpected_keys:
        raise SystemExit(f"{arch}: load_state_dict: missing {bad}, unexpected {res.unexpected_keys}")

    for k, v in t.items():
        if k.startswith("mask."):
            model.get_submodule(k[5:]).mask = torch.from_numpy(v.astype(np.float64))
        if k.startswith("relumask."):
            mode, name = k[9:].split(".", 1)
            model.get_submodule(name).mask[mode == "train"] = torch.from_numpy(v.astype(np.float64))
        if k.startswith("argmax."):
            mode, name = k[7:].split(".", 1)
            model.get_submodule(name).index[mode == "train"] = torch.from_numpy(v.astype(np.int64))

    x = torch.from_numpy(t["input.x"].astype(np.float64))
    y = torch.from_numpy(t["input.y"].astype(np.int64))
    out = {
        "meta.nparams": np.array([sum(p.numel() for p in model.parameters())], dtype=np.int64),
        "meta.names": np.frombuffer("\n".join(sd_keys).encode(), dtype=np.uint8),
    }
    if arch == "googlenet":
        shapes, err = googlenet_ref.torchvision_check(c, 32, classes)
        text = "\n".join(f"{k} {'x'.join(str(d) for d in s)}" for k, s in shapes.items())
        out["meta.tv_names"] = np.frombuffer(text.encode(), dtype=np.uint8)
        out["meta.tv_err"] = np.array([err])
    run(model, x, y, False, out, "eval")
    run(model, x, y, True, out, "train")
    out.update(running_stats(model, "train.state."))

    # BN recompute: running statistics reset, then the exact (cumulative,
    # momentum=None) average over two train-mode batches.
    bns = [mod for mod in model.modules() if isinstance(mod, nn.modules.batchnorm._BatchNorm)]
    if bns:
        for mod in model.modules():  # other inputs: their own maxima
            if isinstance(mod, FixedIndexMaxPool):
                mod.index = {}
            if isinstance(mod, FixedMaskReLU):
                mod.mask = {}
        for bn_mod in bns:
            bn_mod.reset_running_stats()
            bn_mod.momentum = None
        model.train(True)
        with torch.no_grad():
            model(x)
            model(torch.from_numpy(t["input.x2"].astype(np.float64)))
        out.update(running_stats(model, "recompute.state."))
    write_tensors(outp, out)


def running_stats(model, prefix):
    return {prefix + name: buf.numpy().copy() for name, buf in model.named_buffers()
            if name.endswith("running_mean") or name.endswith("running_var")}


def main(argv):
    if len(argv) < 3 or len(argv) % 2 != 1:
        raise SystemExit(__doc__)
    torch.set_num_threads(1)
    for i in range(1, len(argv), 2):
        process(argv[i], argv[i + 1])


if __name__ == "__main__":
    main(sys.argv)
