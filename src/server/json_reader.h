// Reads one JSON value as its text arrives, byte by byte if need be, and writes it again as
// Python's json.dumps(ensure_ascii=False) writes it (the form vLLM gives tool-call arguments
// in). Each finished part of the value is written as soon as it is read: a key once it and its
// ':' have come, a string's characters as they come, a number or literal once it ends. So the
// text written so far is always a prefix of the whole value's text, and reading the value in
// any pieces writes the same text in total.
//
// The reader is strict where JSON is (RFC 8259: no trailing commas, no comments, strings of
// valid UTF-8 without raw control characters, paired \u surrogates), and stricter in one place:
// an object that repeats a key fails, since parsers disagree about which value such an object
// has. Nesting is limited to kMaxJsonDepth levels. No I/O.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace invar::server {

class JsonReader {
 public:
  enum class State : uint8_t { reading, done, failed };

  // Reads from the start of `text` until the value ends or turns out not to be JSON; returns
  // the bytes taken. A value that ends is followed by bytes it does not take (a number ends
  // only at the first byte after it). On failure the byte at the returned offset is the one
  // that cannot continue the value; it is not taken. Whitespace before the value is skipped.
  size_t read(std::string_view text);
  State state() const { return state_; }
  // The text written since the last take (json.dumps' form of what was read).
  std::string take_written();
  // The first byte of the value, once it has come ('{', '"', 't', ...); 0 before.
  char first_byte() const { return first_; }
  // A string value, decoded, once done (for a call's "name" and an object's keys).
  const std::string& string_value() const { return key_; }

 private:
  enum class Expect : uint8_t {
    value,
    first_key_or_close,
    key,
    colon,
    comma_or_close,
    first_value_or_close
  };
  enum class Token : uint8_t { none, string, number, literal };
  struct Frame {
    bool object;
    std::vector<std::string> keys;  // an object's keys so far (objects in calls are small)
  };

  bool step(char c);  // false: `c` fails the value, or the value ended before it
  bool begin_value(char c);
  void end_value();
  bool string_byte(char c);
  bool escape_byte(char c);
  bool utf8_byte(unsigned char c);
  bool number_byte(char c);
  bool end_number();
  bool finish_string();
  void append_code_point(uint32_t cp);
  void write_decoded();

  State state_ = State::reading;
  Expect expect_ = Expect::value;
  Token token_ = Token::none;
  char first_ = 0;
  std::vector<Frame> stack_;
  std::string written_;

  // The string being read: a key (kept whole: keys are checked before they are written), or a
  // value (its decoded bytes written out as they complete).
  bool string_is_key_ = false;
  std::string key_;      // a key's decoded text; for a top-level string, the value's
  std::string decoded_;  // a value string's decoded bytes not yet written
  int escape_ = 0;       // 0: none; 1: after '\'; 2..5: after "\u" and (escape_ - 2) hex digits
  uint32_t unit_ = 0;    // the \u unit being read
  uint32_t high_surrogate_ = 0;  // a \u high surrogate waiting for its low half
  std::string utf8_;             // a multi-byte character's bytes so far
  size_t utf8_need_ = 0;

  std::string number_;        // the number's text so far
  std::string_view literal_;  // "true", "false" or "null"
  size_t literal_at_ = 0;
};

}  // namespace invar::server
