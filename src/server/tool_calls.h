// Tool calls in a model's output, in the two formats chat templates teach their models:
//   hermes       Qwen2.5/Qwen3, Hermes: <tool_call>{"name": ..., "arguments": {...}}</tool_call>,
//                one block per call, anywhere in the output, with content before them
//   llama3_json  Llama 3.1/3.2: the whole output is {"name": ..., "parameters": {...}}, or
//                several such objects separated by ';'
// A call whose JSON is malformed (or lacks a name or an object of arguments) is not a call:
// its text stays in the content, exactly as the model wrote it. Pure text processing: no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace invar::server {

enum class ToolCallFormat : uint8_t { hermes, llama3_json };

// "hermes" / "llama3_json" (`serve --tool-call-parser`); nullopt for another name.
std::optional<ToolCallFormat> tool_call_format_named(std::string_view name);
const char* tool_call_format_name(ToolCallFormat format);
// The format a chat template teaches: hermes when it writes <tool_call>, llama3_json when it
// writes "parameters" objects (or Llama's <|python_tag|>), hermes otherwise.
ToolCallFormat tool_call_format_for_template(std::string_view template_source);

struct ToolCall {
  std::string name;
  // A JSON object as text, keys in the model's order, spaced as Python's json.dumps (vLLM).
  std::string arguments;
};

// What one piece of output turned into: text for the content, and the calls completed by it.
struct ToolCallDelta {
  std::string content;
  std::vector<ToolCall> calls;
};

// Splits an output into content and calls as it is generated. A call is delivered whole once
// its closing tag (hermes) or the end of the output (llama3_json) has come, so that a call is
// never streamed before it is known to be valid; content streams as it comes, except
//   - text that may begin a <tool_call> tag (held until it is known not to),
//   - whitespace, held until more content follows it: whitespace around calls is dropped,
//   - llama3_json output that begins with '{', held to the end (it may be a call).
// Feeding an output in any number of pieces gives the same content and calls.
class ToolCallStream {
 public:
  explicit ToolCallStream(ToolCallFormat format) : format_(format) {}
  ToolCallDelta feed(std::string_view text);
  // The end of the output: what was held back, and an unterminated last call if it is whole
  // JSON (a model may stop right after the object).
  ToolCallDelta finish();
  bool called() const { return called_; }  // whether any call has been delivered

 private:
  void emit_outside(std::string_view text, ToolCallDelta* out);
  // Delivers the call in `body`, or puts the block back into the content; true for a call.
  bool close_hermes_call(std::string_view body, ToolCallDelta* out);
  ToolCallDelta feed_hermes();
  ToolCallDelta feed_llama3();

  ToolCallFormat format_;
  std::string buf_;             // text not yet resolved
  std::string held_ws_;         // whitespace held until more content comes
  std::string ws_before_call_;  // hermes: whitespace before an open <tool_call>
  bool in_call_ = false;        // hermes: inside <tool_call>, before </tool_call>
  enum class Mode : uint8_t { undecided, content, json } mode_ = Mode::undecided;  // llama3_json
  bool called_ = false;
};

// The whole output at once: the same as one feed() and finish().
ToolCallDelta parse_tool_calls(ToolCallFormat format, std::string_view text);

// A fresh id for a call: "call_" and 24 random hexadecimal digits (OpenAI's shape).
std::string new_tool_call_id();

}  // namespace invar::server
