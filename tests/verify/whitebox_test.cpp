// `invar verify` white-box on SmolLM2 (small matrix): invariant mode passes, the fast-mode
// negative control finds differences, and a deliberately batch-dependent op injected by the test
// switch is caught and localized to that op.
#include "verify/whitebox.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory>

#include "engine/model_bundle.h"
#include "model/kv_cache.h"
#include "model/tensor_parallel.h"
#include "model/transformer.h"
#include "test_paths.h"
#include "verify/activation_trace.h"

namespace invar::verify {
namespace {

using kernels::KernelMode;

int test_threads() {
  const char* env = std::getenv("INVAR_TEST_THREADS");
  return env ? std::atoi(env) : 2;
}

class WhiteBox : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string path = invar::testing::default_model_path();
    if (path.empty()) return;
    auto b = engine::open_model(path, {});
    ASSERT_TRUE(b.ok()) << b.status().message();
    bundle_ = new engine::ModelBundle(std::move(b).value());
  }
  static void TearDownTestSuite() {
    delete bundle_;
    bundle_ = nullptr;
  }
  void SetUp() override {
    if (!bundle_) GTEST_SKIP() << "default model not fetched (run scripts/fetch-model)";
  }

  // A small matrix: enough batch sizes on both sides of the CPU fast mode's split-K boundary
  // (M <= 8) for the negative control to have power.
  static WhiteBoxOptions small(KernelMode mode) {
    WhiteBoxOptions o;
    o.threads = test_threads();
    o.modes = {mode};
    o.prompt =
        "The capital of France is Paris. The capital of Germany is Berlin, and the capital of";
    o.decode_tokens = 3;
    o.batch_sizes = {1, 2, 3, 9, 17, 32};
    o.chunk_sizes = {1, 7, 16, 0};
    o.loaded_others = 3;
    o.engine_max_tokens = 6;
    o.engine_copies = 2;
    o.engine_background = 6;
    return o;
  }

  static const WhiteBoxScenario* scenario(const WhiteBoxMode& m, const std::string& name) {
    for (const auto& s : m.scenarios)
      if (s.name == name) return &s;
    return nullptr;
  }

  static inline engine::ModelBundle* bundle_ = nullptr;
};

TEST_F(WhiteBox, InvariantModePassesEveryScenario) {
  WhiteBoxReport r = run_whitebox(*bundle_, small(KernelMode::invariant));
  ASSERT_TRUE(r.error.empty()) << r.error;
  ASSERT_EQ(r.modes.size(), 1u);
  EXPECT_EQ(r.verdict(), Verdict::pass) << format_report(r);
  for (const auto& name : whitebox_scenario_names()) {
    const WhiteBoxScenario* s = scenario(r.modes[0], name);
    ASSERT_NE(s, nullptr) << name;
    EXPECT_TRUE(s->error.empty()) << name << ": " << s->error;
    EXPECT_GT(s->cases, 0) << name;
    EXPECT_EQ(s->mismatched, 0) << name;
  }
  // The engine scenarios did what they say.
  EXPECT_EQ(scenario(r.modes[0], "engine-preempt")->note.find("none happened"), std::string::npos)
      << scenario(r.modes[0], "engine-preempt")->note;
  EXPECT_EQ(scenario(r.modes[0], "engine-prefix")->note.find("not hit"), std::string::npos)
      << scenario(r.modes[0], "engine-prefix")->note;
  const std::string json = report_json(r);
  EXPECT_NE(json.find("\"verdict\": \"PASS\""), std::string::npos);
}

