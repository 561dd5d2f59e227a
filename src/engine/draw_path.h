// How the engine draws a request's next token, and what of its logits row the model runner must
// return for it (engine.cpp). A function of the request's own state and of what the runner can
// do, never of the batch (R4, R6).
#pragma once

#include <cstdint>

namespace invar::engine {

enum class DrawPath : uint8_t {
  argmax,  // greedy, nothing to adjust: the row summary's argmax; no row
  device,  // the runner's draw (model::kDraw) over the raw row, or under the grammar's mask
  host,    // the host sampler over the row, or over an adjusted copy of it (model::kWantRow)
};

// What of a request decides its path.
struct DrawRequest {
  bool greedy = true;  // temperature 0 or top_k 1
  // Penalties (they need the sequence's history), logit_bias, or stop tokens masked before
  // min_tokens: adjustments only the host makes.
  bool host_adjustments = false;
  bool grammar = false;   // structured output: a token mask, which the device can apply too
  int top_logprobs = -1;  // > 0: the alternatives, which come from the raw row on the host
};

struct DrawPlan {
  DrawPath path = DrawPath::argmax;
  // path device: the grammar's allowed-token bitmask goes with the draw (greedy or sampled),
  // so the row stays on the device.
  bool device_mask = false;
  uint8_t needs = 0;  // model::kWantRow / model::kDraw for run_step
};

// `device_draws`: the runner takes kDraw rows and their masks (and the engine lets it).
// top_logprobs > 0 adds the row without changing the path: asking for alternatives never
// changes a token.
DrawPlan plan_draw(const DrawRequest& r, bool device_draws);

}  // namespace invar::engine
