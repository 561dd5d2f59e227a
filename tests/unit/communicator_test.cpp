// The thread communicator of tensor parallelism (core/communicator.h) and its fixed tree
// (core/tree_sum.h): all-reduce gives every rank the pairwise tree over ranks in rank order,
// bitwise, on values where another order gives other bits; all-gather concatenates in rank
// order; collectives can be repeated back to back (the barrier is reusable).
#include "core/communicator.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <thread>

#include "core/tree_sum.h"

namespace invar {
namespace {

// Runs fn(comm) on `size` threads, one rank each.
template <typename Fn>
void on_ranks(int size, Fn fn) {
  ThreadGroup group(size);
  std::vector<std::unique_ptr<Communicator>> comms;
  for (int r = 0; r < size; ++r) comms.push_back(group.make_communicator(r));
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) threads.emplace_back([&, r] { fn(*comms[size_t(r)]); });
  for (auto& t : threads) t.join();
}

TEST(TreeSum, IsThePairwiseTreeAndComposesFromSubtrees) {
  // ((1e8 + 1) + (-1e8 + 1)) + ... : the tree's bits, not a left fold's.
  const float v[8] = {1e8f, 1.0f, -1e8f, 1.0f, 3.0f, 0.5f, 1e-3f, -3.0f};
  const float* parts[8];
  for (int i = 0; i < 8; ++i) parts[i] = &v[i];
  float tree = 0;
  tree_sum(parts, 8, 0, 1, &tree);
  const float expect = ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
  float fold = 0;
  for (float x : v) fold += x;
  EXPECT_EQ(std::memcmp(&tree, &expect, sizeof(float)), 0);
  EXPECT_NE(tree, fold);  // the order matters for these values

  // The tree over 8 leaves = the tree over 2 subtrees of 4 = over 4 subtrees of 2.
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const int n = 1000;
  std::vector<std::vector<float>> leaves(8, std::vector<float>(n));
  for (auto& l : leaves)
    for (auto& x : l) x = u(rng) * std::pow(10.0f, float(rng() % 7));
  const float* p[8];
  for (int i = 0; i < 8; ++i) p[i] = leaves[size_t(i)].data();
  std::vector<float> whole(n), sub(8 * n), top(n);
  tree_sum(p, 8, 0, n, whole.data());
  for (int group : {2, 4}) {
    const float* q[8];
    for (int g = 0; g < 8 / group; ++g) {
      tree_sum(p + g * group, group, 0, n, sub.data() + g * n);
      q[g] = sub.data() + g * n;
    }
    tree_sum(q, 8 / group, 0, n, top.data());
    EXPECT_EQ(std::memcmp(top.data(), whole.data(), n * sizeof(float)), 0) << group;
  }
}

TEST(ThreadCommunicator, AllReduceIsTheRankOrderTreeOnEveryRank) {
  for (int size : {1, 2, 4, 8}) {
    const int n = 1037;  // not a multiple of the rank count: uneven shares
    std::vector<std::vector<float>> data(static_cast<size_t>(size), std::vector<float>(n));
    std::mt19937 rng(size);
    for (auto& d : data)
      for (auto& x : d) x = float(int(rng() % 2001) - 1000) * std::pow(10.0f, float(rng() % 9));
    std::vector<const float*> parts;
    for (auto& d : data) parts.push_back(d.data());
    std::vector<float> expect(n);
    tree_sum(parts.data(), size, 0, n, expect.data());
    auto got = data;
    on_ranks(size, [&](Communicator& c) {
      for (int rep = 0; rep < 3; ++rep) {  // back to back: the barrier is reused
        auto mine = data[size_t(c.rank())];
        c.all_reduce_tree(mine.data(), n);
        if (rep == 2) got[size_t(c.rank())] = mine;
      }
    });
    for (int r = 0; r < size; ++r)
      EXPECT_EQ(std::memcmp(got[size_t(r)].data(), expect.data(), n * sizeof(float)), 0)
          << "size " << size << " rank " << r;
  }
}

TEST(ThreadCommunicator, AllGatherIsInRankOrder) {
  const int size = 4, n = 5;
  std::vector<std::vector<float>> out(size, std::vector<float>(size * n));
  on_ranks(size, [&](Communicator& c) {
    std::vector<float> mine(n, float(c.rank() * 10));
    c.all_gather(mine.data(), n, out[size_t(c.rank())].data());
    c.barrier();
  });
  for (int r = 0; r < size; ++r)
    for (int i = 0; i < size * n; ++i) EXPECT_EQ(out[size_t(r)][size_t(i)], float((i / n) * 10));
}

TEST(ThreadCommunicator, BarrierWaitsForEveryRank) {
  const int size = 8;
  std::atomic<int> arrived{0};
  std::atomic<int> early{0};
  on_ranks(size, [&](Communicator& c) {
    for (int round = 1; round <= 20; ++round) {
      arrived.fetch_add(1);
      c.barrier();
      if (arrived.load() < round * size) early.fetch_add(1);
      c.barrier();
    }
  });
  EXPECT_EQ(early.load(), 0);
}

}  // namespace
}  // namespace invar
