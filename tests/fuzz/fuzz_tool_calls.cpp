// A model's output through the tool-call parser (src/server/tool_calls.h), whole and streamed:
// the first byte picks the format (modulo 3: hermes, llama3_json, mistral), the second the size
// of the stream's pieces (1 to 256 bytes), the rest is the output. Streaming it in those pieces
// gives exactly the content and calls of the whole, and each call's streamed arguments pieces
// make its arguments; an output with no call is all content, byte for byte; every call has a
// name and arguments that are a JSON object, and the same id streamed (the one its begin
// announced) as whole: none, or 9 letters and digits (Mistral's [CALL_ID]).
#include <algorithm>
#include <cctype>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_targets.h"
#include "fuzz/fuzz_util.h"
#include "server/tool_calls.h"

namespace invar::fuzz {

int fuzz_tool_calls(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  constexpr server::ToolCallFormat kFormats[] = {server::ToolCallFormat::hermes,
                                                 server::ToolCallFormat::llama3_json,
                                                 server::ToolCallFormat::mistral};
  const auto format = kFormats[data[0] % 3];
  const size_t piece = size_t(data[1]) + 1;
  const std::string_view text(reinterpret_cast<const char*>(data) + 2, size - 2);

  const server::ToolCallDelta whole = server::parse_tool_calls(format, text);
  server::ToolCallStream stream(format);
  server::ToolCallDelta streamed;
  std::map<int, std::string> arguments, ids;  // by call number, from the updates
  std::vector<int> ended;
  auto add = [&](server::ToolCallDelta d) {
    streamed.content += d.content;
    for (auto& c : d.calls) streamed.calls.push_back(std::move(c));
    for (const auto& u : d.updates) {
      if (u.kind == server::ToolCallUpdate::Kind::begin) ids[u.call] = u.id;
      if (u.kind == server::ToolCallUpdate::Kind::arguments) arguments[u.call] += u.text;
      if (u.kind == server::ToolCallUpdate::Kind::end) ended.push_back(u.call);
    }
  };
  for (size_t at = 0; at < text.size(); at += piece) add(stream.feed(text.substr(at, piece)));
  add(stream.finish());

  INVAR_FUZZ_CHECK(streamed.content == whole.content, "streamed content differs from the whole");
  INVAR_FUZZ_CHECK(streamed.calls.size() == whole.calls.size(), "{} calls streamed, {} whole",
                   streamed.calls.size(), whole.calls.size());
  INVAR_FUZZ_CHECK(ended.size() == streamed.calls.size(), "{} calls ended, {} completed",
                   ended.size(), streamed.calls.size());
  for (size_t i = 0; i < ended.size() && i < streamed.calls.size(); ++i) {
    INVAR_FUZZ_CHECK(arguments[ended[i]] == streamed.calls[i].arguments,
                     "call {}'s streamed arguments differ from its arguments", i);
    INVAR_FUZZ_CHECK(ids[ended[i]] == streamed.calls[i].id,
                     "call {}'s id differs from the one its begin announced", i);
  }
  for (size_t i = 0; i < whole.calls.size(); ++i) {
    INVAR_FUZZ_CHECK(streamed.calls[i].name == whole.calls[i].name &&
                         streamed.calls[i].arguments == whole.calls[i].arguments &&
                         streamed.calls[i].id == whole.calls[i].id,
                     "call {} differs streamed", i);
    const std::string& id = whole.calls[i].id;
    INVAR_FUZZ_CHECK(id.empty() || (id.size() == 9 &&
                                    std::all_of(id.begin(), id.end(),
                                                [](char c) { return std::isalnum(uint8_t(c)); })),
                     "call {} has the id {}", i, id);
    INVAR_FUZZ_CHECK(!whole.calls[i].name.empty(), "a call without a name");
    const auto args = nlohmann::json::parse(whole.calls[i].arguments, nullptr, false);
    INVAR_FUZZ_CHECK(args.is_object(), "arguments {} are not a JSON object",
                     whole.calls[i].arguments);
  }
  if (whole.calls.empty())
    INVAR_FUZZ_CHECK(whole.content == text, "an output with no call lost text");
  return 0;
}

}  // namespace invar::fuzz
