// Where tests find their inputs.
#pragma once

#include <string>

namespace invar::testing {

// tests/data/<rel>
std::string test_data(const std::string& rel);

// The default SmolLM2 GGUF fetched by scripts/fetch-model (or $INVAR_MODEL); empty if absent.
std::string default_model_path();

}  // namespace invar::testing
