// Benchmark of y = x W^T on the GPU: the invariant path against cuBLAS in the same run.
//   M = rows of x (tokens), N = rows of W (output features), K = input features
// Each point: random bf16 data; the inputs are rotated over enough copies that every launch
// reads W from device memory, not L2 (>= 256 MiB per rotation); warm-up, then a CUDA graph
// of `launches` back-to-back calls is replayed `reps` times and timed with events, the
// variants' replays interleaved; the median replay over launches gives the time of one call.
// --gate-up times the gate/up projection with SiLU-and-multiply instead (run_gate_up): the fused
// epilogue against the same config's GEMM then silu_mul, and cuBLAS then silu_mul.
// --mma-sync-vs-wgmma measures no time: it counts the outputs where the portable config (mma.sync
// m16n8k16 chains over k) and a wgmma config (m64nNk16 chains over k) differ in any bit on the
// same inputs, to learn whether the two instructions round a k-chain alike (for kernels that
// would mix them, e.g. an attention whose decode and prefill paths use different ones).
// --profile-tile NAME times nothing against a baseline: it launches that one config 5 times per
// shape and M, plainly (no graph), for a profiler (e.g. ncu -k regex:device_kernel
// --launch-skip 2 --launch-count 1) to catch one launch of exactly that config.
// x and y hold rows up to the next multiple of 256 (GemmProblem::row_capacity), as the CUDA
// runner's buffers do, so that the invariant configs compute whole x tiles; --no-padding gives
// them exactly M rows (a short last x tile is then loaded with TMA's zero fill).
// Usage: gemm_bench [--all-tiles | --gate-up | --mma-sync-vs-wgmma | --profile-tile NAME]
//                   [--smollm2 | --llama3] [--no-padding] [--reps N] [--m 1,2,4,...]
//                   [--only shape,shape,...]
#include <cuda_runtime.h>

#include <algorithm>
#include <functional>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cuda/gemm.h"

#include "bench_util.cuh"
#include "graph_timing.cuh"

using invar::Status;
using namespace invar::kernels::cuda;
using invar::kernels::KernelMode;

