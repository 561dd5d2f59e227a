// The invariance contract (docs/invariance.md, items 1-3) bitwise for each tiny architecture
// model of tests/data (scripts/make-tiny-models.py), on the CPU: the logits of every position of
// a target sequence are the same when its prompt is prefilled at once, cut into chunks, or
// computed among other sequences in the same steps. The sequences are longer than the models'
// sliding windows, so the window's mask (a function of absolute position) is exercised across
// chunk boundaries, and past tiny-phi3's original_max_position_embeddings (32), so a chunk may
// hold positions of both longrope tables. The Gemma models add soft-capped scores and logits,
// per-layer windows and (Gemma 3) per-layer ropes; tiny-qwen3-yarn its blended rope table. For
// the mixture-of-experts models (tiny-qwen3-moe, tiny-mixtral, tiny-qwen2-moe) each step groups
// different tokens under each expert, so the expert GEMMs see other row counts from case to case;
// tiny-qwen3-fp8's weights are dequantized fp8. Negative control (R8): the same comparisons in
// `fast` mode must differ.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "model/transformer.h"
#include "test_paths.h"

namespace invar {
namespace {

constexpr int kBlock = 16;
constexpr int kMaxBlocks = 8;  // 128 positions per sequence
constexpr int kSeqs = 4;       // target + 3 others
constexpr int kLen = 40;       // target tokens: several windows of 8

class TinyModelInvariance : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    auto m = model::load_model(testing::test_data(GetParam()), {});
    ASSERT_TRUE(m.ok()) << m.status().message();
    model_ = std::make_unique<model::LoadedModel>(std::move(m).value());
    std::mt19937 rng(7);
    for (auto& s : seqs_) {
      s.resize(kLen + 30);
      for (auto& t : s) t = int32_t(rng() % uint32_t(model_->config.vocab_size));
    }
  }

  // Block table of sequence i: its blocks interleaved with the others' (scrambled pages).
  static std::vector<int32_t> table(int i) {
    std::vector<int32_t> t;
    for (int b = 0; b < kMaxBlocks; ++b) t.push_back((kMaxBlocks - 1 - b) * kSeqs + i);
    return t;
  }

  // Logits of every target position, its prompt fed in `chunks`; in each step the other
  // sequences add `others` tokens each (0: the target runs alone), placed before it.
  std::vector<float> run(kernels::KernelMode mode, const std::vector<int>& chunks, int others) {
    ThreadPool pool(2);
    model::Transformer tf(model_->config, model_->weights, pool, mode);
    model::KvCache cache(model_->config, kMaxBlocks * kSeqs, kBlock, DType::f16);
    std::vector<float> all, logits;
    std::vector<int> done(kSeqs, 0);
    size_t c = 0;
    while (done[0] < kLen) {
      const int n = std::min(chunks[c++ % chunks.size()], kLen - done[0]);
      model::BatchPlanBuilder b(kBlock, kMaxBlocks);
      for (int i = 1; i <= 3 && others > 0; ++i) {
        const int m = std::min(others + i - 1, int(seqs_[size_t(i)].size()) - done[size_t(i)]);
        if (m <= 0) continue;
        const auto& seq = seqs_[size_t(i)];
        b.add_sequence(std::span<const int32_t>(seq).subspan(size_t(done[size_t(i)]), size_t(m)),
                       done[size_t(i)], table(i), model::LogitRows::last);
        done[size_t(i)] += m;
      }
      // The target comes last: its rows are the last n logit rows.
      b.add_sequence(std::span<const int32_t>(seqs_[0]).subspan(size_t(done[0]), size_t(n)),
                     done[0], table(0), model::LogitRows::all);
      const model::BatchPlan plan = b.build();
      Status st = tf.forward(plan, cache, logits);
      EXPECT_TRUE(st.ok()) << st.message();
      const size_t vocab = size_t(model_->config.vocab_size);
      const size_t target_rows = size_t(n);
      all.insert(all.end(), logits.end() - ptrdiff_t(target_rows * vocab), logits.end());
      done[0] += n;
    }
    return all;
  }

  // How many of the cases differ bitwise from the whole prefill alone.
  int differing_cases(kernels::KernelMode mode) {
    const std::vector<float> solo = run(mode, {kLen}, 0);
    EXPECT_EQ(solo.size(), size_t(kLen) * size_t(model_->config.vocab_size));
    int differing = 0;
    const std::vector<std::pair<std::vector<int>, int>> cases = {
        {{1}, 0},    {{3}, 0}, {{7}, 0}, {{5, 11, 2}, 0},
        {{kLen}, 1}, {{1}, 2}, {{7}, 1}, {{9, 4}, 3}};
    for (const auto& [chunks, others] : cases) {
      const std::vector<float> got = run(mode, chunks, others);
      const bool same = got.size() == solo.size() &&
                        std::memcmp(got.data(), solo.data(), solo.size() * sizeof(float)) == 0;
      if (!same) {
        ++differing;
        if (mode == kernels::KernelMode::invariant)
          ADD_FAILURE() << GetParam() << ": chunks of " << chunks[0] << ", " << others
                        << " other tokens per sequence: logits differ from the solo prefill";
      }
    }
    return differing;
  }

  std::unique_ptr<model::LoadedModel> model_;
  std::vector<int32_t> seqs_[kSeqs];
};

TEST_P(TinyModelInvariance, ChunkedAndBatchedLogitsEqualTheSoloPrefill) {
  EXPECT_EQ(differing_cases(kernels::KernelMode::invariant), 0);
}

TEST_P(TinyModelInvariance, FastModeControlFindsDifferences) {
  EXPECT_GT(differing_cases(kernels::KernelMode::fast), 0)
      << "the fast-mode control found no difference: the comparison has no power";
}

INSTANTIATE_TEST_SUITE_P(Models, TinyModelInvariance,
                         ::testing::Values("tiny-mistral", "tiny-phi3", "tiny-gemma2",
                                           "tiny-gemma3", "tiny-qwen3-yarn", "tiny-qwen3-moe",
                                           "tiny-mixtral", "tiny-qwen3-fp8", "tiny-qwen2-moe"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& ch : s)
                             if (ch == '-') ch = '_';
                           return s;
                         });

}  // namespace
}  // namespace invar
