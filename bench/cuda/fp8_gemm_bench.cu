// Benchmark of the FP8 GEMM (kernels/cuda/fp8_gemm.h) on Qwen3-8B's dense shapes, four ways in
// the same run on the same random inputs:
//   fp8 inv   - the invariant FP8 GEMM (choose_tile's config);
//   fp8 lt    - cuBLASLt's block-scaled FP8 GEMM (fast mode): the FP8 baseline;
//   bf16 inv  - the invariant bf16 GEMM (CudaGemm), what an FP8 checkpoint ran on before;
//   bf16 cublas - cuBLAS bf16.
// The activations are quantized once per input copy, outside the timing (both FP8 variants read
// the same codes); `quant us` times quantize_fp8_rows alone. Inputs rotate over enough copies
// (>= 256 MiB of weights) that W comes from device memory; each variant is a CUDA graph of
// back-to-back calls, the variants' replays interleaved (graph_timing.cuh).
//   M = rows of x, N = rows of W, K = input features
// --all-tiles times every invariant tile config against cuBLASLt instead (for choose_tile).
// Usage: fp8_gemm_bench [--all-tiles] [--reps N] [--m 1,2,4,...]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bench_util.cuh"
#include "graph_timing.cuh"
#include "kernels/cuda/fp8_gemm.h"
#include "kernels/cuda/gemm.h"

using namespace invar::kernels::cuda;
using invar::kernels::KernelMode;

namespace {

struct Shape {
  const char* name;
  int64_t n, k;
};

// Qwen3-8B's dense layers (its FP8 checkpoint keeps lm_head in bf16).
constexpr Shape kShapes[] = {{"qkv", 6144, 4096},
                             {"o_proj", 4096, 4096},
                             {"gate_up", 24576, 4096},
                             {"down_proj", 4096, 12288}};

// Random bytes as E4M3 codes: any byte but the two NaN codes (0x7f, 0xff).
__global__ void fill_random_e4m3(uint8_t* p, int64_t count, uint64_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x) {
    p[i] = uint8_t(random_bits(seed, i) >> 56) & 0xf7;  // clears bit 3: never 0x7f / 0xff
  }
}

__global__ void fill_value(float* p, int64_t count, float v) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x)
    p[i] = v;
}

void* device_alloc(size_t bytes) {
  void* p = nullptr;
  CHECK_CUDA(cudaMalloc(&p, bytes));
  return p;
}

// One copy of every operand: bf16 x and W, and their FP8 forms.
struct Operands {
  void *x, *w, *x8, *xs, *w8, *ws, *ws_lt;
};

}  // namespace

