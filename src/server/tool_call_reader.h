// Reads one tool call as its text arrives, in either shape models write a call in:
//   object               {"name": "f", "arguments": {...}} ("parameters" for "arguments" too;
//                        other keys allowed and ignored; any key order)
//   name_then_arguments  Mistral v11 and later: f[ARGS]{...}, f[CALL_ID]id[ARGS]{...} (the id
//                        the model gives its call: Mistral-Small-3.2, Magistral, Devstral), or
//                        f{...} when the [ARGS] token's text was left out of the output
// The arguments are written again as json.dumps writes them (json_reader.h), piece by piece,
// so that a stream can send them as they come. A call is valid only when the whole shape is
// well-formed JSON with a non-empty string name and an object of arguments; a repeated key,
// or both "arguments" and "parameters", fails it. No I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "server/json_reader.h"

namespace invar::server {

class ToolCallReader {
 public:
  enum class Shape : uint8_t { object, name_then_arguments };
  using State = JsonReader::State;

  explicit ToolCallReader(Shape shape)
      : shape_(shape), expect_(shape == Shape::object ? Expect::open : Expect::name) {}

  // Reads from the start of `text`; returns the bytes taken. It stops after the call's last
  // byte ('}'), or at the byte that fails it (not taken), or at the end of `text`.
  size_t read(std::string_view text);
  State state() const { return state_; }
  // Whether the name is known and the arguments object has opened: from here on the call may
  // be announced and its arguments sent as they come.
  bool begun() const { return !name_.empty() && args_ && args_->first_byte() == '{'; }
  const std::string& name() const { return name_; }
  // The id after [CALL_ID] when it is one Mistral's templates take back (9 letters and digits);
  // empty when the call has none, or another (the caller gives it a fresh id).
  std::string call_id() const;
  // The arguments' text (json.dumps' form) read since the last take.
  std::string take_arguments();

 private:
  enum class Expect : uint8_t {
    open,
    key_or_close,
    key,
    colon,
    value,
    comma_or_close,
    name,
    call_id,
    tag  // a [...] tag after the name or the id
  };
  enum class Slot : uint8_t { none, key, name, arguments, other };

  bool step_object(char c, size_t* at);
  bool step_name(char c, size_t* at);
  bool step_tag(char c);
  bool read_value(std::string_view text, size_t* at);
  bool end_key(const std::string& key);
  bool close_object();
  bool fail();

  Shape shape_;
  Expect expect_;
  State state_ = State::reading;
  Slot slot_ = Slot::none;           // what is being read by a JsonReader now
  Slot next_slot_ = Slot::none;      // what the value after the current key is
  std::optional<JsonReader> value_;  // a key or a value being read
  std::optional<JsonReader> args_;   // the arguments object
  std::string name_;
  std::string arguments_;  // written, not yet taken
  bool seen_name_ = false, seen_args_ = false;
  std::vector<std::string> other_keys_;
  // name_then_arguments: the tag read so far ("[", "[A", ...), what it follows (name or id),
  // and the id as written
  std::string tag_;
  Expect tag_after_ = Expect::name;
  std::string call_id_;
};

}  // namespace invar::server
