// GPU tests of kernels/cuda/gemm.h (CTest label `cuda`; run by scripts/gpu-check).
//   M = rows of x (tokens), N = rows of W (output features), K = input features
// 1. Correctness of every tile config and of both modes against an f64 reference, at
//    awkward sizes, strided operands included; the output is poisoned first.
// 2. Tile equivalence (R2): every tile config gives the same bits, so the M-dependent
//    choice of config cannot change a row (this is also the wgmma instruction-N check).
// 3. Batch invariance (R1): for each model shape, rows computed in a batch of M rows at slot
//    s equal, bit for bit, the same rows of one 16384-row product, for M = 1..512 and a
//    spread of larger M (primes included), across every choose_tile boundary.
// 4. Negative control (R8): the same comparison in fast mode (cuBLAS) finds differences.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "kernels/cuda/gemm.h"
#include "gemm_test_util.cuh"

namespace invar::kernels::cuda {
namespace {

// ---------------------------------------------------------------------------------------
// 1. Correctness

struct Case {
  int64_t m, n, k, ldx_pad, ldy_pad;
};

// Residues against every tile edge (64/128 rows, 32..256 columns, 64/128 of K), K not a
// multiple of the K tile, padded leading dimensions.
constexpr Case kCases[] = {{1, 8, 8, 0, 0},         {7, 264, 72, 8, 16},
                           {17, 776, 776, 0, 8},    {65, 1032, 4104, 16, 0},
                           {129, 4096, 4096, 0, 0}, {769, 5128, 1544, 8, 8},
                           {5125, 264, 1032, 0, 24}};

// Which GEMM a check runs: run(mode), run_tile(tile), or run_portable (the sm_80 config, which
// Hopper runs too).
void check_case(CudaGemm& gemm, const Case& c, KernelMode mode, const GemmTile* tile,
                bool portable = false) {
  const int64_t ldx = c.k + c.ldx_pad, ldw = c.k, ldy = c.n + c.ldy_pad;
  DeviceBuffer x = device_buffer(size_t(c.m) * ldx * 2), w = device_buffer(size_t(c.n) * ldw * 2),
               y = device_buffer(size_t(c.m) * ldy * 2);
  DeviceBuffer ref = device_buffer(size_t(c.m) * c.n * 8);
  ASSERT_TRUE(x.as() && w.as() && y.as() && ref.as());
  static uint64_t seed = 1;
  fill_random_bf16(x.as(), c.m * ldx, seed++);  // fresh data for every check
  fill_random_bf16(w.as(), c.n * ldw, seed++);
  constexpr uint16_t kPoison = 0x7fc1;  // a NaN: an unwritten output fails the check
  fill_u16_kernel<<<1024, 256>>>(y.as<uint16_t>(), c.m * ldy, kPoison);
  reference_gemm<<<dim3(unsigned((c.n + 127) / 128), unsigned(c.m)), 128>>>(
      x.as<uint16_t>(), ldx, w.as<uint16_t>(), ldw, ref.as<double>(), c.m, c.n, c.k);
  CUDA_OK(cudaGetLastError());

  GemmProblem p{.x = x.as(),
                .ldx = ldx,
                .w = w.as(),
                .ldw = ldw,
                .y = y.as(),
                .ldy = ldy,
                .m = c.m,
                .n = c.n,
                .k = c.k};
  if (portable) {
    STATUS_OK(gemm.run_portable(p, nullptr));
  } else if (tile) {
    STATUS_OK(gemm.run_tile(p, *tile, nullptr));
  } else {
    STATUS_OK(gemm.run(p, mode, nullptr));
  }
  CUDA_OK(cudaDeviceSynchronize());

  std::vector<uint16_t> hy(size_t(c.m) * ldy);
  std::vector<double> href(size_t(c.m) * c.n);
  CUDA_OK(cudaMemcpy(hy.data(), y.as(), hy.size() * 2, cudaMemcpyDeviceToHost));
  CUDA_OK(cudaMemcpy(href.data(), ref.as(), href.size() * 8, cudaMemcpyDeviceToHost));
  double err2 = 0, ref2 = 0;
  for (double r : href) ref2 += r * r;
  const double rms = std::sqrt(ref2 / double(href.size()));
  int64_t bad = 0, pad_touched = 0;
  for (int64_t r = 0; r < c.m; ++r) {
    for (int64_t col = 0; col < ldy; ++col) {
      uint16_t v = hy[size_t(r * ldy + col)];
      if (col >= c.n) {  // padding columns must keep the poison
        pad_touched += v != kPoison;
        continue;
      }
      double got = bf16_value(v), want = href[size_t(r * c.n + col)];
      double e = got - want;
      err2 += e * e;
      // bf16 rounding is at most 2^-9 relative; allow 2^-8 plus f32 accumulation noise.
      if (!(std::fabs(e) <= std::ldexp(std::fabs(want), -8) + 1e-4 * rms)) ++bad;
    }
  }
  const double rel = std::sqrt(err2 / ref2);
  const std::string what = std::string(portable ? "portable"
                                       : tile   ? gemm_tile_name(*tile)
                                              : (mode == KernelMode::fast ? "fast" : "invariant")) +
                           " M=" + std::to_string(c.m) + " N=" + std::to_string(c.n) +
                           " K=" + std::to_string(c.k);
  EXPECT_EQ(bad, 0) << what << ": elements outside tolerance (or unwritten)";
  EXPECT_EQ(pad_touched, 0) << what << ": wrote past N into the padding of y";
  EXPECT_LT(rel, 4e-3) << what;
}

TEST_F(GemmCuda, MatchesF64ReferenceEveryTileAndMode) {
  for (const Case& c : kCases) {
    for (GemmTile t : kAllGemmTiles) check_case(*gemm_, c, KernelMode::invariant, &t);
    check_case(*gemm_, c, KernelMode::invariant, nullptr);
    check_case(*gemm_, c, KernelMode::fast, nullptr);
    check_case(*gemm_, c, KernelMode::invariant, nullptr, /*portable=*/true);
  }
}

TEST_F(GemmCuda, RejectsMisalignedOperandsWithActionableError) {
  DeviceBuffer x = device_buffer(64 * 100 * 2), w = device_buffer(64 * 100 * 2),
               y = device_buffer(64 * 64 * 2);
  GemmProblem p{.x = x.as(),
                .ldx = 100,
                .w = w.as(),
                .ldw = 100,
                .y = y.as(),
                .ldy = 64,
                .m = 4,
                .n = 64,
                .k = 100};  // K = 100 is not a multiple of 8
  Status s = gemm_->run(p, KernelMode::invariant, nullptr);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("multiples of 8"), std::string::npos) << s.message();
}

// ---------------------------------------------------------------------------------------
// 2. Tile equivalence (R2)

TEST_F(GemmCuda, EveryTileConfigGivesTheSameBits) {
  std::vector<Shape> shapes(std::begin(kQwen3Shapes), std::end(kQwen3Shapes));
  shapes.insert(shapes.end(), std::begin(kSmolShapes), std::end(kSmolShapes));
  const int64_t m = 300;  // partial tiles of every height
  for (const Shape& s : shapes) {
    DeviceBuffer x = device_buffer(size_t(m) * s.k * 2), w = device_buffer(size_t(s.n) * s.k * 2);
    DeviceBuffer y0 = device_buffer(size_t(m) * s.n * 2), y1 = device_buffer(size_t(m) * s.n * 2);
    DeviceBuffer count = device_buffer(8), first = device_buffer(4);
    ASSERT_TRUE(x.as() && w.as() && y0.as() && y1.as());
    fill_random_bf16(x.as(), m * s.k, 11);
    fill_random_bf16(w.as(), s.n * s.k, 12);
    GemmProblem p0{.x = x.as(),
                   .ldx = s.k,
                   .w = w.as(),
                   .ldw = s.k,
                   .y = y0.as(),
                   .ldy = s.n,
                   .m = m,
                   .n = s.n,
                   .k = s.k};
    STATUS_OK(gemm_->run_tile(p0, kAllGemmTiles[0], nullptr));
    for (GemmTile t : kAllGemmTiles) {
      GemmProblem p1 = p0;
      p1.y = y1.as();
      STATUS_OK(gemm_->run_tile(p1, t, nullptr));
      CUDA_OK(cudaMemset(count.as(), 0, 8));
      CUDA_OK(cudaMemset(first.as(), 0x7f, 4));
      count_row_mismatches<<<unsigned(m), 256>>>(y0.as<uint16_t>(), s.n, y1.as<uint16_t>(), s.n,
                                                 m, s.n, count.as<unsigned long long>(),
                                                 first.as<int>());
      unsigned long long n_bad = 0;
      CUDA_OK(cudaMemcpy(&n_bad, count.as(), 8, cudaMemcpyDeviceToHost));
      EXPECT_EQ(n_bad, 0u) << s.name << ": tile " << gemm_tile_name(t) << " differs from "
                           << gemm_tile_name(kAllGemmTiles[0]) << " in " << n_bad << " rows";
    }
  }
}

// GemmProblem::row_capacity: where x and y hold rows past M, the configs compute whole x tiles.
// The real rows keep the bits they get without padding rows (every config, and the gate/up
// path fused and not), at M = 289 and 300 (partial last tiles of every height), and the row
// past the capacity stays unwritten.
TEST_F(GemmCuda, PaddingRowsKeepTheBitsOfTheRealRows) {
  constexpr int64_t kN = 1024, kK = 512, kRows = 512, kInter = kN / 2;
  DeviceBuffer x = device_buffer(size_t(kRows + 1) * kK * 2), w = device_buffer(size_t(kN) * kK * 2);
  DeviceBuffer y0 = device_buffer(size_t(kRows + 1) * kN * 2),
               y1 = device_buffer(size_t(kRows + 1) * kN * 2);
  DeviceBuffer count = device_buffer(8), first = device_buffer(4);
  ASSERT_TRUE(x.as() && w.as() && y0.as() && y1.as());
  fill_random_bf16(x.as(), (kRows + 1) * kK, 31);
  fill_random_bf16(w.as(), kN * kK, 32);
  constexpr uint16_t kPoison = 0x7fc1;
  auto expect_same = [&](int64_t m, int64_t width, const std::string& what) {
    CUDA_OK(cudaMemset(count.as(), 0, 8));
    CUDA_OK(cudaMemset(first.as(), 0x7f, 4));
    count_row_mismatches<<<unsigned(m), 256>>>(y0.as<uint16_t>(), width, y1.as<uint16_t>(),
                                               width, m, width, count.as<unsigned long long>(),
                                               first.as<int>());
    unsigned long long n_bad = 0;
    CUDA_OK(cudaMemcpy(&n_bad, count.as(), 8, cudaMemcpyDeviceToHost));
    EXPECT_EQ(n_bad, 0u) << what << " at M = " << m << ": " << n_bad << " rows differ";
    uint16_t past[8];  // the first values of the row past the capacity: still poison
    CUDA_OK(cudaMemcpy(past, y1.as<uint16_t>() + kRows * width, sizeof past,
                       cudaMemcpyDeviceToHost));
    for (uint16_t v : past) EXPECT_EQ(v, kPoison) << what << ": wrote past row_capacity";
  };
  auto poison = [&](DeviceBuffer& y) {
    fill_u16_kernel<<<1024, 256>>>(y.as<uint16_t>(), (kRows + 1) * kN, kPoison);
  };
  for (int64_t m : {int64_t(289), int64_t(300)}) {
    const GemmProblem plain{.x = x.as(),
                            .ldx = kK,
                            .w = w.as(),
                            .ldw = kK,
                            .y = y0.as(),
                            .ldy = kN,
                            .m = m,
                            .n = kN,
                            .k = kK};
    GemmProblem padded = plain;
    padded.y = y1.as();
    padded.row_capacity = kRows;
    for (GemmTile t : kAllGemmTiles) {
      poison(y0);
      poison(y1);
      STATUS_OK(gemm_->run_tile(plain, t, nullptr));
      STATUS_OK(gemm_->run_tile(padded, t, nullptr));
      expect_same(m, kN, std::string("tile ") + std::string(gemm_tile_name(t)));
    }
    // Gate/up: h [M, I] in y0 / y1, each run with its own scratch [rows, 2I] (unfused paths).
    DeviceBuffer s0 = device_buffer(size_t(kRows) * kN * 2), s1 = device_buffer(size_t(kRows) * kN * 2);
    ASSERT_TRUE(s0.as() && s1.as());
    for (GemmTile t : kAllGemmTiles) {
      for (bool fused : {true, false}) {
        poison(y0);
        poison(y1);
        GateUpProblem g{.x = x.as(),
                        .ldx = kK,
                        .w = w.as(),
                        .ldw = kK,
                        .h = y0.as(),
                        .ldh = kInter,
                        .scratch = s0.as(),
                        .m = m,
                        .inter = kInter,
                        .k = kK};
        STATUS_OK(gemm_->run_gate_up_tile(g, t, fused, nullptr));
        g.h = y1.as();
        g.scratch = s1.as();
        g.row_capacity = kRows;
        STATUS_OK(gemm_->run_gate_up_tile(g, t, fused, nullptr));
        expect_same(m, kInter, std::string("gate/up ") + (fused ? "fused, " : "unfused, ") +
                                   std::string(gemm_tile_name(t)));
      }
    }
  }
}

// A batch of GEMMs in one launch (GemmProblem::batch) gives each the bits it gets alone, in the
// layout of tensor parallelism's K slices: x's column blocks (batch_x = K) against contiguous
// weight slices (batch_w = N * K), partials one after the other (batch_y = M * N). Every tile
// config, the portable one, and fast mode (cuBLAS strided batched, compared with itself alone
// at the same shape) at M = 1, 37 and 300.
TEST_F(GemmCuda, BatchedGemmsGiveTheBitsOfEachAlone) {
  constexpr int64_t kSlices = 8, kN = 512, kK = 256;  // x is [M, 8 * 256]
  for (int64_t m : {int64_t(1), int64_t(37), int64_t(300)}) {
    DeviceBuffer x = device_buffer(size_t(m) * kSlices * kK * 2),
                 w = device_buffer(size_t(kSlices) * kN * kK * 2),
                 y0 = device_buffer(size_t(kSlices) * m * kN * 2),
                 y1 = device_buffer(size_t(kSlices) * m * kN * 2);
    DeviceBuffer count = device_buffer(8), first = device_buffer(4);
    ASSERT_TRUE(x.as() && w.as() && y0.as() && y1.as());
    fill_random_bf16(x.as(), m * kSlices * kK, 21);
    fill_random_bf16(w.as(), kSlices * kN * kK, 22);
    const GemmProblem batched{.x = x.as(),
                              .ldx = kSlices * kK,
                              .w = w.as(),
                              .ldw = kK,
                              .y = y1.as(),
                              .ldy = kN,
                              .m = m,
                              .n = kN,
                              .k = kK,
                              .batch = kSlices,
                              .batch_x = kK,
                              .batch_w = kN * kK,
                              .batch_y = m * kN};
    auto slice = [&](int64_t i) {
      GemmProblem one = batched;
      one.batch = 1;
      one.x = x.as<uint16_t>() + i * kK;
      one.w = w.as<uint16_t>() + i * kN * kK;
      one.y = y0.as<uint16_t>() + i * m * kN;
      return one;
    };
    auto expect_same = [&](const std::string& what) {
      CUDA_OK(cudaMemset(count.as(), 0, 8));
      CUDA_OK(cudaMemset(first.as(), 0x7f, 4));
      const int64_t rows = kSlices * m;
      count_row_mismatches<<<unsigned(rows), 256>>>(y0.as<uint16_t>(), kN, y1.as<uint16_t>(), kN,
                                                    rows, kN, count.as<unsigned long long>(),
                                                    first.as<int>());
      unsigned long long n_bad = 0;
      CUDA_OK(cudaMemcpy(&n_bad, count.as(), 8, cudaMemcpyDeviceToHost));
      EXPECT_EQ(n_bad, 0u) << what << " at M = " << m << ": " << n_bad << " rows differ";
    };
    for (GemmTile t : kAllGemmTiles) {
      for (int64_t i = 0; i < kSlices; ++i) STATUS_OK(gemm_->run_tile(slice(i), t, nullptr));
      CUDA_OK(cudaMemset(y1.as(), 0xff, size_t(kSlices) * m * kN * 2));
      STATUS_OK(gemm_->run_tile(batched, t, nullptr));
      expect_same(std::string("tile ") + std::string(gemm_tile_name(t)));
    }
    for (int64_t i = 0; i < kSlices; ++i) STATUS_OK(gemm_->run_portable(slice(i), nullptr));
    CUDA_OK(cudaMemset(y1.as(), 0xff, size_t(kSlices) * m * kN * 2));
    STATUS_OK(gemm_->run_portable(batched, nullptr));
    expect_same("portable");
    for (int64_t i = 0; i < kSlices; ++i)
      STATUS_OK(gemm_->run(slice(i), KernelMode::fast, nullptr));
    CUDA_OK(cudaMemset(y1.as(), 0xff, size_t(kSlices) * m * kN * 2));
    STATUS_OK(gemm_->run(batched, KernelMode::fast, nullptr));
    CUDA_OK(cudaDeviceSynchronize());
    // cuBLAS may pick another kernel for the batch: fast mode's bits are only reported.
    CUDA_OK(cudaMemset(count.as(), 0, 8));
    count_row_mismatches<<<unsigned(kSlices * m), 256>>>(
        y0.as<uint16_t>(), kN, y1.as<uint16_t>(), kN, kSlices * m, kN,
        count.as<unsigned long long>(), first.as<int>());
    unsigned long long fast_bad = 0;
    CUDA_OK(cudaMemcpy(&fast_bad, count.as(), 8, cudaMemcpyDeviceToHost));
    std::printf("  fast mode, M = %lld: %llu of %lld rows differ batched vs alone\n", (long long)m,
                fast_bad, (long long)(kSlices * m));
  }
}

// ---------------------------------------------------------------------------------------
// 3 and 4. Batch invariance and its negative control

struct InvarianceReport {
  int64_t sizes = 0;
  int64_t sizes_differing = 0;
  int64_t first_m = -1, first_row = -1;
  std::set<std::string> tiles;
};

// Compares every batch size's rows with the same rows of one kMaxRows-row product.
void run_invariance(CudaGemm& gemm, const Shape& s, KernelMode mode, InvarianceReport& rep,
                    bool portable = false) {
  auto run = [&](const GemmProblem& p) {
    return portable ? gemm.run_portable(p, nullptr) : gemm.run(p, mode, nullptr);
  };
  DeviceBuffer x = device_buffer(size_t(kMaxRows) * s.k * 2),
               w = device_buffer(size_t(s.n) * s.k * 2);
  DeviceBuffer y_full = device_buffer(size_t(kMaxRows) * s.n * 2),
               y = device_buffer(size_t(kMaxRows) * s.n * 2);
  DeviceBuffer count = device_buffer(8), first = device_buffer(4);
  ASSERT_TRUE(x.as() && w.as() && y_full.as() && y.as() && count.as() && first.as())
      << s.name << ": out of memory";
  fill_random_bf16(x.as(), kMaxRows * s.k, 21);
  fill_random_bf16(w.as(), s.n * s.k, 22);
  GemmProblem full{.x = x.as(),
                   .ldx = s.k,
                   .w = w.as(),
                   .ldw = s.k,
                   .y = y_full.as(),
                   .ldy = s.n,
                   .m = kMaxRows,
                   .n = s.n,
                   .k = s.k};
  STATUS_OK(run(full));
  const auto* xb = x.as<uint16_t>();
  const auto* yf = y_full.as<uint16_t>();
  for (int64_t m : batch_sizes()) {
    const int64_t slot = slot_of(m);
    if (mode == KernelMode::invariant && !portable)
      rep.tiles.insert(std::string(gemm_tile_name(CudaGemm::choose_tile(m, s.n, s.k))));
    GemmProblem p{.x = xb + slot * s.k,
                  .ldx = s.k,
                  .w = w.as(),
                  .ldw = s.k,
                  .y = y.as(),
                  .ldy = s.n,
                  .m = m,
                  .n = s.n,
                  .k = s.k};
    STATUS_OK(run(p));
    CUDA_OK(cudaMemsetAsync(count.as(), 0, 8));
    CUDA_OK(cudaMemsetAsync(first.as(), 0x7f, 4));
    count_row_mismatches<<<unsigned(m), 256>>>(y.as<uint16_t>(), s.n, yf + slot * s.n, s.n, m,
                                               s.n, count.as<unsigned long long>(), first.as<int>());
    CUDA_OK(cudaGetLastError());
    unsigned long long n_bad = 0;
    int first_row = 0;
    CUDA_OK(cudaMemcpy(&n_bad, count.as(), 8, cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(&first_row, first.as(), 4, cudaMemcpyDeviceToHost));
    ++rep.sizes;
    if (n_bad) {
      if (rep.sizes_differing++ == 0) {
        rep.first_m = m;
        rep.first_row = first_row;
      }
    }
  }
}

void print_report(const Shape& s, KernelMode mode, const InvarianceReport& r) {
  std::string tiles;
  for (const auto& t : r.tiles) tiles += (tiles.empty() ? "" : ",") + t;
  std::printf("%-9s %-20s N=%-6lld K=%-5lld batch sizes %lld, differing %lld",
              mode == KernelMode::fast ? "fast" : "invariant", s.name, (long long)s.n,
              (long long)s.k, (long long)r.sizes, (long long)r.sizes_differing);
  if (r.sizes_differing) std::printf(" (first: M=%lld row %lld)", (long long)r.first_m, (long long)r.first_row);
  if (!tiles.empty()) std::printf(" tiles %s", tiles.c_str());
  std::printf("\n");
  std::fflush(stdout);
}

TEST_F(GemmCuda, InvariantRowsAreBitIdenticalForEveryBatchSizeQwen3) {
  for (const Shape& s : kQwen3Shapes) {
    InvarianceReport r;
    run_invariance(*gemm_, s, KernelMode::invariant, r);
    print_report(s, KernelMode::invariant, r);
    EXPECT_EQ(r.sizes_differing, 0) << s.name << ": first at M=" << r.first_m << " row " << r.first_row;
  }
}

TEST_F(GemmCuda, InvariantRowsAreBitIdenticalForEveryBatchSizeSmolLM2) {
  for (const Shape& s : kSmolShapes) {
    InvarianceReport r;
    run_invariance(*gemm_, s, KernelMode::invariant, r);
    print_report(s, KernelMode::invariant, r);
    EXPECT_EQ(r.sizes_differing, 0) << s.name << ": first at M=" << r.first_m << " row " << r.first_row;
  }
}

// The portable (sm_80) config, run here on Hopper: one tile config for every M, so the same
// comparison over every batch size.
TEST_F(GemmCuda, PortableRowsAreBitIdenticalForEveryBatchSize) {
  std::vector<Shape> shapes(std::begin(kQwen3Shapes), std::end(kQwen3Shapes));
  shapes.insert(shapes.end(), std::begin(kSmolShapes), std::end(kSmolShapes));
  for (const Shape& s : shapes) {
    InvarianceReport r;
    run_invariance(*gemm_, s, KernelMode::invariant, r, /*portable=*/true);
    std::printf("portable  ");
    print_report(s, KernelMode::invariant, r);
    EXPECT_EQ(r.sizes_differing, 0) << s.name << ": first at M=" << r.first_m << " row " << r.first_row;
  }
}

// R8: the same comparison must see cuBLAS change bits with M, or the test proves nothing.
TEST_F(GemmCuda, NegativeControlCublasRowsChangeWithBatchSize) {
  int64_t differing = 0;
  std::vector<Shape> shapes(std::begin(kQwen3Shapes), std::end(kQwen3Shapes));
  shapes.insert(shapes.end(), std::begin(kSmolShapes), std::end(kSmolShapes));
  for (const Shape& s : shapes) {
    InvarianceReport r;
    run_invariance(*gemm_, s, KernelMode::fast, r);
    print_report(s, KernelMode::fast, r);
    differing += r.sizes_differing;
  }
  EXPECT_GT(differing, 0) << "cuBLAS gave the same bits for every batch size: the invariance "
                             "tests above could not see a difference";
}

}  // namespace
}  // namespace invar::kernels::cuda
