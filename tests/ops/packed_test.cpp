// Packed (block-quantized) weights on the CPU, for every encoding and every SIMD target:
//
//   decode:     the SIMD decoder gives core's scalar decode_to_f32 bit for bit, on random blocks
//               (random quants, random 6-bit scales, random f16 scales of both signs);
//   gemm:       a packed GEMM gives the bits of the f32 GEMM over the decoded weights, and is
//               within the f32 rounding bound of a double-precision reference, at awkward sizes
//               (M = 1, 2, 3, 5, 7, 8 (decode steps: q8_0, q4_0, q4_1 decoded in registers), 17,
//               65; N = 1, 7, 17, 769, primes; K = 1..3 blocks of 32 or 256);
//   invariance: row r of a packed GEMM is the same bits for M = 1..65, 127 and 1, 2, 3 threads,
//               with the fast mode's split-K GEMM on the same packed weights as the negative
//               control (R8);
//   embedding:  a packed table's rows decode exactly.
// The scalar decoder itself is checked against hand-built blocks (unit/gguf_test.cpp) and
// against the `gguf` Python package's decoder (unit/kquant_model_test.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/block_quant.h"
#include "kernels/cpu/ops.h"
#include "op_harness.h"
#include "op_reference.h"

namespace invar::ops_test {
namespace {

namespace cpu = kernels::cpu;
using kernels::WeightRef;

constexpr DType kPacked[] = {DType::q8_0, DType::q4_0, DType::q4_1, DType::q2_k,
                             DType::q3_k, DType::q4_k, DType::q5_k, DType::q6_k};

// Offsets of each block's f16 scale fields (core/block_quant.h layouts).
std::vector<size_t> f16_fields(DType t) {
  switch (t) {
    case DType::q8_0:
    case DType::q4_0:
      return {0};
    case DType::q4_1:
    case DType::q4_k:
    case DType::q5_k:
      return {0, 2};
    case DType::q2_k:
      return {80, 82};
    case DType::q3_k:
      return {108};
    case DType::q6_k:
      return {208};
    default:
      return {};
  }
}

// rows x cols of packed blocks: random bytes for quants and sub-block scales, random finite f16
// super-block scales in +-[2^-9, 2^-4] (so weights are O(1)); `negative` allows negative ones.
std::vector<uint8_t> random_packed(DType t, int64_t rows, int64_t cols, uint32_t seed,
                                   bool negative = true) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> out(dtype_row_bytes(t, cols) * size_t(rows));
  for (auto& b : out) b = uint8_t(rng());
  const DTypeBlock blk = dtype_block(t);
  std::uniform_real_distribution<float> mag(std::ldexp(1.0f, -9), std::ldexp(1.0f, -4));
  for (size_t b = 0; b < out.size() / blk.bytes; ++b) {
    for (size_t off : f16_fields(t)) {
      float v = mag(rng);
      if (negative && (rng() & 1)) v = -v;
      const uint16_t h = f32_to_f16(v);
      out[b * blk.bytes + off] = uint8_t(h & 0xff);
      out[b * blk.bytes + off + 1] = uint8_t(h >> 8);
    }
  }
  return out;
}

std::vector<float> decoded(DType t, const std::vector<uint8_t>& packed, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  decode_to_f32(t, packed.data(), n, out.data());
  return out;
}

class PackedTest : public ::testing::TestWithParam<Target> {
 protected:
  void SetUp() override { hwy::SetSupportedTargetsForTest(GetParam().bits | HWY_SCALAR); }
  void TearDown() override { hwy::SetSupportedTargetsForTest(0); }
  ThreadPool pool_{2};
};

TEST_P(PackedTest, SimdDecodeMatchesScalarDecodeBitForBit) {
  uint32_t seed = 1;
  for (DType t : kPacked) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    const int64_t rows = 5, cols = dtype_block(t).elems * 3;
    // Also an all-ones quant pattern and zero scales: the extremes of every field.
    for (int variant = 0; variant < 3; ++variant) {
      auto w = random_packed(t, rows, cols, seed++);
      if (variant == 1) {
        const auto fields = f16_fields(t);
        const size_t bb = dtype_block(t).bytes;
        for (size_t b = 0; b < w.size() / bb; ++b)
          for (size_t i = 0; i < bb; ++i)
            if (std::find(fields.begin(), fields.end(), i) == fields.end() &&
                std::find(fields.begin(), fields.end(), i - 1) == fields.end())
              w[b * bb + i] = 0xff;
      } else if (variant == 2) {
        for (size_t off : f16_fields(t))
          for (size_t b = 0; b < w.size() / dtype_block(t).bytes; ++b)
            w[b * dtype_block(t).bytes + off] = w[b * dtype_block(t).bytes + off + 1] = 0;
      }
      std::vector<float> simd(static_cast<size_t>(rows * cols));
      cpu::decode_rows(t, w.data(), rows, cols, simd.data());
      EXPECT_TRUE(bits_equal(simd, decoded(t, w, rows * cols))) << "variant " << variant;
    }
  }
}

struct Shape {
  int64_t m, n, blocks;  // K = blocks * the block size
};

