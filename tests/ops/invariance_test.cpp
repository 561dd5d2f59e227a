// Batch invariance of the CPU ops, bit for bit (memcmp through bits_equal), plus the negative
// control that shows the same comparison catches a reduction order that moves with the batch.
//
//   gemm:      row r of x W^T is the same for M = 1..65, 127, 256, 509, for 1, 2 and 3 threads,
//              for f32 and bf16 weights (both bf16 paths), and column n is the same whichever
//              column tile or tail computes it.
//   attention: a sequence's outputs are the same alone, in a varlen batch, as a one-token decode
//              at each position, and in chunked prefills of several chunkings, across 64-token
//              tile edges, with unread cache slots poisoned with NaN, for 1-3 threads, f32 and
//              f16 caches, and cache block sizes 1, 7, 16, 64, 100.
//   packed gemm: packed_test.cpp.
//   rmsnorm:   a row is the same whatever the row count and thread count.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/ops.h"
#include "op_harness.h"

namespace invar::ops_test {
namespace {

namespace cpu = kernels::cpu;
using kernels::WeightRef;

// ---------------------------------------------------------------- gemm

using GemmFn = void (*)(const float* x, const WeightRef& w, const float* bias, int64_t m, float* y,
                        ThreadPool& pool);

// The negative control: a split-K gemm whose split point depends on M, as a BLAS heuristic
// would choose it. Each half goes through the real kernel; the halves are then added.
void gemm_split_k_by_m(const float* x, const WeightRef& w, const float* bias, int64_t m, float* y,
                       ThreadPool& pool) {
  const int64_t k = w.cols, n = w.rows;
  const int64_t split = m < 8 ? k : (k / 2) / 8 * 8;  // small batches: no split
  if (split == k) return cpu::gemm(x, w, bias, m, y, pool);
  auto cols = [&](const float* src, int64_t rows, int64_t b, int64_t e) {
    std::vector<float> out(static_cast<size_t>(rows * (e - b)));
    for (int64_t r = 0; r < rows; ++r)
      std::copy(src + r * k + b, src + r * k + e, out.begin() + r * (e - b));
    return out;
  };
  const float* wf = static_cast<const float*>(w.data);
  const auto x0 = cols(x, m, 0, split), x1 = cols(x, m, split, k);
  const auto w0 = cols(wf, n, 0, split), w1 = cols(wf, n, split, k);
  std::vector<float> y1(static_cast<size_t>(m * n));
  cpu::gemm(x0.data(), WeightRef{w0.data(), DType::f32, n, split}, bias, m, y, pool);
  cpu::gemm(x1.data(), WeightRef{w1.data(), DType::f32, n, k - split}, nullptr, m, y1.data(), pool);
  for (size_t i = 0; i < y1.size(); ++i) y[i] += y1[i];
}

std::vector<int64_t> batch_sizes() {
  std::vector<int64_t> ms;
  for (int64_t m = 1; m <= 65; ++m) ms.push_back(m);
  for (int64_t m : {127, 256, 509}) ms.push_back(m);
  return ms;
}

// Each row of x computed alone (M = 1).
std::vector<float> gemm_rows_alone(GemmFn fn, const std::vector<float>& x, const WeightRef& w,
                                   const float* bias, int64_t rows, ThreadPool& pool) {
  const int64_t n = w.rows, k = w.cols;
  std::vector<float> alone(static_cast<size_t>(rows * n));
  for (int64_t r = 0; r < rows; ++r) fn(x.data() + r * k, w, bias, 1, alone.data() + r * n, pool);
  return alone;
}

// For every M in batch_sizes(), computes the first M rows of x as one batch and counts the
// batch sizes at which some row's bits differ from that row computed alone.
int gemm_rows_that_move(GemmFn fn, const std::vector<float>& x, const WeightRef& w,
                        const float* bias, const std::vector<float>& alone, ThreadPool& pool,
                        std::string* first_failure) {
  const int64_t n = w.rows;
  int moved = 0;
  std::vector<float> y(alone.size());
  for (int64_t m : batch_sizes()) {
    fn(x.data(), w, bias, m, y.data(), pool);
    const auto same = bits_equal(y.data(), alone.data(), size_t(m * n));
    if (!same) {
      if (moved++ == 0 && first_failure)
        *first_failure = "M=" + std::to_string(m) + ": " + same.message();
    }
  }
  return moved;
}

struct GemmInvariance : ::testing::Test {
  // N = 37 leaves a column tail for every register tile width (3, 6); K = 257 a K tail.
  static constexpr int64_t kN = 37, kK = 257;
  std::vector<float> x = random_floats(size_t(509 * kK), 11);
  std::vector<float> w = random_floats(size_t(kN * kK), 12);
  std::vector<uint16_t> w16 = to_bf16(w);
  std::vector<float> bias = random_floats(size_t(kN), 13);
};

TEST_F(GemmInvariance, RowsIdenticalForEveryBatchSizeAndThreadCount) {
  ThreadPool single(1);
  for (DType dt : {DType::f32, DType::bf16}) {
    const WeightRef ref{dt == DType::f32 ? static_cast<const void*>(w.data()) : w16.data(), dt, kN,
                        kK};
    const auto alone = gemm_rows_alone(cpu::gemm, x, ref, bias.data(), 509, single);
    for (int threads : {1, 2, 3}) {
      SCOPED_TRACE(::testing::Message() << threads << " threads, " << dtype_name(dt) << " weights");
      ThreadPool pool(threads);
      std::string failure;
      EXPECT_EQ(gemm_rows_that_move(cpu::gemm, x, ref, bias.data(), alone, pool, &failure), 0)
          << failure;
    }
  }
  // And across thread counts: one full batch with 1 thread vs 3 threads.
  ThreadPool one(1), three(3);
  std::vector<float> a(static_cast<size_t>(509 * kN)), b(a.size());
  cpu::gemm(x.data(), WeightRef{w.data(), DType::f32, kN, kK}, nullptr, 509, a.data(), one);
  cpu::gemm(x.data(), WeightRef{w.data(), DType::f32, kN, kK}, nullptr, 509, b.data(), three);
  EXPECT_TRUE(bits_equal(a, b));
}

TEST_F(GemmInvariance, ColumnsIdenticalWhicheverTileComputesThem) {
  ThreadPool pool(2);
  const int64_t m = 13;
  std::vector<float> full(static_cast<size_t>(m * kN));
  cpu::gemm(x.data(), WeightRef{w.data(), DType::f32, kN, kK}, bias.data(), m, full.data(), pool);
  // Column windows that shift every column to another position in its register tile.
  for (auto [b, e] : {std::pair<int64_t, int64_t>{1, 2}, {1, 37}, {2, 9}, {5, 36}, {34, 37}}) {
    std::vector<float> part(static_cast<size_t>(m * (e - b)));
    cpu::gemm(x.data(), WeightRef{w.data() + b * kK, DType::f32, e - b, kK}, bias.data() + b, m,
              part.data(), pool);
    for (int64_t r = 0; r < m; ++r) {
      EXPECT_TRUE(bits_equal(part.data() + r * (e - b), full.data() + r * kN + b, size_t(e - b)))
          << "columns [" << b << ", " << e << "), row " << r;
    }
  }
}

// R8: the comparison above must be able to fail. A split-K variant that picks its split from M
// moves rows at every batch size >= 8, and gemm_rows_that_move must see it.
TEST_F(GemmInvariance, NegativeControlSplitKByBatchSizeIsDetected) {
  ThreadPool pool(2);
  const WeightRef ref{w.data(), DType::f32, kN, kK};
  std::string failure;
  const auto alone = gemm_rows_alone(gemm_split_k_by_m, x, ref, nullptr, 509, pool);
  const int moved = gemm_rows_that_move(gemm_split_k_by_m, x, ref, nullptr, alone, pool, &failure);
  EXPECT_EQ(moved, int(batch_sizes().size()) - 7)
      << "the split-K variant should differ at every M >= 8";
  EXPECT_FALSE(failure.empty());
}

// ---------------------------------------------------------------- attention

// One sequence of kLen positions (crossing the 64-position tiles twice) in a paged cache with a
// shuffled block table, plus filler sequences to batch it with.
struct AttentionInvariance : ::testing::Test {
  static constexpr int kHq = 6, kHkv = 2, kD = 64, kBs = 16, kLen = 150;
  static constexpr int kSeqCapacity = 256;  // positions a sequence may hold (ids 0..3)
  int bs = kBs;  // tokens per cache block (a cache setting, not a model shape)
  DType kv = DType::f32;  // the cache's element type
  int max_blocks() const { return (kSeqCapacity + bs - 1) / bs; }
  std::vector<float> k_rows = random_floats(size_t(kLen * kHkv * kD), 21, -2.0f, 2.0f);
  std::vector<float> v_rows = random_floats(size_t(kLen * kHkv * kD), 22);
  std::vector<float> q = random_floats(size_t(kLen * kHq * kD), 23, -2.0f, 2.0f);
  std::vector<float> filler_q = random_floats(size_t(400 * kHq * kD), 24, -2.0f, 2.0f);