namespace {

struct Shape {
  const char* name;
  int64_t n, k;
};

struct Variant {
  std::string name;
  bool cublas;
  bool forced;
  GemmTile tile;
};

// Copies of random x [M, K] and W [N, K], enough (>= 256 MiB in all) that every call of a
// rotation reads W from device memory, not L2.
struct RotatedInputs {
  std::vector<void*> x, w;
  // x holds `rows` rows (at least m; the rows past m are random too): GemmProblem::row_capacity.
  RotatedInputs(int64_t m, int64_t n, int64_t k, cudaStream_t stream, int64_t rows = 0) {
    m = std::max(m, rows);
    const size_t x_bytes = size_t(m) * k * 2, w_bytes = size_t(n) * k * 2;
    const int copies = int(std::max<size_t>(
        1, std::min<size_t>(2048, (size_t(256) << 20) / (x_bytes + w_bytes) + 1)));
    for (int c = 0; c < copies; ++c) {
      x.push_back(nullptr);
      w.push_back(nullptr);
      CHECK_CUDA(cudaMalloc(&x.back(), x_bytes));
      CHECK_CUDA(cudaMalloc(&w.back(), w_bytes));
      fill_random_bf16<<<1024, 256, 0, stream>>>(static_cast<uint16_t*>(x.back()), m * k, 2 * c + 1);
      fill_random_bf16<<<1024, 256, 0, stream>>>(static_cast<uint16_t*>(w.back()), n * k, 2 * c + 2);
    }
    CHECK_CUDA(cudaStreamSynchronize(stream));
  }
  ~RotatedInputs() {
    for (void* p : x) CHECK_CUDA(cudaFree(p));
    for (void* p : w) CHECK_CUDA(cudaFree(p));
  }
  int copies() const { return int(x.size()); }
};

// FLOP and bytes moved of one M x N x K GEMM with bf16 operands and output.
struct GemmCost {
  double flop, bytes;
  GemmCost(int64_t m, int64_t n, int64_t k)
      : flop(2.0 * double(m) * double(n) * double(k)),
        bytes(2.0 * (double(m) * k + double(n) * k + double(m) * n)) {}
  // Enough launches per graph that one replay runs for about a millisecond or more.
  int launches(int copies) const {
    return std::max(copies, std::min(200, int(2e-3 / std::max(flop / 6e14, bytes / 3e12)) + 1));
  }
};

// --gate-up: h = silu(x Wg^T) * (x Wu^T) for M rows, three ways in the same run.
void bench_gate_up(CudaGemm& gemm, bool smol, const std::vector<int64_t>& ms, int reps,
                   cudaStream_t stream) {
  const int64_t inter = smol ? 1536 : 12288, k = smol ? 576 : 4096, n = 2 * inter;
  std::printf("gate/up + SiLU-mul, I=%lld K=%lld (one GEMM of N=%lld); fused = the config's "
              "SiLU-mul epilogue where it has one; unfused = the same config, then silu_mul; "
              "cublas = cuBLAS, then silu_mul\n",
              (long long)inter, (long long)k, (long long)n);
  std::printf("%6s %-12s %5s | %9s %7s | %9s | %9s | %8s %8s\n", "M", "tile", "fused", "fused us",
              "TFLOP/s", "unfused", "cublas", "unf/fus", "cub/fus");
  for (int64_t m : ms) {
    const RotatedInputs in(m, n, k, stream);
    void *h = nullptr, *scratch = nullptr;
    CHECK_CUDA(cudaMalloc(&h, size_t(m) * inter * 2));
    CHECK_CUDA(cudaMalloc(&scratch, size_t(m) * n * 2));
    std::vector<GateUpProblem> probs;
    for (int c = 0; c < in.copies(); ++c)
      probs.push_back(GateUpProblem{.x = in.x[c],
                                    .ldx = k,
                                    .w = in.w[c],
                                    .ldw = k,
                                    .h = h,
                                    .ldh = inter,
                                    .scratch = scratch,
                                    .m = m,
                                    .inter = inter,
                                    .k = k});
    const GemmTile tile = CudaGemm::choose_tile(m, n, k);
    const Enqueue calls[] = {
        [&](size_t i) { return gemm.run_gate_up(probs[i], KernelMode::invariant, stream); },
        [&](size_t i) { return gemm.run_gate_up_tile(probs[i], tile, false, stream); },
        [&](size_t i) { return gemm.run_gate_up(probs[i], KernelMode::fast, stream); }};
    const char* names[] = {"fused", "unfused", "cublas"};
    const GemmCost cost(m, n, k);
    const int launches = cost.launches(in.copies());
    std::vector<Timed> timed(3);
    for (size_t i = 0; i < 3; ++i) capture_variant(calls[i], names[i], probs.size(), launches, stream, timed[i]);
    const std::vector<double> t = time_variants(timed, launches, reps, stream);
    std::printf("%6lld %-12s %5s | %9.2f %7.1f | %9.2f | %9.2f | %8.2f %8.2f\n", (long long)m,
                std::string(gemm_tile_name(tile)).c_str(), CudaGemm::fuses_gate_up(tile) ? "yes" : "no",
                t[0], cost.flop / t[0] * 1e-6, t[1], t[2], t[1] / t[0], t[2] / t[0]);
    std::fflush(stdout);
    CHECK_CUDA(cudaFree(h));
    CHECK_CUDA(cudaFree(scratch));
  }
}

}  // namespace

