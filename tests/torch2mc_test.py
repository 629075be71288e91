#!/usr/bin/python3
"""End-to-end tests of tools/torch2mc.py and tools/mc2torch.py against the
modeconn binary ($MC_BIN), run by ctest with Debian's /usr/bin/python3:

  torch2mc_test.py resnet18 | resnet18-trained | vgg11bn | catres | refused

For a model: a CIFAR-10-format copy of Fashion-MNIST images (28x28 padded
to 32x32, replicated to 3 channels) is written to a temporary directory;
the model is exported (CLI), `modeconn eval --logits` must give PyTorch's
logits on the test images to 1e-4 relative (max |diff| / max |logit|); a
copy with every permutation group shuffled at random in PyTorch must
compute the same logits in PyTorch, `modeconn align` must recover the
original exactly (aligned B == A bit for bit, the permutations the inverse
shuffle), the aligned B loaded back with mc2torch (strict=True) must give
the shuffled model's logits to 1e-4, and applying the --perm-out JSON to
the shuffled state dict must give the same tensors.  `refused`: modules
torch2mc must reject, with the module path and op in the message."""
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torchvision

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import mc2torch  # noqa: E402
import torch2mc  # noqa: E402
import torch2mc_models  # noqa: E402

MC = os.environ.get("MC_BIN", os.path.join(ROOT, "build", "modeconn"))
PY = "/usr/bin/python3"
FASHION = "/usr/share/datasets/fashion-mnist"
N_TRAIN, N_TEST = 500, 200  # 100 images per CIFAR training file
MEAN, STD = [0.2860, 0.2860, 0.2860], [0.3530, 0.3530, 0.3530]
TOL = 1e-4


T0 = time.time()


def log(msg):
    print("[%5.1fs] %s" % (time.time() - T0, msg), flush=True)


def fail(msg):
    print("torch2mc_test: FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def run(args, expect=0):
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != expect:
        fail("%s exited %d (expected %d)\nstdout: %s\nstderr: %s" % (" ".join(args), r.returncode, expect,
                                                                    r.stdout[-3000:], r.stderr[-3000:]))
    return r


def idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    nd = struct.unpack(">I", raw[:4])[0] & 0xFF
    dims = struct.unpack(">" + "I" * nd, raw[4:4 + 4 * nd])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)


def cifar_data(d):
    """Writes d/data_batch_1..5.bin and d/test_batch.bin; returns the test
    images as floats in [0,1] (N, 3, 32, 32) and the training images."""
    def convert(pre, n):
        x = idx("%s/%s-images-idx3-ubyte.gz" % (FASHION, pre))[:n]
        y = idx("%s/%s-labels-idx1-ubyte.gz" % (FASHION, pre))[:n]
        img = np.zeros((n, 3, 32, 32), dtype=np.uint8)
        img[:, :, 2:30, 2:30] = x[:, None]
        return img, y
    tr, ytr = convert("train", N_TRAIN)
    te, yte = convert("t10k", N_TEST)

    def write(path, img, y):
        rec = np.concatenate([y[:, None].astype(np.uint8), img.reshape(len(y), -1)], axis=1)
        rec.tofile(path)
    per = N_TRAIN // 5
    for k in range(5):
        write("%s/data_batch_%d.bin" % (d, k + 1), tr[k * per:(k + 1) * per], ytr[k * per:(k + 1) * per])
    write(d + "/test_batch.bin", te, yte)
    f = lambda a: torch.from_numpy(a.astype(np.float32) / np.float32(255))
    return f(te), f(tr), torch.from_numpy(ytr.astype(np.int64))


def torch_logits(model, x):
    model.eval()
    mean = torch.tensor(MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=torch.float32).view(1, 3, 1, 1)
    with torch.no_grad():
        return torch.cat([model((x[i:i + 100] - mean) / std) for i in range(0, len(x), 100)]).numpy()


def rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def mc_logits(ckpt, data, out):
    run([MC, "eval", "--model", ckpt, "--data", "cifar10:" + data, "--logits", out])
    t, meta = torch2mc.st_read(out)
    return t["logits"], t["labels"]


