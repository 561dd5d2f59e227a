// See tool_call_reader.h.
#include "server/tool_call_reader.h"

#include <algorithm>

namespace invar::server {

namespace {

constexpr std::string_view kArgsTag = "[ARGS]";
constexpr std::string_view kCallIdTag = "[CALL_ID]";
constexpr size_t kMistralIdBytes = 9;  // the only id length Mistral's templates accept
constexpr size_t kMaxNameBytes = 64;   // OpenAI's limit on function names, which tools follow

bool is_space(char c) {
  return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

bool is_alphanumeric(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool is_name_byte(char c) {
  return is_alphanumeric(c) || c == '_' || c == '-' || c == '.';
}

bool starts(std::string_view tag, std::string_view text) {
  return tag.substr(0, text.size()) == text;
}

}  // namespace

size_t ToolCallReader::read(std::string_view text) {
  size_t at = 0;
  while (at < text.size() && state_ == State::reading) {
    bool ok = false;
    if (slot_ != Slot::none)
      ok = read_value(text, &at);
    else if (expect_ == Expect::name || expect_ == Expect::call_id || expect_ == Expect::tag)
      ok = step_name(text[at], &at);
    else
      ok = step_object(text[at], &at);
    if (!ok) break;
  }
  return at;
}

std::string ToolCallReader::call_id() const {
  const bool valid = call_id_.size() == kMistralIdBytes &&
                     std::all_of(call_id_.begin(), call_id_.end(), is_alphanumeric);
  return valid ? call_id_ : std::string();
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
    case Expect::call_id:
    case Expect::tag:
      return fail();  // read by step_name
  }
  ++*at;
  return true;
}

// Mistral v11 and later: the name, optionally [CALL_ID] and the id, then [ARGS] or directly the
// arguments object. The id may be any name-like word: one that is not 9 letters and digits is
// read (the call stands) but not kept (call_id()).
bool ToolCallReader::step_name(char c, size_t* at) {
  if (expect_ == Expect::tag) {
    if (!step_tag(c)) return fail();
    ++*at;
    return true;
  }
  std::string& word = expect_ == Expect::name ? name_ : call_id_;
  // After [CALL_ID] the id may be empty; a name may not.
  const bool may_end = !word.empty() || expect_ == Expect::call_id;
  if (may_end && c == '{') {
    expect_ = Expect::value;
    next_slot_ = Slot::arguments;
    return true;  // the object is the arguments reader's to take
  }
  if (may_end && c == '[') {
    tag_after_ = expect_;
    tag_.assign(1, '[');  // (not = "[": GCC 12 at -O3 warns falsely about it)
    expect_ = Expect::tag;
  } else if (is_name_byte(c) && word.size() < kMaxNameBytes) {
    word += c;
  } else {
    return fail();
  }
  ++*at;
  return true;
}

// One more byte of a tag: [ARGS] after the name or the id, [CALL_ID] after the name only.
bool ToolCallReader::step_tag(char c) {
  tag_ += c;
  if (tag_ == kArgsTag) {
    expect_ = Expect::value;
    next_slot_ = Slot::arguments;
    return true;
  }
  const bool id_allowed = tag_after_ == Expect::name;
  if (id_allowed && tag_ == kCallIdTag) {
    expect_ = Expect::call_id;
    return true;
  }
  return starts(kArgsTag, tag_) || (id_allowed && starts(kCallIdTag, tag_));
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
