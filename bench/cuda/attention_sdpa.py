#!/usr/bin/env python3
"""External baseline for bench/cuda/attention_bench.cu: torch SDPA (whatever backend torch picks
for bf16 on this GPU: flash or cuDNN) on dense, unpaged KV, Qwen3-8B heads (32 q / 8 kv, D 128).
Same points as the benchmark; inputs rotated over >= 256 MiB of copies so KV comes from device
memory; median of 15 timings of 20 back-to-back calls with CUDA events. Run on the GPU machine
by scripts/gpu-check; prints a table, never fails the check (a missing torch prints a note).
  --smollm2        SmolLM2-135M heads (9 q / 3 kv, D 64), as attention_bench --smollm2
  --prefill-sweep  only the prefill points of attention_bench --prefill-sweep (1 x 1k..16k, ...)"""
import sys

try:
    import torch
    import torch.nn.functional as F
except Exception as e:  # noqa: BLE001
    print(f"torch SDPA baseline skipped: {e}")
    sys.exit(0)

HQ, HKV, D = (9, 3, 64) if "--smollm2" in sys.argv else (32, 8, 128)
HEADS = "SmolLM2-135M" if "--smollm2" in sys.argv else "Qwen3-8B"


def timed(fn, copies):
    for i in range(3):
        fn(i % copies)
    torch.cuda.synchronize()
    ts = []
    for _ in range(15):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for i in range(20):
            fn(i % copies)
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) * 1e3 / 20)
    ts.sort()
    return ts[len(ts) // 2]


def point(label, b, q_len, kv):
    kv_bytes = b * kv * HKV * D * 4
    copies = max(1, min(16, (256 << 20) // max(kv_bytes, 1) + 1))
    g = torch.Generator(device="cuda").manual_seed(1)
    ks = [torch.rand(b, HKV, kv, D, device="cuda", dtype=torch.bfloat16, generator=g) * 2 - 1 for _ in range(copies)]
    vs = [torch.rand(b, HKV, kv, D, device="cuda", dtype=torch.bfloat16, generator=g) * 2 - 1 for _ in range(copies)]
    q = torch.rand(b, HQ, q_len, D, device="cuda", dtype=torch.bfloat16, generator=g) * 2 - 1
    causal = q_len > 1
    us = timed(lambda i: F.scaled_dot_product_attention(q, ks[i], vs[i], is_causal=causal, enable_gqa=True), copies)
    attended = q_len * (kv - q_len + 1) + q_len * (q_len - 1) / 2
    flops = 4.0 * D * HQ * attended * b
    by = kv_bytes + b * q_len * HQ * D * 4
    print(f"{label:<28} | {us:9.1f} {by / us * 1e-6:7.2f} {flops / us * 1e-6:7.1f}", flush=True)
    del ks, vs, q
    torch.cuda.empty_cache()


def main():
    quick = "--quick" in sys.argv
    print(f"torch {torch.__version__} SDPA on {torch.cuda.get_device_name()}, dense KV, {HEADS} heads "
          f"(Hq {HQ}, Hkv {HKV}, D {D})")
    print(f"{'point':<28} | {'us':>9} {'TB/s':>7} {'TFLOP/s':>7}")
    if "--prefill-sweep" in sys.argv:
        for b, n in [(1, 1024), (1, 2048), (1, 4096), (1, 8192), (1, 16384), (4, 4096), (16, 1024)]:
            try:
                point(f"prefill {b} x {n}", b, n, n)
            except Exception as e:  # noqa: BLE001
                print(f"prefill {b} x {n}: {type(e).__name__}: {e}")
        return
    batches = [1, 16, 128] if quick else [1, 4, 16, 64, 256]
    kvs = [1024, 8192] if quick else [512, 2048, 8192, 32768]
    for b in batches:
        for kv in kvs:
            if b * kv > (2 << 20):
                continue
            try:
                point(f"decode {b} x {kv}", b, 1, kv)
            except Exception as e:  # noqa: BLE001
                print(f"decode {b} x {kv}: {type(e).__name__}: {e}")
    pre = [(1, 2048), (1, 8192)] if quick else [(1, 512), (1, 2048), (1, 8192), (4, 4096), (16, 1024)]
    for b, n in pre:
        try:
            point(f"prefill {b} x {n}", b, n, n)
        except Exception as e:  # noqa: BLE001
            print(f"prefill {b} x {n}: {type(e).__name__}: {e}")


main()
