#include "engine/draw_path.h"

#include "model/model_runner.h"

namespace invar::engine {

DrawPlan plan_draw(const DrawRequest& r, bool device_draws) {
  DrawPlan d;
  const bool draws = !r.greedy || r.grammar;  // more than the summary's argmax
  if (r.host_adjustments || (draws && !device_draws)) {
    d.path = DrawPath::host;
    d.needs = model::kWantRow;
  } else if (draws) {
    d.path = DrawPath::device;
    d.device_mask = r.grammar;
    d.needs = model::kDraw;
  }
  if (r.top_logprobs > 0) d.needs |= model::kWantRow;
  return d;
}

}  // namespace invar::engine
