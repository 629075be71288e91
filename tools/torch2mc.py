#!/usr/bin/python3
"""torch2mc: export a PyTorch nn.Module to a modeconn checkpoint (spec text +
weights), and the way back (see mc2torch.py).  Run with Debian's
/usr/bin/python3 (python3-torch 1.13; no other package needed: safetensors
is read and written here with struct + json).

    python3 tools/torch2mc.py MODULE:FACTORY [--state-dict F.pt|F.safetensors]
        --input 3x32x32 [--classes 10] [--mean M,M,M --std S,S,S]
        --out model.safetensors [--spec-out model.arch]

MODULE is an importable module (torchvision.models) or a .py file; FACTORY
a callable in it returning the nn.Module (called with num_classes=K when it
takes that argument).  From Python: export(model, example_input, path).

How it works: the module is traced with torch.fx (symbolic trace: the graph
of one forward call, independent of the input values), every node's shape
is propagated with the example input, and each node is mapped to a modeconn
node kind (docs/ARCH_FORMAT.md).  Nodes with parameters are labelled with
their module path, so the weights keep the module's own state-dict names.
Anything without an exact modeconn equivalent is refused with an error
naming the module path, the op and the source line.  The mapping:

  nn.Conv2d (square kernel, equal strides/paddings, groups=1, dilation=1,
    zero padding; padding='same' with odd k)          -> conv
  nn.Linear on a vector                               -> linear
  nn.BatchNorm2d / BatchNorm1d (affine, running stats) -> bn
  nn.ReLU, F.relu, torch.relu, .relu(), in place too  -> relu
  nn.MaxPool2d, F.max_pool2d (square, dilation 1)     -> maxpool (ceil_mode -> ceil=1)
  nn.AvgPool2d, F.avg_pool2d (count_include_pad, or no padding) -> avgpool
  nn.AdaptiveAvgPool2d / F.adaptive_avg_pool2d, .mean((2, 3)):
    to 1x1                                            -> gap
    to the input's own size                           -> nothing (identity)
    to an exact divisor (H/h = W/w)                   -> avgpool k=s=H/h
    from a 1x1 map to h x w (VGG's (7, 7) at 32x32): h*w copies
      (concat), allowed only before flatten -> linear; that linear's
      columns are stored in modeconn's order (copy-major instead of
      channel-major), which the way back undoes exactly
  torch.flatten(x, 1), nn.Flatten(), .view/.reshape(N, -1) -> flatten
  +, +=, torch.add, .add (tensors of one shape)       -> add
  torch.cat(dim=1)                                    -> concat
  nn.Dropout, F.dropout                               -> dropout
  nn.Identity, .contiguous(), p=0 dropout            -> nothing

The modeconn input is an image in [0,1]; the spec starts with `normalize`,
whose mean/std are --mean/--std (the transforms.Normalize the module was
trained behind) or 0/1 (identity: the module sees [0,1] images); the
metadata key torch2mc.normalization says which.
"""
import argparse
import importlib
import importlib.util
import inspect
import json
import operator
import os
import struct
import sys
import traceback

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

MAX_INPUTS = 8  # MC_MAX_INPUTS: inputs per concat node
NAME_MAX = 96   # MC_NAME_MAX: label length (including the terminator)
TORCH_DIR = os.path.dirname(torch.__file__)


class Unsupported(Exception):
    """The module holds something modeconn cannot represent exactly."""


# --------------------------------------------------------------- safetensors
DT = {"F32": np.float32, "I64": np.int64, "F64": np.float64, "I32": np.int32, "F16": np.float16}


