#!/usr/bin/env python3
"""Fits the efficiencies of CudaGemm::choose_tile (src/kernels/cuda/gemm.cu) to measured tables.

Past decode, choose_tile picks the candidate config with the largest
    efficiency[config] * wave_fill(config, M, N)
where wave_fill is the share of the launched tile waves (132 SMs, the fixed reference) that
holds real outputs. This script reads `gemm_bench --all-tiles` tables (one or more files, e.g.
one per GPU), fits the efficiencies by coordinate descent on the summed log of
t(chosen) / t(fastest candidate), and prints the fit, the loss per file, and the worst points.
Any tile gives the same bits (gemm_test), so the fit moves speed only.

    bench/cuda/fit_tile_choice.py bench/results/gemm-tiles-*.txt [--min-m 65]
"""
import argparse
import math
import re
import sys

REFERENCE_SMS = 132
# rows of x, rows of W, cluster along M: kTiles in gemm.cu
TILES = {
    "m16n64_swap": (16, 64, 1), "m32n64_swap": (32, 64, 1), "m64n64_swap": (64, 64, 1),
    "m64n192_swap": (64, 192, 1), "m96n192_swap": (96, 192, 1), "m96n128_swap": (96, 128, 1),
    "m64n32": (64, 32, 1), "m64n64": (64, 64, 1), "m64n128": (64, 128, 1),
    "m128n96": (128, 96, 2), "m128n128": (128, 128, 1), "m128n192": (128, 192, 1), "m128n256": (128, 256, 2),
}
CANDIDATES = ["m96n192_swap", "m128n256", "m128n192", "m128n128", "m96n128_swap",
              "m64n192_swap", "m64n128", "m128n96"]


def ceil_div(a, b):
    return (a + b - 1) // b


def wave_fill(tile, m, n):
    bm, bn, cluster = TILES[tile]
    tiles = ceil_div(ceil_div(m, bm), cluster) * cluster * ceil_div(n, bn)
    waves = ceil_div(tiles, REFERENCE_SMS)
    return m * n / (waves * REFERENCE_SMS * bm * bn)


def read_table(path):
    """Rows of (shape, n, k, m, {tile: us}) from a gemm_bench --all-tiles table."""
    rows, names = [], None
    with open(path) as f:
        for line in f:
            cells = [c.strip() for c in line.split("|")]
            if line.startswith("shape") and "ratio" in line:
                names = cells[cells.index("ratio") + 1:]
                continue
            if names is None or len(cells) < 4 + len(names):
                continue
            head = cells[0].split()
            if len(head) < 4 or not head[-2].isdigit():
                continue
            # "<shape words> N K M tile": the shape name may hold spaces
            n, k, m = int(head[-4]), int(head[-3]), int(head[-2])
            shape = " ".join(head[:-4])
            times = {name: float(v) for name, v in zip(names, cells[-len(names):])}
            rows.append((shape, n, k, m, times))
    return rows


def short_last_tile(tile, m):
    """choose_tile's rule: a 96-row x tile whose last one holds at most a third of its rows."""
    bm = TILES[tile][0]
    return bm == 96 and 0 < m % bm <= bm // 3


def choose(eff, m, n, available=CANDIDATES):
    """choose_tile among the candidates a table measured (older tables lack newer configs)."""
    best, best_score = None, -1.0
    for t in CANDIDATES:
        if t not in available or short_last_tile(t, m):
            continue
        score = eff[t] * wave_fill(t, m, n)
        if score > best_score + 1e-9:
            best, best_score = t, score
    return best


def loss(eff, rows):
    total = 0.0
    for _, n, _, m, times in rows:
        fastest = min(times[t] for t in CANDIDATES if t in times)
        total += math.log(times[choose(eff, m, n, times)] / fastest)
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tables", nargs="+")
    ap.add_argument("--min-m", type=int, default=65, help="smallest M choose_tile scores (past decode)")
    ap.add_argument("--start", default="", help="starting efficiencies, tile=value,...")
    args = ap.parse_args()

    per_file = {}
    for p in args.tables:
        # Every candidate but the newest may be required: a table from before a config was added
        # still constrains the others (its rows choose among the configs it measured).
        rows = [r for r in read_table(p)
                if r[3] >= args.min_m and all(t in r[4] for t in CANDIDATES[:-1])]
        if not rows:
            sys.exit(f"{p}: no all-tiles rows with the candidates at M >= {args.min_m}")
        per_file[p] = rows
    everything = [r for rows in per_file.values() for r in rows]

    eff = {t: 0.8 for t in CANDIDATES}
    for item in filter(None, args.start.split(",")):
        t, v = item.split("=")
        eff[t] = float(v)
    grid = [x / 100 for x in range(20, 101)]
    current = loss(eff, everything)
    for _ in range(20):
        improved = False
        for t in CANDIDATES:
            for v in grid:
                trial = dict(eff, **{t: v})
                trial_loss = loss(trial, everything)
                if trial_loss < current - 1e-12:
                    eff, current, improved = trial, trial_loss, True
        if not improved:
            break

    print("efficiencies (kCandidates in gemm.cu):")
    for t in sorted(CANDIDATES, key=lambda t: -eff[t]):
        print(f"  {{GemmTile::{t}, {eff[t]:.2f}}}")
    for p, rows in per_file.items():
        ratios = []
        for shape, n, _, m, times in rows:
            fastest = min(times[t] for t in CANDIDATES if t in times)
            chosen = choose(eff, m, n, times)
            ratios.append((times[chosen] / fastest, shape, m, chosen))
        mean = math.exp(sum(math.log(r[0]) for r in ratios) / len(ratios))
        print(f"\n{p}: {len(ratios)} points, chosen / fastest: geometric mean {mean:.3f}, "
              f"worst {max(ratios)[0]:.3f}")
        for r, shape, m, chosen in sorted(ratios, reverse=True)[:8]:
            print(f"  {shape:<14} M={m:<6} {chosen:<13} {r:.3f}")


if __name__ == "__main__":
    main()