TEST_P(PackedTest, GemmHasTheBitsOfTheF32GemmOverDecodedWeights) {
  const Shape shapes[] = {{1, 1, 1},  {1, 7, 2},   {7, 17, 1}, {17, 7, 3}, {1, 769, 1},
                          {5, 13, 2}, {65, 23, 1}, {3, 31, 3}, {8, 19, 2}, {2, 24, 3}};
  uint32_t seed = 100;
  for (DType t : kPacked) {
    for (const auto& s : shapes) {
      const int64_t k = s.blocks * dtype_block(t).elems;
      SCOPED_TRACE(::testing::Message()
                   << dtype_name(t) << " M=" << s.m << " N=" << s.n << " K=" << k);
      const auto x = random_floats(size_t(s.m * k), seed++);
      const auto w = random_packed(t, s.n, k, seed++);
      const auto wf = decoded(t, w, s.n * k);
      const auto bias = random_floats(size_t(s.n), seed++);
      std::vector<float> y(size_t(s.m * s.n)), y32(y.size());
      cpu::gemm(x.data(), WeightRef{w.data(), t, s.n, k}, bias.data(), s.m, y.data(), pool_);
      cpu::gemm(x.data(), WeightRef{wf.data(), DType::f32, s.n, k}, bias.data(), s.m, y32.data(),
                pool_);
      EXPECT_TRUE(bits_equal(y, y32));
      // And the f32 GEMM's own bound against double precision (ops_test.cpp's dot_bound).
      std::vector<double> ref, mag;
      ref_gemm(x.data(), wf.data(), bias.data(), s.m, s.n, k, ref, mag);
      const double bound = (double(k) / 8 + 6) * 2 / double(1 << 24);
      EXPECT_TRUE(near_reference(y, ref, [&](size_t i) { return bound * mag[i] + 1e-30; }));
    }
  }
}

TEST_P(PackedTest, EmbeddingDecodesRowsExactly) {
  uint32_t seed = 300;
  for (DType t : kPacked) {
    const int64_t vocab = 17, h = dtype_block(t).elems * 2;
    const auto table = random_packed(t, vocab, h, seed++);
    const auto want = decoded(t, table, vocab * h);
    const std::vector<int32_t> ids = {3, 0, 16, 3, 7};
    std::vector<float> out(ids.size() * size_t(h));
    cpu::embedding(WeightRef{table.data(), t, vocab, h}, ids.data(), int64_t(ids.size()),
                   out.data(), pool_);
    for (size_t i = 0; i < ids.size(); ++i)
      EXPECT_TRUE(
          bits_equal(out.data() + i * size_t(h), want.data() + size_t(ids[i] * h), size_t(h)))
          << dtype_name(t) << " token " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, PackedTest, ::testing::ValuesIn(kernel_targets()),
                         [](const auto& info) { return info.param.name; });

// ---------------------------------------------------------------- invariance (R1, R2, R8)

using GemmFn = void (*)(const float* x, const WeightRef& w, const float* bias, int64_t m, float* y,
                        ThreadPool& pool);

// How many of the batch sizes 1..65, 127 change some row's bits against that row alone.
int batch_sizes_that_move_rows(GemmFn fn, const std::vector<float>& x, const WeightRef& w,
                               const float* bias, ThreadPool& pool, std::string* first) {
  const int64_t n = w.rows, k = w.cols, max_m = 127;
  ThreadPool one(1);
  std::vector<float> alone(static_cast<size_t>(max_m * n));
  for (int64_t r = 0; r < max_m; ++r) fn(x.data() + r * k, w, bias, 1, alone.data() + r * n, one);
  std::vector<int64_t> ms;
  for (int64_t m = 1; m <= 65; ++m) ms.push_back(m);
  ms.push_back(127);
  int moved = 0;
  std::vector<float> y(alone.size());
  for (int64_t m : ms) {
    fn(x.data(), w, bias, m, y.data(), pool);
    const auto same = bits_equal(y.data(), alone.data(), size_t(m * n));
    if (!same && moved++ == 0 && first) *first = "M=" + std::to_string(m) + ": " + same.message();
  }
  return moved;
}

TEST(PackedGemmInvariance, RowsIdenticalForEveryBatchSizeAndThreadCount) {
  // N = 37 leaves a column tail for every register tile width (3, 6) and splits unevenly over
  // threads; K spans two blocks (two super-blocks for the K-quants).
  const int64_t n = 37;
  uint32_t seed = 500;
  for (DType t : kPacked) {
    const int64_t k = 2 * dtype_block(t).elems;
    const auto x = random_floats(size_t(127 * k), seed++);
    const auto w = random_packed(t, n, k, seed++);
    const auto bias = random_floats(size_t(n), seed++);
    const WeightRef ref{w.data(), t, n, k};
    for (int threads : {1, 2, 3}) {
      SCOPED_TRACE(::testing::Message() << dtype_name(t) << ", " << threads << " threads");
      ThreadPool pool(threads);
      std::string failure;
      EXPECT_EQ(batch_sizes_that_move_rows(cpu::gemm, x, ref, bias.data(), pool, &failure), 0)
          << failure;
    }
  }
}

// R8: the same comparison sees the fast mode's split-K GEMM (kernels/cpu/gemm_split_k.cpp) move
// rows of the same packed weights: for M <= 8 it splits K, beyond it does not, so every batch
// size past 8 differs from the row alone.
TEST(PackedGemmInvariance, NegativeControlFastModeIsDetected) {
  ThreadPool pool(2);
  for (DType t : {DType::q4_1, DType::q4_k}) {
    const int64_t n = 37, k = 2 * dtype_block(t).elems;
    const auto x = random_floats(size_t(127 * k), 600);
    const auto w = random_packed(t, n, k, 601);
    std::string failure;
    const int moved = batch_sizes_that_move_rows(cpu::gemm_split_k, x, WeightRef{w.data(), t, n, k},
                                                 nullptr, pool, &failure);
    EXPECT_EQ(moved, 66 - 8) << dtype_name(t) << ": every M > 8 should differ";
    EXPECT_FALSE(failure.empty());
  }
}

}  // namespace
}  // namespace invar::ops_test
