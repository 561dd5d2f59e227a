// The tool fields of a chat request: `tools` (function schemas, handed to the chat template as
// the request wrote them), `tool_choice` and `parallel_tool_calls`, validated with errors that
// name the field. tool_choice decides what happens to the output:
//   none             the template still sees the tools; the output is plain content
//   auto             (the default with tools) calls the model writes are parsed out of it
//   required, named  a grammar built from the tools' JSON schemas forces one call, in the
//                    format the model's template teaches (tool_calls.h), and it is parsed
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "engine/grammar.h"
#include "server/api_error.h"
#include "server/json_fields.h"
#include "server/tool_calls.h"

namespace invar::server {

enum class ToolChoice : uint8_t { none, automatic, required, named };

struct ToolsInput {
  // The request's tools with their keys in the order sent (templates dump them with tojson);
  // null when there are none, so that `tools` is undefined in the template.
  nlohmann::ordered_json tools;
  ToolChoice choice = ToolChoice::none;
  std::string named;     // ToolChoice::named: the function the call must be to
  bool parallel = true;  // parallel_tool_calls: false returns the first call only
  // required / named: the call the output must be, as the model's format writes it.
  std::optional<engine::GrammarSpec> grammar;

  bool parse_calls() const { return choice != ToolChoice::none; }
};

// Reads tools, tool_choice and parallel_tool_calls from `f` (the body as parsed; `body` is the
// raw text, read again to keep the tools' key order). `format` is the server's tool-call format.
std::optional<ApiError> parse_tools_input(const Fields& f, std::string_view body,
                                          ToolCallFormat format, ToolsInput* out);

}  // namespace invar::server