  // Physical block of logical block b of sequence `seq` (ids 0..3): a fixed shuffle of the
  // cache's 4 * max_blocks() blocks, so each sequence is scattered over the cache.
  std::vector<int32_t> block_shuffle() const {
    std::vector<int32_t> perm(static_cast<size_t>(4 * max_blocks()));
    for (size_t i = 0; i < perm.size(); ++i) perm[i] = int32_t(i);
    std::shuffle(perm.begin(), perm.end(), std::mt19937(99));
    return perm;
  }

  struct Seq {
    int id;      // which block mapping; id 0 is the sequence under test
    int kv_len;  // positions in the cache after this step
    int q_len;   // query tokens this step (the last q_len positions)
  };

  // Runs one attention step over `seqs`; returns the output rows of sequence 0's query tokens.
  // Only positions < kv_len of each sequence are written; every other slot stays NaN.
  std::vector<float> run(const std::vector<Seq>& seqs, ThreadPool& pool) {
    PagedCache cache(4 * max_blocks(), bs, kHkv, kD);
    const auto perm = block_shuffle();
    auto block_of = [&](int seq, int b) { return perm[size_t(seq * max_blocks() + b)]; };
    std::vector<int32_t> indptr{0}, kv_lens, tables;
    std::vector<float> qs;
    int32_t our_first = -1, our_len = 0;
    for (const auto& s : seqs) {
      for (int b = 0; b < max_blocks(); ++b) tables.push_back(block_of(s.id, b));
      for (int p = 0; p < s.kv_len; ++p) {
        const int64_t slot = int64_t(block_of(s.id, p / bs)) * bs + p % bs;
        for (int h = 0; h < kHkv; ++h) {
          // Filler sequences get other data (shifted rows) than the sequence under test.
          const size_t src = (size_t((p + s.id * 37) % kLen) * kHkv + size_t(h)) * kD;
          std::copy_n(k_rows.begin() + src, kD, cache.k.begin() + cache.row(slot, h));
          std::copy_n(v_rows.begin() + src, kD, cache.v.begin() + cache.row(slot, h));
        }
      }
      const int first = s.kv_len - s.q_len;
      const auto& src = s.id == 0 ? q : filler_q;
      for (int p = first; p < s.kv_len; ++p) {
        qs.insert(qs.end(), src.begin() + p * kHq * kD, src.begin() + (p + 1) * kHq * kD);
      }
      if (s.id == 0) our_first = indptr.back(), our_len = s.q_len;
      indptr.push_back(indptr.back() + s.q_len);
      kv_lens.push_back(s.kv_len);
    }
    kernels::AttentionPlan plan{int(seqs.size()), indptr.data(), kv_lens.data(),
                                tables.data(),    max_blocks(),  bs};
    std::vector<float> out(qs.size(), -1.0f);
    cpu::attention(qs.data(), cache.ref(kv), plan, kHq, 0.125f, out.data(), pool);
    return {out.begin() + our_first * kHq * kD, out.begin() + (our_first + our_len) * kHq * kD};
  }

