#include "engine/generator.h"

#include <algorithm>
#include <chrono>

namespace invar::engine {

using Clock = std::chrono::steady_clock;

static int blocks_for(int tokens, int block_size) { return (tokens + block_size - 1) / block_size; }

Generator::Generator(const model::LoadedModel& model, ThreadPool& pool, int max_context)
    : model_(model),
      transformer_(model.config, model.weights, pool),
      max_context_(max_context),
      cache_(model.config, blocks_for(max_context, kBlockSize), kBlockSize),
      blocks_(cache_.num_blocks()) {}

Result<GenerationResult> Generator::generate(const std::vector<int32_t>& prompt,
                                             const GenerateOptions& options,
                                             const std::function<bool(int32_t)>& on_token) {
  if (prompt.empty()) return Status::error("the prompt is empty: give at least one token");
  if (int(prompt.size()) >= max_context_)
    return Status::errorf("the prompt has {} tokens; the context holds {}", prompt.size(),
                          max_context_);
  const int max_new = std::min(options.max_tokens, max_context_ - int(prompt.size()));
  const int max_blocks = blocks_for(max_context_, kBlockSize);
  const int vocab = model_.config.vocab_size;

  std::vector<int32_t> table;
  struct Release {  // blocks go back whatever path we leave by
    BlockAllocator& a;
    std::vector<int32_t>& t;
    ~Release() { a.release(t); }
  } release{blocks_, table};

  GenerationResult result;
  result.prompt_tokens = int(prompt.size());
  std::vector<float> logits;
  auto step = [&](std::span<const int32_t> tokens, int start) -> Status {
    int need = blocks_for(start + int(tokens.size()), kBlockSize) - int(table.size());
    if (need > 0) INVAR_RETURN_IF_ERROR(blocks_.allocate(need, table));
    model::BatchPlanBuilder builder(kBlockSize, max_blocks);
    builder.add_sequence(tokens, start, table, model::LogitRows::last);
    return transformer_.forward(builder.build(), cache_, logits);
  };

  auto t0 = Clock::now();
  const int chunk = std::max(1, options.prefill_chunk);
  for (int start = 0; start < int(prompt.size()); start += chunk) {
    int n = std::min<int>(chunk, int(prompt.size()) - start);
    INVAR_RETURN_IF_ERROR(step(std::span<const int32_t>(prompt).subspan(start, n), start));
  }
  auto t1 = Clock::now();
  result.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();

  int pos = int(prompt.size());
  result.finish_reason = "length";
  for (int i = 0; i < max_new; ++i) {
    int32_t token = sampler_.sample(logits.data(), vocab, options.sampling, uint64_t(pos));
    result.tokens.push_back(token);
    bool stop = std::find(options.stop_ids.begin(), options.stop_ids.end(), token) !=
                options.stop_ids.end();
    if (on_token && !on_token(token)) {
      result.finish_reason = "cancelled";
      break;
    }
    if (stop) {
      result.finish_reason = "stop";
      break;
    }
    if (i + 1 == max_new) break;
    INVAR_RETURN_IF_ERROR(step(std::span<const int32_t>(&token, 1), pos));
    ++pos;
  }
  result.decode_seconds = std::chrono::duration<double>(Clock::now() - t1).count();
  return result;
}

}  // namespace invar::engine
