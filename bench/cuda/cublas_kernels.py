#!/usr/bin/env python3
"""Names the kernel cuBLAS runs for y = x W^T (bf16, f32 accumulate) at each shape.

The names say the CTA tile, cluster and whether K is split (e.g. "splitK", "stream-K"), which
tells the invariant GEMM's tuning what cuBLAS does where it is faster (gemm-notes.md). Runs on
the GPU machine through PyTorch's torch.mm, which calls cublasGemmEx with W transposed, as
CudaGemm's fast mode does.
  python3 bench/cuda/cublas_kernels.py [--m 96,192,...] [--shapes qwen3|smollm2]
"""
import argparse

import torch
from torch.profiler import ProfilerActivity, profile

SHAPES = {
    "qwen3": [("qkv", 6144, 4096), ("o_proj", 4096, 4096), ("gate_up", 24576, 4096),
              ("down_proj", 4096, 12288)],
    "smollm2": [("qkv", 960, 576), ("o_proj", 576, 576), ("gate_up", 3072, 576),
                ("down_proj", 576, 1536)],
}


def kernels_of(x, w):
    torch.mm(x, w.t())  # warm: the first call may pick or load differently
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        torch.mm(x, w.t())
        torch.cuda.synchronize()
    return [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", default="1,16,64,96,128,192,256,384,512,768,1024,2048")
    ap.add_argument("--shapes", default="qwen3", choices=sorted(SHAPES))
    args = ap.parse_args()
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"cuBLAS {torch.backends.cuda.preferred_blas_library()}")
    for name, n, k in SHAPES[args.shapes]:
        w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
        for m in (int(v) for v in args.m.split(",")):
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            print(f"{name:10s} N={n:6d} K={k:6d} M={m:5d}  " + " | ".join(kernels_of(x, w)))


if __name__ == "__main__":
    main()