def train_briefly(model, x, y, epochs):
    """A few SGD steps in PyTorch (train-mode BN), so weights and BN
    statistics are no longer their initial values."""
    torch.manual_seed(3)
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 50):
            b = perm[i:i + 50]
            loss = torch.nn.functional.cross_entropy(model((x[b] - mean) / std), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    # running statistics as the exact average over the data (momentum=None),
    # so the eval-mode model is as good as the training batches suggest
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    with torch.no_grad():
        for i in range(0, len(x), 50):
            model((x[i:i + 50] - mean) / std)
    for m in bns:
        m.momentum = 0.1
    model.eval()


def shuffle(model, shape, seed):
    """A copy of the model's state dict with every permutation group
    shuffled, and the permutations (new unit i = old unit perm[i])."""
    g = torch2mc.trace(model, shape)
    groups, _ = g.groups()
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(n) for _, n in groups]
    return g.permute(model.state_dict(), perms), perms, groups


def live_units(model, shape, x, keep=None):
    """Per group, which units the correlation statistics can identify: those
    whose post-ReLU activation varies over the alignment images at some ReLU
    of the group (a dead unit is 0 everywhere: any assignment of dead units
    is optimal, so align cannot and need not recover theirs).  With keep =
    a group index, also returns that group's post-ReLU activations (units x
    samples, every ReLU of the group side by side)."""
    g = torch2mc.trace(model, shape)
    groups, _ = g.groups()
    kind = {nd["label"]: nd["kind"] for nd in g.nodes}
    gm = torch2mc._trace(model, torch.rand((2,) + shape))
    live = [np.zeros(n, dtype=bool) for _, n in groups]
    kept = []
    want = {name: lab for name, lab in g.fx.items() if kind.get(lab) == "relu"}
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)

    class Grab(torch.fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if n.name in want:
                a = out.detach().transpose(0, 1).reshape(out.shape[1], -1)
                off = 0
                for gi, count, rep in g.layouts[want[n.name]]:
                    if gi >= 0:
                        live[gi] |= (a[off:off + count].std(1) > 0).numpy()
                    if keep is not None and gi == keep:
                        kept.append(a[off:off + count].double().numpy())
                    off += count
            return out
    gm.eval()
    with torch.no_grad():
        Grab(gm).run((x - mean) / std)
    if keep is not None:
        return live, np.concatenate(kept, axis=1)
    return live


def check_model(case, factory, make, tmp, x_test, x_train, y_train, epochs=0, cli=True, samples=N_TRAIN):
    """cli: export A and load back through the command-line tools (else
    their Python functions, which the CLIs wrap: faster for big models).
    samples: training images for the alignment statistics."""
    torch.manual_seed(1)
    model = make()
    if epochs:
        train_briefly(model, x_train, y_train, epochs)
    shape = (3, 32, 32)
    a = tmp + "/a.safetensors"
    if cli:
        sd_path = tmp + "/a.pt"
        torch.save(model.state_dict(), sd_path)
        ms, ss = ",".join(map(str, MEAN)), ",".join(map(str, STD))
        run([PY, ROOT + "/tools/torch2mc.py", factory, "--state-dict", sd_path, "--input", "3x32x32", "--classes",
             "10", "--mean", ms, "--std", ss, "--out", a])
    else:
        torch2mc.export(model, shape, a, MEAN, STD)

    # 1. modeconn's logits are PyTorch's
    ref = torch_logits(model, x_test)
    got, labels = mc_logits(a, tmp, tmp + "/logits_a.safetensors")
    e = rel(got, ref)
    acc_t = float(np.mean(ref.argmax(1) == labels))
    acc_m = float(np.mean(got.argmax(1) == labels))
    log("%s: eval logits vs PyTorch: max rel diff %.3g over %d x %d (accuracy %.4f vs %.4f)" %
          (case, e, got.shape[0], got.shape[1], acc_m, acc_t))
    if got.shape != ref.shape or not e <= TOL:
        fail("%s: modeconn eval logits differ from PyTorch's by %.3g (> %g)" % (case, e, TOL))

    # info sees the same groups as torch2mc derives
    info = run([MC, "info", "--model", a]).stdout
    g = torch2mc.trace(model, shape)
    groups, _ = g.groups()
    for k, (name, n) in enumerate(groups):
        if not any(l.split()[:4] == ["G%d" % k, name, "size", str(n)] for l in info.splitlines()):
            fail("%s: modeconn info has no group G%d %s size %d" % (case, k, name, n))
    if ("permutation groups (%d):" % len(groups)) not in info:
        fail("%s: modeconn info lists another number of groups than %d" % (case, len(groups)))

    # 2. a shuffled copy: same function in PyTorch, aligned back exactly
    sdb, perms, _ = shuffle(model, shape, 7)
    model_b = make()
    model_b.load_state_dict(sdb, strict=True)
    ref_b = torch_logits(model_b, x_test)
    e = rel(ref_b, ref)
    log("%s: shuffled copy (%d groups) in PyTorch: max rel diff %.3g" % (case, len(perms), e))
    if not e <= 1e-5:
        fail("%s: the shuffled copy computes another function in PyTorch (%.3g)" % (case, e))
    b = tmp + "/b.safetensors"
    torch2mc.export(model_b, shape, b, MEAN, STD)
    ba, pj = tmp + "/b_aligned.safetensors", tmp + "/perm.json"
    r = run([MC, "align", "--a", a, "--b", b, "--out", ba, "--perm-out", pj, "--data", "cifar10:" + tmp,
             "--samples", str(samples)])
    log("%s: %s" % (case, [l for l in r.stdout.splitlines() if "took" in l][0]))
    with open(pj) as f:
        pjson = json.load(f)
    live = live_units(model, shape, x_train[:samples])
    n_dead = sum(int(np.sum(~l)) for l in live)
    n_ties = 0
    for gi, (p, x, l) in enumerate(zip(perms, pjson["groups"], live)):
        inv = np.argsort(p)  # unit i of A is unit inv[i] of B
        got = np.asarray(x["permutation"])
        wrong = np.flatnonzero(got != inv)
        lw = wrong[l[wrong] | l[p[got[wrong]]]]
        if lw.size:
            # B's unit got[i] computes A's unit p[got[i]]: an assignment other
            # than the inverse shuffle is as optimal when the two units'
            # activations are the same up to an affine map on the alignment
            # images (Pearson 1: e.g. units active on a single one of them)
            _, acts = live_units(model, shape, x_train[:samples], keep=gi)
            a, b = acts[lw], acts[p[got[lw]]]
            a = a - a.mean(1, keepdims=True)
            b = b - b.mean(1, keepdims=True)
            den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
            r = np.where(den > 0, (a * b).sum(1) / np.where(den > 0, den, 1), 0)
            if np.min(r) < 1 - 1e-5:
                fail("%s: group %s: align's permutation differs from the inverse shuffle at %d of %d live units, "
                     "and not between indistinguishable units (min Pearson %.6f)" % (case, x["name"], lw.size,
                                                                                     len(inv), np.min(r)))
            n_ties += lw.size
    if n_dead == 0 and n_ties == 0:
        ta, _ = torch2mc.st_read(a)
        tb, _ = torch2mc.st_read(ba)
        for k, v in ta.items():
            if k.endswith("num_batches_tracked"):
                continue  # modeconn writes 0 (it does not count batches)
            if not np.array_equal(v, tb[k]):
                fail("%s: aligned B's %s is not A's" % (case, k))
    log("%s: align recovered all %d permutations (%d dead units and %d live units indistinguishable on the "
        "alignment images, whose assignment is free); %s" %
          (case, len(perms), n_dead, n_ties, "aligned B == A bit for bit" if n_dead + n_ties == 0 else "aligned B checked below"))

    # 3. the way back: the aligned B in the user's module, and the JSON applied to B's state dict
    model_c = make()
    if cli:
        sdb_path = tmp + "/b.pt"
        torch.save(sdb, sdb_path)
        back, back_perm = tmp + "/back.pt", tmp + "/back_perm.pt"
        run([PY, ROOT + "/tools/mc2torch.py", factory, "--ckpt", ba, "--out", back])
        run([PY, ROOT + "/tools/mc2torch.py", factory, "--state-dict", sdb_path, "--perm", pj, "--input", "3x32x32",
             "--classes", "10", "--out", back_perm])
        s1, s2 = torch.load(back), torch.load(back_perm)
        model_c.load_state_dict(s1, strict=True)
    else:
        mc2torch.load_checkpoint(model_c, ba)
        s1 = model_c.state_dict()
        s2 = mc2torch.apply_perm(make(), sdb, pj, shape)
    e = rel(torch_logits(model_c, x_test), ref_b)
    log("%s: aligned B loaded back (strict=True): logits vs shuffled B max rel diff %.3g" % (case, e))
    if not e <= TOL:
        fail("%s: the aligned B loaded into PyTorch computes another function (%.3g)" % (case, e))
    s0 = model.state_dict()
    for k in s0:
        if k.endswith("num_batches_tracked"):
            continue  # 0 in modeconn's files, B's own count in the --perm route
        if not torch.equal(s1[k], s2[k]):
            fail("%s: %s differs between the loaded aligned B and the --perm-out JSON applied" % (case, k))
        if n_dead + n_ties == 0 and not torch.equal(s1[k], s0[k]):
            fail("%s: %s of the aligned B is not the original's" % (case, k))
    log("%s: --perm-out applied to B's state dict == aligned B%s (%d entries)" %
          (case, " == original" if n_dead + n_ties == 0 else "", len(s0)))


def refused(tmp):
    cases = [("attention", ["'attn'", "MultiheadAttention"]),
             ("branch", ["'gate.1'", "op: bool", "if x.mean() > 0"]),
             ("grouped", ["'features.2'", "Conv2d", "groups=4"]),
             ("sigmoid", ["'body.1'", "Sigmoid"])]
    for name, want in cases:
        out = tmp + "/%s.safetensors" % name
        r = run([PY, ROOT + "/tools/torch2mc.py", ROOT + "/tests/torch2mc_models.py:" + name, "--input", "3x32x32",
                 "--out", out], expect=1)
        msg = r.stderr.strip()
        for w in want:
            if w not in msg:
                fail("refused %s: the error does not name %s: %s" % (name, w, msg))
        if "Traceback" in msg or os.path.exists(out):
            fail("refused %s: a traceback or an output file: %s" % (name, msg))
        log("refused %s: %s" % (name, msg[:160]))
    # a checkpoint of another architecture is not loaded into this module
    a = tmp + "/catres.safetensors"
    torch2mc.export(torch2mc_models.catres(), (3, 32, 32), a)
    r = run([PY, ROOT + "/tools/mc2torch.py", "torchvision.models:resnet18", "--ckpt", a, "--out", tmp + "/x.pt"],
            expect=1)
    if "not this module's" not in r.stderr:
        fail("mc2torch loaded another architecture's checkpoint: %s" % r.stderr)
    log("refused: mc2torch of another architecture: %s" % r.stderr.strip()[:160])


def main():
    case = sys.argv[1] if len(sys.argv) == 2 else ""
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="torch2mc_") as tmp:
        if case == "refused":
            return refused(tmp)
        x_test, x_train, y_train = cifar_data(tmp)
        tv = torchvision.models
        models = {
            "resnet18": ("torchvision.models:resnet18", lambda: tv.resnet18(num_classes=10), 0, False),
            "resnet18-trained": ("torchvision.models:resnet18", lambda: tv.resnet18(num_classes=10), 1),
            "vgg11bn": ("torchvision.models:vgg11_bn", lambda: tv.vgg11_bn(num_classes=10), 0, False, 100),
            "catres": (ROOT + "/tests/torch2mc_models.py:catres", torch2mc_models.catres, 2),
        }
        if case not in models:
            fail("usage: torch2mc_test.py %s|refused" % "|".join(models))
        check_model(case, *models[case][:2], tmp, x_test, x_train, y_train, *models[case][2:])


if __name__ == "__main__":
    main()
