// engine::random_model: any config's shapes with seeded random weights and, without a
// tokenizer.json beside the config, a byte tokenizer; what `--random-weights` gives generate
// and serve.
#include <gtest/gtest.h>

#include <cmath>
#include <future>

#include "engine/engine.h"
#include "engine/fingerprint.h"
#include "engine/model_bundle.h"
#include "model/config_parse.h"
#include "test_paths.h"

namespace invar {
namespace {

TEST(RandomModel, SameSeedSameWeightsAndAByteTokenizer) {
  auto a = engine::random_model(testing::test_data("tiny-llama"), 5, {});
  auto b = engine::random_model(testing::test_data("tiny-llama/config.json"), 5, {});
  auto c = engine::random_model(testing::test_data("tiny-llama"), 6, {});
  ASSERT_TRUE(a.ok()) << a.status().message();
  ASSERT_TRUE(b.ok() && c.ok());
  EXPECT_EQ(engine::weights_hash(a->model.weights), engine::weights_hash(b->model.weights));
  EXPECT_NE(engine::weights_hash(a->model.weights), engine::weights_hash(c->model.weights));
  EXPECT_EQ(a->tokenizer.vocab_size(), 256);
  EXPECT_EQ(a->tokenizer.encode("hi!", false, false), (std::vector<int32_t>{'h', 'i', '!'}));
  EXPECT_EQ(a->tokenizer.decode({'o', 'k'}), "ok");
}

TEST(RandomModel, GeneratesThroughTheEngine) {
  auto bundle = engine::random_model(testing::test_data("tiny-qwen3"), 1, {});
  ASSERT_TRUE(bundle.ok()) << bundle.status().message();
  engine::EngineOptions o;
  o.threads = 2;
  o.max_context = 64;
  engine::Engine eng(*bundle, o);
  engine::RequestParams p;
  p.prompt = bundle->tokenizer.encode("abc", false, false);
  p.max_tokens = 5;
  p.ignore_eos = true;
  std::promise<engine::RequestEvent> done;
  int tokens = 0;
  auto id = eng.submit(p, [&](const engine::RequestEvent& ev) {
    tokens += int(ev.tokens.size());
    if (ev.finished()) done.set_value(ev);
  });
  ASSERT_TRUE(id.ok()) << id.status().message();
  const auto last = done.get_future().get();
  EXPECT_EQ(last.finish, engine::FinishReason::length);
  EXPECT_EQ(last.completion_tokens, 5);
}

// The largest error, in units of the f32 spacing at each weight, of reading a [rows, cols] f32
// matrix as E4M3 values times one scale per block_rows x block_cols block (each block's scale
// taken as its amax / 448, which its largest weight, code 448, gives). An FP8 checkpoint's
// weights sit on that grid to a rounding or two; drawn f32 weights miss it by ~2^20 units.
double fp8_grid_error(const model::HostTensor& t, int block_rows, int block_cols) {
  const int64_t rows = t.shape[0], cols = t.shape[1];
  const float* w = t.f32();
  double worst = 0;
  for (int64_t r0 = 0; r0 < rows; r0 += block_rows)
    for (int64_t c0 = 0; c0 < cols; c0 += block_cols) {
      float amax = 0;
      for (int64_t r = r0; r < std::min(rows, r0 + block_rows); ++r)
        for (int64_t c = c0; c < std::min(cols, c0 + block_cols); ++c)
          amax = std::max(amax, std::fabs(w[r * cols + c]));
      const float s = amax / 448.0f;
      for (int64_t r = r0; r < std::min(rows, r0 + block_rows); ++r)
        for (int64_t c = c0; c < std::min(cols, c0 + block_cols); ++c) {
          const float x = w[r * cols + c];
          if (x == 0.0f) continue;
          const float grid = fp8_e4m3_to_f32(f32_to_fp8_e4m3(x / s)) * s;
          const double ulp = std::nextafter(std::fabs(x), INFINITY) - std::fabs(x);
          worst = std::max(worst, std::fabs(double(grid) - double(x)) / ulp);
        }
    }
  return worst;
}

// --random-weights of an FP8 config (quantization_config "fp8", here blocks of 32 x 32): the
// attention and MLP matrices are E4M3 codes times block scales, as an FP8 checkpoint loads; the
// embedding, lm_head and norms are drawn as for any model.
TEST(RandomModel, Fp8ConfigGivesBlockScaledE4m3Weights) {
  auto c = model::read_hf_config(testing::test_data("tiny-qwen3-fp8"));
  ASSERT_TRUE(c.ok()) << c.status().message();
  ASSERT_TRUE(c->fp8.enabled());
  const int br = c->fp8.block_rows, bc = c->fp8.block_cols;
  const model::ModelWeights w = model::random_weights(*c, 7, DType::f32);
  model::ModelConfig plain_config = *c;
  plain_config.fp8 = {};
  const model::ModelWeights plain = model::random_weights(plain_config, 7, DType::f32);
  for (const model::LayerWeights& L : w.layers)
    for (const model::HostTensor* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
      EXPECT_LE(fp8_grid_error(*m, br, bc), 4.0);
  const model::LayerWeights& L0 = plain.layers[0];
  EXPECT_GT(fp8_grid_error(L0.wq, br, bc), 1000.0);  // the check sees f32 weights
  EXPECT_GT(fp8_grid_error(w.embedding, br, bc), 1000.0);
  EXPECT_TRUE(w.embedding.bytes == plain.embedding.bytes);
  EXPECT_FALSE(w.layers[0].wq.bytes == L0.wq.bytes);
  // The codes and scales are kept (HostTensor::fp8, for FP8 GEMMs): code x scale is the value.
  for (const model::HostTensor* m : {&w.layers[1].wq, &w.layers[1].w_down}) {
    ASSERT_TRUE(m->fp8);
    EXPECT_EQ(m->fp8->block_rows, br);
    const int64_t cols = m->shape[1], grid_cols = (cols + bc - 1) / bc;
    for (int64_t i = 0; i < m->numel(); ++i) {
      const int64_t r = i / cols, col = i % cols;
      ASSERT_EQ(fp8_e4m3_to_f32(m->fp8->codes[size_t(i)]) *
                    m->fp8->scales[size_t(r / br * grid_cols + col / bc)],
                m->f32()[i])
          << i;
    }
  }
  EXPECT_FALSE(w.embedding.fp8);
  EXPECT_FALSE(L0.wq.fp8);
  // Quantizing moves each weight by at most half an E4M3 step (1/16 of it) of its block's range.
  const float* q = w.layers[0].w_down.f32();
  const float* p = L0.w_down.f32();
  for (int64_t i = 0; i < L0.w_down.numel(); ++i)
    ASSERT_LE(std::fabs(q[i] - p[i]), std::fabs(p[i]) / 16 + 1e-3f) << i;

  // bf16 storage holds the same values rounded; the same seed gives the same bits.
  const model::ModelWeights b = model::random_weights(*c, 7, DType::bf16);
  ASSERT_EQ(b.layers[1].w_up.dtype, DType::bf16);
  const uint16_t* bu = reinterpret_cast<const uint16_t*>(b.layers[1].w_up.bytes.data());
  for (int64_t i = 0; i < b.layers[1].w_up.numel(); ++i)
    ASSERT_EQ(bu[i], f32_to_bf16(w.layers[1].w_up.f32()[i])) << i;
  EXPECT_TRUE(model::random_weights(*c, 7, DType::f32).layers[1].wk.bytes == w.layers[1].wk.bytes);
}

TEST(RandomModel, MissingConfigIsAClearError) {
  auto r = engine::random_model(testing::test_data("no-such-model"), 1, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no-such-model"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace invar