// R8: the same matrix must see the fast mode's batch-dependent GEMM, and name a GEMM as the
// first op that differs.
TEST_F(WhiteBox, FastModeNegativeControlFindsDifferences) {
  WhiteBoxOptions o = small(KernelMode::fast);
  o.scenarios = {"chunked", "batch-decode"};
  o.chunk_sizes = {7, 0};
  o.batch_sizes = {1, 2, 9, 12};
  WhiteBoxReport r = run_whitebox(*bundle_, o);
  ASSERT_TRUE(r.error.empty()) << r.error;
  ASSERT_EQ(r.modes.size(), 1u);
  EXPECT_TRUE(r.modes[0].control);
  EXPECT_GT(scenario(r.modes[0], "chunked")->mismatched, 0) << format_report(r);
  // Decode batches of 9 and 12 rows leave split-K; the solo decode (1 row) does not.
  EXPECT_GE(scenario(r.modes[0], "batch-decode")->mismatched, 2) << format_report(r);
  EXPECT_EQ(r.verdict(), Verdict::pass);  // the control saw differences: it has power
  for (const auto& s : r.modes[0].scenarios)
    for (const auto& m : s.mismatches) {
      ASSERT_TRUE(m.where && m.where->found) << m.case_name;
      EXPECT_EQ(m.where->layer, 0) << m.case_name;
      EXPECT_EQ(m.where->op, model::ProbeOp::q_proj) << m.case_name;
    }
}

// A control that never differs means the matrix lacked power: the verdict says so.
TEST_F(WhiteBox, ControlWithoutDifferencesIsNoPower) {
  WhiteBoxOptions o = small(KernelMode::fast);
  o.modes = {KernelMode::invariant, KernelMode::fast};
  o.scenarios = {"batch-decode"};
  o.batch_sizes = {1, 2, 3};  // all inside split-K's band: fast mode cannot differ
  WhiteBoxReport r = run_whitebox(*bundle_, o);
  ASSERT_EQ(r.modes.size(), 2u);
  EXPECT_EQ(r.modes[1].mismatched(), 0);
  EXPECT_EQ(r.verdict(), Verdict::no_power);
  EXPECT_EQ(verdict_exit_code(r.verdict()), 3);
}

struct InjectionCase {
  const char* spec;
  int layer;
  model::ProbeOp op;
};

TEST_F(WhiteBox, InjectedBatchDependentOpIsCaughtAndLocalized) {
  for (const InjectionCase& c : {InjectionCase{"ffn_norm@3", 3, model::ProbeOp::ffn_norm},
                                 InjectionCase{"rmsnorm", 0, model::ProbeOp::attn_norm},
                                 InjectionCase{"attention@7", 7, model::ProbeOp::attention},
                                 InjectionCase{"down_proj", 0, model::ProbeOp::down_proj},
                                 InjectionCase{"logits", 30, model::ProbeOp::logits}}) {
    WhiteBoxOptions o = small(KernelMode::invariant);
    o.scenarios = {"chunked", "batch-mixed"};
    o.chunk_sizes = {5, 0};
    o.batch_sizes = {2, 7};
    auto inj = parse_injection(c.spec);
    ASSERT_TRUE(inj.ok()) << inj.status().message();
    o.inject = *inj;
    WhiteBoxReport r = run_whitebox(*bundle_, o);
    ASSERT_TRUE(r.error.empty()) << r.error;
    EXPECT_EQ(r.verdict(), Verdict::fail) << c.spec << "\n" << format_report(r);
    EXPECT_EQ(verdict_exit_code(r.verdict()), 1);
    int localized = 0;
    for (const auto& s : r.modes[0].scenarios)
      for (const auto& m : s.mismatches) {
        ASSERT_TRUE(m.where && m.where->found) << c.spec << ": " << m.case_name;
        EXPECT_EQ(m.where->layer, c.layer) << c.spec << ": " << m.case_name;
        EXPECT_EQ(m.where->op, c.op)
            << c.spec << ": " << m.case_name << " named " << model::probe_op_name(m.where->op);
        ++localized;
      }
    EXPECT_GT(localized, 0) << c.spec;
    EXPECT_NE(format_report(r).find(std::string(model::probe_op_name(c.op)) + " "),
              std::string::npos);
  }
}