def st_read(path):
    """{name: numpy array}, {metadata}"""
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, e in header.items():
        if e["dtype"] not in DT:
            raise ValueError("%s: tensor %s has dtype %s (expected one of %s)" % (path, name, e["dtype"], sorted(DT)))
        b, end = e["data_offsets"]
        a = np.frombuffer(buf, dtype=np.dtype(DT[e["dtype"]]).newbyteorder("<"), count=(end - b) // np.dtype(DT[e["dtype"]]).itemsize, offset=8 + n + b)
        out[name] = a.reshape(e["shape"])
    return out, meta


def st_write(path, tensors, meta):
    """tensors: list of (name, numpy array); written atomically (temp, fsync, rename)."""
    header, off = {}, 0
    if meta:
        header["__metadata__"] = meta
    arrays = []
    for name, a in tensors:
        a = np.ascontiguousarray(a)
        dt = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}[a.dtype]
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        arrays.append(a.astype(a.dtype.newbyteorder("<"), copy=False))
        off += a.nbytes
    h = json.dumps(header).encode("utf-8")
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for a in arrays:
            f.write(memoryview(a).cast("B"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ------------------------------------------------------------------- tracing
def _user_frame():
    """'file:line: code' of the innermost frame outside torch (the user's forward)."""
    for fr in reversed(traceback.extract_stack()[:-2]):
        if not fr.filename.startswith(TORCH_DIR) and fr.filename != __file__:
            return "%s:%d: %s" % (fr.filename, fr.lineno, (fr.line or "").strip())
    return "?"


class _Tracer(torch.fx.Tracer):
    """symbolic_trace's tracer, also recording in every node the module path
    it was created under, and refusing data-dependent control flow with that
    path and the source line."""

    def __init__(self):
        super().__init__()
        self.stack = []

    def call_module(self, m, forward, args, kwargs):
        path = self.path_of_module(m)
        if self.is_leaf_module(m, path) and type(m) not in _MODULES:
            raise Unsupported("module '%s' (%s, op %s): torch.nn.%s is not supported by torch2mc (supported: %s)" %
                              (path, _user_frame(), type(m).__name__, type(m).__name__, _SUPPORTED))
        self.stack.append(path)
        try:
            return super().call_module(m, forward, args, kwargs)
        finally:
            self.stack.pop()

    def where(self):
        return self.stack[-1] if self.stack else "(top level)"

    def create_node(self, *a, **k):
        node = super().create_node(*a, **k)
        node.meta["mc_path"] = self.where()
        node.meta["mc_src"] = _user_frame()
        return node

    def _flow(self, what):
        raise Unsupported("module '%s' (%s): %s on a traced tensor: data-dependent control flow is not supported "
                          "(the graph must not depend on the input's values)" % (self.where(), _user_frame(), what))

    def to_bool(self, obj):
        self._flow("a Python `if`/`while`/bool() (op: bool)")

    def iter(self, obj):
        self._flow("iteration (op: iter)")

    def keys(self, obj):
        self._flow("** unpacking (op: keys)")


def _trace(model, example):
    tracer = _Tracer()
    try:
        graph = tracer.trace(model)
    except Unsupported:
        raise
    except Exception as e:  # fx's own failures: name where they happened
        fr = [f for f in traceback.extract_tb(e.__traceback__) if not f.filename.startswith(TORCH_DIR)
              and f.filename != __file__]
        src = "%s:%d: %s" % (fr[-1].filename, fr[-1].lineno, (fr[-1].line or "").strip()) if fr else "?"
        raise Unsupported("module '%s' (%s): torch.fx cannot trace this: %s: %s" %
                          (tracer.where(), src, type(e).__name__, e))
    gm = torch.fx.GraphModule(model, graph)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(example)
    finally:
        model.train(was)
    return gm


# ------------------------------------------------------------------- mapping
def _pair(v, what, where):
    if isinstance(v, int):
        return v
    v = tuple(v)
    if len(v) == 2 and v[0] == v[1]:
        return int(v[0])
    if len(v) == 1:
        return int(v[0])
    raise Unsupported("%s: %s %s is not square (modeconn kernels, strides and paddings are the same in both "
                      "dimensions)" % (where, what, v))


class _Val:
    """A modeconn-side value: the node producing it and its modeconn shape.
    order: for a vector whose features modeconn holds in a different order
    than PyTorch (after a 1x1 -> h x w replicate), order[i] = PyTorch index
    of modeconn feature i.  repl: a pending replicate (source value, copies)."""

    def __init__(self, label, C, H, W, flat, order=None, repl=None):
        self.label, self.C, self.H, self.W, self.flat = label, C, H, W, flat
        self.order, self.repl = order, repl


class Graph:
    """The modeconn graph of a traced module: spec lines, parameter tensors,
    layouts (for the permutation groups), and the conversions between the
    module's state dict and modeconn's tensors."""

    def __init__(self):
        self.nodes = []      # dicts: label, kind, attrs, inputs
        self.labels = set()
        self.params = {}     # modeconn tensor name -> (state-dict key, column order or None)
        self.bn = []         # BN labels (for num_batches_tracked)
        self.notes = []      # mapping notes (spec comments and metadata)
        self.classes = None
        self.input = None
        self.fx = {}         # torch.fx node name -> label of the modeconn node it became
        self.layouts = None  # label -> layout, set by groups()

    def fresh(self, name):
        name = name.replace(":", "_").replace(",", "_").replace("#", "_").replace("=", "_")
        base, k = name, 1
        while name in self.labels:
            name = "%s_%d" % (base, k)
            k += 1
        return name

    def emit(self, label, kind, inputs, **attrs):
        if len(label) >= NAME_MAX:
            raise Unsupported("label '%s' is longer than modeconn's %d characters" % (label, NAME_MAX - 1))
        if label in self.labels:
            raise Unsupported("module '%s' is called more than once: shared weights are not supported" % label)
        self.labels.add(label)
        self.nodes.append({"label": label, "kind": kind, "attrs": attrs, "inputs": list(inputs)})
        return label

    def spec(self):
        lines = ["# exported by tools/torch2mc.py (torch %s)" % torch.__version__]
        lines += ["# " + n for n in self.notes]
        prev = None
        for nd in self.nodes:
            s = "%s: %s" % (nd["label"], nd["kind"])
            for k, v in nd["attrs"].items():
                s += " %s=%s" % (k, v)
            if nd["inputs"] and nd["inputs"] != [prev]:
                s += " from=" + ",".join(nd["inputs"])
            lines.append(s)
            prev = nd["label"]
        return "\n".join(lines) + "\n"

    # -- the permutation groups, derived exactly as src/model/graph.c does
    def groups(self):
        """[(name, size)], and {tensor name: (axis0 layout, axis1 layout)}
        with a layout a list of [group or -1, count, repeat] segments."""
        parent, fixed = [], []

        def new():
            parent.append(len(parent))
            fixed.append(False)
            return len(parent) - 1

        def find(a):
            while parent[a] != a:
                parent[a] = parent[parent[a]]
                a = parent[a]
            return a

        def union(a, b):
            a, b = find(a), find(b)
            if a != b:
                a, b = min(a, b), max(a, b)
                parent[b] = a
                fixed[a] = fixed[a] or fixed[b]

        lay, axes = {}, {}
        for nd in self.nodes:
            k, lab, ins = nd["kind"], nd["label"], nd["inputs"]
            i0 = ins[0] if ins else None
            if k == "input":
                s = new()
                fixed[s] = True
                lay[lab] = [[s, self.input[0], 1]]
            elif k in ("conv", "linear"):
                lay[lab] = [[new(), nd["attrs"]["out"], 1]]
                axes[lab + ".weight"] = (lab, i0)
                if k == "linear" or nd["attrs"].get("bias"):
                    axes[lab + ".bias"] = (lab, None)
            elif k == "flatten":
                lay[lab] = [[s, c, r * nd["hw"]] for s, c, r in lay[i0]]
            elif k == "add":
                for o in ins[1:]:
                    if [x[1:] for x in lay[i0]] != [x[1:] for x in lay[o]]:
                        raise Unsupported("'%s' adds '%s' and '%s', whose channels are made of different "
                                          "concatenated blocks (modeconn's add needs one channel structure)" %
                                          (lab, i0, o))
                    for a, b in zip(lay[i0], lay[o]):
                        union(a[0], b[0])
                lay[lab] = [list(s) for s in lay[i0]]
            elif k == "concat":
                lay[lab] = [list(s) for o in ins for s in lay[o]]
            else:  # normalize, bn, relu, pools, gap, dropout keep their input's spaces
                lay[lab] = [list(s) for s in lay[i0]]
                if k == "bn":
                    for t in ("weight", "bias", "running_mean", "running_var"):
                        axes["%s.%s" % (lab, t)] = (lab, None)
        for s in lay[self.nodes[-1]["label"]]:
            fixed[find(s[0])] = True
        gid, groups = {}, []
        for nd in self.nodes:
            for s in lay[nd["label"]]:
                r = find(s[0])
                if fixed[r]:
                    s[0] = -1
                    continue
                if r not in gid:
                    gid[r] = len(groups)
                    groups.append((nd["label"], s[1]))
                s[0] = gid[r]
        self.layouts = lay
        return groups, {t: (lay[a], lay[b] if b else None) for t, (a, b) in axes.items()}

    # -- state dict <-> modeconn tensors
    def to_mc(self, sd):
        """The module's state dict -> [(modeconn name, float32 array)] + BN counters."""
        out = []
        for name, (key, order) in self.params.items():
            a = sd[key].detach().cpu().to(torch.float32).numpy()
            if order is not None:
                a = a[:, order]
            out.append((name, np.ascontiguousarray(a)))
        for b in self.bn:
            t = sd.get(b + ".num_batches_tracked")
            out.append((b + ".num_batches_tracked", np.array(int(t) if t is not None else 0, dtype=np.int64)))
        return out

    def from_mc(self, tensors, template):
        """modeconn tensors {name: array} -> a state dict for load_state_dict(strict=True),
        dtypes as in `template` (the module's own state dict)."""
        sd = {}
        for name, (key, order) in self.params.items():
            if name not in tensors:
                raise ValueError("tensor '%s' missing from the modeconn file" % name)
            a = np.asarray(tensors[name], dtype=np.float32)
            if order is not None:
                b = np.empty_like(a)
                b[:, order] = a
                a = b
            want = template[key]
            if tuple(a.shape) != tuple(want.shape):
                raise ValueError("tensor '%s' has shape %s, the module's '%s' is %s" % (name, list(a.shape), key,
                                                                                       list(want.shape)))
            sd[key] = torch.from_numpy(np.array(a)).to(want.dtype)
        for b in self.bn:
            k = b + ".num_batches_tracked"
            if k in template:
                sd[k] = torch.tensor(int(tensors[k]) if k in tensors else int(template[k]), dtype=torch.int64)
        return sd

    def permute(self, sd, perms):
        """The module's state dict with perms applied (perms[g][i] = index in
        the original of the unit that becomes unit i), as `modeconn align` does."""
        groups, axes = self.groups()
        mc = dict(self.to_mc(sd))

        def index(layout, perm):
            idx = []
            off = 0
            for g, count, rep in layout:
                for c in range(count):
                    src = perm[g][c] if g >= 0 else c
                    idx.extend(off + src * rep + j for j in range(rep))
                off += count * rep
            return np.asarray(idx, dtype=np.int64)

        for name, (ax0, ax1) in axes.items():
            a = mc[name]
            a = a[index(ax0, perms)]
            if ax1 is not None:
                a = a[:, index(ax1, perms)]
            mc[name] = a
        return self.from_mc(mc, sd)


_MODULES = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.BatchNorm1d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d,
            nn.AdaptiveAvgPool2d, nn.Flatten, nn.Dropout, nn.Identity)
_RELU_FN = {F.relu, torch.relu, torch.relu_, F.relu_}
_ADD_FN = {operator.add, operator.iadd, torch.add}
_SUPPORTED = ("Conv2d, Linear, BatchNorm2d/1d, ReLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten, Dropout, "
              "Identity; functions relu, max_pool2d, avg_pool2d, adaptive_avg_pool2d, flatten, dropout, add/+, cat; "
              "methods relu, view, reshape, flatten, mean, add, contiguous, size")


def _fn_name(t):
    if isinstance(t, str):
        return "." + t + "()"
    mod = getattr(t, "__module__", None) or ""
    name = getattr(t, "__name__", repr(t))
    if t in (operator.add, operator.iadd):
        return "+"
    if mod.startswith("torch.nn.functional"):
        return "F." + name
    if mod in ("_operator", "operator"):
        return "operator." + name
    return ("torch." if not mod or mod.startswith("torch") else mod + ".") + name


class _Exporter:
    def __init__(self, gm):
        self.gm, self.g = gm, Graph()
        self.mods = dict(gm.named_modules())
        self.val = {}  # fx node -> _Val (tensor values) or None (non-tensor values)

    def where(self, n, what):
        return "module '%s' (%s, op %s)" % (n.meta.get("mc_path", "?"), n.meta.get("mc_src", "?"), what)

    def shape(self, n):
        tm = n.meta.get("tensor_meta")
        return tuple(tm.shape) if tm is not None and hasattr(tm, "shape") else None

    def tensor_arg(self, n, a, what):
        if not isinstance(a, torch.fx.Node) or self.val.get(a) is None:
            raise Unsupported("%s: argument %r is not a tensor computed from the input (constants and buffers "
                              "used directly are not supported)" % (self.where(n, what), a))
        v = self.val[a]
        if v.repl is not None:
            raise Unsupported("%s: the replicated output of an adaptive pool to h x w from a 1x1 map can only be "
                              "flattened and fed to a Linear" % self.where(n, what))
        return v

    def plain_map(self, n, v, what):
        if v.flat or v.order is not None:
            raise Unsupported("%s needs a C x H x W map, got a vector" % self.where(n, what))

    def like(self, v, label, **kw):
        return _Val(label, kw.get("C", v.C), kw.get("H", v.H), kw.get("W", v.W), kw.get("flat", v.flat),
                    kw.get("order", v.order))

    def node_label(self, n):
        lab = self.g.fresh(n.name)
        self.g.fx[n.name] = lab
        return lab

    def emit_param(self, n, kind, mod_path, inputs, **attrs):
        g = self.g
        if mod_path in g.labels:
            raise Unsupported("%s: module '%s' is called more than once: shared weights are not supported" %
                              (self.where(n, kind), mod_path))
        return g.emit(mod_path, kind, inputs, **attrs)

    # -- one case per modeconn kind
    def conv(self, n, m, v):
        what = "Conv2d"
        self.plain_map(n, v, what)
        w = self.where(n, what)
        if m.groups != 1:
            raise Unsupported("%s: groups=%d: grouped and depthwise convolutions are not supported (modeconn "
                              "convolutions are dense, groups=1)" % (w, m.groups))
        if _pair(m.dilation, "dilation", w) != 1:
            raise Unsupported("%s: dilation %s is not supported" % (w, m.dilation))
        if m.padding_mode != "zeros":
            raise Unsupported("%s: padding_mode '%s' is not supported (zeros only)" % (w, m.padding_mode))
        k = _pair(m.kernel_size, "kernel_size", w)
        s = _pair(m.stride, "stride", w)
        if isinstance(m.padding, str):
            if m.padding == "valid":
                p = 0
            elif k % 2 == 1 and s == 1:
                p = k // 2
            else:
                raise Unsupported("%s: padding='%s' with kernel %d, stride %d has no symmetric equivalent" %
                                  (w, m.padding, k, s))
        else:
            p = _pair(m.padding, "padding", w)
        lab = self.emit_param(n, "conv", n.target, [v.label], out=m.out_channels, k=k, s=s, p=p,
                              bias=int(m.bias is not None))
        self.g.params[lab + ".weight"] = (n.target + ".weight", None)
        if m.bias is not None:
            self.g.params[lab + ".bias"] = (n.target + ".bias", None)
        sh = self.shape(n)
        return _Val(lab, sh[1], sh[2], sh[3], False)

    def linear(self, n, m, v):
        what = "Linear"
        if len(self.shape(n.args[0])) != 2:
            raise Unsupported("%s: a Linear applied to a %d-d tensor; only vectors (N x features) are supported: "
                              "flatten first" % (self.where(n, what), len(self.shape(n.args[0]))))
        if not v.flat and (v.H != 1 or v.W != 1):
            raise Unsupported("%s: input is a map, not a vector" % self.where(n, what))
        lab = self.emit_param(n, "linear", n.target, [v.label], out=m.out_features, bias=int(m.bias is not None))
        self.g.params[lab + ".weight"] = (n.target + ".weight", v.order)
        if m.bias is not None:
            self.g.params[lab + ".bias"] = (n.target + ".bias", None)
        if v.order is not None:
            self.g.notes.append("%s.weight: columns in modeconn's order (column j*C+c = PyTorch column c*n+j: "
                                "the n copies of a 1x1 map come copy-major); tools/mc2torch.py reverses it" %
                                n.target)
        return _Val(lab, m.out_features, 1, 1, True)

    def bn(self, n, m, v):
        what = type(m).__name__
        w = self.where(n, what)
        nd = len(self.shape(n))
        if (isinstance(m, nn.BatchNorm2d) and nd != 4) or (isinstance(m, nn.BatchNorm1d) and nd != 2):
            raise Unsupported("%s: %d-d input (BatchNorm2d on maps and BatchNorm1d on vectors only)" % (w, nd))
        if not m.affine or not m.track_running_stats:
            raise Unsupported("%s: affine=%s, track_running_stats=%s: modeconn's bn has both" %
                              (w, m.affine, m.track_running_stats))
        if m.momentum is None:
            raise Unsupported("%s: momentum=None (cumulative average) is not supported" % w)
        if v.order is not None:
            raise Unsupported("%s: batch norm on a replicated vector is not supported" % w)
        lab = self.emit_param(n, "bn", n.target, [v.label], eps=repr(float(m.eps)), momentum=repr(float(m.momentum)))
        for t in ("weight", "bias", "running_mean", "running_var"):
            self.g.params["%s.%s" % (lab, t)] = ("%s.%s" % (n.target, t), None)
        self.g.bn.append(lab)
        return self.like(v, lab)

    def simple(self, n, v, kind, **attrs):
        if kind != "relu" and kind != "dropout":
            self.plain_map(n, v, kind)
        lab = self.g.emit(self.node_label(n), kind, [v.label], **attrs)
        return self.like(v, lab)

    def pool(self, n, v, kind, k, s, p, ceil, what):
        self.plain_map(n, v, what)
        w = self.where(n, what)
        k = _pair(k, "kernel_size", w)
        s = k if s is None or (not isinstance(s, int) and len(s) == 0) else _pair(s, "stride", w)
        p = _pair(p, "padding", w)
        sh = self.shape(n)
        oh = (v.H + 2 * p - k) // s + 1
        ow = (v.W + 2 * p - k) // s + 1
        extra = {}
        if (oh, ow) != tuple(sh[2:]) and ceil and kind == "maxpool":
            extra = {"ceil": 1}  # modeconn's maxpool ceil=1 is PyTorch's ceil_mode
        elif (oh, ow) != tuple(sh[2:]):
            raise Unsupported("%s: output %s differs from the floor-mode size %dx%d (ceil_mode=%s is "
                              "supported for max pooling only)" % (w, tuple(sh[2:]), oh, ow, ceil))
        lab = self.g.emit(self.node_label(n), kind, [v.label], k=k, s=s, p=p, **extra)
        return self.like(v, lab, H=sh[2], W=sh[3])

    def adaptive(self, n, v, size, what):
        self.plain_map(n, v, what)
        w = self.where(n, what)
        size = (size, size) if isinstance(size, int) or size is None else tuple(size)
        oh = v.H if size[0] is None else size[0]
        ow = v.W if size[1] is None else size[1]
        if (oh, ow) == (1, 1):
            return self.gap(n, v)
        if (oh, ow) == (v.H, v.W):
            return v
        if v.H % oh == 0 and v.W % ow == 0 and v.H // oh == v.W // ow:
            k = v.H // oh
            lab = self.g.emit(self.node_label(n), "avgpool", [v.label], k=k, s=k, p=0)
            return self.like(v, lab, H=oh, W=ow)
        if (v.H, v.W) == (1, 1):
            return _Val(v.label, v.C, oh, ow, False, repl=(v, oh * ow))
        raise Unsupported("%s: adaptive pooling %dx%d -> %dx%d has no exact modeconn equivalent (supported: to "
                          "1x1, to a divisor, or from 1x1)" % (w, v.H, v.W, oh, ow))

    def gap(self, n, v):
        lab = self.g.emit(self.node_label(n), "gap", [v.label])
        return self.like(v, lab, H=1, W=1, flat=True)

    def flatten(self, n, a, what):
        src = self.val.get(a) if isinstance(a, torch.fx.Node) else None
        if src is None:
            raise Unsupported("%s: argument %r is not a tensor computed from the input" % (self.where(n, what), a))
        sh_in, sh = self.shape(a), self.shape(n)
        if len(sh) != 2 or sh[0] != sh_in[0]:
            raise Unsupported("%s: reshape %s -> %s is not a flatten to (N, features)" % (self.where(n, what),
                                                                                       sh_in, sh))
        if src.repl is not None:
            base, copies = src.repl
            ins = [base.label] * copies
            while len(ins) > 1:  # a tree of concats: at most MAX_INPUTS inputs each
                nxt = []
                for i in range(0, len(ins), MAX_INPUTS):
                    chunk = ins[i:i + MAX_INPUTS]
                    nxt.append(chunk[0] if len(chunk) == 1 else
                               self.g.emit(self.g.fresh("%s_copies" % n.name), "concat", chunk))
                ins = nxt
            C = base.C
            order = np.array([c * copies + j for j in range(copies) for c in range(C)], dtype=np.int64)
            lab = self.g.emit(self.node_label(n), "flatten", ins)
            self.g.nodes[-1]["hw"] = 1
            self.g.notes.append("%s: %s of a %dx1x1 map to %d copies = concat of %d copies" %
                                (n.meta.get("mc_path"), "adaptive average pool", C, copies, copies))
            return _Val(lab, C * copies, 1, 1, True, order=order)
        if src.flat:
            return src
        lab = self.g.emit(self.node_label(n), "flatten", [src.label])
        self.g.nodes[-1]["hw"] = src.H * src.W
        return _Val(lab, src.C * src.H * src.W, 1, 1, True)

    def add(self, n, args, what):
        vs = [self.tensor_arg(n, a, what) for a in args]
        shapes = {self.shape(a) for a in args}
        if len(shapes) != 1:
            raise Unsupported("%s: operands of shapes %s (broadcasting is not supported)" %
                              (self.where(n, what), sorted(shapes)))
        if any(v.order is not None for v in vs):
            raise Unsupported("%s: addition of replicated vectors is not supported" % self.where(n, what))
        lab = self.g.emit(self.node_label(n), "add", [v.label for v in vs])
        return self.like(vs[0], lab)

    def cat(self, n, tensors, dim, what):
        vs = [self.tensor_arg(n, a, what) for a in tensors]
        nd = len(self.shape(n))
        if dim < 0:
            dim += nd
        if dim != 1:
            raise Unsupported("%s: concatenation along dim %d (only channels, dim=1)" % (self.where(n, what), dim))
        if any(v.order is not None for v in vs):
            raise Unsupported("%s: concatenation of replicated vectors is not supported" % self.where(n, what))
        if len(vs) == 1:
            return vs[0]
        ins = [v.label for v in vs]
        while len(ins) > MAX_INPUTS:
            ins = [self.g.emit(self.g.fresh("%s_part" % n.name), "concat", ins[:MAX_INPUTS])] + ins[MAX_INPUTS:]
        lab = self.g.emit(self.node_label(n), "concat", ins)
        return self.like(vs[0], lab, C=self.shape(n)[1])

    # -- the dispatch
    def arg(self, n, i, name, default):
        if name in n.kwargs:
            return n.kwargs[name]
        return n.args[i] if len(n.args) > i else default

    def module(self, n):
        m = self.mods[n.target]
        what = type(m).__name__
        if type(m) in (nn.Identity,):
            return self.tensor_arg(n, n.args[0], what)
        if isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                raise Unsupported("%s: Flatten(start_dim=%d, end_dim=%d)" % (self.where(n, what), m.start_dim,
                                                                            m.end_dim))
            return self.flatten(n, n.args[0], what)
        v = self.tensor_arg(n, n.args[0], what)
        if type(m) is nn.Conv2d:
            return self.conv(n, m, v)
        if type(m) is nn.Linear:
            return self.linear(n, m, v)
        if type(m) in (nn.BatchNorm2d, nn.BatchNorm1d):
            return self.bn(n, m, v)
        if type(m) is nn.ReLU:
            return self.simple(n, v, "relu")
        if type(m) is nn.Dropout:
            return v if m.p == 0 else self.simple(n, v, "dropout", rate=repr(float(m.p)))
        if type(m) is nn.MaxPool2d:
            w = self.where(n, what)
            if _pair(m.dilation, "dilation", w) != 1 or m.return_indices:
                raise Unsupported("%s: dilation %s / return_indices=%s not supported" % (w, m.dilation,
                                                                                         m.return_indices))
            return self.pool(n, v, "maxpool", m.kernel_size, m.stride, m.padding, m.ceil_mode, what)
        if type(m) is nn.AvgPool2d:
            self.avg_checks(n, what, m.padding, m.count_include_pad, m.divisor_override)
            return self.pool(n, v, "avgpool", m.kernel_size, m.stride, m.padding, m.ceil_mode, what)
        if type(m) is nn.AdaptiveAvgPool2d:
            return self.adaptive(n, v, m.output_size, what)
        raise Unsupported("%s: torch.nn.%s is not supported by torch2mc (supported: %s)" %
                          (self.where(n, what), what, _SUPPORTED))

    def avg_checks(self, n, what, padding, include_pad, divisor):
        w = self.where(n, what)
        if divisor is not None:
            raise Unsupported("%s: divisor_override is not supported" % w)
        if not include_pad and padding not in (0, (0, 0)):
            raise Unsupported("%s: count_include_pad=False with padding (modeconn counts the padding)" % w)

    def function(self, n):
        t = n.target
        what = _fn_name(t)
        if t in _RELU_FN:
            return self.simple(n, self.tensor_arg(n, n.args[0], what), "relu")
        if t in _ADD_FN:
            if "alpha" in n.kwargs:
                raise Unsupported("%s: add with alpha" % self.where(n, what))
            return self.add(n, n.args[:2], what)
        if t in (torch.cat, getattr(torch, "concat", torch.cat)):
            return self.cat(n, self.arg(n, 0, "tensors", []), self.arg(n, 1, "dim", 0), what)
        if t is torch.flatten:
            if self.arg(n, 1, "start_dim", 0) != 1 or self.arg(n, 2, "end_dim", -1) != -1:
                raise Unsupported("%s: flatten(start_dim=%s, end_dim=%s) (only start_dim=1, end_dim=-1)" %
                                  (self.where(n, what), self.arg(n, 1, "start_dim", 0), self.arg(n, 2, "end_dim", -1)))
            return self.flatten(n, n.args[0], what)
        if t is F.dropout:
            v = self.tensor_arg(n, n.args[0], what)
            p = self.arg(n, 1, "p", 0.5)
            return v if p == 0 else self.simple(n, v, "dropout", rate=repr(float(p)))
        if t is F.max_pool2d:
            w = self.where(n, what)
            if self.arg(n, 4, "dilation", 1) not in (1, (1, 1)) or self.arg(n, 6, "return_indices", False):
                raise Unsupported("%s: dilation / return_indices not supported" % w)
            return self.pool(n, self.tensor_arg(n, n.args[0], what), "maxpool", self.arg(n, 1, "kernel_size", None),
                             self.arg(n, 2, "stride", None), self.arg(n, 3, "padding", 0),
                             self.arg(n, 5, "ceil_mode", False), what)
        if t is F.avg_pool2d:
            pad = self.arg(n, 3, "padding", 0)
            self.avg_checks(n, what, pad, self.arg(n, 5, "count_include_pad", True), self.arg(n, 6, "divisor_override", None))
            return self.pool(n, self.tensor_arg(n, n.args[0], what), "avgpool", self.arg(n, 1, "kernel_size", None),
                             self.arg(n, 2, "stride", None), pad, self.arg(n, 4, "ceil_mode", False), what)
        if t is F.adaptive_avg_pool2d:
            return self.adaptive(n, self.tensor_arg(n, n.args[0], what), self.arg(n, 1, "output_size", None), what)
        if t is operator.getitem and self.val.get(n.args[0]) is None:
            return None  # x.size()[0] and the like: shape arithmetic, not a tensor
        if self.shape(n) is None and all(not isinstance(a, torch.fx.Node) or self.val.get(a) is None
                                         for a in n.args):
            return None
        raise Unsupported("%s: %s is not supported by torch2mc (supported: %s)" %
                          (self.where(n, what), what, _SUPPORTED))

    def method(self, n):
        t = n.target
        what = "." + t + "()"
        if t in ("size", "dim"):
            return None
        if t in ("contiguous",):
            return self.tensor_arg(n, n.args[0], what)
        if t in ("relu", "relu_"):
            return self.simple(n, self.tensor_arg(n, n.args[0], what), "relu")
        if t in ("add", "add_"):
            if "alpha" in n.kwargs:
                raise Unsupported("%s: add with alpha" % self.where(n, what))
            return self.add(n, n.args[:2], what)
        if t in ("view", "reshape", "flatten"):
            if t == "flatten" and (self.arg(n, 1, "start_dim", 0) != 1 or self.arg(n, 2, "end_dim", -1) != -1):
                raise Unsupported("%s: only flatten(1)" % self.where(n, what))
            return self.flatten(n, n.args[0], what)
        if t == "mean":
            v = self.tensor_arg(n, n.args[0], what)
            dims = self.arg(n, 1, "dim", None)
            dims = tuple(sorted(d % 4 for d in ((dims,) if isinstance(dims, int) else dims or ())))
            if dims != (2, 3) or len(self.shape(n.args[0])) != 4:
                raise Unsupported("%s: mean over dims %s (only the spatial dims (2, 3) of a map)" %
                                  (self.where(n, what), dims))
            self.plain_map(n, v, what)
            return self.gap(n, v)
        raise Unsupported("%s: tensor method %s is not supported by torch2mc (supported: %s)" %
                          (self.where(n, what), what, _SUPPORTED))

    def run(self, input_shape, state_keys):
        g = self.g
        g.input = tuple(input_shape)
        out = None
        for n in self.gm.graph.nodes:
            if n.op == "placeholder":
                if g.nodes:
                    raise Unsupported("forward() takes more than one input ('%s')" % n.name)
                g.emit(g.fresh("input"), "input", [])
                lab = g.emit(g.fresh("normalize"), "normalize", [g.nodes[0]["label"]])
                C, H, W = input_shape
                self.val[n] = _Val(lab, C, H, W, False)
            elif n.op == "call_module":
                self.val[n] = self.module(n)
            elif n.op == "call_function":
                self.val[n] = self.function(n)
            elif n.op == "call_method":
                self.val[n] = self.method(n)
            elif n.op == "get_attr":
                self.val[n] = None  # a parameter/buffer used directly: refused by its consumer
            elif n.op == "output":
                out = n.args[0]
        if not isinstance(out, torch.fx.Node) or self.val.get(out) is None:
            raise Unsupported("forward() must return one tensor of logits (it returns %r)" % (out,))
        v = self.val[out]
        sh = self.shape(out)
        if len(sh) != 2 or not v.flat or v.order is not None:
            raise Unsupported("forward() returns a tensor of shape %s; expected (N, classes) logits" % (sh,))
        if v.label != g.nodes[-1]["label"]:
            raise Unsupported("the logits ('%s') must be computed last; '%s' comes after them" %
                              (v.label, g.nodes[-1]["label"]))
        g.classes = sh[1]
        g.groups()  # refuses what modeconn's graph builder would
        used = {k for k, _ in g.params.values()} | {b + ".num_batches_tracked" for b in g.bn}
        extra = [k for k in state_keys if k not in used]
        if extra:
            raise Unsupported("state-dict entries not used by any supported layer of the traced forward: %s" %
                              ", ".join(extra[:8]))
        return g


def trace(model, input_shape):
    """The modeconn Graph of `model` on inputs of shape (C, H, W); raises
    Unsupported naming the module path and op of anything not representable."""
    input_shape = tuple(int(s) for s in input_shape)
    example = torch.rand((2,) + input_shape)
    gm = _trace(model, example)
    return _Exporter(gm).run(input_shape, list(model.state_dict()))


def parse_floats(s, n, what):
    v = [float(x) for x in s.split(",")]
    if len(v) == 1:
        v = v * n
    if len(v) != n:
        raise ValueError("%s: %d values for %d input channels" % (what, len(v), n))
    return v


def export(model, example_input, path, mean=None, std=None, source=None, spec_out=None, classes=None):
    """Writes `model` as a modeconn checkpoint at `path`.  example_input: a
    tensor of shape (N, C, H, W) or (C, H, W), or a (C, H, W) tuple.
    mean/std: per-channel lists (the transforms.Normalize the module expects)
    or None (identity).  classes: the logit count to insist on.  Returns the Graph."""
    shape = tuple(example_input.shape[-3:]) if torch.is_tensor(example_input) else tuple(example_input)
    if len(shape) != 3:
        raise ValueError("example input must be C x H x W images, got shape %s" % (shape,))
    g = trace(model, shape)
    if classes is not None and g.classes != classes:
        raise ValueError("the module outputs %d logits, not %d" % (g.classes, classes))
    C = shape[0]
    norm = "identity: mean 0, std 1 (the module sees images in [0,1])"
    mean = [0.0] * C if mean is None else list(mean)
    if std is None:
        std = [1.0] * C
    else:
        std = list(std)
        norm = "mean/std of a transforms.Normalize applied before the module"
    if len(mean) != C or len(std) != C or min(std) <= 0:
        raise ValueError("mean/std need %d values each, std > 0" % C)
    spec = g.spec()
    meta = {"modeconn.arch": "torch2mc:" + type(model).__name__,
            "modeconn.input": "x".join(str(s) for s in shape),
            "modeconn.classes": str(g.classes),
            "modeconn.mean": ",".join(repr(float(np.float32(x))) for x in mean),
            "modeconn.std": ",".join(repr(float(np.float32(x))) for x in std),
            "modeconn.spec": spec,
            "torch2mc.normalization": norm,
            "torch2mc.torch": torch.__version__}
    if source:
        meta["torch2mc.module"] = source
    st_write(path, g.to_mc(model.state_dict()), meta)
    if spec_out:
        with open(spec_out + ".tmp", "w") as f:
            f.write(spec)
            f.flush()
            os.fsync(f.fileno())
        os.replace(spec_out + ".tmp", spec_out)
    return g


# ----------------------------------------------------------------- the CLI
def load_factory(ref):
    """'MODULE:FACTORY' -> the callable (MODULE: importable name or .py path)."""
    if ":" not in ref:
        raise ValueError("%s: expected MODULE:FACTORY (e.g. torchvision.models:resnet18)" % ref)
    mod, fac = ref.rsplit(":", 1)
    if mod.endswith(".py") or os.sep in mod:
        spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(mod))[0], mod)
        if spec is None:
            raise ValueError("%s: cannot load this file" % mod)
        m = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(m)
    else:
        m = importlib.import_module(mod)
    f = getattr(m, fac, None)
    if not callable(f):
        raise ValueError("%s: no callable '%s' in %s" % (ref, fac, mod))
    return f