  void check_every_way_of_computing_the_prefill();

  // Output rows of positions [b, e) from a full-length run.
  static std::vector<float> rows(const std::vector<float>& full, int b, int e) {
    return {full.begin() + b * kHq * kD, full.begin() + e * kHq * kD};
  }
};

TEST_F(AttentionInvariance, PrefillAloneMatchesEveryOtherWayOfComputingIt) {
  for (DType dtype : {DType::f32, DType::f16}) {
    SCOPED_TRACE(::testing::Message() << dtype_name(dtype) << " cache");
    kv = dtype;
    check_every_way_of_computing_the_prefill();
  }
}

void AttentionInvariance::check_every_way_of_computing_the_prefill() {
  ThreadPool pool2(2), pool1(1), pool3(3);
  const auto whole = run({{0, kLen, kLen}}, pool2);
  for (float f : whole) ASSERT_FALSE(std::isnan(f)) << "a poisoned slot was read";

  EXPECT_TRUE(bits_equal(run({{0, kLen, kLen}}, pool1), whole)) << "1 thread";
  EXPECT_TRUE(bits_equal(run({{0, kLen, kLen}}, pool3), whole)) << "3 threads";

  // In a varlen batch: decodes and a prefill of other sequences before and after it.
  EXPECT_TRUE(
      bits_equal(run({{1, 33, 1}, {2, 200, 200}, {0, kLen, kLen}, {3, 64, 1}}, pool2), whole))
      << "batched";

  // Decode: one token at each position (every tile edge included), alone and batched.
  for (int p = 0; p < kLen; ++p) {
    SCOPED_TRACE(::testing::Message() << "decode at position " << p);
    const auto alone = run({{0, p + 1, 1}}, pool2);
    ASSERT_TRUE(bits_equal(alone, rows(whole, p, p + 1)));
    if (p % 21 == 0 || p == 63 || p == 64 || p == 128) {
      ASSERT_TRUE(bits_equal(run({{2, 130, 7}, {0, p + 1, 1}, {1, 5, 1}}, pool3), alone));
    }
  }

  // Chunked prefill, chunk edges on and off the tile edges.
  for (const std::vector<int>& chunks :
       {std::vector<int>{1, 63, 1, 85}, {64, 64, 22}, {7, 7, 7, 100, 29}, {149, 1}, {13, 50, 87}}) {
    SCOPED_TRACE(::testing::Message()
                 << "chunking starting with " << chunks[0] << ", " << chunks[1]);
    int done = 0;
    for (int c : chunks) {
      const auto got = run({{3, 90, 2}, {0, done + c, c}}, pool2);
      ASSERT_TRUE(bits_equal(got, rows(whole, done, done + c))) << "chunk at " << done;
      done += c;
    }
    ASSERT_EQ(done, kLen);
  }
}

// The softmax tiles are fixed by absolute position, not by the cache's block size.
TEST_F(AttentionInvariance, SameBitsForEveryCacheBlockSize) {
  kv = DType::f16;  // (the f32 cache reads the same positions through the same tables)
  ThreadPool pool(2);
  const auto whole = run({{0, kLen, kLen}}, pool);
  const auto decode = run({{1, 20, 1}, {0, 100, 1}}, pool);
  for (int block_size : {1, 7, 64, 100}) {
    bs = block_size;
    EXPECT_TRUE(bits_equal(run({{0, kLen, kLen}}, pool), whole)) << "block size " << bs;
    EXPECT_TRUE(bits_equal(run({{1, 20, 1}, {0, 100, 1}}, pool), decode)) << "block size " << bs;
  }
}

// ---------------------------------------------------------------- rmsnorm

TEST(RmsNormInvariance, RowIdenticalForEveryRowCountAndThreadCount) {
  const int64_t dim = 769, max_rows = 67;
  const auto x = random_floats(size_t(max_rows * dim), 31, -4.0f, 4.0f);
  const auto w = random_floats(size_t(dim), 32, 0.5f, 1.5f);
  ThreadPool one(1);
  std::vector<float> alone(x.size());
  for (int64_t r = 0; r < max_rows; ++r) {
    cpu::rmsnorm(x.data() + r * dim, w.data(), 1, dim, 1e-6f, alone.data() + r * dim, one);
  }
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (int64_t rows = 1; rows <= max_rows; ++rows) {
      std::vector<float> out(static_cast<size_t>(rows * dim));
      cpu::rmsnorm(x.data(), w.data(), rows, dim, 1e-6f, out.data(), pool);
      ASSERT_TRUE(bits_equal(out.data(), alone.data(), out.size()))
          << rows << " rows, " << threads << " threads";
    }
  }
}

}  // namespace
}  // namespace invar::ops_test