// A checkpoint without a tokenizer (Qwen3: q_norm and k_norm ops) runs on random token ids.
TEST(WhiteBoxTiny, Qwen3WithoutTokenizerPassesAndLocalizesQkNorm) {
  auto m = model::load_model(invar::testing::test_data("tiny-qwen3"), {});
  ASSERT_TRUE(m.ok()) << m.status().message();
  WhiteBoxOptions o = WhiteBoxOptions::quick();
  o.threads = test_threads();
  WhiteBoxReport r = run_whitebox(*m, o);
  ASSERT_TRUE(r.error.empty()) << r.error;
  EXPECT_EQ(r.verdict(), Verdict::pass) << format_report(r);
  ASSERT_EQ(r.modes.size(), 2u);
  EXPECT_EQ(r.modes[0].mismatched(), 0);
  EXPECT_GT(r.modes[1].mismatched(), 0);       // the control has power
  EXPECT_EQ(r.modes[0].scenarios.size(), 4u);  // the Engine scenarios need a tokenizer
  EXPECT_FALSE(r.notes.empty());

  o.modes = {KernelMode::invariant};
  o.inject = *parse_injection("q_norm@1");
  r = run_whitebox(*m, o);
  EXPECT_EQ(r.verdict(), Verdict::fail);
  for (const auto& s : r.modes[0].scenarios)
    for (const auto& x : s.mismatches) {
      ASSERT_TRUE(x.where && x.where->found) << x.case_name;
      EXPECT_EQ(x.where->layer, 1);
      EXPECT_EQ(x.where->op, model::ProbeOp::q_norm);
    }
}

// verify --tensor-parallel-size: the matrix passes at every size, and the solo logits digest is
// the same at sizes 1 (sliced), 2 and 4; the plain size-1 run (no slices) has other bits.
TEST(WhiteBoxTiny, TensorParallelSizesGiveOneDigest) {
  auto m = model::load_model(invar::testing::test_data("tiny-qwen3"), {});
  ASSERT_TRUE(m.ok()) << m.status().message();
  WhiteBoxOptions o = WhiteBoxOptions::quick();
  o.threads = test_threads();
  o.modes = {KernelMode::invariant};
  o.scenarios = {"chunked"};
  auto digest = [&](int size, int slices) {
    o.tensor_parallel_size = size;
    o.tp_slices = slices;
    const WhiteBoxReport r = run_whitebox(*m, o);
    EXPECT_TRUE(r.error.empty()) << r.error;
    EXPECT_EQ(r.verdict(), Verdict::pass) << format_report(r);
    return r.modes.empty() ? std::string() : r.modes[0].solo_digest;
  };
  const std::string sliced = digest(1, model::kDefaultTpSlices);
  EXPECT_FALSE(sliced.empty());
  EXPECT_EQ(digest(2, -1), sliced);
  EXPECT_EQ(digest(4, -1), sliced);
  EXPECT_NE(digest(1, -1), sliced);
}

// A tiny model passes white-box verify with a control that has power, and each injected fault
// is found at its layer and op.
void expect_tiny_model_passes_and_localizes(const char* dir,
                                            std::initializer_list<InjectionCase> cases) {
  auto m = model::load_model(invar::testing::test_data(dir), {});
  ASSERT_TRUE(m.ok()) << m.status().message();
  WhiteBoxOptions o = WhiteBoxOptions::quick();
  o.threads = test_threads();
  WhiteBoxReport r = run_whitebox(*m, o);
  ASSERT_TRUE(r.error.empty()) << r.error;
  EXPECT_EQ(r.verdict(), Verdict::pass) << format_report(r);
  ASSERT_EQ(r.modes.size(), 2u);
  EXPECT_GT(r.modes[1].mismatched(), 0);  // the control has power

  o.modes = {KernelMode::invariant};
  for (const InjectionCase& c : cases) {
    o.inject = *parse_injection(c.spec);
    r = run_whitebox(*m, o);
    EXPECT_EQ(r.verdict(), Verdict::fail) << dir << " " << c.spec;
    int localized = 0;
    for (const auto& s : r.modes[0].scenarios)
      for (const auto& x : s.mismatches) {
        ASSERT_TRUE(x.where && x.where->found) << c.spec << ": " << x.case_name;
        EXPECT_EQ(x.where->layer, c.layer) << c.spec;
        EXPECT_EQ(x.where->op, c.op) << c.spec << ": named " << model::probe_op_name(x.where->op);
        ++localized;
      }
    EXPECT_GT(localized, 0) << dir << " " << c.spec;
  }
}

