// Tensor parallelism's contract (docs/tensor-parallel.md), on the CPU with ranks as threads: the
// logits of every position of a target sequence, over a chunked or whole prefill and several
// decode steps, alone or among other sequences, are bitwise the same at tensor-parallel sizes
// 1, 2, 4 and 8 with the row-parallel GEMMs' fixed slice tree. Models: seeded random weights of
// a config with 8 query heads and 2 kv heads (sizes 4 and 8 replicate kv heads) and a vocabulary
// that 8 does not divide; and the tiny architecture models (4 heads: sizes 1, 2, 4). Negative
// control (R8): without the slices (each rank reduces its whole K range, the ranks summed in
// rank order) size 2's logits differ from size 1's.
#include "model/tensor_parallel.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "engine/model_runner_factory.h"
#include "model/config_parse.h"
#include "test_paths.h"

namespace invar {
namespace {

constexpr int kBlock = 16;
constexpr int kMaxBlocks = 4;  // 64 positions per sequence
constexpr int kSeqs = 3;       // target + 2 others
constexpr int kPrompt = 13;
constexpr int kDecode = 4;

constexpr const char* kConfig = R"({
  "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3",
  "hidden_size": 64, "intermediate_size": 256, "num_attention_heads": 8,
  "num_key_value_heads": 2, "head_dim": 16, "num_hidden_layers": 2, "vocab_size": 301,
  "max_position_embeddings": 256, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
  "tie_word_embeddings": false, "torch_dtype": "float32"})";

struct Case {
  std::vector<int> chunks;  // the target's prompt cut into these prefill chunks
  bool others;              // other sequences share every step
};

class TensorParallel : public ::testing::Test {
 protected:
  void SetUp() override {
    auto config = model::parse_hf_config(kConfig, "tensor_parallel_test");
    ASSERT_TRUE(config.ok()) << config.status().message();
    random_.config = config.value();
    random_.weights = model::random_weights(random_.config, 11, DType::f32);
    std::mt19937 rng(5);
    for (auto& s : seqs_) {
      s.resize(kPrompt + kDecode + 8);
      for (auto& t : s) t = int32_t(rng() % 256u);  // within every test model's vocabulary
    }
  }

  static std::vector<int32_t> table(int i) {
    std::vector<int32_t> t;
    for (int b = 0; b < kMaxBlocks; ++b) t.push_back((kMaxBlocks - 1 - b) * kSeqs + i);
    return t;
  }

  // The target's logits at every position: its prompt in c.chunks, then kDecode one-token steps
  // (the next tokens are given, not sampled). With c.others, sequences 1 and 2 add 3 and 5
  // tokens to each step, before the target.
  std::vector<float> run(const model::LoadedModel& m, int size, int slices, const Case& c) {
    model::RunnerOptions o;
    o.kv_blocks = kMaxBlocks * kSeqs;
    o.block_size = kBlock;
    o.threads = 2;
    o.tensor_parallel_size = size;
    o.tp_slices = slices;
    auto runner = engine::make_model_runner(m.config, m.weights, o);
    EXPECT_TRUE(runner.ok()) << runner.status().message();
    if (!runner.ok()) return {};
    std::vector<float> all, logits;
    std::vector<int> steps = c.chunks;
    steps.insert(steps.end(), kDecode, 1);
    int done[kSeqs] = {0, 0, 0};
    for (int n : steps) {
      model::BatchPlanBuilder b(kBlock, kMaxBlocks);
      for (int i = 1; i < kSeqs && c.others; ++i) {
        const int k = std::min(2 * i + 1, int(seqs_[i].size()) - done[i]);
        b.add_sequence(std::span<const int32_t>(seqs_[i]).subspan(size_t(done[i]), size_t(k)),
                       done[i], table(i), model::LogitRows::last);
        done[i] += k;
      }
      b.add_sequence(std::span<const int32_t>(seqs_[0]).subspan(size_t(done[0]), size_t(n)),
                     done[0], table(0), model::LogitRows::all);
      done[0] += n;
      Status st = runner.value()->forward(b.build(), logits);
      EXPECT_TRUE(st.ok()) << st.message();
      const size_t tail = size_t(n) * size_t(m.config.vocab_size);
      all.insert(all.end(), logits.end() - ptrdiff_t(tail), logits.end());
    }
    return all;
  }

  static bool same(const std::vector<float>& a, const std::vector<float>& b) {
    return !a.empty() && a.size() == b.size() &&
           std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  }

  // Every size and case against size 1 with slices, target alone, whole prefill.
  void expect_invariant(const model::LoadedModel& m, const std::vector<int>& sizes) {
    const std::vector<Case> cases = {{{kPrompt}, false}, {{5, 7, 1}, true}, {{1, 12}, true}};
    const std::vector<float> ref = run(m, 1, model::kDefaultTpSlices, cases[0]);
    ASSERT_EQ(ref.size(), size_t(kPrompt + kDecode) * size_t(m.config.vocab_size));
    for (int size : sizes)
      for (size_t c = 0; c < cases.size(); ++c)
        EXPECT_TRUE(same(run(m, size, model::kDefaultTpSlices, cases[c]), ref))
            << "tensor-parallel size " << size << ", case " << c << ": logits differ from size 1";
  }

