// Tool-call parsing; see tool_calls.h.
#include "server/tool_calls.h"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <random>

#include "core/json_depth.h"
#include "tokenizer/python_json.h"

namespace invar::server {

namespace {

using OrderedJson = nlohmann::ordered_json;

constexpr std::string_view kOpen = "<tool_call>";
constexpr std::string_view kClose = "</tool_call>";
constexpr std::string_view kPythonTag = "<|python_tag|>";

bool is_space(char c) {
  return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// The length of the longest end of `text` that is a proper beginning of `tag`: text that may
// still become the tag.
size_t partial_tag_at_end(std::string_view text, std::string_view tag) {
  for (size_t n = std::min(text.size(), tag.size() - 1); n > 0; --n)
    if (text.substr(text.size() - n) == tag.substr(0, n)) return n;
  return 0;
}

// One call object: {"name": "...", "arguments" or "parameters": {...}}.
std::optional<ToolCall> parse_call(std::string_view text) {
  if (!json_depth_within(text)) return std::nullopt;
  OrderedJson call = OrderedJson::parse(text, nullptr, /*allow_exceptions=*/false);
  if (call.is_discarded() || !call.is_object()) return std::nullopt;
  auto name = call.find("name");
  if (name == call.end() || !name->is_string() || name->get_ref<const std::string&>().empty())
    return std::nullopt;
  auto args = call.find("arguments");
  if (args == call.end()) args = call.find("parameters");
  if (args == call.end() || !args->is_object()) return std::nullopt;
  // Written as vLLM writes them: Python's json.dumps(ensure_ascii=False).
  return ToolCall{name->get<std::string>(), tokenizer::python_json_dumps(*args, {})};
}

// Where the JSON object that opens `text` ends (one past its '}'), counting braces outside
// strings; npos when it does not close.
size_t object_end(std::string_view text) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (--depth == 0) return i + 1;
    }
  }
  return std::string_view::npos;
}

// llama3_json: optional <|python_tag|>, then one or more call objects separated by ';' (and
// whitespace). All or nothing: one bad object makes the whole output content.
std::optional<std::vector<ToolCall>> parse_llama3_calls(std::string_view text) {
  text = trim(text);
  if (text.substr(0, kPythonTag.size()) == kPythonTag) text = trim(text.substr(kPythonTag.size()));
  std::vector<ToolCall> calls;
  while (!text.empty()) {
    if (text.front() != '{') return std::nullopt;
    size_t end = object_end(text);
    if (end == std::string_view::npos) return std::nullopt;
    auto call = parse_call(text.substr(0, end));
    if (!call) return std::nullopt;
    calls.push_back(std::move(*call));
    text = trim(text.substr(end));
    if (!text.empty() && text.front() == ';') text = trim(text.substr(1));
  }
  if (calls.empty()) return std::nullopt;
  return calls;
}

}  // namespace

std::optional<ToolCallFormat> tool_call_format_named(std::string_view name) {
  if (name == "hermes") return ToolCallFormat::hermes;
  if (name == "llama3_json") return ToolCallFormat::llama3_json;
  return std::nullopt;
}

const char* tool_call_format_name(ToolCallFormat format) {
  return format == ToolCallFormat::hermes ? "hermes" : "llama3_json";
}

ToolCallFormat tool_call_format_for_template(std::string_view source) {
  if (source.find(kOpen) != std::string_view::npos) return ToolCallFormat::hermes;
  if (source.find("\"parameters\": ") != std::string_view::npos ||
      source.find(kPythonTag) != std::string_view::npos)
    return ToolCallFormat::llama3_json;
  return ToolCallFormat::hermes;
}

void ToolCallStream::emit_outside(std::string_view text, ToolCallDelta* out) {
  size_t last = text.find_last_not_of(" \n\t\r");
  if (last == std::string_view::npos) {
    held_ws_ += text;
    return;
  }
  out->content += held_ws_;
  out->content += text.substr(0, last + 1);
  held_ws_ = std::string(text.substr(last + 1));
}