// Outputs of the portable (mma.sync) config and of two wgmma configs on the same random inputs:
// how many differ in any bit.
void compare_mma_sync_with_wgmma(CudaGemm& gemm, const std::vector<Shape>& shapes, int64_t m,
                                 cudaStream_t stream) {
  std::printf("shape        N      K      M | outputs   mma.sync != m128n128   m128n128 != m64n64_swap\n");
  for (const Shape& s : shapes) {
    const RotatedInputs in(m, s.n, s.k, stream);
    const size_t count = size_t(m) * s.n;
    void* y[3];
    for (void*& p : y) CHECK_CUDA(cudaMalloc(&p, count * 2));
    std::vector<uint16_t> host[3];
    for (int v = 0; v < 3; ++v) {
      const GemmProblem p{.x = in.x[0], .ldx = s.k, .w = in.w[0], .ldw = s.k, .y = y[v],
                          .ldy = s.n, .m = m, .n = s.n, .k = s.k};
      check(v == 0   ? gemm.run_portable(p, stream)
            : v == 1 ? gemm.run_tile(p, GemmTile::m128n128, stream)
                     : gemm.run_tile(p, GemmTile::m64n64_swap, stream),
            "compare");
      host[v].resize(count);
      CHECK_CUDA(cudaMemcpyAsync(host[v].data(), y[v], count * 2, cudaMemcpyDeviceToHost, stream));
    }
    CHECK_CUDA(cudaStreamSynchronize(stream));
    size_t sync_vs_wgmma = 0, wgmma_vs_wgmma = 0;
    for (size_t i = 0; i < count; ++i) {
      sync_vs_wgmma += host[0][i] != host[1][i];
      wgmma_vs_wgmma += host[1][i] != host[2][i];
    }
    std::printf("%-10s %6lld %6lld %6lld | %7zu   %18zu   %22zu\n", s.name, (long long)s.n,
                (long long)s.k, (long long)m, count, sync_vs_wgmma, wgmma_vs_wgmma);
    for (void* p : y) CHECK_CUDA(cudaFree(p));
  }
}

// The operands of one shape at M: rotated inputs, one y, and a problem per input copy. padded:
// x and y hold rows_for_whole_tiles(M) rows (GemmProblem::row_capacity), as the runner's do.
struct ShapeOperands {
  int64_t rows;
  RotatedInputs in;
  void* y = nullptr;
  std::vector<GemmProblem> problems;
  ShapeOperands(const Shape& s, int64_t m, bool padded, cudaStream_t stream)
      : rows(padded ? rows_for_whole_tiles(m) : m), in(m, s.n, s.k, stream, rows) {
    CHECK_CUDA(cudaMalloc(&y, size_t(rows) * s.n * 2));
    for (int c = 0; c < in.copies(); ++c)
      problems.push_back(GemmProblem{.x = in.x[c],
                                     .ldx = s.k,
                                     .w = in.w[c],
                                     .ldw = s.k,
                                     .y = y,
                                     .ldy = s.n,
                                     .m = m,
                                     .n = s.n,
                                     .k = s.k,
                                     .row_capacity = rows});
  }
  ~ShapeOperands() { CHECK_CUDA(cudaFree(y)); }
  ShapeOperands(const ShapeOperands&) = delete;
  ShapeOperands& operator=(const ShapeOperands&) = delete;
};

// Five plain launches of one config per shape and M, for a profiler; prints the last one's time.
void launch_for_profiler(CudaGemm& gemm, GemmTile tile, const std::vector<Shape>& shapes,
                         const std::vector<int64_t>& ms, bool padded, cudaStream_t stream) {
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  for (const Shape& s : shapes) {
    for (int64_t m : ms) {
      const ShapeOperands ops(s, m, padded, stream);
      const GemmProblem& p = ops.problems[0];
      float ms_last = 0;
      for (int i = 0; i < 5; ++i) {
        CHECK_CUDA(cudaEventRecord(a, stream));
        check(gemm.run_tile(p, tile, stream), "run_tile");
        CHECK_CUDA(cudaEventRecord(b, stream));
        CHECK_CUDA(cudaEventSynchronize(b));
        CHECK_CUDA(cudaEventElapsedTime(&ms_last, a, b));
      }
      std::printf("%-10s N %lld K %lld M %lld %s: %.2f us (one plain launch)\n", s.name,
                  (long long)s.n, (long long)s.k, (long long)m,
                  std::string(gemm_tile_name(tile)).c_str(), double(ms_last) * 1e3);
    }
  }
  CHECK_CUDA(cudaEventDestroy(a));
  CHECK_CUDA(cudaEventDestroy(b));
}

