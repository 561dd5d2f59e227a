// See json_reader.h.
#include "server/json_reader.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/json_depth.h"
#include "tokenizer/python_json.h"
#include "tokenizer/unicode.h"

namespace invar::server {

namespace {

using OrderedJson = nlohmann::ordered_json;

bool is_space(char c) {
  return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A string as json.dumps writes it, without its quotes.
std::string python_string_body(const std::string& decoded) {
  std::string quoted = tokenizer::python_json_dumps(OrderedJson(decoded), {});
  return quoted.substr(1, quoted.size() - 2);
}

}  // namespace

size_t JsonReader::read(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && state_ == State::reading) {
    if (!step(text[i])) break;
    ++i;
  }
  write_decoded();
  return i;
}

std::string JsonReader::take_written() {
  std::string out = std::move(written_);
  written_.clear();
  return out;
}

// One byte; false when it is not taken (the value failed on it, or had ended before it).
bool JsonReader::step(char c) {
  switch (token_) {
    case Token::string:
      return string_byte(c);
    case Token::literal:
      if (c != literal_[literal_at_]) break;
      if (++literal_at_ == literal_.size()) {
        written_ += literal_;
        token_ = Token::none;
        end_value();
      }
      return true;
    case Token::number:
      if (number_byte(c)) return true;
      // The number ended before `c`; `c` goes on to what follows it.
      if (!end_number()) return false;
      if (state_ != State::reading) return false;
      return step(c);
    case Token::none:
      if (is_space(c)) return true;
      switch (expect_) {
        case Expect::value:
          return begin_value(c);
        case Expect::first_value_or_close:
          if (c == ']') {
            written_ += c;
            stack_.pop_back();
            end_value();
            return true;
          }
          return begin_value(c);
        case Expect::first_key_or_close:
        case Expect::key:
          if (c == '}' && expect_ == Expect::first_key_or_close) {
            written_ += c;
            stack_.pop_back();
            end_value();
            return true;
          }
          if (c != '"') break;
          token_ = Token::string;
          string_is_key_ = true;
          key_.clear();
          return true;
        case Expect::colon:
          if (c != ':') break;
          written_ += ": ";
          expect_ = Expect::value;
          return true;
        case Expect::comma_or_close: {
          const bool object = stack_.back().object;
          if (c == ',') {
            written_ += ", ";
            expect_ = object ? Expect::key : Expect::value;
            return true;
          }
          if (c != (object ? '}' : ']')) break;
          written_ += c;
          stack_.pop_back();
          end_value();
          return true;
        }
      }
      break;
  }
  state_ = State::failed;
  return false;
}

bool JsonReader::begin_value(char c) {
  if (stack_.empty() && first_ == 0) first_ = c;
  if (c == '{' || c == '[') {
    if (int(stack_.size()) >= kMaxJsonDepth) {
      state_ = State::failed;
      return false;
    }
    stack_.push_back({c == '{', {}});
    written_ += c;
    expect_ = c == '{' ? Expect::first_key_or_close : Expect::first_value_or_close;
    return true;
  }
  if (c == '"') {
    token_ = Token::string;
    string_is_key_ = false;
    key_.clear();
    written_ += '"';
    return true;
  }
  if (c == '-' || is_digit(c)) {
    token_ = Token::number;
    number_.assign(1, c);
    return true;
  }
  for (std::string_view word : {"true", "false", "null"}) {
    if (c == word[0]) {
      token_ = Token::literal;
      literal_ = word;
      literal_at_ = 1;
      return true;
    }
  }
  state_ = State::failed;
  return false;
}

// A value (or a key) has been read: what the container around it expects next.
void JsonReader::end_value() {
  if (stack_.empty()) {
    state_ = State::done;
    return;
  }
  expect_ = Expect::comma_or_close;
}

// The number grammar (-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?) checked on its text so far:
// whether `c` may continue it.
bool JsonReader::number_byte(char c) {
  const char last = number_.back();
  const bool has_dot = number_.find('.') != std::string::npos;
  const bool has_exp = number_.find_first_of("eE") != std::string::npos;
  bool ok = false;
  if (is_digit(c)) {
    // No digit after a leading 0 ("-0" or "0" as the integer part).
    const bool lone_zero = (number_ == "0" || number_ == "-0");
    ok = !lone_zero;
  } else if (c == '.') {
    ok = !has_dot && !has_exp && is_digit(last);
  } else if (c == 'e' || c == 'E') {
    ok = !has_exp && is_digit(last);
  } else if (c == '+' || c == '-') {
    ok = last == 'e' || last == 'E';
  }
  if (ok) number_ += c;
  return ok;
}

// The number is whole: checked, parsed as nlohmann parses it, and written as json.dumps would.
bool JsonReader::end_number() {
  token_ = Token::none;
  if (!is_digit(number_.back())) {
    state_ = State::failed;
    return false;
  }
  OrderedJson value = OrderedJson::parse(number_, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) {  // out of range
    state_ = State::failed;
    return false;
  }
  written_ += tokenizer::python_json_dumps(value, {});
  end_value();
  return true;
}

bool JsonReader::string_byte(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (utf8_need_ > 0) return utf8_byte(u);
  if (escape_ > 0) return escape_byte(c);
  if (high_surrogate_ != 0 && c != '\\') {  // a high surrogate must be followed by a low one
    state_ = State::failed;
    return false;
  }
  if (c == '"') return finish_string();
  if (c == '\\') {
    escape_ = 1;
    return true;
  }
  if (u < 0x20) {  // raw control characters are not allowed in JSON strings
    state_ = State::failed;
    return false;
  }
  if (u >= 0x80) {
    utf8_need_ = size_t(tokenizer::utf8_lead(u).len);
    if (utf8_need_ < 2) {
      state_ = State::failed;
      return false;
    }
    utf8_.assign(1, c);
    return true;
  }
  append_code_point(u);
  return true;
}

bool JsonReader::utf8_byte(unsigned char c) {
  const tokenizer::Utf8Lead lead = tokenizer::utf8_lead(static_cast<unsigned char>(utf8_[0]));
  const bool ok = utf8_.size() == 1 ? c >= lead.lo && c <= lead.hi : (c >= 0x80 && c <= 0xBF);
  if (!ok) {
    state_ = State::failed;
    return false;
  }
  utf8_ += char(c);
  if (utf8_.size() == utf8_need_) {
    (string_is_key_ ? key_ : decoded_) += utf8_;
    if (!string_is_key_ && stack_.empty()) key_ += utf8_;
    utf8_need_ = 0;
  }
  return true;
}

bool JsonReader::escape_byte(char c) {
  if (escape_ == 1) {
    if (high_surrogate_ != 0 && c != 'u') {
      state_ = State::failed;
      return false;
    }
    static constexpr std::string_view kFrom = "\"\\/bfnrt", kTo = "\"\\/\b\f\n\r\t";
    if (c == 'u') {
      escape_ = 2;
      unit_ = 0;
      return true;
    }
    size_t at = kFrom.find(c);
    if (at == std::string_view::npos) {
      state_ = State::failed;
      return false;
    }
    escape_ = 0;
    append_code_point(uint32_t(static_cast<unsigned char>(kTo[at])));
    return true;
  }
  const int digit = hex_value(c);
  if (digit < 0) {
    state_ = State::failed;
    return false;
  }
  unit_ = unit_ * 16 + uint32_t(digit);
  if (++escape_ < 6) return true;
  escape_ = 0;
  const bool high = unit_ >= 0xD800 && unit_ <= 0xDBFF;
  const bool low = unit_ >= 0xDC00 && unit_ <= 0xDFFF;
  if (high_surrogate_ != 0) {
    if (!low) {
      state_ = State::failed;
      return false;
    }
    append_code_point(0x10000 + ((high_surrogate_ - 0xD800) << 10) + (unit_ - 0xDC00));
    high_surrogate_ = 0;
  } else if (high) {
    high_surrogate_ = unit_;
  } else if (low) {
    state_ = State::failed;
    return false;
  } else {
    append_code_point(unit_);
  }
  return true;
}

void JsonReader::append_code_point(uint32_t cp) {
  std::string bytes;
  tokenizer::append_utf8(bytes, cp);
  if (string_is_key_) {
    key_ += bytes;
    return;
  }
  decoded_ += bytes;
  if (stack_.empty()) key_ += bytes;  // a top-level string is kept whole too
}

// A value string's decoded characters go out as they complete; escaping is per character, so
// writing them in any pieces gives json.dumps' text of the whole string.
void JsonReader::write_decoded() {
  if (decoded_.empty()) return;
  written_ += python_string_body(decoded_);
  decoded_.clear();
}

bool JsonReader::finish_string() {
  token_ = Token::none;
  if (!string_is_key_) {
    write_decoded();
    written_ += '"';
    end_value();
    return true;
  }
  std::vector<std::string>& keys = stack_.back().keys;
  if (std::find(keys.begin(), keys.end(), key_) != keys.end()) {
    state_ = State::failed;  // a repeated key: which value counts is up to each parser
    return false;
  }
  keys.push_back(key_);
  written_ += '"' + python_string_body(key_) + '"';
  expect_ = Expect::colon;
  return true;
}

}  // namespace invar::server
