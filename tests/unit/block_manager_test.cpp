#include "engine/block_manager.h"

#include <gtest/gtest.h>

#include <numeric>

namespace invar::engine {
namespace {

std::vector<int32_t> iota_tokens(int n, int start = 0) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), start);
  return t;
}

TEST(BlockManager, AllocateReleaseAndFull) {
  BlockManager m(4, 16, /*prefix_cache=*/false);
  std::vector<int32_t> a, b;
  ASSERT_TRUE(m.allocate(3, a).ok());
  EXPECT_EQ(m.num_used(), 3);
  Status full = m.allocate(2, b);
  EXPECT_EQ(full.code(), StatusCode::resource_exhausted);
  EXPECT_TRUE(b.empty());
  m.release(a);
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(m.num_used(), 0);
  EXPECT_EQ(m.num_available(), 4);
}

TEST(BlockManager, SharesRegisteredPrefixesWithReferenceCounts) {
  BlockManager m(8, 4, true);
  auto tokens = iota_tokens(10);  // two full blocks and a partial one
  std::vector<int32_t> first;
  ASSERT_TRUE(m.allocate(3, first).ok());
  m.register_prefix(tokens, 10, first);

  std::vector<int32_t> second;
  EXPECT_EQ(m.match_prefix(tokens, 9, second), 8);  // full blocks only
  EXPECT_EQ(second, (std::vector<int32_t>{first[0], first[1]}));
  EXPECT_EQ(m.num_used(), 3);  // shared, not copied

  // Capped by max_tokens: a prompt's last token is always computed.
  std::vector<int32_t> third;
  EXPECT_EQ(m.match_prefix(tokens, 7, third), 4);

  m.release(first);
  EXPECT_EQ(m.num_used(), 2);   // still referenced by second and third
  m.release(second);
  m.release(third);
  EXPECT_EQ(m.num_used(), 0);
  EXPECT_EQ(m.num_cached(), 2);  // content kept for reuse

  std::vector<int32_t> again;
  EXPECT_EQ(m.match_prefix(tokens, 100, again), 8);
  EXPECT_EQ(m.num_cached(), 0);
  m.release(again);
}

TEST(BlockManager, DifferentPrefixDoesNotMatch) {
  BlockManager m(8, 4, true);
  auto a = iota_tokens(8);
  std::vector<int32_t> ta;
  ASSERT_TRUE(m.allocate(2, ta).ok());
  m.register_prefix(a, 8, ta);
  auto b = a;
  b[0] = 99;  // the second block's tokens match, but not its prefix
  std::vector<int32_t> tb;
  EXPECT_EQ(m.match_prefix(b, 8, tb), 0);
  b = a;
  b[5] = 99;
  EXPECT_EQ(m.match_prefix(b, 8, tb), 4);
  m.release(tb);
  m.release(ta);
}

TEST(BlockManager, EvictsCachedBlocksLeastRecentlyUsedFirst) {
  BlockManager m(3, 2, true);
  auto x = iota_tokens(2, 0), y = iota_tokens(2, 10);
  std::vector<int32_t> tx, ty, tz;
  ASSERT_TRUE(m.allocate(1, tx).ok());
  m.register_prefix(x, 2, tx);
  ASSERT_TRUE(m.allocate(1, ty).ok());
  m.register_prefix(y, 2, ty);
  m.release(tx);  // x is older in the LRU
  m.release(ty);
  ASSERT_TRUE(m.allocate(2, tz).ok());  // the free block, then evicts x
  std::vector<int32_t> probe;
  EXPECT_EQ(m.match_prefix(x, 2, probe), 0);
  EXPECT_EQ(m.match_prefix(y, 2, probe), 2);
  m.release(probe);
  m.release(tz);
}

TEST(BlockManager, DisabledPrefixCacheNeverMatches) {
  BlockManager m(4, 2, false);
  auto t = iota_tokens(4);
  std::vector<int32_t> a, b;
  ASSERT_TRUE(m.allocate(2, a).ok());
  m.register_prefix(t, 4, a);
  EXPECT_EQ(m.match_prefix(t, 4, b), 0);
  m.release(a);
  EXPECT_EQ(m.num_cached(), 0);
}

}  // namespace
}  // namespace invar::engine
