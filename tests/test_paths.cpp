#include "test_paths.h"

#include <cstdlib>
#include <filesystem>

namespace invar::testing {

// $INVAR_TEST_DATA_DIR overrides the source tree's folder: a build carried to another machine
// (the GPU machine) finds its data in that machine's copy of the tree.
std::string test_data(const std::string& rel) {
  const char* env = std::getenv("INVAR_TEST_DATA_DIR");
  return std::string(env && *env ? env : INVAR_TEST_DATA_DIR) + "/" + rel;
}

std::string default_model_path() {
  if (const char* env = std::getenv("INVAR_MODEL"); env && *env) return env;
  std::filesystem::path cache;
  if (const char* c = std::getenv("INVAR_CACHE"); c && *c) {
    cache = c;
  } else if (const char* home = std::getenv("HOME"); home && *home) {
    cache = std::filesystem::path(home) / ".cache" / "invar";
  }
  auto p = cache / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf";
  return std::filesystem::exists(p) ? p.string() : std::string();
}

}  // namespace invar::testing
