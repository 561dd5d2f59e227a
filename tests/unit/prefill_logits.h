// The GGUF tests' reference run: the logits of every position of `ids`, prefilled at once on the
// CPU Transformer, its KV blocks in a shuffled table (block ids need not be ordered).
#pragma once

#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "core/thread_pool.h"
#include "model/batch.h"
#include "model/kv_cache.h"
#include "model/transformer.h"
#include "model/weights.h"

namespace invar::testing {

inline std::vector<float> prefill_logits(const model::LoadedModel& m,
                                         const std::vector<int32_t>& ids,
                                         const std::vector<int32_t>& table = {2, 0, 3, 1}) {
  ThreadPool pool(2);
  model::Transformer tf(m.config, m.weights, pool);
  model::KvCache cache(m.config, 4, 16, DType::f32);
  model::BatchPlanBuilder b(16, 4);
  b.add_sequence(ids, 0, table, model::LogitRows::all);
  std::vector<float> logits;
  Status st = tf.forward(b.build(), cache, logits);
  EXPECT_TRUE(st.ok()) << st.message();
  return logits;
}

}  // namespace invar::testing