// Gemma 2's own ops are probed: an injection after the post-attention norm or the GeGLU is
// found at that layer and op; the model passes and its control has power.
TEST(WhiteBoxTiny, Gemma2LocalizesPostNormAndGelu) {
  expect_tiny_model_passes_and_localizes(
      "tiny-gemma2", {InjectionCase{"post_attn_norm@1", 1, model::ProbeOp::post_attn_norm},
                      InjectionCase{"gelu_tanh_mul@0", 0, model::ProbeOp::gelu_tanh_mul}});
  EXPECT_TRUE(parse_injection("rmsnorm")->applies(0, model::ProbeOp::post_ffn_norm));
}

// A mixture of experts (tiny-qwen3-moe: layers 0 and 2 sparse, 1 dense) passes, and a fault in
// its router or expert mixture is localized to that layer and op.
TEST(WhiteBoxTiny, Qwen3MoePassesAndLocalizesRouterAndExperts) {
  expect_tiny_model_passes_and_localizes(
      "tiny-qwen3-moe", {InjectionCase{"router@0", 0, model::ProbeOp::router},
                         InjectionCase{"experts@2", 2, model::ProbeOp::experts}});
}

TEST(Injection, ParsesOpsGroupsAndLayers) {
  auto a = parse_injection("down_proj@12");
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->applies(12, model::ProbeOp::down_proj));
  EXPECT_FALSE(a->applies(11, model::ProbeOp::down_proj));
  EXPECT_FALSE(a->applies(12, model::ProbeOp::up_proj));
  auto g = parse_injection("gemm");
  ASSERT_TRUE(g.ok());
  EXPECT_TRUE(g->applies(5, model::ProbeOp::k_proj));
  EXPECT_TRUE(g->applies(30, model::ProbeOp::logits));
  EXPECT_FALSE(g->applies(5, model::ProbeOp::attention));
  EXPECT_FALSE(parse_injection("softmax").ok());
  EXPECT_FALSE(parse_injection("rmsnorm@x").ok());
  EXPECT_TRUE(Injection{}.empty());
}

// The probe only observes: logits are the same bits with and without it.
TEST_F(WhiteBox, ProbeDoesNotChangeTheForwardPass) {
  const auto& m = bundle_->model;
  ThreadPool pool(test_threads());
  model::Transformer t(m.config, m.weights, pool);
  model::KvCache cache(m.config, 4, 16, DType::f16);
  std::vector<int32_t> tokens =
      bundle_->tokenizer.encode("Hello there, how are you today?", false, false);
  std::vector<int32_t> table{2, 0};
  auto run = [&](model::ActivationProbe* probe) {
    t.set_probe(probe);
    model::BatchPlanBuilder b(16, 2);
    b.add_sequence(tokens, 0, table, model::LogitRows::all);
    std::vector<float> logits;
    EXPECT_TRUE(t.forward(b.build(), cache, logits).ok());
    return logits;
  };
  const auto plain = run(nullptr);
  ActivationTrace trace(m.config.num_layers, int(tokens.size()));
  trace.set_target(0);
  const auto probed = run(&trace);
  ASSERT_EQ(plain.size(), probed.size());
  EXPECT_EQ(std::memcmp(plain.data(), probed.data(), plain.size() * sizeof(float)), 0);
  // Same run again: every recorded op equal.
  ActivationTrace again(m.config.num_layers, int(tokens.size()));
  again.set_target(0);
  run(&again);
  Localization loc = again.compare_with(trace);
  EXPECT_FALSE(loc.found);
  EXPECT_EQ(loc.ops.size(), size_t(m.config.num_layers) * 15 + 3);  // Llama: no q/k norm
}

}  // namespace
}  // namespace invar::verify
