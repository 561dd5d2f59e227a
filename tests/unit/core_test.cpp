#include <gtest/gtest.h>

#include <atomic>
#include <cmath>

#include "core/dtype.h"
#include "core/status.h"
#include "core/thread_pool.h"
#include "model/batch.h"

namespace invar {
namespace {

TEST(DType, HalfRoundTripsEveryValue) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    float f = f16_to_f32(uint16_t(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(f32_to_f16(f), h) << std::hex << h;
  }
}

// F8_E4M3 ("fn"): bias 7, subnormals mant * 2^-9, 448 the largest, S.1111.111 NaN, no
// infinities; positive codes increase with their value.
TEST(DType, Fp8E4m3DecodesEveryCode) {
  EXPECT_EQ(fp8_e4m3_to_f32(0x00), 0.0f);
  EXPECT_EQ(fp8_e4m3_to_f32(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(fp8_e4m3_to_f32(0x07), 7 * std::ldexp(1.0f, -9));
  EXPECT_EQ(fp8_e4m3_to_f32(0x08), std::ldexp(1.0f, -6));
  EXPECT_EQ(fp8_e4m3_to_f32(0x38), 1.0f);
  EXPECT_EQ(fp8_e4m3_to_f32(0x3c), 1.5f);
  EXPECT_EQ(fp8_e4m3_to_f32(0x7e), 448.0f);
  EXPECT_EQ(fp8_e4m3_to_f32(0xb8), -1.0f);
  EXPECT_EQ(fp8_e4m3_to_f32(0xfe), -448.0f);
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_f32(0x7f)) && std::isnan(fp8_e4m3_to_f32(0xff)));
  EXPECT_TRUE(std::signbit(fp8_e4m3_to_f32(0x80)));
  for (int c = 1; c < 0x7f; ++c) {
    EXPECT_GT(fp8_e4m3_to_f32(uint8_t(c)), fp8_e4m3_to_f32(uint8_t(c - 1))) << c;
    EXPECT_EQ(fp8_e4m3_to_f32(uint8_t(c | 0x80)), -fp8_e4m3_to_f32(uint8_t(c))) << c;
  }
}

// Encoding: every finite code round-trips; a value between two neighbours goes to the nearer,
// a midpoint to the even code; beyond 448 saturates; NaN stays NaN.
TEST(DType, Fp8E4m3EncodesToNearestEven) {
  for (int c = 0; c < 0x7f; ++c) {
    EXPECT_EQ(f32_to_fp8_e4m3(fp8_e4m3_to_f32(uint8_t(c))), c) << c;
    EXPECT_EQ(f32_to_fp8_e4m3(fp8_e4m3_to_f32(uint8_t(c | 0x80))), c | 0x80) << c;
  }
  for (int c = 0; c + 1 < 0x7f; ++c) {
    const float lo = fp8_e4m3_to_f32(uint8_t(c)), hi = fp8_e4m3_to_f32(uint8_t(c + 1));
    const float mid = (lo + hi) / 2;  // exact: the codes are 3-bit mantissas
    EXPECT_EQ(f32_to_fp8_e4m3(mid), (c & 1) ? c + 1 : c) << c;
    EXPECT_EQ(f32_to_fp8_e4m3(std::nextafter(mid, lo)), c) << c;
    EXPECT_EQ(f32_to_fp8_e4m3(std::nextafter(mid, hi)), c + 1) << c;
  }
  EXPECT_EQ(f32_to_fp8_e4m3(1e6f), 0x7e);
  EXPECT_EQ(f32_to_fp8_e4m3(-460.0f), 0xfe);
  EXPECT_EQ(f32_to_fp8_e4m3(1e-30f), 0x00);
  EXPECT_EQ(f32_to_fp8_e4m3(std::nanf("")) & 0x7f, 0x7f);
}

TEST(DType, BFloat16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x3f808000u)), 0x3f80);  // tie -> even
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x3f818000u)), 0x3f82);  // tie -> even (up)
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x3f808001u)), 0x3f81);
  EXPECT_EQ(bf16_to_f32(0xc000), -2.0f);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::nanf("")))));
}

TEST(DType, HalfEdgeCases) {
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(70000.0f), 0x7c00);
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
}

Result<int> parse_positive(int x) {
  if (x <= 0) return Status::errorf("{} is not positive", x);
  return x;
}

Result<int> doubled(int x) {
  INVAR_ASSIGN_OR_RETURN(int v, parse_positive(x));
  return 2 * v;
}

TEST(Status, PropagatesErrorsAndValues) {
  EXPECT_EQ(doubled(4).value(), 8);
  auto bad = doubled(-1);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "-1 is not positive");
}

TEST(ThreadPool, CoversTheRangeExactlyOnce) {
  for (int threads : {1, 2, 5}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 7, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      for (int rep = 0; rep < 20; ++rep)
        pool.parallel_for(n, 1, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) hits[size_t(i)]++;
        });
      for (auto& h : hits) EXPECT_EQ(h.load(), 20);
    }
  }
}

TEST(BatchPlan, SlotsFollowTheBlockTable) {
  model::BatchPlanBuilder b(4, 3);
  std::vector<int32_t> toks{5, 6, 7}, table{9, 2};
  b.add_sequence(toks, 3, table, model::LogitRows::last);
  std::vector<int32_t> one{8};
  std::vector<int32_t> table2{0};
  b.add_sequence(one, 0, table2, model::LogitRows::all);
  auto plan = b.build();
  EXPECT_EQ(plan.slots, (std::vector<int64_t>{9 * 4 + 3, 2 * 4 + 0, 2 * 4 + 1, 0}));
  EXPECT_EQ(plan.q_indptr, (std::vector<int32_t>{0, 3, 4}));
  EXPECT_EQ(plan.kv_lens, (std::vector<int32_t>{6, 1}));
  EXPECT_EQ(plan.logit_rows, (std::vector<int32_t>{2, 3}));
  EXPECT_EQ(plan.block_tables, (std::vector<int32_t>{9, 2, -1, 0, -1, -1}));
}

}  // namespace
}  // namespace invar
