// A token's mixture-of-experts output (MoeBlock over the first sparse layer of tiny-qwen3-moe,
// tiny-mixtral and tiny-qwen2-moe, whose shared expert runs over every row) has the same bits
// whatever else is in the batch: alone; among copies of itself, so that each of its experts serves
// a group of more than 8 rows (past the `fast` GEMM's split-K threshold); among other tokens that
// share some of its experts and pick others; at any slot. Negative control (R8): in `fast` mode a
// group's GEMM depends on the group's size, and the same comparisons must find differences.
//   H = hidden size, E = experts, k = experts per token
#include "model/moe_block.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <set>

#include "test_paths.h"

namespace invar {
namespace {

class MoeBlockInvariance : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    auto m = model::load_model(testing::test_data(GetParam()), {});
    ASSERT_TRUE(m.ok()) << m.status().message();
    model_ = std::make_unique<model::LoadedModel>(std::move(m).value());
    while (!model::is_moe_layer(model_->config, layer_)) ++layer_;
    hidden_ = model_->config.hidden_size;
    target_ = random_rows(1, 1);
    others_ = random_rows(40, 2);
  }

  // Rows of roughly unit RMS, like the normed hidden states the block sees.
  std::vector<float> random_rows(int rows, uint32_t seed) const {
    std::mt19937 rng(seed);
    std::vector<float> v(size_t(rows) * size_t(hidden_));
    for (float& x : v) x = float(int32_t(rng() >> 8) - (1 << 23)) / float(1 << 23) * 1.7f;
    return v;
  }

  // The batch: `copies` copies of the target and the first `others` other rows, the target
  // inserted at `slot`. Returns the target's output row; `block` keeps the routing.
  std::vector<float> target_output(model::MoeBlock& block, int copies, int others, int slot) {
    std::vector<float> batch;
    for (int i = 0; i < copies; ++i) batch.insert(batch.end(), target_.begin(), target_.end());
    batch.insert(batch.end(), others_.begin(), others_.begin() + int64_t(others) * hidden_);
    batch.insert(batch.begin() + int64_t(slot) * hidden_, target_.begin(), target_.end());
    const int tokens = copies + others + 1;
    std::vector<float> out(size_t(tokens) * size_t(hidden_));
    block.forward(model_->weights.layers[size_t(layer_)], layer_, batch.data(), tokens, out.data());
    return {out.begin() + int64_t(slot) * hidden_, out.begin() + int64_t(slot + 1) * hidden_};
  }

  struct Case {
    int copies, others, slot;
  };

  // How many cases give the target other bits than computing it alone.
  int differing_cases(kernels::KernelMode mode) {
    ThreadPool pool(2);
    model::MoeBlock block(model_->config, pool, mode);
    const std::vector<float> solo = target_output(block, 0, 0, 0);
    const std::vector<int32_t> mine(block.expert_ids().begin(), block.expert_ids().end());
    int differing = 0;
    for (const Case& c : {Case{15, 0, 0}, Case{15, 0, 9}, Case{0, 40, 0}, Case{0, 40, 23},
                          Case{0, 7, 7}, Case{12, 40, 30}, Case{3, 2, 1}}) {
      const std::vector<float> got = target_output(block, c.copies, c.others, c.slot);
      if (mode == kernels::KernelMode::invariant) check_power(c, mine, block.expert_ids());
      if (std::memcmp(got.data(), solo.data(), solo.size() * sizeof(float)) != 0) {
        ++differing;
        if (mode == kernels::KernelMode::invariant)
          ADD_FAILURE() << GetParam() << ": " << c.copies << " copies and " << c.others
                        << " other tokens, target at slot " << c.slot
                        << ": its expert output differs from computing it alone";
      }
    }
    return differing;
  }

  // The cases do what they claim: with 12 or more copies each of the target's experts serves a
  // group of more than 8 rows; with 40 other tokens some share one of its experts and some pick
  // one it does not.
  void check_power(const Case& c, const std::vector<int32_t>& mine,
                   const std::vector<int32_t>& ids) const {
    const int k = model_->config.moe.experts_per_token;
    const std::set<int32_t> own(mine.begin(), mine.end());
    ASSERT_EQ(int(own.size()), k);
    int shared = 0, foreign = 0;
    std::vector<int> group(size_t(model_->config.moe.num_experts), 0);
    for (size_t i = 0; i < ids.size(); ++i) {
      ++group[size_t(ids[i])];
      if (int(i) / k == c.slot) continue;
      (own.count(ids[i]) ? shared : foreign)++;
    }
    if (c.copies >= 12) {
      for (int32_t e : own) EXPECT_GT(group[size_t(e)], 8) << "expert " << e;
    }
    if (c.others >= 40) {
      EXPECT_GT(shared, c.copies * k) << "no other token shares an expert with the target";
      EXPECT_GT(foreign, 0) << "every other token picks only the target's experts";
    }
  }

  std::unique_ptr<model::LoadedModel> model_;
  int layer_ = 0;
  int64_t hidden_ = 0;
  std::vector<float> target_, others_;
};

TEST_P(MoeBlockInvariance, TokenOutputIgnoresWhatElseIsRouted) {
  EXPECT_EQ(differing_cases(kernels::KernelMode::invariant), 0);
}

TEST_P(MoeBlockInvariance, FastModeControlFindsDifferences) {
  EXPECT_GT(differing_cases(kernels::KernelMode::fast), 0)
      << "the fast-mode control found no difference: the comparison has no power";
}

INSTANTIATE_TEST_SUITE_P(Models, MoeBlockInvariance,
                         ::testing::Values("tiny-qwen3-moe", "tiny-mixtral", "tiny-qwen2-moe"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& ch : s)
                             if (ch == '-') ch = '_';
                           return s;
                         });

}  // namespace
}  // namespace invar
