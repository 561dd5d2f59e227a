// The white-box scenarios that run through the Engine (scheduler, prefix cache, preemption):
// a target request's tokens and logprobs compared bitwise with the same request run alone.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "engine/model_bundle.h"
#include "verify/whitebox.h"

namespace invar::verify {

// Cases the engine scenario `name` runs with `options` (for the progress total).
int engine_scenario_cases(const std::string& name, const WhiteBoxOptions& options);

// Runs the engine scenario `name` in `mode` with `prompt` as the target; `tick` after each case.
WhiteBoxScenario run_engine_scenario(const std::string& name, const engine::ModelBundle& bundle,
                                     kernels::KernelMode mode, const WhiteBoxOptions& options,
                                     const std::vector<int32_t>& prompt,
                                     const std::function<void()>& tick);

}  // namespace invar::verify
