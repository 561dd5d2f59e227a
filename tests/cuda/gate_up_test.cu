// GPU tests of CudaGemm::run_gate_up (kernels/cuda/gemm.h): the gate/up projection with
// SiLU-and-multiply, fused into the GEMM's epilogue for the configs chosen past decode.
//   M = rows of x (tokens), I = intermediate size, K = input features; W [2I, K] paired
// 1. Correctness: h against silu(gate) * up in f64 from the bf16 gate and up the GEMM writes
//    (gemm_test checks those against f64 GEMMs), every tile config fused and unfused, both
//    modes, awkward sizes, padded h whose padding must survive.
// 2. Fused = unfused, bit for bit, for every config (the choice between them follows M, so this
//    is R2 for the fused epilogue), on the Qwen3-8B and SmolLM2 shapes.
// 3. Batch invariance (R1): rows of h from a batch of M rows equal the same rows of one
//    16384-row product, for M = 1..512 and a spread up to 16384.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "gemm_test_util.cuh"
#include "kernels/cuda/gemm.h"

namespace invar::kernels::cuda {
namespace {

struct GateUpShape {
  const char* name;
  int64_t inter, k;
};
constexpr GateUpShape kQwen3GateUp{"qwen3-8b gate/up", 12288, 4096};
constexpr GateUpShape kSmolGateUp{"smollm2 gate/up", 1536, 576};

// Buffers of one gate/up problem of m rows: x, the paired W, h (row stride ldh) and scratch.
struct GateUpBuffers {
  DeviceBuffer x, w, h, scratch;
  GateUpProblem problem;
  GateUpBuffers(int64_t m, int64_t inter, int64_t k, int64_t ldh)
      : x(device_buffer(size_t(m) * k * 2)),
        w(device_buffer(size_t(2 * inter) * k * 2)),
        h(device_buffer(size_t(m) * ldh * 2)),
        scratch(device_buffer(size_t(m) * 2 * inter * 2)),
        problem{.x = x.as(),
                .ldx = k,
                .w = w.as(),
                .ldw = k,
                .h = h.as(),
                .ldh = ldh,
                .scratch = scratch.as(),
                .m = m,
                .inter = inter,
                .k = k} {}
  bool ok() const { return x.as() && w.as() && h.as() && scratch.as(); }
};

class GateUpCuda : public GemmCuda {};

double silu(double g) { return g / (1.0 + std::exp(-g)); }

// ---------------------------------------------------------------------------------------
// 1. Correctness (an f64 reference from the GEMM's bf16 outputs: an f64 reference GEMM would
// need a tolerance for f32 accumulation near gate or up = 0 loose enough to hide little)

struct Case {
  int64_t m, inter, k, ldh_pad;
};
// Row residues against every tile height, 2I not a multiple of any tile width, K not a
// multiple of the K tile, padded h.
constexpr Case kCases[] = {{1, 8, 8, 0},      {7, 136, 72, 8},   {65, 264, 776, 0},
                           {129, 1544, 1032, 16}, {300, 1536, 576, 0}, {769, 520, 4104, 8}};

enum class Path { tile_fused, tile_unfused, invariant, fast };

void check_case(CudaGemm& gemm, const Case& c, Path path, GemmTile tile) {
  const int64_t ldh = c.inter + c.ldh_pad, n = 2 * c.inter;
  GateUpBuffers b(c.m, c.inter, c.k, ldh);
  ASSERT_TRUE(b.ok());
  static uint64_t seed = 101;
  fill_random_bf16(b.x.as(), c.m * c.k, seed++);
  fill_random_bf16(b.w.as(), n * c.k, seed++);
  constexpr uint16_t kPoison = 0x7fc1;  // a NaN: an unwritten output fails the check
  fill_u16_kernel<<<1024, 256>>>(b.h.as<uint16_t>(), c.m * ldh, kPoison);
  CUDA_OK(cudaGetLastError());
  // The unfused paths leave the gate/up GEMM output in scratch; for the others the plain GEMM
  // (same config) writes it. gemm_test checks those bf16 values against f64.
  const GemmProblem gemm_only{.x = b.problem.x,
                              .ldx = c.k,
                              .w = b.problem.w,
                              .ldw = c.k,
                              .y = b.problem.scratch,
                              .ldy = n,
                              .m = c.m,
                              .n = n,
                              .k = c.k};
  switch (path) {
    case Path::tile_fused:
      STATUS_OK(gemm.run_gate_up_tile(b.problem, tile, true, nullptr));
      STATUS_OK(gemm.run_tile(gemm_only, tile, nullptr));
      break;
    case Path::tile_unfused:
      STATUS_OK(gemm.run_gate_up_tile(b.problem, tile, false, nullptr));
      break;
    case Path::invariant:
      STATUS_OK(gemm.run_gate_up(b.problem, KernelMode::invariant, nullptr));
      STATUS_OK(gemm.run(gemm_only, KernelMode::invariant, nullptr));
      break;
    case Path::fast:
      STATUS_OK(gemm.run_gate_up(b.problem, KernelMode::fast, nullptr));
      break;
  }
  CUDA_OK(cudaDeviceSynchronize());

  std::vector<uint16_t> hh(size_t(c.m) * ldh), gu(size_t(c.m) * n);
  CUDA_OK(cudaMemcpy(hh.data(), b.h.as(), hh.size() * 2, cudaMemcpyDeviceToHost));
  CUDA_OK(cudaMemcpy(gu.data(), b.scratch.as(), gu.size() * 2, cudaMemcpyDeviceToHost));
  int64_t bad = 0, pad_touched = 0;
  for (int64_t r = 0; r < c.m; ++r) {
    for (int64_t i = 0; i < ldh; ++i) {
      const uint16_t v = hh[size_t(r * ldh + i)];
      if (i >= c.inter) {
        pad_touched += v != kPoison;
        continue;
      }
      const int64_t g_row = paired_gate_row(i);
      const double g = bf16_value(gu[size_t(r * n + g_row)]);
      const double u = bf16_value(gu[size_t(r * n + g_row + kGateUpBlock)]);
      const double want = silu(g) * u;
      // From the bf16 gate and up: f32 silu and product (a few 2^-24), then one bf16 rounding
      // (unit roundoff 2^-8). A wrong pairing or an unwritten element misses by far more.
      if (!(std::fabs(double(bf16_value(v)) - want) <=
            std::ldexp(std::fabs(want), -8) * 1.01 + 1e-30))
        ++bad;
    }
  }
  const std::string what = std::string(path == Path::fast        ? "fast"
                                       : path == Path::invariant ? "invariant"
                                       : path == Path::tile_fused ? "fused "
                                                                  : "unfused ") +
                           (path == Path::tile_fused || path == Path::tile_unfused ? std::string(gemm_tile_name(tile)) : "") +
                           " M=" + std::to_string(c.m) + " I=" + std::to_string(c.inter) +
                           " K=" + std::to_string(c.k);
  EXPECT_EQ(bad, 0) << what << ": elements outside tolerance (or unwritten)";
  EXPECT_EQ(pad_touched, 0) << what << ": wrote past I into the padding of h";
}

TEST_F(GateUpCuda, MatchesF64SiluMulOfTheGemmOutputEveryTileFusedAndNot) {
  for (const Case& c : kCases) {
    for (GemmTile t : kAllGemmTiles) {
      check_case(*gemm_, c, Path::tile_unfused, t);
      if (CudaGemm::fuses_gate_up(t)) check_case(*gemm_, c, Path::tile_fused, t);
    }
    check_case(*gemm_, c, Path::invariant, kAllGemmTiles[0]);
    check_case(*gemm_, c, Path::fast, kAllGemmTiles[0]);
  }
}

TEST_F(GateUpCuda, RejectsAnIntermediateSizeOffTheBlock) {
  GateUpBuffers b(4, 12, 64, 16);  // I = 12 is not a multiple of 8
  ASSERT_TRUE(b.ok());
  const Status s = gemm_->run_gate_up(b.problem, KernelMode::invariant, nullptr);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("multiple of 8"), std::string::npos) << s.message();
}

// ---------------------------------------------------------------------------------------
// 2. Fused = unfused, every config

TEST_F(GateUpCuda, FusedEpilogueGivesTheBitsOfGemmThenSiluMul) {
  int fused_configs = 0;
  for (const GateUpShape& s : {kQwen3GateUp, kSmolGateUp}) {
    for (int64_t m : {1, 37, 300, 1031}) {  // partial tiles of every height
      GateUpBuffers ref(m, s.inter, s.k, s.inter), got(m, s.inter, s.k, s.inter);
      DeviceBuffer count = device_buffer(8), first = device_buffer(4);
      ASSERT_TRUE(ref.ok() && got.ok() && count.as() && first.as());
      fill_random_bf16(ref.x.as(), m * s.k, 31);
      fill_random_bf16(ref.w.as(), 2 * s.inter * s.k, 32);
      got.problem.x = ref.problem.x;
      got.problem.w = ref.problem.w;
      STATUS_OK(gemm_->run_gate_up_tile(ref.problem, kAllGemmTiles[0], /*fused=*/false, nullptr));
      for (GemmTile t : kAllGemmTiles) {
        if (!CudaGemm::fuses_gate_up(t)) continue;
        ++fused_configs;
        STATUS_OK(gemm_->run_gate_up_tile(got.problem, t, /*fused=*/true, nullptr));
        CUDA_OK(cudaMemset(count.as(), 0, 8));
        CUDA_OK(cudaMemset(first.as(), 0x7f, 4));
        count_row_mismatches<<<unsigned(m), 256>>>(ref.h.as<uint16_t>(), s.inter,
                                                   got.h.as<uint16_t>(), s.inter, m, s.inter,
                                                   count.as<unsigned long long>(), first.as<int>());
        unsigned long long n_bad = 0;
        CUDA_OK(cudaMemcpy(&n_bad, count.as(), 8, cudaMemcpyDeviceToHost));
        EXPECT_EQ(n_bad, 0u) << s.name << " M=" << m << ": fused " << gemm_tile_name(t)
                             << " differs from GEMM + silu_mul in " << n_bad << " rows";
      }
    }
  }
  EXPECT_GT(fused_configs, 0) << "no config has the fused epilogue: nothing was compared";
}

// ---------------------------------------------------------------------------------------
// 3. Batch invariance

TEST_F(GateUpCuda, RowsAreBitIdenticalForEveryBatchSize) {
  for (const GateUpShape& s : {kQwen3GateUp, kSmolGateUp}) {
    GateUpBuffers full(kMaxRows, s.inter, s.k, s.inter), part(kMaxRows, s.inter, s.k, s.inter);
    DeviceBuffer count = device_buffer(8), first = device_buffer(4);
    ASSERT_TRUE(full.ok() && part.ok() && count.as() && first.as()) << s.name << ": out of memory";
    fill_random_bf16(full.x.as(), kMaxRows * s.k, 41);
    fill_random_bf16(full.w.as(), 2 * s.inter * s.k, 42);
    STATUS_OK(gemm_->run_gate_up(full.problem, KernelMode::invariant, nullptr));
    int64_t sizes = 0, differing = 0, first_m = -1, fused_sizes = 0;
    for (int64_t m : batch_sizes()) {
      const int64_t slot = slot_of(m);
      GateUpProblem p = part.problem;
      p.x = full.x.as<uint16_t>() + slot * s.k;
      p.w = full.w.as();
      p.m = m;
      fused_sizes += CudaGemm::fuses_gate_up(CudaGemm::choose_tile(m, 2 * s.inter, s.k));
      STATUS_OK(gemm_->run_gate_up(p, KernelMode::invariant, nullptr));
      CUDA_OK(cudaMemsetAsync(count.as(), 0, 8));
      CUDA_OK(cudaMemsetAsync(first.as(), 0x7f, 4));
      count_row_mismatches<<<unsigned(m), 256>>>(part.h.as<uint16_t>(), s.inter,
                                                 full.h.as<uint16_t>() + slot * s.inter, s.inter,
                                                 m, s.inter, count.as<unsigned long long>(),
                                                 first.as<int>());
      unsigned long long n_bad = 0;
      CUDA_OK(cudaMemcpy(&n_bad, count.as(), 8, cudaMemcpyDeviceToHost));
      ++sizes;
      if (n_bad && differing++ == 0) first_m = m;
    }
    std::printf("gate/up   %-20s I=%-6lld K=%-5lld batch sizes %lld (fused epilogue at %lld), "
                "differing %lld\n",
                s.name, (long long)s.inter, (long long)s.k, (long long)sizes,
                (long long)fused_sizes, (long long)differing);
    EXPECT_EQ(differing, 0) << s.name << ": first at M=" << first_m;
    EXPECT_GT(fused_sizes, 0) << s.name << ": no batch size took the fused epilogue";
  }
}

}  // namespace
}  // namespace invar::kernels::cuda
