#!/usr/bin/python3
"""Write Fashion-MNIST as CIFAR-10 binary files (3x32x32), to run the CIFAR
path of modeconn (--data cifar10:DIR) end to end without CIFAR itself.

    tools/fashion2cifar.py OUTDIR [--train N] [--test N] [--src DIR]

OUTDIR/cifar-10-batches-bin/ gets data_batch_1.bin .. data_batch_5.bin (the
first N training images split as evenly as the five files allow) and
test_batch.bin (the first N test images), each record one label byte and
3072 pixel bytes (R plane, G plane, B plane, row-major), as in the CIFAR-10
binary version. Each 28x28 image is zero-padded by 2 pixels on every side
to 32x32 and copied into all three planes. Standard library only."""
import argparse, gzip, os, struct, sys


def idx(path, magic):
    with gzip.open(path, "rb") as f:
        data = f.read()
    got, n = struct.unpack(">II", data[:8])
    if got != magic:
        sys.exit(f"{path}: magic {got:#x}, expected {magic:#x}")
    return n, data


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--train", type=int, default=60000, help="training images (default all 60000)")
    ap.add_argument("--test", type=int, default=10000, help="test images (default all 10000)")
    ap.add_argument("--src", default="/usr/share/datasets/fashion-mnist")
    a = ap.parse_args()
    dst = os.path.join(a.out, "cifar-10-batches-bin")
    os.makedirs(dst, exist_ok=True)

    def split(prefix, n):
        ni, img = idx(os.path.join(a.src, f"{prefix}-images-idx3-ubyte.gz"), 0x803)
        nl, lab = idx(os.path.join(a.src, f"{prefix}-labels-idx1-ubyte.gz"), 0x801)
        if not 0 < n <= min(ni, nl):
            sys.exit(f"{prefix}: asked for {n} images, the file has {min(ni, nl)}")
        recs = []
        for k in range(n):
            px = img[16 + 784 * k: 16 + 784 * (k + 1)]
            plane = bytearray(1024)
            for r in range(28):
                plane[32 * (r + 2) + 2: 32 * (r + 2) + 30] = px[28 * r: 28 * (r + 1)]
            recs.append(bytes([lab[8 + k]]) + bytes(plane) * 3)
        return recs

    def write(name, recs):
        tmp = os.path.join(dst, name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(b"".join(recs))
        os.replace(tmp, os.path.join(dst, name))

    tr = split("train", a.train)
    per = -(-len(tr) // 5)
    for b in range(5):
        write(f"data_batch_{b + 1}.bin", tr[b * per: (b + 1) * per])
    write("test_batch.bin", split("t10k", a.test))
    print(f"{dst}: {len(tr)} training and {a.test} test images (3x32x32)")


if __name__ == "__main__":
    main()