  model::LoadedModel random_;
  std::vector<int32_t> seqs_[kSeqs];
};

TEST_F(TensorParallel, RandomModelLogitsEqualAtSizes1248) {
  expect_invariant(random_, {1, 2, 4, 8});
}

// The control: ranks that each reduce their whole K range give other bits at size 2 than one
// GEMM over K at size 1, so the comparison above can see a difference.
TEST_F(TensorParallel, WithoutSlicesSize2DiffersFromSize1) {
  const Case alone{{kPrompt}, false};
  const std::vector<float> plain = run(random_, 1, 0, alone);
  EXPECT_FALSE(same(run(random_, 2, 0, alone), plain))
      << "the unsliced control found no difference: the comparison has no power";
  // The slice tree is a different sum than the plain GEMM: its bits are not the default's.
  EXPECT_FALSE(same(run(random_, 1, model::kDefaultTpSlices, alone), plain));
}

// At size 1 without slices the tensor-parallel runner is the plain CPU runner, bit for bit.
TEST_F(TensorParallel, UnslicedSize1IsThePlainRunner) {
  model::RunnerOptions o;
  o.kv_blocks = kMaxBlocks * kSeqs;
  o.block_size = kBlock;
  o.threads = 2;
  o.tensor_parallel_size = 1;
  o.tp_slices = 0;
  auto tp = model::make_tp_cpu_runner(random_.config, random_.weights, o);
  auto plain = model::make_cpu_runner(random_.config, random_.weights, o);
  model::BatchPlanBuilder b(kBlock, kMaxBlocks);
  b.add_sequence(std::span<const int32_t>(seqs_[0]).first(kPrompt), 0, table(0),
                 model::LogitRows::all);
  const model::BatchPlan plan = b.build();
  std::vector<float> a, c;
  ASSERT_TRUE(tp->forward(plan, a).ok());
  ASSERT_TRUE(plain->forward(plan, c).ok());
  EXPECT_TRUE(same(a, c));
}

TEST_F(TensorParallel, RefusesSizesTheModelCannotTake) {
  const model::ModelConfig& c = random_.config;
  EXPECT_TRUE(model::check_tensor_parallel(c, 8, 8).ok());
  EXPECT_FALSE(model::check_tensor_parallel(c, 3, 8).ok());    // not a power of two
  EXPECT_FALSE(model::check_tensor_parallel(c, 16, 8).ok());   // does not divide S
  EXPECT_FALSE(model::check_tensor_parallel(c, 16, 16).ok());  // 8 heads
  model::ModelConfig odd = c;
  odd.num_kv_heads = 3;
  odd.num_heads = 6;
  EXPECT_FALSE(model::check_tensor_parallel(odd, 2, 8).ok());  // 3 kv heads, 48-wide o_proj K
  model::RunnerOptions cuda;
  cuda.device = model::Device::cuda;
  cuda.tensor_parallel_size = 2;
  // On CUDA: refused by a build without the CUDA backend, and by one with it for the GEMM's
  // widths (a vocabulary of 301 does not split into shares a multiple of 8 wide).
  const Status st = engine::check_tensor_parallel_options(c, cuda);
  EXPECT_FALSE(st.ok());
  const std::string& why = st.message();
  EXPECT_TRUE(why.find("no CUDA backend") != std::string::npos ||
              why.find("multiple of 8") != std::string::npos)
      << why;
}

// The tiny architecture models (4 query heads, 2 kv heads): sizes 1, 2, 4. Gemma adds post norms
// and soft-capped logits (applied after the gather), Gemma 3 q/k norms and per-layer ropes,
// tiny-phi3 partial rotary, tiny-mistral a sliding window shorter than the sequence;
// tiny-kquants is packed GGUF (a slice keeps its blocks on block boundaries, else is decoded).
class TensorParallelTiny : public TensorParallel,
                           public ::testing::WithParamInterface<const char*> {};

TEST_P(TensorParallelTiny, LogitsEqualAtSizes124) {
  auto m = model::load_model(testing::test_data(GetParam()), {});
  ASSERT_TRUE(m.ok()) << m.status().message();
  ASSERT_GE(m.value().config.vocab_size, 256);
  expect_invariant(m.value(), {1, 2, 4});
}

INSTANTIATE_TEST_SUITE_P(Models, TensorParallelTiny,
                         ::testing::Values("tiny-qwen3", "tiny-gemma2", "tiny-gemma3", "tiny-phi3",
                                           "tiny-mistral", "tiny-kquants/model.gguf"));

}  // namespace
}  // namespace invar
