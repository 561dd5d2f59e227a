// See tool_call_reader.h.
#include "server/tool_call_reader.h"

#include <algorithm>

namespace invar::server {

namespace {

constexpr std::string_view kArgsTag = "[ARGS]";
constexpr size_t kMaxNameBytes = 64;  // OpenAI's limit on function names, which tools follow

bool is_space(char c) {
  return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

bool is_name_byte(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '.';
}

}  // namespace

size_t ToolCallReader::read(std::string_view text) {
  size_t at = 0;
  while (at < text.size() && state_ == State::reading) {
    bool ok = false;
    if (slot_ != Slot::none)
      ok = read_value(text, &at);
    else if (expect_ == Expect::name || expect_ == Expect::args_tag)
      ok = step_name(text[at], &at);
    else
      ok = step_object(text[at], &at);
    if (!ok) break;
  }
  return at;
}

std::string ToolCallReader::take_arguments() {
  std::string out = std::move(arguments_);
  arguments_.clear();
  return out;
}

bool ToolCallReader::fail() {
  state_ = State::failed;
  return false;
}

// One byte of the call object's own structure; a key or value is left for its JsonReader to
// take (`at` not moved).
bool ToolCallReader::step_object(char c, size_t* at) {
  if (is_space(c)) {
    ++*at;
    return true;
  }
  switch (expect_) {
    case Expect::open:
      if (c != '{') return fail();
      expect_ = Expect::key_or_close;
      break;
    case Expect::key_or_close:
    case Expect::key:
      if (c == '}' && expect_ == Expect::key_or_close) {
        if (!close_object()) return false;
        break;
      }
      if (c != '"') return fail();
      value_.emplace();
      slot_ = Slot::key;
      return true;
    case Expect::colon:
      if (c != ':') return fail();
      expect_ = Expect::value;
      break;
    case Expect::value:
      // A name is a string and arguments are an object; anything else is not a call.
      if (next_slot_ == Slot::name && c != '"') return fail();
      if (next_slot_ == Slot::arguments && c != '{') return fail();
      if (next_slot_ == Slot::arguments)
        args_.emplace();
      else
        value_.emplace();
      slot_ = next_slot_;
      return true;
    case Expect::comma_or_close:
      if (c == '}') {
        if (!close_object()) return false;
        break;
      }
      if (c != ',') return fail();
      expect_ = Expect::key;
      break;
    case Expect::name:
    case Expect::args_tag:
      return fail();  // read by step_name
  }
  ++*at;
  return true;
}

// Mistral v11: the name, then [ARGS] or directly the arguments object.
bool ToolCallReader::step_name(char c, size_t* at) {
  if (expect_ == Expect::args_tag) {
    if (c != kArgsTag[tag_at_]) return fail();
    if (++tag_at_ == kArgsTag.size()) {
      expect_ = Expect::value;
      next_slot_ = Slot::arguments;
    }
    ++*at;
    return true;
  }
  if (!name_.empty() && c == '{') {
    expect_ = Expect::value;
    next_slot_ = Slot::arguments;
    return true;  // the object is the arguments reader's to take
  }
  if (!name_.empty() && c == kArgsTag[0]) {
    expect_ = Expect::args_tag;
    tag_at_ = 1;
  } else if (is_name_byte(c) && name_.size() < kMaxNameBytes) {
    name_ += c;
  } else {
    return fail();
  }
  ++*at;
  return true;
}

// A key or value, through its JsonReader; what comes after it once it ends.
bool ToolCallReader::read_value(std::string_view text, size_t* at) {
  JsonReader& reader = slot_ == Slot::arguments ? *args_ : *value_;
  *at += reader.read(text.substr(*at));
  if (slot_ == Slot::arguments) arguments_ += reader.take_written();
  if (reader.state() == State::failed) return fail();
  if (reader.state() == State::reading) return true;  // all of `text` taken
  const Slot finished = slot_;
  slot_ = Slot::none;
  switch (finished) {
    case Slot::key:
      return end_key(value_->string_value());
    case Slot::name:
      name_ = value_->string_value();
      if (name_.empty()) return fail();
      break;
    case Slot::arguments:
      if (shape_ == Shape::name_then_arguments) {
        state_ = State::done;
        return true;
      }
      break;
    case Slot::other:
    case Slot::none:
      break;
  }
  expect_ = Expect::comma_or_close;
  return true;
}

bool ToolCallReader::end_key(const std::string& key) {
  bool repeated = false;
  if (key == "name") {
    repeated = seen_name_;
    seen_name_ = true;
    next_slot_ = Slot::name;
  } else if (key == "arguments" || key == "parameters") {
    repeated = seen_args_;  // both spellings in one call: which is meant is unclear
    seen_args_ = true;
    next_slot_ = Slot::arguments;
  } else {
    repeated = std::find(other_keys_.begin(), other_keys_.end(), key) != other_keys_.end();
    other_keys_.push_back(key);
    next_slot_ = Slot::other;
  }
  if (repeated) return fail();
  expect_ = Expect::colon;
  return true;
}

bool ToolCallReader::close_object() {
  if (!seen_name_ || !seen_args_) return fail();
  state_ = State::done;
  return true;
}

}  // namespace invar::server