static std::vector<std::string> split_names(const char* list) {
  std::vector<std::string> out;
  std::string cur;
  for (const char* p = list;; ++p) {
    if (*p == ',' || *p == 0) {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
      if (*p == 0) break;
    } else {
      cur += *p;
    }
  }
  return out;
}

int main(int argc, char** argv) {
  bool all_tiles = false, smol = false, llama3 = false, gate_up = false, mma_compare = false,
       padded = true;
  std::vector<std::string> only;
  std::string profile_tile;
  int reps = 20;
  std::vector<int64_t> ms = {1,  2,   4,   8,   16,  24,   32,   48,   64,   96,   128,
                            192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 8192};
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--all-tiles")) all_tiles = true;
    else if (!std::strcmp(argv[i], "--gate-up")) gate_up = true;
    else if (!std::strcmp(argv[i], "--no-padding"))
      padded = false;
    else if (!std::strcmp(argv[i], "--mma-sync-vs-wgmma")) mma_compare = true;
    else if (!std::strcmp(argv[i], "--smollm2")) smol = true;
    else if (!std::strcmp(argv[i], "--llama3")) llama3 = true;
    else if (!std::strcmp(argv[i], "--only") && i + 1 < argc) only = split_names(argv[++i]);
    else if (!std::strcmp(argv[i], "--profile-tile") && i + 1 < argc) profile_tile = argv[++i];
    else if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--m") && i + 1 < argc) ms = parse_list(argv[++i]);
    else {
      std::fprintf(stderr,
                   "usage: gemm_bench [--all-tiles | --gate-up | --mma-sync-vs-wgmma | "
                   "--profile-tile NAME] [--smollm2 | --llama3] [--no-padding] [--reps N] "
                   "[--m 1,2,...] [--only shape,...]\n");
      return 2;
    }
  }
  std::vector<Shape> shapes = {{"qkv", 6144, 4096},
                               {"o_proj", 4096, 4096},
                               {"gate_up", 24576, 4096},
                               {"down_proj", 4096, 12288},
                               {"lm_head", 151936, 4096}};
  if (smol) {
    shapes = {{"smol q/o", 576, 576},      {"smol kv", 192, 576},  {"smol gate/up", 1536, 576},
              {"smol down", 576, 1536},    {"smol lm_head", 49152, 576}};
  }
  // Llama-3-8B: qkv and o_proj are Qwen3-8B's; these three differ.
  if (llama3) {
    shapes = {{"l3 gate_up", 28672, 4096}, {"l3 down", 4096, 14336}, {"l3 lm_head", 128256, 4096}};
  }
  if (!only.empty()) {
    shapes.erase(std::remove_if(shapes.begin(), shapes.end(),
                                [&](const Shape& s) {
                                  return std::find(only.begin(), only.end(),
                                                   std::string(s.name)) == only.end();
                                }),
                 shapes.end());
  }

  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  auto created = CudaGemm::create(0);
  check(created.status(), "CudaGemm::create");
  CudaGemm& gemm = **created;
  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

  if (mma_compare) {
    std::printf("device: %s (%d SMs)\n", prop.name, prop.multiProcessorCount);
    compare_mma_sync_with_wgmma(gemm, shapes, 300, stream);
    CHECK_CUDA(cudaStreamDestroy(stream));
    return 0;
  }
  if (!profile_tile.empty()) {
    const auto* tile = std::find_if(kAllGemmTiles.begin(), kAllGemmTiles.end(),
                                    [&](GemmTile t) { return gemm_tile_name(t) == profile_tile; });
    if (tile == kAllGemmTiles.end()) {
      std::fprintf(stderr, "gemm_bench: no tile config named %s\n", profile_tile.c_str());
      return 2;
    }
    launch_for_profiler(gemm, *tile, shapes, ms, padded, stream);
    CHECK_CUDA(cudaStreamDestroy(stream));
    return 0;
  }
  if (gate_up) {
    std::printf("device: %s (%d SMs)\n", prop.name, prop.multiProcessorCount);
    bench_gate_up(gemm, smol, ms, reps, stream);
    CHECK_CUDA(cudaStreamDestroy(stream));
    return 0;
  }

  std::vector<Variant> variants = {{"invariant", false, false, GemmTile::m64n32},
                                   {"cublas", true, false, GemmTile::m64n32}};
  if (all_tiles) {
    for (GemmTile t : kAllGemmTiles) variants.push_back({std::string(gemm_tile_name(t)), false, true, t});
  }

  std::printf(
      "device: %s (%d SMs, L2 %d MiB)%s\n", prop.name, prop.multiProcessorCount,
      prop.l2CacheSize >> 20,
      padded ? "; x and y hold whole 256-row tiles, as in the runner" : "; x and y hold M rows");
  std::printf("time: median of %d graph replays; TFLOP/s = 2MNK/t; TB/s = (MK + NK + MN) * 2 B / t;\n"
              "ratio = t(cublas) / t(invariant), >= 0.8 is the bar (> 1: invariant faster)\n\n",
              reps);
  std::printf("%-10s %6s %6s %6s %-11s | %9s %7s %6s | %9s %7s %6s | %5s", "shape", "N", "K",
              "M", "tile", "inv us", "TFLOP/s", "TB/s", "cublas us", "TFLOP/s", "TB/s", "ratio");
  if (all_tiles) {
    for (GemmTile t : kAllGemmTiles) std::printf(" | %11s", std::string(gemm_tile_name(t)).c_str());
  }
  std::printf("\n");
  std::fflush(stdout);

  for (const Shape& s : shapes) {
    for (int64_t m : ms) {
      const ShapeOperands ops(s, m, padded, stream);
      const std::vector<GemmProblem>& probs = ops.problems;
      const RotatedInputs& in = ops.in;
      const GemmCost cost(m, s.n, s.k);
      const double flop = cost.flop, bytes = cost.bytes;
      const int launches = cost.launches(in.copies());
      std::vector<Timed> timed(variants.size());
      for (size_t i = 0; i < variants.size(); ++i) {
        const Variant& v = variants[i];
        const Enqueue call = [&](size_t j) {
          return v.cublas   ? gemm.run(probs[j], KernelMode::fast, stream)
                 : v.forced ? gemm.run_tile(probs[j], v.tile, stream)
                            : gemm.run(probs[j], KernelMode::invariant, stream);
        };
        capture_variant(call, v.name.c_str(), probs.size(), launches, stream, timed[i]);
      }
      const std::vector<double> t = time_variants(timed, launches, reps, stream);
      std::printf("%-10s %6lld %6lld %6lld %-11s | %9.2f %7.1f %6.2f | %9.2f %7.1f %6.2f | %5.2f",
                  s.name, (long long)s.n, (long long)s.k, (long long)m,
                  std::string(gemm_tile_name(CudaGemm::choose_tile(m, s.n, s.k, padded))).c_str(),
                  t[0], flop / t[0] * 1e-6, bytes / t[0] * 1e-6, t[1], flop / t[1] * 1e-6,
                  bytes / t[1] * 1e-6, t[1] / t[0]);
      for (size_t i = 2; i < t.size(); ++i) std::printf(" | %11.2f", t[i]);
      std::printf("\n");
      std::fflush(stdout);
    }
  }
  CHECK_CUDA(cudaStreamDestroy(stream));
  return 0;
}
