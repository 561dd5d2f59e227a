// ModelRunner on the CPU backend and the runner factory: the device choice, plan checks that
// keep a bad plan from reaching any kernel, and KV block copies (invar verify's save/restore).
#include <gtest/gtest.h>

#include <cstring>

#include "engine/model_runner_factory.h"
#include "model/config_parse.h"
#include "test_paths.h"

namespace invar {
namespace {

model::LoadedModel tiny_llama() {
  auto m = model::load_model(testing::test_data("tiny-llama"), {});
  EXPECT_TRUE(m.ok()) << m.status().message();
  return std::move(m).value();
}

std::unique_ptr<model::ModelRunner> cpu_runner(const model::LoadedModel& m, int blocks) {
  model::RunnerOptions o;
  o.threads = 2;
  o.kv_blocks = blocks;
  o.block_size = 4;
  auto r = engine::make_model_runner(m.config, m.weights, o);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return std::move(r).value();
}

TEST(ModelRunner, ParsesDevicesAndRejectsOthers) {
  EXPECT_EQ(*model::parse_device("cpu"), model::Device::cpu);
  EXPECT_EQ(*model::parse_device("cuda"), model::Device::cuda);
  auto bad = model::parse_device("tpu");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("tpu"), std::string::npos);
}

// What the CUDA backend runs is decided from the config, before any weight is read: without
// the backend every model is refused with how to build it; with it, dense and Qwen3-MoE models
// pass and a shared-expert MoE (no CUDA kernel yet) is refused with the way out.
TEST(ModelRunner, CudaChecksTheConfigBeforeLoading) {
  auto moe = model::read_hf_config(invar::testing::test_data("cuda/qwen3-30b-a3b"));
  ASSERT_TRUE(moe.ok()) << moe.status().message();
  EXPECT_TRUE(engine::check_device_config(*moe, model::Device::cpu).ok());
  if (!engine::cuda_backend_built()) {
    const Status st = engine::check_device_config(*moe, model::Device::cuda);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.message().find("INVAR_CUDA=ON"), std::string::npos) << st.message();
    return;
  }
  EXPECT_TRUE(engine::check_device_config(*moe, model::Device::cuda).ok());
  auto dense = model::read_hf_config(invar::testing::test_data("cuda/qwen3-8b"));
  ASSERT_TRUE(dense.ok());
  EXPECT_TRUE(engine::check_device_config(*dense, model::Device::cuda).ok());
  model::ModelConfig shared = *moe;
  shared.moe.shared_intermediate_size = 5632;
  const Status st = engine::check_device_config(shared, model::Device::cuda);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("shared expert"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("--device cpu"), std::string::npos) << st.message();
}

TEST(ModelRunner, CudaWithoutTheBackendOrAGpuIsAClearError) {
  const auto m = tiny_llama();
  model::RunnerOptions o;
  o.device = model::Device::cuda;
  o.kv_blocks = 4;
  auto r = engine::make_model_runner(m.config, m.weights, o);
  if (engine::cuda_backend_built() && r.ok()) GTEST_SKIP() << "a GPU is present";
  ASSERT_FALSE(r.ok());
  // Either this build has no CUDA backend, or the backend says why it cannot run the model.
  EXPECT_FALSE(r.status().message().empty());
  if (!engine::cuda_backend_built()) {
    EXPECT_NE(r.status().message().find("INVAR_CUDA=ON"), std::string::npos);
  }
}

TEST(ModelRunner, EmptyCacheIsRefused) {
  const auto m = tiny_llama();
  model::RunnerOptions o;
  o.kv_blocks = 0;
  EXPECT_FALSE(engine::make_model_runner(m.config, m.weights, o).ok());
}

TEST(ModelRunner, PlansThatWouldReadOutsideTheCacheAreErrors) {
  const auto m = tiny_llama();
  auto r = cpu_runner(m, 4);
  std::vector<float> logits;
  const std::vector<int32_t> tokens{1, 2, 3, 4, 5};
  {  // the table has no block for tokens 4..: -1 where a block is needed
    model::BatchPlan p;
    p.token_ids = tokens;
    p.positions = {0, 1, 2, 3, 4};
    p.slots = {0, 1, 2, 3, 4};
    p.q_indptr = {0, 5};
    p.kv_lens = {5};
    p.block_tables = {0, -1};
    p.max_blocks_per_seq = 2;
    p.logit_rows = {4};
    Status st = r->forward(p, logits);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.message().find("no KV block"), std::string::npos) << st.message();
  }
  {  // more cached tokens than the table can hold
    model::BatchPlan p;
    p.token_ids = {1};
    p.positions = {0};
    p.slots = {0};
    p.q_indptr = {0, 1};
    p.kv_lens = {9};
    p.block_tables = {0, 1};
    p.max_blocks_per_seq = 2;
    EXPECT_FALSE(r->forward(p, logits).ok());
  }
}

TEST(ModelRunner, CopiedKvBlocksReproduceTheLogits) {
  const auto m = tiny_llama();
  auto r = cpu_runner(m, 6);
  const std::vector<int32_t> prompt{3, 1, 4, 1, 5, 9, 2, 6};
  auto step = [&](std::vector<int32_t> table, int32_t token, std::vector<float>& out) {
    model::BatchPlanBuilder b(4, 3);
    b.add_sequence(std::vector<int32_t>{token}, int32_t(prompt.size()), table,
                   model::LogitRows::last);
    return r->forward(b.build(), out);
  };
  model::BatchPlanBuilder b(4, 3);
  b.add_sequence(prompt, 0, std::vector<int32_t>{0, 1, 2}, model::LogitRows::last);
  std::vector<float> logits, a, c;
  ASSERT_TRUE(r->forward(b.build(), logits).ok());
  ASSERT_TRUE(r->copy_kv_block(0, 3).ok());
  ASSERT_TRUE(r->copy_kv_block(1, 4).ok());
  // Decode one token on the copies (block 5 fresh) and on the originals: same bits.
  ASSERT_TRUE(step({3, 4, 5}, 7, a).ok());
  ASSERT_TRUE(step({0, 1, 2}, 7, c).ok());
  ASSERT_EQ(a.size(), c.size());
  EXPECT_EQ(std::memcmp(a.data(), c.data(), a.size() * 4), 0);
  EXPECT_FALSE(r->copy_kv_block(0, 6).ok());
  EXPECT_FALSE(r->copy_kv_block(-1, 0).ok());
}

}  // namespace
}  // namespace invar