bool ToolCallStream::close_hermes_call(std::string_view body, ToolCallDelta* out) {
  auto call = parse_call(body);
  if (call) {
    out->calls.push_back(std::move(*call));
    called_ = true;
  } else {
    // Not a call: the block is content, with the whitespace before it, as written.
    out->content += ws_before_call_;
    out->content += kOpen;
    out->content += body;
  }
  ws_before_call_.clear();
  return call.has_value();
}

ToolCallDelta ToolCallStream::feed_hermes() {
  ToolCallDelta out;
  while (true) {
    if (in_call_) {
      size_t close = buf_.find(kClose);
      if (close == std::string::npos) break;
      if (!close_hermes_call(std::string_view(buf_).substr(0, close), &out)) out.content += kClose;
      buf_.erase(0, close + kClose.size());
      in_call_ = false;
      continue;
    }
    size_t open = buf_.find(kOpen);
    if (open == std::string::npos) {
      size_t keep = partial_tag_at_end(buf_, kOpen);
      emit_outside(std::string_view(buf_).substr(0, buf_.size() - keep), &out);
      buf_.erase(0, buf_.size() - keep);
      break;
    }
    emit_outside(std::string_view(buf_).substr(0, open), &out);
    ws_before_call_ = std::move(held_ws_);
    held_ws_.clear();
    buf_.erase(0, open + kOpen.size());
    in_call_ = true;
  }
  return out;
}

ToolCallDelta ToolCallStream::feed_llama3() {
  ToolCallDelta out;
  if (mode_ == Mode::undecided) {
    std::string_view rest = trim(buf_);
    if (rest.empty()) return out;
    bool tag_prefix = kPythonTag.substr(0, std::min(rest.size(), kPythonTag.size())) ==
                      rest.substr(0, std::min(rest.size(), kPythonTag.size()));
    if (rest.front() == '{' || tag_prefix) {
      // A call, or a tag still being written: held to the end of the output.
      if (rest.front() == '{' || rest.size() >= kPythonTag.size()) mode_ = Mode::json;
      return out;
    }
    mode_ = Mode::content;
  }
  if (mode_ == Mode::content) {
    out.content = std::move(buf_);
    buf_.clear();
  }
  return out;
}

ToolCallDelta ToolCallStream::feed(std::string_view text) {
  buf_ += text;
  return format_ == ToolCallFormat::hermes ? feed_hermes() : feed_llama3();
}

ToolCallDelta ToolCallStream::finish() {
  ToolCallDelta out;
  if (format_ == ToolCallFormat::llama3_json) {
    if (mode_ == Mode::content) return out;  // everything went out as it came
    if (auto calls = parse_llama3_calls(buf_)) {
      out.calls = std::move(*calls);
      called_ = true;
    } else {
      out.content = std::move(buf_);
    }
    buf_.clear();
    return out;
  }
  if (in_call_) {
    // An unterminated call is still one when its JSON is whole (vLLM's hermes parser too).
    close_hermes_call(buf_, &out);
    in_call_ = false;
  } else {
    emit_outside(buf_, &out);
  }
  buf_.clear();
  if (!called_) out.content += held_ws_;  // an output with no call keeps all its text
  held_ws_.clear();
  return out;
}

ToolCallDelta parse_tool_calls(ToolCallFormat format, std::string_view text) {
  ToolCallStream stream(format);
  ToolCallDelta out = stream.feed(text);
  ToolCallDelta rest = stream.finish();
  out.content += rest.content;
  for (auto& c : rest.calls) out.calls.push_back(std::move(c));
  return out;
}

std::string new_tool_call_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  uint64_t hi = rng(), lo = rng();
  return fmt::format("call_{:08x}{:016x}", uint32_t(hi), lo);
}

}  // namespace invar::server
