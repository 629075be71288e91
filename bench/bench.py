#!/usr/bin/python3
"""modeconn vs PyTorch on the same machine, as ratios (driver; see run.sh).

Every workload runs three ways, interleaved within the run (modeconn,
PyTorch as shipped, PyTorch tuned; repeated --reps times in that order,
the best of the repetitions is reported for each):

  modeconn         the CLI with --threads 2 --backend $MODECONN_BACKEND (default auto)
  PyTorch shipped  /usr/bin/python3 bench/torch_side.py, torch.set_num_threads(2),
                   LD_PRELOAD and OPENBLAS_NUM_THREADS removed from the environment
  PyTorch tuned    the same with LD_PRELOAD=libtcmalloc_minimal.so.4 and
                   OPENBLAS_NUM_THREADS=1
(OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are inherited unchanged by all three.)

Ratios are speed ratios modeconn / PyTorch: > 1 means modeconn is faster
(images/s divided by images/s, or PyTorch seconds divided by modeconn
seconds). Nothing here asserts timings; the PyTorch side cross-checks the
results (losses, accuracies, permutations) against modeconn's.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = "/usr/bin/python3"
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
def measured_peak():
    """FP32 FMA peak of this machine at 2 threads, measured by build/bench_peak
    (AVX2: 2 x 256-bit FMA per core); 2 cores x 32 FLOP/cycle x 3 GHz if absent."""
    exe = os.path.join(ROOT, "build", "bench_peak")
    try:
        out = subprocess.run([exe], capture_output=True, text=True, timeout=120,
                             env=dict(os.environ, OMP_NUM_THREADS="2")).stdout
        return float(out.split("peak:")[1].split()[0])
    except Exception:
        return 192.0


PEAK_GFLOPS = measured_peak()
SIDES = ("modeconn", "torch", "torch-tuned")
SIDE_TITLE = {"modeconn": "modeconn", "torch": "PyTorch shipped", "torch-tuned": "PyTorch tuned"}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Bench:
    def __init__(self, a):
        self.a = a
        self.mc = a.modeconn
        self.backend = a.backend
        self.work = a.workdir
        os.makedirs(self.work, exist_ok=True)
        base = dict(os.environ)
        base.pop("LD_PRELOAD", None)
        self.env_mc = dict(base)
        self.env_torch = dict(base)
        self.env_torch.pop("OPENBLAS_NUM_THREADS", None)
        self.env_tuned = dict(self.env_torch)
        self.env_tuned["LD_PRELOAD"] = TCMALLOC
        self.env_tuned["OPENBLAS_NUM_THREADS"] = "1"
        self.flops = {}
        self.results = []  # dicts, one per workload
        self.loads = []

    # ----------------------------------------------------------- running
    def run(self, argv, env, what):
        log("  $ " + " ".join(shlex.quote(x) for x in argv))
        t0 = time.time()
        p = subprocess.run(argv, env=env, cwd=self.work, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
        if p.returncode != 0:
            sys.stderr.write(p.stdout[-4000:] + p.stderr[-4000:])
            raise SystemExit(f"bench: {what} failed (exit {p.returncode})")
        return p.stdout, time.time() - t0

    def mcrun(self, args, what, threads=True):
        argv = [self.mc] + args
        if threads:
            argv += ["--threads", "2", "--backend", self.backend]
        return self.run(argv, self.env_mc, what)[0]

    def torchrun(self, side, args, what):
        env = self.env_tuned if side == "torch-tuned" else self.env_torch
        o, _ = self.run([PY, os.path.join(HERE, "torch_side.py"), "--threads", "2"] + args, env,
                        f"{what} ({side})")
        return json.loads(o.strip().splitlines()[-1])

    def path(self, name):
        return os.path.join(self.work, name)

    # ------------------------------------------------------------- setup
    def setup(self, workloads):
        """Architecture info (FLOPs, groups) and the checkpoints the chosen
        workloads read, trained by modeconn (not timed)."""
        a = self.a
        for arch in ("mlp", "tinyten", "resnet20"):
            txt = self.mcrun(["info", "--arch", arch], f"info {arch}", threads=False)
            self.flops[arch] = float(re.search(r"forward FLOPs per sample:\s*([0-9.eE+-]+)", txt).group(1))
            with open(self.path(f"{arch}.info"), "w") as f:
                f.write(txt)
        need = set()
        for w in workloads:
            need |= set(w.get("needs", ()))
        n = str(a.setup_images)
        for arch, short in (("tinyten", "t"), ("resnet20", "r")):
            for seed in (1, 2):
                out = f"{short}{seed}.safetensors"
                if out not in need or (a.keep and os.path.exists(self.path(out))):
                    continue
                log(f"setup: {arch} seed {seed}, 1 epoch on {n} images")
                self.mcrun(["train", "--arch", arch, "--epochs", "1", "--seed", str(seed), "--train-subset", n,
                            "--test-subset", "1", "--eval-every", "1000", "--out", out], f"setup train {arch}")
        if "curve.safetensors" in need and not (a.keep and os.path.exists(self.path("curve.safetensors"))):
            log("setup: a Bezier curve between the two tinytens (for curve eval)")
            self.mcrun(["curve", "train", "--a", "t1.safetensors", "--b", "t2.safetensors", "--align", "none",
                        "--epochs", "1", "--train-subset", n, "--eval-every", "1000", "--bn-samples", "500",
                        "--test-subset", "500", "--out", "curve.safetensors"], "setup curve train")

    # --------------------------------------------------------- workloads
    def workloads(self):
        a = self.a
        W = []
        TT = ["t1.safetensors", "t2.safetensors"]
        for arch in ("mlp", "tinyten", "resnet20"):
            W.append(dict(id=f"train-{arch}", title=f"train epoch, {arch}",
                          size=f"{a.train_images} imgs, batch 128", unit="img/s", arch=arch, flops_mult=3,
                          mc=self.mc_train(arch), torch=["train", "--arch", arch, "--n", str(a.train_images)]))
        for arch, ck in (("tinyten", "t1"), ("resnet20", "r1")):
            W.append(dict(id=f"eval-{arch}", title=f"eval pass, {arch}", size=f"{a.eval_images} test imgs, batch 1000",
                          unit="s", arch=arch, flops_mult=1, images=a.eval_images, needs=[f"{ck}.safetensors"],
                          mc=self.mc_eval(ck), torch=["eval", "--model", f"{ck}.safetensors", "--n",
                                                      str(a.eval_images), "--batch", "1000"]))
        W.append(dict(id="align-resnet20", title="align (corr), resnet20",
                      size=f"{a.align_samples} train imgs x 2 models", unit="s", arch="resnet20",
                      needs=["r1.safetensors", "r2.safetensors"],
                      mc=self.mc_align(), torch=["align", "--a", "r1.safetensors", "--b", "r2.safetensors",
                                                 "--info", "resnet20.info", "--samples", str(a.align_samples),
                                                 "--compare", "perm.json"]))
        pth = ["--bn-samples", str(a.bn_samples), "--test-n", str(a.test_images)]
        W.append(dict(id="interp-tinyten", title="interp, tinyten",
                      size=f"{a.interp_points} pts x (BN {self.nbn()} + test {self.nte()})", unit="s",
                      arch="tinyten", mc=self.mc_path("interp", a.interp_points), needs=TT,
                      torch=["path", "--a", "t1.safetensors", "--b", "t2.safetensors", "--points",
                             str(a.interp_points), "--compare", "interp.json"] + pth))
        W.append(dict(id="curvetrain-tinyten", title="curve train epoch (Bezier), tinyten",
                      size=f"{a.curve_images} imgs, batch 128", unit="img/s", arch="tinyten", flops_mult=3, needs=TT,
                      mc=self.mc_curvetrain(),
                      torch=["curvetrain", "--a", "t1.safetensors", "--b", "t2.safetensors", "--n",
                             str(a.curve_images)]))
        W.append(dict(id="curveeval-tinyten", title="curve eval, tinyten",
                      size=f"{a.curve_points} pts x (BN {self.nbn()} + test {self.nte()})", unit="s",
                      arch="tinyten", mc=self.mc_path("curve", a.curve_points),
                      needs=TT + ["curve.safetensors"],
                      torch=["path", "--curve", "curve.safetensors", "--points", str(a.curve_points),
                             "--compare", "curve_eval.json"] + pth))
        if a.only:
            keep = set(a.only.split(","))
            W = [w for w in W if w["id"] in keep or w["id"].split("-")[0] in keep]
        return W

    def nbn(self):
        return self.a.bn_samples if self.a.bn_samples > 0 else 60000

    def nte(self):
        return self.a.test_images if self.a.test_images > 0 else 10000

    def mc_train(self, arch):
        n = self.a.train_images

        def f():
            logf = self.path(f"train-{arch}.jsonl")
            self.mcrun(["train", "--arch", arch, "--epochs", "1", "--train-subset", str(n), "--test-subset", "1",
                        "--eval-every", "1000", "--seed", "1", "--out", f"bench-{arch}.safetensors", "--log", logf],
                       f"modeconn train {arch}")
            with open(logf) as fh:
                rec = json.loads(fh.read().strip().splitlines()[-1])
            return {"seconds": rec["seconds"], "images_per_second": n / rec["seconds"],
                    "train_loss": rec["train_loss"]}
        return f

    def mc_eval(self, ck):
        def f():
            o = self.mcrun(["eval", "--model", f"{ck}.safetensors", "--batch", "1000", "--test-subset",
                            str(self.a.eval_images)], f"modeconn eval {ck}")
            m = re.search(r"loss ([0-9.]+)\s+accuracy ([0-9.]+).*?([0-9.]+)s\s*$", o.strip().splitlines()[-1])
            return {"seconds": float(m.group(3)), "test_loss": float(m.group(1)),
                    "test_accuracy": float(m.group(2))}
        return f

    def mc_align(self):
        def f():
            self.mcrun(["align", "--a", "r1.safetensors", "--b", "r2.safetensors", "--out", "r2_aligned.safetensors",
                        "--samples", str(self.a.align_samples), "--perm-out", "perm.json"], "modeconn align")
            with open(self.path("perm.json")) as fh:
                j = json.load(fh)
            return {"seconds": j["seconds"]}
        return f

    def mc_path(self, kind, points):
        def f():
            js = "interp.json" if kind == "interp" else "curve_eval.json"
            common = ["--points", str(points), "--bn-samples", str(self.a.bn_samples), "--test-subset",
                      str(self.a.test_images), "--json", js]
            if kind == "interp":
                args = ["interp", "--a", "t1.safetensors", "--b", "t2.safetensors"] + common
            else:
                args = ["curve", "eval", "--curve", "curve.safetensors"] + common
            self.mcrun(args, f"modeconn {kind}")
            with open(self.path(js)) as fh:
                j = json.load(fh)
            return {"seconds": j["seconds"], "test_accuracy": j["test_accuracy"]}
        return f

    def mc_curvetrain(self):
        n = self.a.curve_images

        def f():
            logf = self.path("curvetrain.jsonl")
            self.mcrun(["curve", "train", "--a", "t1.safetensors", "--b", "t2.safetensors", "--align", "none",
                        "--kind", "bezier", "--epochs", "1", "--train-subset", str(n), "--eval-every", "1000",
                        "--bn-samples", "500", "--test-subset", "500", "--out", "bench-curve.safetensors",
                        "--log", logf], "modeconn curve train")
            with open(logf) as fh:
                rec = json.loads(fh.read().strip().splitlines()[-1])
            return {"seconds": rec["seconds"], "images_per_second": n / rec["seconds"],
                    "train_loss": rec["train_loss"]}
        return f

    # --------------------------------------------------------------- run
    def measure(self, w):
        log(f"== {w['id']}: {w['title']} ({w['size']})")
        runs = {s: [] for s in SIDES}
        for rep in range(self.a.reps):
            for side in SIDES:
                load = os.getloadavg()[0]
                if side == "modeconn":
                    r = w["mc"]()
                else:
                    r = self.torchrun(side, w["torch"], w["id"])
                    if r.get("threads") != 2:
                        raise SystemExit(f"bench: PyTorch ran with {r.get('threads')} threads, not 2")
                r["load_before"] = load
                runs[side].append(r)
                log(f"   {side:12s} rep {rep + 1}: {self.fmt_value(w, r)}  (load avg before {load:.2f})")
        best = {}
        for side in SIDES:
            if w["unit"] == "img/s":
                best[side] = max(runs[side], key=lambda r: r["images_per_second"])
            else:
                best[side] = min(runs[side], key=lambda r: r["seconds"])
        res = dict(id=w["id"], title=w["title"], size=w["size"], unit=w["unit"], runs=runs, best=best)
        val = {s: self.value(w, best[s]) for s in SIDES}
        res["value"] = val
        for s in ("torch", "torch-tuned"):
            if w["unit"] == "img/s":
                res[f"ratio_{s}"] = val["modeconn"] / val[s]
            else:
                res[f"ratio_{s}"] = val[s] / val["modeconn"]
        if "flops_mult" in w:
            per_img = self.flops[w["arch"]] * w["flops_mult"]
            ips = {s: (val[s] if w["unit"] == "img/s" else w["images"] / val[s]) for s in SIDES}
            res["gflops"] = {s: ips[s] * per_img * 1e-9 for s in SIDES}
        res["check"] = self.check(w, best)
        log(f"   -> ratio vs shipped {res['ratio_torch']:.2f}x, vs tuned {res['ratio_torch-tuned']:.2f}x;"
            f" {res['check']}")
        return res

    def value(self, w, r):
        return r["images_per_second"] if w["unit"] == "img/s" else r["seconds"]

    def fmt_value(self, w, r):
        v = self.value(w, r)
        return f"{v:.1f} img/s" if w["unit"] == "img/s" else f"{v:.2f} s"

    def check(self, w, best):
        """Agreement of the two implementations (not a timing)."""
        m, t = best["modeconn"], best["torch"]
        if w["id"].startswith("eval"):
            return (f"test loss modeconn {m['test_loss']:.5f} / torch {t['test_loss']:.5f}, "
                    f"acc {100 * m['test_accuracy']:.2f}% / {100 * t['test_accuracy']:.2f}%")
        if w["id"].startswith("align"):
            return (f"permutations agree on {100 * t['perm_agreement']:.1f}% of units; "
                    f"max |mean corr diff| {t['max_corr_after_diff']:.1e}")
        if w["id"].startswith(("interp", "curveeval")):
            return f"max |test acc diff| along the path {100 * t['max_acc_diff']:.2f} pts"
        return (f"train loss modeconn {m['train_loss']:.3f} / torch {t['train_loss']:.3f} "
                f"(different init and sample order)")


# ------------------------------------------------------------------ report
def machine():
    model, cores = platform.processor() or "?", os.cpu_count()
    try:
        out = subprocess.run(["lscpu"], stdout=subprocess.PIPE, text=True).stdout
        m = re.search(r"^Model name:\s*(.+)$", out, re.M)
        if m:
            model = m.group(1).strip()
        c = re.search(r"^CPU\(s\):\s*(\d+)$", out, re.M)
        if c:
            cores = int(c.group(1))
    except OSError:
        pass
    return model, cores


def torch_version():
    p = subprocess.run([PY, "-c", "import torch, numpy, scipy; print(torch.__version__, numpy.__version__, "
                        "scipy.__version__)"], stdout=subprocess.PIPE, text=True)
    return p.stdout.split() if p.returncode == 0 else ["?", "?", "?"]


def git_rev():
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.strip()
        return rev + ("+local changes" if dirty else "") if rev else "?"
    except OSError:
        return "?"


def fmt(res, side):
    v = res["value"][side]
    return f"{v:,.0f} img/s" if res["unit"] == "img/s" else f"{v:.2f} s"


def gf(res, side):
    g = res.get("gflops")
    if not g:
        return ""
    return f"{g[side]:.1f} ({100 * g[side] / PEAK_GFLOPS:.1f}%)"


def table_text(results):
    hdr = ["workload", "size", "modeconn", "PyTorch shipped", "PyTorch tuned", "x shipped", "x tuned"]
    rows = [[r["title"], r["size"], fmt(r, "modeconn"), fmt(r, "torch"), fmt(r, "torch-tuned"),
             f"{r['ratio_torch']:.2f}", f"{r['ratio_torch-tuned']:.2f}"] for r in results]
    wid = [max(len(x) for x in col) for col in zip(hdr, *rows)]
    line = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, wid)))
    out = [line(hdr), "  ".join("-" * w for w in wid)] + [line(r) for r in rows]
    g = [r for r in results if r.get("gflops")]
    if g:
        out += ["", f"achieved GFLOP/s (% of the {PEAK_GFLOPS:.0f} GFLOP/s measured FP32 FMA peak; training = 3 x forward "
                    "FLOPs, eval = 1 x):"]
        for r in g:
            out.append(f"  {r['title']:<38s} modeconn {gf(r, 'modeconn'):>14s}   shipped {gf(r, 'torch'):>14s}"
                       f"   tuned {gf(r, 'torch-tuned'):>14s}")
    out += ["", "x = speed ratio modeconn / PyTorch (> 1: modeconn faster); best of the repetitions.", "",
            "cross-checks (the two sides compute the same thing):"]
    out += [f"  {r['title']}: {r['check']}" for r in results]
    return "\n".join(out)


def markdown(a, b, results, started, elapsed, versions):
    model, cores = machine()
    L = []
    L.append(f"# modeconn vs PyTorch — {started:%Y-%m-%d %H:%M}" + (" (quick)" if a.quick else ""))
    L.append("")
    L.append("| | |")
    L.append("|---|---|")
    L.append(f"| date | {started:%Y-%m-%d %H:%M:%S} |")
    L.append(f"| machine | {model}, {cores} cores ({platform.machine()}, Linux {platform.release()}) |")
    L.append(f"| PyTorch | {versions[0]} (Debian python3-torch), numpy {versions[1]}, scipy {versions[2]}, "
             f"torch.set_num_threads(2) |")
    L.append(f"| modeconn | {git_rev()}, `--threads 2 --backend {a.backend}` |")
    L.append(f"| PyTorch tuned | `LD_PRELOAD={TCMALLOC} OPENBLAS_NUM_THREADS=1` |")
    ob = ", ".join(f"{k}={os.environ[k]}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS")
                   if k in os.environ) or "none set"
    L.append(f"| inherited env | {ob} |")
    L.append(f"| data | Fashion-MNIST (1x28x28), /usr/share/datasets/fashion-mnist |")
    L.append(f"| repetitions | {a.reps} per side, interleaved (modeconn, shipped, tuned); best reported |")
    L.append(f"| load average | " + ", ".join(f"{x:.2f}" for x in b.loads[0]) + " at start, "
             + ", ".join(f"{x:.2f}" for x in b.loads[-1]) + " at end (1/5/15 min; the benchmark itself adds about "
             "2 while it runs, so much more than 2 means other work competed for the cores) |")
    L.append(f"| wall time | {elapsed / 60:.1f} min |")
    L.append("")
    L.append("Ratio = speed ratio modeconn / PyTorch (> 1: modeconn faster): images/s over images/s, or "
             "PyTorch seconds over modeconn seconds.")
    L.append("")
    L.append("| workload | size | modeconn | PyTorch shipped | PyTorch tuned | ratio vs shipped | ratio vs tuned |")
    L.append("|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        L.append(f"| {r['title']} | {r['size']} | {fmt(r, 'modeconn')} | {fmt(r, 'torch')} | "
                 f"{fmt(r, 'torch-tuned')} | {r['ratio_torch']:.2f} | {r['ratio_torch-tuned']:.2f} |")
    g = [r for r in results if r.get("gflops")]
    if g:
        L.append("")
        L.append(f"Achieved GFLOP/s and % of the {PEAK_GFLOPS:.0f} GFLOP/s measured FP32 FMA peak of the 2 cores "
                 "(forward FLOPs per sample from `modeconn info`; training ≈ 3 × forward, eval = 1 × forward):")
        L.append("")
        L.append("| workload | modeconn | PyTorch shipped | PyTorch tuned |")
        L.append("|---|---:|---:|---:|")
        for r in g:
            L.append(f"| {r['title']} | {gf(r, 'modeconn')} | {gf(r, 'torch')} | {gf(r, 'torch-tuned')} |")
    L.append("")
    L.append("Cross-checks (same computation on both sides):")
    L.append("")
    for r in results:
        L.append(f"- {r['title']}: {r['check']}")
    L.append("")
    L.append("All repetitions (modeconn / shipped / tuned; 1-minute load average before each run in brackets):")
    L.append("")
    for r in results:
        per = []
        for s in SIDES:
            vals = [x["images_per_second"] if r["unit"] == "img/s" else x["seconds"] for x in r["runs"][s]]
            per.append(", ".join((f"{v:.1f}" if r["unit"] == "img/s" else f"{v:.2f}") + f" [{x['load_before']:.1f}]"
                                 for v, x in zip(vals, r["runs"][s])))
        L.append(f"- {r['title']} ({r['unit']}): " + " / ".join(per))
    L.append("")
    L.append("What is timed: training = every step of one pass over the images (batch gather, uint8→float, "
             "random crop pad 2, forward, loss, backward, SGD Nesterov momentum 0.9 wd 5e-4) — modeconn's epoch "
             "line, without data loading, checkpointing or test evaluation; eval = `modeconn eval`'s seconds "
             "(executor setup + the pass) vs the PyTorch `model.eval()` + `no_grad` pass; align = `alignment "
             "took` (statistics pass of both models, moments of every post-ReLU point summed in float32 within an image and float64 across images, correlations "
             "summed per group, exact LAP per group, applying the permutation and checking B's logits on 16 "
             "images) vs hooks + float64 moments + scipy `linear_sum_assignment` + the same apply/check; interp / "
             "curve eval = per point θ(t), BN reset and one train-mode pass (cumulative average, batch 500), "
             "test loss/accuracy (batch 500); curve train = one epoch of quadratic Bézier training, "
             "t ~ U(0,1) per batch, CE + wd/2‖θ(t)‖², SGD on the bend (modeconn `--align none`; PyTorch "
             "`functional_call` on a flat θ(t)). Both sides load data before timing starts.")
    L.append("")
    L.append(f"Command: `bench/run.sh {' '.join(a.argv)}`")
    L.append("")
    return "\n".join(L)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes (about 10 minutes on a quiet machine)")
    p.add_argument("--reps", type=int, default=int(os.environ.get("BENCH_REPS", "1")),
                   help="repetitions per side (interleaved); the best is reported (default 1, env BENCH_REPS)")
    p.add_argument("--only", help="comma-separated workload ids or kinds: train, eval, align, interp, curvetrain, "
                                  "curveeval, or e.g. train-resnet20")
    p.add_argument("--modeconn", default=os.environ.get("MODECONN", os.path.join(ROOT, "build", "modeconn")))
    p.add_argument("--backend", default=os.environ.get("MODECONN_BACKEND", "auto"))
    p.add_argument("--workdir", help="where checkpoints and results go (default: a fresh temporary directory)")
    p.add_argument("--keep", action="store_true", help="reuse setup checkpoints found in --workdir")
    p.add_argument("--out", help="markdown file (default bench/results-<date>[-quick].md)")
    for name, full, quick, h in (("train-images", 12800, 2560, "images per training epoch"),
                                 ("eval-images", 10000, 10000, "test images of the eval pass"),
                                 ("align-samples", 10000, 2000, "training images of the alignment statistics"),
                                 ("interp-points", 25, 3, "points of interp"),
                                 ("curve-images", 12800, 2560, "images of the curve training epoch"),
                                 ("curve-points", 65, 3, "points of curve eval"),
                                 ("bn-samples", 0, 10000, "BN-recompute images per point (0 = all 60,000)"),
                                 ("test-images", 0, 10000, "test images per point (0 = all 10,000)"),
                                 ("setup-images", 6400, 1280, "images of the 1-epoch setup checkpoints")):
        p.add_argument("--" + name, type=int, default=None, help=f"{h} (full {full}, quick {quick})")
        p.set_defaults(**{"_d_" + name.replace("-", "_"): (full, quick)})
    a = p.parse_args()
    a.argv = sys.argv[1:]
    for k, v in list(vars(a).items()):
        if k.startswith("_d_"):
            key = k[3:]
            if getattr(a, key) is None:
                setattr(a, key, v[1] if a.quick else v[0])
    if not os.access(a.modeconn, os.X_OK):
        raise SystemExit(f"bench: {a.modeconn} not found (build it: cmake --build build -j2)")
    if not os.path.exists(TCMALLOC):
        raise SystemExit(f"bench: {TCMALLOC} missing (apt-get install libtcmalloc-minimal4)")
    tmp = None
    if not a.workdir:
        import tempfile
        tmp = tempfile.mkdtemp(prefix="modeconn-bench-")
        a.workdir = tmp
    started = datetime.datetime.now()
    t0 = time.time()
    versions = torch_version()
    b = Bench(a)
    b.loads.append(os.getloadavg())
    log(f"bench: workdir {a.workdir}, modeconn backend {a.backend}, torch {versions[0]}, "
        f"{'quick' if a.quick else 'full'} sizes, {a.reps} repetition(s)")
    todo = b.workloads()
    if not todo:
        raise SystemExit(f"bench: --only {a.only} selects no workload")
    b.setup(todo)
    results = []
    for w in todo:
        results.append(b.measure(w))
    b.loads.append(os.getloadavg())
    elapsed = time.time() - t0
    print()
    print(f"modeconn vs PyTorch {versions[0]} — {machine()[0]}, {machine()[1]} cores, 2 threads, "
          f"backend {a.backend}{' (quick)' if a.quick else ''}; load avg {b.loads[0][0]:.2f} -> {b.loads[-1][0]:.2f}")
    print(table_text(results))
    out = a.out or os.path.join(HERE, f"results-{started:%Y-%m-%d}{'-quick' if a.quick else ''}.md")
    with open(out, "w") as f:
        f.write(markdown(a, b, results, started, elapsed, versions))
    with open(os.path.join(a.workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    print(f"\nwrote {out} ({elapsed / 60:.1f} min)")
    if tmp:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
