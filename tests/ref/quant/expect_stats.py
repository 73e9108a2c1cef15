"""Expected error statistics of blockwise NF4 / FP4 on standard-normal data,
by numerical integration (an independent check of libftq's statistics; no
quantizer code is used). Writes expected_stats.txt ("key value" lines).

Model: a block of B iid N(0,1) values; M = max |x| has density
B * 2 phi(m) * (2 Phi(m) - 1)^(B-1). The element at the maximum maps to the
code +-1 exactly (no error); the other B-1 are N(0,1) truncated to |x| < M and
round to the nearest code value c_k * M (the pivots are the midpoints). Per
block:  E[err^2] = (B-1)/B * E_M[ E[(x - M q(x/M))^2 | |x| < M] ],  E[x^2] = 1,
and SQNR = 10 log10(E[x^2] / E[err^2]). The zeroed fraction is the chance
that a non-maximum value lands in the interval of the code 0.
"""
import math
import os

import numpy as np
from scipy import integrate
from scipy.stats import norm

NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
       -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
       0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
       0.7229568362236023, 1.0]
FP4 = sorted([0.0, 0.0625, 8, 12, 4, 6, 2, 3, -0.0625, -8, -12, -4, -6, -2, -3])
FP4 = [v / 12.0 for v in FP4]


def interval_moments(a, b):
    """(P, E[x], E[x^2]) of N(0,1) over [a, b], unnormalised."""
    P = norm.cdf(b) - norm.cdf(a)
    m1 = norm.pdf(a) - norm.pdf(b)
    m2 = P + a * norm.pdf(a) - b * norm.pdf(b)
    return P, m1, m2


def per_block(codes, B):
    codes = sorted(set(codes))
    mids = [(codes[i] + codes[i + 1]) / 2 for i in range(len(codes) - 1)]
    zero_k = codes.index(0.0)

    def inner(m):
        edges = [-m] + [t * m for t in mids] + [m]
        err = 0.0
        zero_p = 0.0
        for k, c in enumerate(codes):
            P, m1, m2 = interval_moments(edges[k], edges[k + 1])
            cm = c * m
            err += m2 - 2 * cm * m1 + cm * cm * P
            if k == zero_k:
                zero_p = P
        pin = 2 * norm.cdf(m) - 1
        return err / pin, zero_p / pin

    def dens(m):
        return B * 2 * norm.pdf(m) * (2 * norm.cdf(m) - 1) ** (B - 1)

    e = integrate.quad(lambda m: dens(m) * inner(m)[0], 0, 12, limit=400, epsabs=1e-13)[0]
    z = integrate.quad(lambda m: dens(m) * inner(m)[1], 0, 12, limit=400, epsabs=1e-13)[0]
    mse = (B - 1) / B * e
    return mse, 10 * math.log10(1.0 / mse), (B - 1) / B * z


def main():
    out = []
    for name, codes in (("nf4", NF4), ("fp4", FP4)):
        for B in (64, 256):
            mse, sqnr, zeroed = per_block(codes, B)
            out.append(f"{name}_bs{B}_mse {mse:.10g}")
            out.append(f"{name}_bs{B}_sqnr_db {sqnr:.10g}")
            out.append(f"{name}_bs{B}_zeroed_fraction {zeroed:.10g}")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "expected_stats.txt")
    with open(path, "w") as f:
        f.write("# made by expect_stats.py: N(0,1) data, numerical integration\n")
        f.write("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
