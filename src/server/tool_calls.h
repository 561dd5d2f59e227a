// Tool calls in a model's output, in the three formats chat templates teach their models:
//   hermes       Qwen2.5/Qwen3, Hermes: <tool_call>{"name": ..., "arguments": {...}}</tool_call>,
//                one block per call, anywhere in the output, with content before them
//   llama3_json  Llama 3.1/3.2: the whole output is {"name": ..., "parameters": {...}}, or
//                several such objects separated by ';', optionally after <|python_tag|>
//   mistral      Mistral: [TOOL_CALLS] then a JSON list of {"name": ..., "arguments": {...}}
//                (v0.3, Nemo), or [TOOL_CALLS]name[ARGS]{...} per call (v11 tokenizers and
//                later; name{...} when the [ARGS] token's text is left out), or
//                [TOOL_CALLS]name[CALL_ID]id[ARGS]{...} per call (Mistral-Small-3.2, Magistral,
//                Devstral: the model names its call), after any content
// A call whose JSON is malformed (or lacks a name or an object of arguments) is not a call:
// its text stays in the content, exactly as the model wrote it. Pure text processing: no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server/tool_call_reader.h"

namespace invar::server {

enum class ToolCallFormat : uint8_t { hermes, llama3_json, mistral };

// "hermes" / "llama3_json" / "mistral" (`serve --tool-call-parser`); nullopt for another name.
std::optional<ToolCallFormat> tool_call_format_named(std::string_view name);
const char* tool_call_format_name(ToolCallFormat format);
// The format a chat template teaches: hermes when it writes <tool_call>, mistral when it writes
// [TOOL_CALLS], llama3_json when it writes "parameters" objects (or Llama's <|python_tag|>),
// hermes otherwise.
ToolCallFormat tool_call_format_for_template(std::string_view template_source);

struct ToolCall {
  std::string name;
  // A JSON object as text, keys in the model's order, spaced as Python's json.dumps (vLLM).
  std::string arguments;
  // The id the model gave the call ([CALL_ID], when 9 letters and digits); empty: the response
  // gives it a fresh one (new_tool_call_id).
  std::string id = {};
};

// One step of a call as a stream learns it, in output order.
struct ToolCallUpdate {
  enum class Kind : uint8_t {
    begin,      // the name is known and the arguments object has opened; `text`: the name
    arguments,  // more of the arguments' text (json.dumps' form); appended, they are the call's
    end,        // the call is complete and valid (it is in ToolCallDelta::calls too)
    broken,     // the call turned out malformed after it began: it is no call, its text went
                // to the content
  };
  Kind kind;
  int call;  // the call's number in this output, from 0; broken calls keep theirs
  std::string text;
  std::string id = {};  // begin: the id the model gave the call (ToolCall::id), or empty
};

// What one piece of output turned into: text for the content, the calls completed by it
// (whole), and every step of the calls it advanced (to stream calls as they are written).
struct ToolCallDelta {
  std::string content;
  std::vector<ToolCall> calls;
  std::vector<ToolCallUpdate> updates;
};

// Splits an output into content and calls as it is generated. Content streams as it comes,
// except
//   - text that may begin a call's tag (<tool_call>, [TOOL_CALLS]): held until it is known not
//     to,
//   - whitespace, held until more content follows it: whitespace around calls is dropped,
//   - llama3_json output that begins with '{' (or <|python_tag|>), held to the end (it may be
//     calls).
// Calls (hermes, mistral) are announced (`begin`) once the name is known and the arguments
// object has opened, and their arguments go out as they are read: the text so far is always
// valid JSON so far. A call ends with its closing tag (hermes; or the end of the output), or
// with its object (mistral). If it turns out malformed after it began, `broken` says so and its
// text goes to the content, as parse_tool_calls has it. llama3_json calls are delivered whole at
// the end of the output (begin, all arguments, end at once): in that format only the end of the
// output tells whether it was calls or content.
// Feeding an output in any number of pieces gives the same content, calls and arguments text.
class ToolCallStream {
 public:
  explicit ToolCallStream(ToolCallFormat format)
      : format_(format),
        mode_(format == ToolCallFormat::llama3_json ? Mode::llama3_undecided : Mode::content) {}
  ToolCallDelta feed(std::string_view text);
  // The end of the output: what was held back; a call still open is complete if its JSON is
  // (hermes without its closing tag), else broken.
  ToolCallDelta finish();
  bool called() const { return called_; }  // whether any call has been completed

 private:
  enum class Mode : uint8_t {
    content,           // outside calls (hermes, mistral)
    mistral_open,      // after [TOOL_CALLS], before what follows it
    call,              // a ToolCallReader is reading a call
    hermes_close,      // a hermes call's object has ended; its </tool_call> is awaited
    mistral_item,      // in a [TOOL_CALLS][...] list, where a call object should begin
    mistral_next,      // in a [TOOL_CALLS][...] list, after a call: ',' or ']'
    llama3_undecided,  // llama3_json: nothing but whitespace yet
    llama3_calls,      // llama3_json: the output may be calls; held to the end
    llama3_content,    // llama3_json: the output is content
  };

  void process(bool at_end, ToolCallDelta* out);
  bool step_content(bool at_end, ToolCallDelta* out);
  bool step_mistral_open(bool at_end, ToolCallDelta* out);
  bool step_call(bool at_end, ToolCallDelta* out);
  bool step_hermes_close(bool at_end, ToolCallDelta* out);
  bool step_mistral_item(bool at_end, ToolCallDelta* out);
  bool step_mistral_next(bool at_end);
  void step_llama3(ToolCallDelta* out);
  void finish_llama3(ToolCallDelta* out);

  void emit_outside(std::string_view text, ToolCallDelta* out);
  void take_raw(size_t n);
  size_t take_raw_space();
  void start_call(ToolCallReader::Shape shape);
  void publish_progress(ToolCallDelta* out);
  void complete_call(ToolCallDelta* out);
  void break_call(ToolCallDelta* out);

  ToolCallFormat format_;
  Mode mode_;
  std::string buf_;             // text not yet resolved
  std::string held_ws_;         // whitespace held until more content comes
  std::string ws_before_call_;  // whitespace before the tag of the call being read
  std::string raw_;             // the text of the call being read, as written: its content if
                                // it turns out no call
  std::optional<ToolCallReader> reader_;
  std::string arguments_;   // the arguments of the call being read, as announced so far
  bool announced_ = false;  // whether the call being read has begun
  bool in_list_ = false;    // mistral: the call being read is in a [TOOL_CALLS][...] list
  int calls_begun_ = 0;
  bool called_ = false;
};

// The whole output at once: the same as one feed() and finish().
ToolCallDelta parse_tool_calls(ToolCallFormat format, std::string_view text);

// A fresh id for a call: "call_" and 24 random hexadecimal digits (OpenAI's shape); for
// mistral 9 random letters and digits, the only ids Mistral's chat templates accept back.
std::string new_tool_call_id(ToolCallFormat format = ToolCallFormat::hermes);
// The id a response gives a call: the model's own (ToolCall::id), else a fresh one.
std::string tool_call_id(const std::string& model_id, ToolCallFormat format);

}  // namespace invar::server
