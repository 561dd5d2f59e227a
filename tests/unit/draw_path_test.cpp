// engine/draw_path.h: which requests the runner draws on the device (structured output included:
// the grammar's bitmask goes with the draw and the row stays there), which the host sampler
// draws over the row, and that asking for alternatives adds the row without moving the draw.
#include "engine/draw_path.h"

#include <gtest/gtest.h>

#include "model/model_runner.h"

namespace invar::engine {
namespace {

using model::kDraw;
using model::kWantRow;

DrawRequest request(bool greedy, bool host_adjustments, bool grammar, int top_logprobs = -1) {
  return {.greedy = greedy,
          .host_adjustments = host_adjustments,
          .grammar = grammar,
          .top_logprobs = top_logprobs};
}

TEST(DrawPath, GrammarRowsDrawOnTheDeviceUnderTheirMask) {
  for (bool greedy : {true, false}) {
    const DrawPlan d = plan_draw(request(greedy, false, true), /*device_draws=*/true);
    EXPECT_EQ(d.path, DrawPath::device) << "greedy " << greedy;
    EXPECT_TRUE(d.device_mask);
    EXPECT_EQ(d.needs, kDraw) << "the row must not travel to the host";
  }
}

TEST(DrawPath, WithoutDeviceDrawsGrammarRowsAreMaskedOnTheHost) {
  for (bool greedy : {true, false}) {
    const DrawPlan d = plan_draw(request(greedy, false, true), /*device_draws=*/false);
    EXPECT_EQ(d.path, DrawPath::host);
    EXPECT_FALSE(d.device_mask);
    EXPECT_EQ(d.needs, kWantRow);
  }
}

// Penalties, logit_bias and min_tokens are host-only: with them a grammar is applied on the host
// too, over the same adjusted copy, in vLLM's order.
TEST(DrawPath, HostAdjustmentsKeepTheWholeDrawOnTheHost) {
  for (bool grammar : {false, true}) {
    for (bool greedy : {true, false}) {
      const DrawPlan d = plan_draw(request(greedy, true, grammar), true);
      EXPECT_EQ(d.path, DrawPath::host) << "grammar " << grammar << " greedy " << greedy;
      EXPECT_FALSE(d.device_mask);
      EXPECT_EQ(d.needs, kWantRow);
    }
  }
}

TEST(DrawPath, PlainRowsKeepTheirPaths) {
  EXPECT_EQ(plan_draw(request(true, false, false), true).path, DrawPath::argmax);
  EXPECT_EQ(plan_draw(request(true, false, false), true).needs, 0);
  EXPECT_EQ(plan_draw(request(true, false, false), false).path, DrawPath::argmax);
  const DrawPlan sampled = plan_draw(request(false, false, false), true);
  EXPECT_EQ(sampled.path, DrawPath::device);
  EXPECT_FALSE(sampled.device_mask);
  EXPECT_EQ(sampled.needs, kDraw);
  EXPECT_EQ(plan_draw(request(false, false, false), false).path, DrawPath::host);
}

TEST(DrawPath, AlternativesAddTheRowWithoutMovingTheDraw) {
  for (bool device : {false, true})
    for (bool greedy : {false, true})
      for (bool adjust : {false, true})
        for (bool grammar : {false, true}) {
          const DrawPlan plain = plan_draw(request(greedy, adjust, grammar, 0), device);
          const DrawPlan alts = plan_draw(request(greedy, adjust, grammar, 5), device);
          EXPECT_EQ(alts.path, plain.path);
          EXPECT_EQ(alts.device_mask, plain.device_mask);
          EXPECT_EQ(alts.needs, plain.needs | kWantRow);
        }
}

}  // namespace
}  // namespace invar::engine
