// Chat templates: conversations rendered by the 18 real templates of
// tests/data/tokenizer/templates, and template sources parsed. The first byte picks:
//   below 0xF0: the template (the byte mod 18, files sorted by name), and add_generation_prompt
//     and continue_final_message (bits 0 and 1 of the byte / 18). The rest is JSON: a list of
//     messages, an object with "messages", "tools" and "kwargs" (chat_template_kwargs), or any
//     other value as one user message's content. A render gives text or an invalid_argument
//     Status with a message; nothing else.
//   0xF0 and up: the rest is a template source, parsed but not rendered (a template is code its
//     author controls, and Jinja may loop as long as it is told to).
// Inputs nested deeper than kMaxJsonDepth are left out (the server refuses them before any
// template sees them), as is invalid UTF-8 (refused too).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/json_depth.h"
#include "fuzz/fuzz_targets.h"
#include "fuzz/fuzz_util.h"
#include "test_paths.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/unicode.h"

namespace invar::fuzz {

namespace {

using OrderedJson = nlohmann::ordered_json;

std::vector<tokenizer::ChatTemplate> load_templates() {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(testing::test_data("tokenizer/templates")))
    if (e.path().extension() == ".jinja") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::vector<tokenizer::ChatTemplate> out;
  for (const auto& path : files) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    auto t = tokenizer::ChatTemplate::parse(ss.str(), path.filename().string(), "<s>", "</s>");
    INVAR_FUZZ_CHECK(t.ok(), "{}", t.status().message());
    out.push_back(std::move(t).value());
  }
  INVAR_FUZZ_CHECK(!out.empty(), "no templates under tests/data/tokenizer/templates");
  return out;
}

}  // namespace

int fuzz_chat_template(const uint8_t* data, size_t size) {
  static const auto* templates = new std::vector<tokenizer::ChatTemplate>(load_templates());
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (!tokenizer::is_valid_utf8(rest)) return 0;  // the server refuses such bodies first

  if (data[0] >= 0xF0) {
    auto t = tokenizer::ChatTemplate::parse(std::string(rest), "fuzz", "<s>", "</s>");
    if (!t.ok()) {
      INVAR_FUZZ_CHECK(
          t.status().code() == StatusCode::invalid_argument && !t.status().message().empty(),
          "parse failed without a message");
    }
    return 0;
  }

  const size_t n = templates->size();
  const tokenizer::ChatTemplate& tmpl = (*templates)[data[0] % n];
  const unsigned flags = data[0] / unsigned(n);
  if (!json_depth_within(rest, kMaxJsonDepth)) return 0;
  OrderedJson j = OrderedJson::parse(rest, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;

  tokenizer::ChatTemplateInputs in;
  in.add_generation_prompt = (flags & 1) != 0;
  in.continue_final_message = (flags & 2) != 0;
  std::tm now{};
  now.tm_year = 126;
  now.tm_mon = 10;
  now.tm_mday = 25;
  in.now = now;
  if (j.is_array()) {
    in.messages = j;
  } else if (j.is_object()) {
    if (j.contains("messages")) in.messages = j["messages"];
    if (j.contains("tools")) in.tools = j["tools"];
    if (j.contains("kwargs")) in.kwargs = j["kwargs"];
  } else {
    in.messages = OrderedJson::array({{{"role", "user"}, {"content", j}}});
  }
  auto r = tmpl.render(in);
  if (!r.ok()) {
    INVAR_FUZZ_CHECK(
        r.status().code() == StatusCode::invalid_argument && !r.status().message().empty(),
        "render failed with code {} and message '{}'", int(r.status().code()),
        r.status().message());
  }
  return 0;
}

}  // namespace invar::fuzz
