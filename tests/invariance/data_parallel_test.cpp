// Data parallelism (`serve --data-parallel-size N`, engine/replica_set.h), bitwise: a request
// served by a set of engine replicas, among concurrent requests spread over all of them, gets
// the tokens and logprobs one engine gives it alone, greedy and seeded. Control: with the fast
// (batch-dependent) kernels the same comparison sees differences.
// On CUDA replica r needs GPU r: these tests run on the CPU only.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "engine/replica_set.h"
#include "engine_harness.h"

namespace invar::engine {
namespace {

class DataParallel : public EngineTest {
 protected:
  void SetUp() override {
    EngineTest::SetUp();
    const char* device = std::getenv("INVAR_TEST_DEVICE");
    if (device && std::string(device) != "cpu")
      GTEST_SKIP() << "replicas need one GPU each: data parallelism is tested on the CPU";
  }

  RequestParams target(float temperature) const {
    return text_request(
        "The lighthouse keeper climbed the stairs every evening, and on the last night of the", 40,
        temperature, 4321);
  }

  static std::unique_ptr<ReplicaSet> make_replicas(EngineOptions opt, int n) {
    auto set = ReplicaSet::create(*bundle_, opt, n);
    EXPECT_TRUE(set.ok()) << set.status().message();
    return set.ok() ? std::move(set).value() : nullptr;
  }
};

TEST_F(DataParallel, ReplicasGiveOneEnginesBitsGreedyAndSeeded) {
  struct Case {
    float temperature;
    int replicas;
  };
  for (Case c : {Case{0.0f, 2}, Case{0.8f, 3}}) {
    auto p = target(c.temperature);
    RequestOutcome alone = run_alone(p);
    ASSERT_EQ(alone.ids.size(), 40u);
    auto set = make_replicas(busy_options(), c.replicas);
    ASSERT_NE(set, nullptr);
    EngineStats stats;
    auto outs = run_loaded_on(*set, p, 6, 24, &stats);
    ASSERT_EQ(outs.size(), 6u);
    for (const auto& o : outs)
      EXPECT_TRUE(o.same_output(alone))
          << c.replicas << " replicas, T " << c.temperature << ": " << o.text;
    for (int r = 0; r < set->size(); ++r)
      EXPECT_GT(set->submitted_to(r), 0u) << "replica " << r << " served nothing";
    EXPECT_EQ(stats.requests_finished, 30u) << "the summed stats lost a replica's requests";
  }
}

// R8: the comparison above must see batch-dependent kernels (each replica batches the copies
// with other requests than the solo run had).
TEST_F(DataParallel, NegativeControlFastKernelsDiffer) {
  auto p = target(0.0f);
  EngineOptions fast = busy_options();
  fast.kernels = kernels::KernelMode::fast;
  fast.step_token_budget = 512;
  RequestOutcome alone = run_alone(p, fast);
  auto set = make_replicas(fast, 2);
  ASSERT_NE(set, nullptr);
  int differing = 0;
  for (const auto& o : run_loaded_on(*set, p, 6, 24)) differing += !o.same_output(alone);
  EXPECT_GT(differing, 0) << "the data-parallel test cannot see batch-dependent kernels";
}

// The ids a ReplicaSet hands out name the replica: cancelling by id reaches the right engine,
// and events carry the same id. Fewer than one replica is refused.
TEST_F(DataParallel, IdsReachTheirReplicaAndZeroReplicasIsRefused) {
  EXPECT_FALSE(ReplicaSet::create(*bundle_, busy_options(), 0).ok());
  auto set = make_replicas(busy_options(), 2);
  ASSERT_NE(set, nullptr);
  RequestParams p = target(0.0f);
  p.max_tokens = 400;
  RequestCollector c;
  std::vector<uint64_t> ids;
  for (int i = 0; i < 4; ++i) {
    auto id = set->submit(p, c.callback(size_t(i)));
    ASSERT_TRUE(id.ok()) << id.status().message();
    ids.push_back(*id);
  }
  for (uint64_t id : ids) set->cancel(id);
  auto outs = c.wait();
  ASSERT_EQ(outs.size(), 4u);
  for (size_t i = 0; i < outs.size(); ++i) {
    EXPECT_EQ(outs[i].finish, FinishReason::cancelled) << "request " << i;
    EXPECT_EQ(outs[i].request_id, ids[i]) << "the event's id is not the one submit returned";
  }
  EXPECT_EQ(set->submitted_to(0), 2u);
  EXPECT_EQ(set->submitted_to(1), 2u);
  EXPECT_EQ(set->stats().kv_blocks_used, 0);
}

}  // namespace
}  // namespace invar::engine