int main(int argc, char** argv) {
  int reps = 20;
  bool all_tiles = false;
  std::vector<int64_t> ms = {1, 4, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192};
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--all-tiles"))
      all_tiles = true;
    else if (!std::strcmp(argv[i], "--reps") && i + 1 < argc)
      reps = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--m") && i + 1 < argc)
      ms = parse_list(argv[++i]);
    else {
      std::fprintf(stderr, "usage: fp8_gemm_bench [--all-tiles] [--reps N] [--m 1,2,...]\n");
      return 2;
    }
  }
  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  auto fp8 = CudaFp8Gemm::create(0);
  check(fp8.status(), "CudaFp8Gemm::create");
  auto bf16 = CudaGemm::create(0);
  check(bf16.status(), "CudaGemm::create");
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf(
      "fp8_gemm_bench on %s: times per call in us (median of %d replays); ratios > 1 "
      "mean fp8 inv is faster\n",
      prop.name, reps);
  if (all_tiles) {
    std::printf("%-9s %6s | %8s | each config: us (lt/config)\n", "shape", "M", "fp8 lt");
  } else {
    std::printf("%-9s %6s %-13s | %8s %7s | %8s %8s %8s | %7s %7s %7s | %8s\n", "shape", "M",
                "tile", "fp8 inv", "TFLOP/s", "fp8 lt", "bf16 inv", "cublas", "lt/inv", "b16/inv",
                "cub/inv", "quant us");
  }
  for (const Shape& s : kShapes) {
    for (int64_t m : ms) {
      const int64_t mp = fp8_scale_stride(m), kb = s.k / kFp8Block, nb = s.n / kFp8Block;
      const size_t w_bytes = size_t(s.n) * s.k;
      const int copies = int(std::max<size_t>(1, (size_t(256) << 20) / w_bytes + 1));
      void* y = device_alloc(size_t(mp) * s.n * 2);
      std::vector<Operands> ops(static_cast<size_t>(copies));
      for (int c = 0; c < copies; ++c) {
        Operands& o = ops[size_t(c)];
        o.x = device_alloc(size_t(m) * s.k * 2);
        o.w = device_alloc(w_bytes * 2);
        o.x8 = device_alloc(size_t(mp) * s.k);
        o.xs = device_alloc(size_t(kb * mp) * 4);
        o.w8 = device_alloc(w_bytes);
        o.ws = device_alloc(size_t(kb * nb) * 4);
        o.ws_lt = device_alloc(size_t(nb * fp8_lt_scale_cols(kb)) * 4);
        auto* x16 = static_cast<uint16_t*>(o.x);
        auto* w16 = static_cast<uint16_t*>(o.w);
        fill_random_bf16<<<1024, 256, 0, stream>>>(x16, m * s.k, 4 * c + 1);
        fill_random_bf16<<<1024, 256, 0, stream>>>(w16, s.n * s.k, 4 * c + 2);
        fill_random_e4m3<<<1024, 256, 0, stream>>>(static_cast<uint8_t*>(o.w8), s.n * s.k,
                                                   4 * c + 3);
        fill_value<<<64, 256, 0, stream>>>(static_cast<float*>(o.ws), kb * nb, 1.0f / 4096);
        fill_value<<<64, 256, 0, stream>>>(static_cast<float*>(o.ws_lt), nb * fp8_lt_scale_cols(kb),
                                           1.0f / 4096);
        check(quantize_fp8_rows(static_cast<const __nv_bfloat16*>(o.x), s.k, m, s.k,
                                static_cast<uint8_t*>(o.x8), static_cast<float*>(o.xs), stream),
              "quantize");
      }
      CHECK_CUDA(cudaStreamSynchronize(stream));
      auto fp8_problem = [&](size_t i) {
        const Operands& o = ops[i];
        return Fp8GemmProblem{.x = static_cast<const uint8_t*>(o.x8),
                              .ldx = s.k,
                              .x_scales = static_cast<const float*>(o.xs),
                              .w = Fp8Weight{.codes = static_cast<const uint8_t*>(o.w8),
                                             .ldw = s.k,
                                             .scales = static_cast<const float*>(o.ws),
                                             .scales_lt = static_cast<const float*>(o.ws_lt),
                                             .n = s.n,
                                             .k = s.k},
                              .y = y,
                              .ldy = s.n,
                              .m = m};
      };
      auto bf16_problem = [&](size_t i) {
        return GemmProblem{.x = ops[i].x,
                           .ldx = s.k,
                           .w = ops[i].w,
                           .ldw = s.k,
                           .y = y,
                           .ldy = s.n,
                           .m = m,
                           .n = s.n,
                           .k = s.k};
      };
      const double flop = 2.0 * double(m) * double(s.n) * double(s.k);
      const int launches = std::max(copies, std::min(200, int(2e-3 / (flop / 1.2e15)) + 1));
      if (all_tiles) {
        std::vector<Enqueue> calls = {
            [&](size_t i) { return (*fp8)->run(fp8_problem(i), KernelMode::fast, stream); }};
        for (int t = 0; t < kFp8GemmTileCount; ++t)
          calls.push_back([&, t](size_t i) {
            return (*fp8)->run_tile(fp8_problem(i), Fp8GemmTile(t), stream);
          });
        std::vector<Timed> timed(calls.size());
        for (size_t v = 0; v < timed.size(); ++v)
          capture_variant(calls[v], "variant", ops.size(), launches, stream, timed[v]);
        const std::vector<double> t = time_variants(timed, launches, reps, stream);
        std::printf("%-9s %6lld | %8.2f |", s.name, static_cast<long long>(m), t[0]);
        for (int c = 0; c < kFp8GemmTileCount; ++c)
          std::printf(" %s %.2f (%.2f)", std::string(fp8_gemm_tile_name(Fp8GemmTile(c))).c_str(),
                      t[size_t(c) + 1], t[0] / t[size_t(c) + 1]);
        std::printf("\n");
        std::fflush(stdout);
      } else {
        const Enqueue calls[] = {
            [&](size_t i) { return (*fp8)->run(fp8_problem(i), KernelMode::invariant, stream); },
            [&](size_t i) { return (*fp8)->run(fp8_problem(i), KernelMode::fast, stream); },
            [&](size_t i) { return (*bf16)->run(bf16_problem(i), KernelMode::invariant, stream); },
            [&](size_t i) { return (*bf16)->run(bf16_problem(i), KernelMode::fast, stream); },
            [&](size_t i) {
              const Operands& o = ops[i];
              return quantize_fp8_rows(static_cast<const __nv_bfloat16*>(o.x), s.k, m, s.k,
                                       static_cast<uint8_t*>(o.x8), static_cast<float*>(o.xs),
                                       stream);
            }};
        const char* names[] = {"fp8 inv", "fp8 lt", "bf16 inv", "bf16 cublas", "quantize"};
        std::vector<Timed> timed(std::size(calls));
        for (size_t v = 0; v < timed.size(); ++v)
          capture_variant(calls[v], names[v], ops.size(), launches, stream, timed[v]);
        const std::vector<double> t = time_variants(timed, launches, reps, stream);
        std::printf(
            "%-9s %6lld %-13s | %8.2f %7.1f | %8.2f %8.2f %8.2f | %7.2f %7.2f %7.2f |"
            " %8.2f%s\n",
            s.name, static_cast<long long>(m),
            std::string(fp8_gemm_tile_name(CudaFp8Gemm::choose_tile(m, s.n))).c_str(), t[0],
            flop / t[0] * 1e-6, t[1], t[2], t[3], t[1] / t[0], t[2] / t[0], t[3] / t[0], t[4],
            (*fp8)->fast_is_cublaslt() ? ""
                                       : "  (fp8 lt: no cuBLASLt algorithm, the invariant kernel)");
        std::fflush(stdout);
      }
      for (Operands& o : ops)
        for (void* p : {o.x, o.w, o.x8, o.xs, o.w8, o.ws, o.ws_lt}) CHECK_CUDA(cudaFree(p));
      CHECK_CUDA(cudaFree(y));
    }
  }
  CHECK_CUDA(cudaStreamDestroy(stream));
  return 0;
}
