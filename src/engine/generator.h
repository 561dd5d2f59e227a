// Generation for one sequence at a time on the CPU: chunked prefill, then decode until a stop
// token or max_tokens. (The serving issue replaces this loop with the continuous-batching
// scheduler; both drive the same Transformer::forward.)
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"
#include "engine/block_allocator.h"
#include "engine/sampler.h"
#include "model/kv_cache.h"
#include "model/transformer.h"

namespace invar::engine {

struct GenerateOptions {
  int max_tokens = 128;
  SamplingParams sampling;
  int prefill_chunk = 512;  // prompt tokens per forward step
  std::vector<int32_t> stop_ids;
};

struct GenerationResult {
  std::vector<int32_t> tokens;  // generated ids (a stop token is included)
  std::string finish_reason;    // "stop", "length" or "cancelled"
  int prompt_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;
};

class Generator {
 public:
  static constexpr int kBlockSize = 16;

  Generator(const model::LoadedModel& model, ThreadPool& pool, int max_context);

  // on_token returns false to stop early.
  Result<GenerationResult> generate(const std::vector<int32_t>& prompt,
                                    const GenerateOptions& options,
                                    const std::function<bool(int32_t)>& on_token);

 private:
  const model::LoadedModel& model_;
  model::Transformer transformer_;
  int max_context_;
  model::KvCache cache_;
  BlockAllocator blocks_;
  Sampler sampler_;
};

}  // namespace invar::engine
