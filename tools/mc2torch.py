#!/usr/bin/python3
"""mc2torch: the way back from modeconn to your own PyTorch module (run with
Debian's /usr/bin/python3; see torch2mc.py for the way there).

    # a modeconn checkpoint (e.g. the aligned B of `modeconn align --out`)
    python3 tools/mc2torch.py MODULE:FACTORY --ckpt B_ALIGNED.safetensors --out b_aligned.pt
    # a `modeconn align --perm-out` JSON applied to your original state dict
    python3 tools/mc2torch.py MODULE:FACTORY --state-dict b.pt --perm perm.json --input 3x32x32 --out b_aligned.pt

Both re-trace the module with torch2mc (so they refuse a checkpoint whose
modeconn.spec is not the module's: the file was exported from another
model), undo the exporter's storage conventions (columns of a Linear after
a replicating adaptive pool), check the result with
load_state_dict(strict=True), and write it with torch.save (.pt) or as
safetensors under the module's names (.safetensors).  From Python:
load_checkpoint(model, path) and apply_perm(model, state_dict, perm, input).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch2mc  # noqa: E402


def _spec_body(spec):
    return [ln for ln in spec.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def load_checkpoint(model, path, prefix="", check_spec=True):
    """Loads a modeconn checkpoint (or the part under `prefix` of a curve
    file, e.g. "a.") into `model` with load_state_dict(strict=True); returns
    the file's metadata."""
    tensors, meta = torch2mc.st_read(path)
    if "modeconn.input" not in meta:
        raise ValueError("%s: no modeconn.input metadata: not a modeconn checkpoint" % path)
    shape = torch2mc.parse_input(meta["modeconn.input"])
    g = torch2mc.trace(model, shape)
    if check_spec and "modeconn.spec" in meta:
        mine, theirs = _spec_body(g.spec()), _spec_body(meta["modeconn.spec"])
        if mine != theirs:
            i = next((k for k in range(min(len(mine), len(theirs))) if mine[k] != theirs[k]), min(len(mine), len(theirs)))
            raise ValueError("%s: its architecture (modeconn.spec) is not this module's: node %d is '%s' in the file, "
                             "'%s' in the module" % (path, i + 1, theirs[i] if i < len(theirs) else "(end)",
                                                     mine[i] if i < len(mine) else "(end)"))
    part = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    model.load_state_dict(g.from_mc(part, model.state_dict()), strict=True)
    return meta


def apply_perm(model, state_dict, perm, input_shape):
    """`state_dict` (the module's) with the permutations of a `modeconn
    align --perm-out` JSON (dict or path) applied, as align applies them."""
    if isinstance(perm, str):
        with open(perm) as f:
            perm = json.load(f)
    g = torch2mc.trace(model, input_shape)
    groups, _ = g.groups()
    got = [(x["name"], x["size"]) for x in perm["groups"]]
    if got != [(n, s) for n, s in groups]:
        raise ValueError("the permutation file's groups %s are not this module's %s" % (got[:4], groups[:4]))
    perms = []
    for x in perm["groups"]:
        p = np.asarray(x["permutation"], dtype=np.int64)
        if sorted(p.tolist()) != list(range(x["size"])):
            raise ValueError("group %s: 'permutation' is not a permutation of 0..%d" % (x["name"], x["size"] - 1))
        perms.append(p)
    return g.permute(state_dict, perms)


def save(sd, path):
    if path.endswith(".safetensors"):
        torch2mc.st_write(path, [(k, v.detach().cpu().numpy()) for k, v in sd.items()], {"written_by": "mc2torch.py"})
    else:
        tmp = path + ".tmp"
        torch.save(sd, tmp)
        os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="mc2torch.py", description="Load a modeconn checkpoint into your PyTorch "
                                 "module, or apply an alignment's permutations to its state dict.")
    ap.add_argument("factory", metavar="MODULE:FACTORY", help="the module's factory, as given to torch2mc.py")
    ap.add_argument("--ckpt", help="modeconn checkpoint to load (e.g. align --out)")
    ap.add_argument("--prefix", default="", help="with --ckpt: the part of a curve file to take (a. or b.)")
    ap.add_argument("--state-dict", help="with --perm: the module's original weights (.pt or .safetensors)")
    ap.add_argument("--perm", help="a `modeconn align --perm-out` JSON to apply to --state-dict")
    ap.add_argument("--input", help="with --perm: input shape CxHxW")
    ap.add_argument("--classes", type=int, help="classes for the factory (default: the checkpoint's)")
    ap.add_argument("--out", required=True, help="state dict to write (.pt: torch.save; .safetensors)")
    a = ap.parse_args(argv)
    if bool(a.ckpt) == bool(a.perm) or (a.perm and not (a.state_dict and a.input)):
        ap.error("give --ckpt FILE, or --perm JSON with --state-dict and --input")
    try:
        if a.ckpt:
            classes = a.classes
            if classes is None:
                classes = int(torch2mc.st_read(a.ckpt)[1].get("modeconn.classes", 0)) or None
            model = torch2mc.build(a.factory, classes)
            load_checkpoint(model, a.ckpt, a.prefix)
            sd = model.state_dict()
        else:
            model = torch2mc.build(a.factory, a.classes)
            sd = apply_perm(model, torch2mc.load_state(a.state_dict), a.perm, torch2mc.parse_input(a.input))
            model.load_state_dict(sd, strict=True)
        save(sd, a.out)
    except torch2mc.Unsupported as e:
        print("mc2torch: error: %s: %s" % (a.factory, e), file=sys.stderr)
        return 1
    except (ValueError, OSError, RuntimeError, ImportError, KeyError) as e:
        print("mc2torch: error: %s" % e, file=sys.stderr)
        return 1
    print("mc2torch: wrote %s (%d entries, loaded into %s with strict=True)" % (a.out, len(sd), a.factory))
    return 0


if __name__ == "__main__":
    sys.exit(main())
