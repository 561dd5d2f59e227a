// Every fuzz target over its committed inputs, in the normal CPU suite: the seed corpus
// (tests/fuzz/corpus/<target>) and the inputs that once crashed it (tests/fuzz/regressions/
// <target>, each fixed in the product code). A broken property or a crash the sanitizer build
// sees fails here too, whatever the compiler.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz/fuzz_targets.h"

namespace invar::fuzz {
namespace {

namespace fs = std::filesystem;

std::vector<fs::path> inputs_of(const std::string& target, const char* kind) {
  const fs::path dir = fs::path(INVAR_FUZZ_DIR) / kind / target;
  std::vector<fs::path> files;
  if (fs::is_directory(dir))
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && e.path().filename() != "README.md") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

class FuzzReplay : public ::testing::TestWithParam<FuzzTarget> {};

TEST_P(FuzzReplay, CorpusAndRegressions) {
  const FuzzTarget& target = GetParam();
  const auto corpus = inputs_of(target.name, "corpus");
  const auto regressions = inputs_of(target.name, "regressions");
  EXPECT_FALSE(corpus.empty()) << "no seed corpus under tests/fuzz/corpus/" << target.name;
  for (const auto* list : {&corpus, &regressions}) {
    for (const fs::path& path : *list) {
      SCOPED_TRACE(path.string());
      std::ifstream in(path, std::ios::binary);
      const std::string bytes{std::istreambuf_iterator<char>(in), {}};
      EXPECT_EQ(target.run(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), 0);
    }
  }
  std::printf("%s: %zu seeds, %zu regression inputs\n", target.name, corpus.size(),
              regressions.size());
}

INSTANTIATE_TEST_SUITE_P(Targets, FuzzReplay, ::testing::ValuesIn(kFuzzTargets),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace invar::fuzz
