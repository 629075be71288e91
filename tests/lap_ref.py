#!/usr/bin/python3
"""Reference objectives for test_lap: scipy.optimize.linear_sum_assignment.

usage: lap_ref.py IN OUT

IN holds a sequence of matrices, each as a little-endian int64 n followed by
n*n float64 values (row major).  NaN entries count as 0 (as in mc_lap_max).
OUT receives one line per matrix: the maximal objective sum_i C[i, p[i]]
(math.fsum of the chosen entries, printed with 17 significant digits).
Run it with /usr/bin/python3 (the interpreter that has scipy).
"""
import math
import sys

import numpy as np
from scipy.optimize import linear_sum_assignment


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    data = open(sys.argv[1], "rb").read()
    out = []
    off = 0
    while off < len(data):
        n = int(np.frombuffer(data, dtype="<i8", count=1, offset=off)[0])
        off += 8
        c = np.frombuffer(data, dtype="<f8", count=n * n, offset=off).reshape(n, n)
        off += 8 * n * n
        c = np.where(np.isnan(c), 0.0, c)
        if n == 0:
            out.append("0")
            continue
        rows, cols = linear_sum_assignment(c, maximize=True)
        out.append("%.17g" % math.fsum(c[rows, cols].tolist()))
    with open(sys.argv[2], "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