def build(ref, classes):
    """Calls the factory (with num_classes=classes when it takes it)."""
    f = load_factory(ref)
    kw = {}
    if classes is not None:
        try:
            params = inspect.signature(f).parameters
            if "num_classes" in params or any(p.kind == p.VAR_KEYWORD for p in params.values()):
                kw["num_classes"] = classes
        except (TypeError, ValueError):
            pass
    model = f(**kw)
    if not isinstance(model, nn.Module):
        raise ValueError("%s() returned %s, not an nn.Module" % (ref, type(model).__name__))
    return model


def load_state(path):
    """A state dict from .pt (a state dict, or a dict holding one under
    'state_dict' or 'model') or .safetensors."""
    if path.endswith(".safetensors"):
        t, _ = st_read(path)
        return {k: torch.from_numpy(np.array(v)) for k, v in t.items()}
    sd = torch.load(path, map_location="cpu")
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if isinstance(sd, nn.Module):
        sd = sd.state_dict()
    return sd


def parse_input(s):
    try:
        c, h, w = (int(x) for x in s.lower().split("x"))
        if min(c, h, w) < 1:
            raise ValueError
    except ValueError:
        raise ValueError("--input %s: expected CxHxW, e.g. 3x32x32" % s)
    return c, h, w


def main(argv=None):
    ap = argparse.ArgumentParser(prog="torch2mc.py", description="Export a PyTorch nn.Module to a modeconn "
                                 "checkpoint (spec in modeconn.spec, weights under the module's state-dict names).")
    ap.add_argument("factory", metavar="MODULE:FACTORY", help="e.g. torchvision.models:resnet18 or path/net.py:make")
    ap.add_argument("--state-dict", help="weights to load first (.pt or .safetensors; default: the factory's init)")
    ap.add_argument("--input", required=True, help="input shape CxHxW, e.g. 3x32x32")
    ap.add_argument("--classes", type=int, help="classes (passed as num_classes=K when the factory takes it; "
                    "checked against the output width)")
    ap.add_argument("--mean", help="per-channel mean of the inputs' normalisation (comma separated; default 0)")
    ap.add_argument("--std", help="per-channel std (default 1)")
    ap.add_argument("--out", required=True, help="checkpoint to write (.safetensors)")
    ap.add_argument("--spec-out", help="also write the spec text to this file")
    a = ap.parse_args(argv)
    try:
        shape = parse_input(a.input)
        model = build(a.factory, a.classes)
        if a.state_dict:
            model.load_state_dict(load_state(a.state_dict), strict=True)
        mean = parse_floats(a.mean, shape[0], "--mean") if a.mean else None
        std = parse_floats(a.std, shape[0], "--std") if a.std else None
        g = export(model, shape, a.out, mean, std, source=a.factory, spec_out=a.spec_out, classes=a.classes)
    except Unsupported as e:
        print("torch2mc: error: %s: %s" % (a.factory, e), file=sys.stderr)
        return 1
    except (ValueError, OSError, RuntimeError, ImportError) as e:
        print("torch2mc: error: %s" % e, file=sys.stderr)
        return 1
    groups, _ = g.groups()
    print("torch2mc: wrote %s: %d nodes, %d tensors, %d permutation groups, %d classes" %
          (a.out, len(g.nodes), len(g.params), len(groups), g.classes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
