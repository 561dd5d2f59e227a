// Tool-call parsing; see tool_calls.h.
#include "server/tool_calls.h"

#include <fmt/format.h>

#include <algorithm>
#include <random>

namespace invar::server {

namespace {

constexpr std::string_view kOpen = "<tool_call>";
constexpr std::string_view kClose = "</tool_call>";
constexpr std::string_view kPythonTag = "<|python_tag|>";
constexpr std::string_view kToolCalls = "[TOOL_CALLS]";

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

// llama3_json: optional <|python_tag|>, then one or more call objects separated by ';' (and
// whitespace). All or nothing: one bad object makes the whole output content.
std::optional<std::vector<ToolCall>> parse_llama3_calls(std::string_view text) {
  text = trim(text);
  if (text.substr(0, kPythonTag.size()) == kPythonTag) text = trim(text.substr(kPythonTag.size()));
  std::vector<ToolCall> calls;
  while (!text.empty()) {
    ToolCallReader reader(ToolCallReader::Shape::object);
    size_t end = reader.read(text);
    if (reader.state() != ToolCallReader::State::done) return std::nullopt;
    calls.push_back({reader.name(), reader.take_arguments()});
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
  if (name == "mistral") return ToolCallFormat::mistral;
  return std::nullopt;
}

const char* tool_call_format_name(ToolCallFormat format) {
  switch (format) {
    case ToolCallFormat::hermes:
      return "hermes";
    case ToolCallFormat::llama3_json:
      return "llama3_json";
    case ToolCallFormat::mistral:
      return "mistral";
  }
  return "hermes";
}

ToolCallFormat tool_call_format_for_template(std::string_view source) {
  if (source.find(kOpen) != std::string_view::npos) return ToolCallFormat::hermes;
  if (source.find(kToolCalls) != std::string_view::npos) return ToolCallFormat::mistral;
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

// The first `n` bytes of the buffer belong to the call being read.
void ToolCallStream::take_raw(size_t n) {
  raw_.append(buf_, 0, n);
  buf_.erase(0, n);
}

// Whitespace at the buffer's start belongs to the call being read; returns what is left.
size_t ToolCallStream::take_raw_space() {
  size_t n = 0;
  while (n < buf_.size() && is_space(buf_[n])) ++n;
  take_raw(n);
  return buf_.size();
}

void ToolCallStream::start_call(ToolCallReader::Shape shape) {
  reader_.emplace(shape);
  announced_ = false;
  arguments_.clear();
  mode_ = Mode::call;
}

// Announces the call once it may be, then passes on what its arguments have added.
void ToolCallStream::publish_progress(ToolCallDelta* out) {
  if (!announced_ && reader_->begun()) {
    out->updates.push_back(
        {ToolCallUpdate::Kind::begin, calls_begun_++, reader_->name(), reader_->call_id()});
    announced_ = true;
  }
  if (!announced_) return;  // arguments written before the name wait in the reader
  std::string piece = reader_->take_arguments();
  if (piece.empty()) return;
  arguments_ += piece;
  out->updates.push_back({ToolCallUpdate::Kind::arguments, calls_begun_ - 1, std::move(piece)});
}

void ToolCallStream::complete_call(ToolCallDelta* out) {
  publish_progress(out);
  out->updates.push_back({ToolCallUpdate::Kind::end, calls_begun_ - 1, ""});
  out->calls.push_back({reader_->name(), std::move(arguments_), reader_->call_id()});
  arguments_.clear();
  announced_ = false;
  reader_.reset();
  raw_.clear();  // the call's text, tags included, is the call now
  ws_before_call_.clear();
  called_ = true;
}

// The call being read is none: its text, as written, goes to the content, and reading goes on
// from the byte that failed it (which may open the next call).
void ToolCallStream::break_call(ToolCallDelta* out) {
  if (announced_) out->updates.push_back({ToolCallUpdate::Kind::broken, calls_begun_ - 1, ""});
  announced_ = false;
  arguments_.clear();
  reader_.reset();
  std::string text = std::move(ws_before_call_) + std::move(raw_);
  ws_before_call_.clear();
  raw_.clear();
  emit_outside(text, out);
  mode_ = Mode::content;
}

bool ToolCallStream::step_content(bool at_end, ToolCallDelta* out) {
  const std::string_view tag = format_ == ToolCallFormat::hermes ? kOpen : kToolCalls;
  size_t open = buf_.find(tag);
  if (open == std::string::npos) {
    size_t keep = at_end ? 0 : partial_tag_at_end(buf_, tag);
    emit_outside(std::string_view(buf_).substr(0, buf_.size() - keep), out);
    buf_.erase(0, buf_.size() - keep);
    return false;
  }
  emit_outside(std::string_view(buf_).substr(0, open), out);
  ws_before_call_ = std::move(held_ws_);
  held_ws_.clear();
  buf_.erase(0, open);
  take_raw(tag.size());
  in_list_ = false;
  if (format_ == ToolCallFormat::hermes)
    start_call(ToolCallReader::Shape::object);
  else
    mode_ = Mode::mistral_open;
  return true;
}

// After [TOOL_CALLS]: a list of call objects, or a name (v11).
bool ToolCallStream::step_mistral_open(bool at_end, ToolCallDelta* out) {
  if (take_raw_space() == 0) {
    if (at_end) break_call(out);
    return at_end;
  }
  if (buf_.front() == '[') {
    take_raw(1);
    in_list_ = true;
    mode_ = Mode::mistral_item;
  } else {
    start_call(ToolCallReader::Shape::name_then_arguments);
  }
  return true;
}

bool ToolCallStream::step_mistral_item(bool at_end, ToolCallDelta* out) {
  if (take_raw_space() == 0) {
    if (at_end) break_call(out);
    return at_end;
  }
  if (buf_.front() == '{')
    start_call(ToolCallReader::Shape::object);
  else
    break_call(out);
  return true;
}

bool ToolCallStream::step_mistral_next(bool at_end) {
  if (take_raw_space() > 0 && (buf_.front() == ',' || buf_.front() == ']')) {
    mode_ = buf_.front() == ',' ? Mode::mistral_item : Mode::content;
    take_raw(1);
    if (mode_ == Mode::content) raw_.clear();  // the list's end is part of its calls
    return true;
  }
  if (buf_.empty() && !at_end) return false;
  // The list ends without its ']' (the output, or the list, stopped): the calls so far stand;
  // the whitespace after them is held like any other.
  held_ws_ += raw_;
  raw_.clear();
  mode_ = Mode::content;
  return true;
}

bool ToolCallStream::step_call(bool at_end, ToolCallDelta* out) {
  take_raw(reader_->read(buf_));
  publish_progress(out);
  switch (reader_->state()) {
    case ToolCallReader::State::failed:
      break_call(out);
      return true;
    case ToolCallReader::State::done:
      if (format_ == ToolCallFormat::hermes) {
        mode_ = Mode::hermes_close;
      } else {
        complete_call(out);
        mode_ = in_list_ ? Mode::mistral_next : Mode::content;
      }
      return true;
    case ToolCallReader::State::reading:
      break;
  }
  if (at_end) break_call(out);  // the output stopped inside the call
  return at_end;
}

// A hermes call counts once its </tool_call> has come, or the output has ended after its
// object; anything else after the object makes it no call (as a whole-block parse has it).
bool ToolCallStream::step_hermes_close(bool at_end, ToolCallDelta* out) {
  if (take_raw_space() == 0) {
    if (at_end) {
      complete_call(out);
      mode_ = Mode::content;
    }
    return at_end;
  }
  if (buf_.compare(0, kClose.size(), kClose) == 0) {
    take_raw(kClose.size());
    complete_call(out);
    mode_ = Mode::content;
    return true;
  }
  const bool may_be_close = buf_.size() < kClose.size() && kClose.substr(0, buf_.size()) == buf_;
  if (may_be_close && !at_end) return false;
  break_call(out);
  return true;
}

void ToolCallStream::process(bool at_end, ToolCallDelta* out) {
  bool more = true;
  while (more) {
    switch (mode_) {
      case Mode::content:
        more = step_content(at_end, out);
        break;
      case Mode::mistral_open:
        more = step_mistral_open(at_end, out);
        break;
      case Mode::mistral_item:
        more = step_mistral_item(at_end, out);
        break;
      case Mode::mistral_next:
        more = step_mistral_next(at_end);
        break;
      case Mode::call:
        more = step_call(at_end, out);
        break;
      case Mode::hermes_close:
        more = step_hermes_close(at_end, out);
        break;
      case Mode::llama3_undecided:
      case Mode::llama3_calls:
      case Mode::llama3_content:
        step_llama3(out);
        more = false;
        break;
    }
  }
}

void ToolCallStream::step_llama3(ToolCallDelta* out) {
  if (mode_ == Mode::llama3_undecided) {
    std::string_view rest = trim(buf_);
    if (rest.empty()) return;
    const size_t n = std::min(rest.size(), kPythonTag.size());
    const bool tag_prefix = kPythonTag.substr(0, n) == rest.substr(0, n);
    if (rest.front() == '{' || tag_prefix) {
      // Calls, or a tag still being written: held to the end of the output.
      if (rest.front() == '{' || rest.size() >= kPythonTag.size()) mode_ = Mode::llama3_calls;
      return;
    }
    mode_ = Mode::llama3_content;
  }
  if (mode_ == Mode::llama3_content) {
    out->content += buf_;
    buf_.clear();
  }
}

void ToolCallStream::finish_llama3(ToolCallDelta* out) {
  if (mode_ == Mode::llama3_content) return;  // everything went out as it came
  auto calls = parse_llama3_calls(buf_);
  if (!calls) {
    out->content = std::move(buf_);
    buf_.clear();
    return;
  }
  for (ToolCall& call : *calls) {
    const int index = calls_begun_++;
    out->updates.push_back({ToolCallUpdate::Kind::begin, index, call.name});
    if (!call.arguments.empty())
      out->updates.push_back({ToolCallUpdate::Kind::arguments, index, call.arguments});
    out->updates.push_back({ToolCallUpdate::Kind::end, index, ""});
    out->calls.push_back(std::move(call));
  }
  called_ = true;
  buf_.clear();
}

ToolCallDelta ToolCallStream::feed(std::string_view text) {
  ToolCallDelta out;
  buf_ += text;
  process(/*at_end=*/false, &out);
  return out;
}

ToolCallDelta ToolCallStream::finish() {
  ToolCallDelta out;
  if (format_ == ToolCallFormat::llama3_json) {
    finish_llama3(&out);
    return out;
  }
  process(/*at_end=*/true, &out);
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
  for (auto& u : rest.updates) out.updates.push_back(std::move(u));
  return out;
}

std::string new_tool_call_id(ToolCallFormat format) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  if (format == ToolCallFormat::mistral) {
    static constexpr std::string_view kAlphabet =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    std::string id(9, ' ');
    for (char& c : id) c = kAlphabet[rng() % kAlphabet.size()];
    return id;
  }
  uint64_t hi = rng(), lo = rng();
  return fmt::format("call_{:08x}{:016x}", uint32_t(hi), lo);
}

std::string tool_call_id(const std::string& model_id, ToolCallFormat format) {
  return model_id.empty() ? new_tool_call_id(format) : model_id;
}

}  // namespace invar::server
