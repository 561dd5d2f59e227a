// The incremental JSON reader of tool-call arguments (src/server/json_reader.h): what it writes
// is json.dumps' text of what nlohmann parses (the form the whole-call path used to give), for
// every way of cutting the input into pieces; what JSON forbids fails, with the failing byte
// untaken; a number ends only at the byte after it.
#include "server/json_reader.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "tokenizer/python_json.h"

namespace invar::server {
namespace {

struct ReadResult {
  JsonReader::State state;
  std::string written;
  size_t taken = 0;
};

ReadResult read_in_pieces(const std::string& text, const std::vector<size_t>& cuts) {
  JsonReader reader;
  ReadResult r;
  size_t from = 0;
  auto read_piece = [&](size_t to) {
    if (reader.state() != JsonReader::State::reading) return;
    size_t n = reader.read(std::string_view(text).substr(from, to - from));
    r.taken += n;
    r.written += reader.take_written();
    from += n;
    if (from < to) from = to;  // stopped early: the rest is not the value's
  };
  for (size_t cut : cuts) read_piece(cut);
  read_piece(text.size());
  r.state = reader.state();
  return r;
}

// Cuttings of `text`: whole, at every point in two, byte by byte, and in random pieces.
std::vector<std::vector<size_t>> cuttings(size_t size, uint32_t seed) {
  std::vector<std::vector<size_t>> all = {{}};
  for (size_t cut = 0; cut <= size; ++cut) all.push_back({cut});
  std::vector<size_t> bytes;
  for (size_t i = 1; i < size; ++i) bytes.push_back(i);
  all.push_back(bytes);
  std::mt19937 rng(seed);
  for (int k = 0; k < 20; ++k) {
    std::vector<size_t> cuts;
    for (size_t at = 0; at < size;) {
      at += 1 + rng() % 7;
      if (at < size) cuts.push_back(at);
    }
    all.push_back(cuts);
  }
  return all;
}

std::string python_dumps(const std::string& text) {
  return tokenizer::python_json_dumps(nlohmann::ordered_json::parse(text), {});
}

TEST(JsonReader, WritesJsonDumpsTextInAnyPieces) {
  const std::vector<std::string> values = {
      R"({"city": "Paris", "days": 3})",
      R"({"a":1,"b":[true,false,null],"c":{"d":-0.5e-3,"e":[]},"f":{}})",
      R"({"s": "tab\there, quote \" slash \/ back \\ nl \n cr \r bs \b ff \f"})",
      R"({"u": "\u00e9\u4e2d\ud83d\ude00 and raw é中😀", "ctl": "\u0001\u001f"})",
      R"({"n": [0, -0, 1.0, 1.50, 1e5, 1E+2, 12345678901234567890, -9223372036854775808]})",
      R"( { "spaced" : [ 1 , 2 ] , "x" : "y" } )",
      R"({"nested": [[[{"deep": [1, {"k": "v"}]}]]]})",
      R"({"}{": "][", "key with \"quotes\"": "\\"})",
      R"([1, "two", {"three": 3}])",
      R"("just a string")",
  };
  uint32_t seed = 1;
  for (const std::string& text : values) {
    const std::string expected = python_dumps(text);
    for (const auto& cuts : cuttings(text.size(), seed++)) {
      ReadResult r = read_in_pieces(text, cuts);
      ASSERT_EQ(r.state, JsonReader::State::done) << text;
      EXPECT_EQ(r.written, expected) << text << " cut " << cuts.size();
    }
  }
}

TEST(JsonReader, StopsAfterTheValue) {
  JsonReader obj;
  EXPECT_EQ(obj.read(R"(  {"a": [1]}</tool_call>)"), 12u);
  EXPECT_EQ(obj.state(), JsonReader::State::done);
  EXPECT_EQ(obj.first_byte(), '{');

  JsonReader number;  // a number ends at the byte after it, which it does not take
  EXPECT_EQ(number.read("12"), 2u);
  EXPECT_EQ(number.state(), JsonReader::State::reading);
  EXPECT_EQ(number.read(", 3"), 0u);
  EXPECT_EQ(number.state(), JsonReader::State::done);
  EXPECT_EQ(number.take_written(), "12");

  JsonReader str;
  EXPECT_EQ(str.read(R"("na\u006de" : 1)"), 11u);
  EXPECT_EQ(str.string_value(), "name");
}

TEST(JsonReader, FailsWhereJsonDoes) {
  for (const std::string text : {
           R"({"a": 1,})",                   // trailing comma
           R"({"a" 1})",                     // no colon
           R"({a: 1})",                      // bare key
           R"({"a": 01})",                   // leading zero
           R"({"a": 1.})",                   // no fraction digits
           R"({"a": -})",                    // lone minus
           R"({"a": 1e})",                   // no exponent digits
           R"({"a": tru})",                  // cut literal
           R"({"a": nul1})",                 // wrong literal
           R"({"a": "\x"})",                 // unknown escape
           R"({"a": "\u12G4"})",             // bad hex digit
           R"({"a": "\ud800"})",             // high surrogate alone
           R"({"a": "\udc00"})",             // low surrogate alone
           R"({"a": "\ud800\u0041"})",       // high surrogate, then no low one
           "{\"a\": \"raw\ncontrol\"}",      // raw control character
           "{\"a\": \"\xc3\x28\"}",          // bad UTF-8 continuation
           "{\"a\": \"\xc0\xaf\"}",          // overlong UTF-8
           "{\"a\": \"\xed\xa0\x80\"}",      // UTF-8-encoded surrogate
           "{\"a\": \"\xf4\x90\x80\x80\"}",  // above U+10FFFF
           R"({"a": 1, "a": 2})",            // repeated key
           R"({"a": {"b": 1, "b": 1}})",     // repeated key, nested
           R"({"a": 1e999})",                // out of range
           R"(]})",
       }) {
    JsonReader r;
    r.read(text);
    EXPECT_EQ(r.state(), JsonReader::State::failed) << text;
  }
  // The failing byte is not taken.
  JsonReader r;
  EXPECT_EQ(r.read(R"({"a": 1 x})"), 8u);
  EXPECT_EQ(r.state(), JsonReader::State::failed);
  // Unfinished is not done.
  JsonReader cut;
  cut.read(R"({"a": "unfinished)");
  EXPECT_EQ(cut.state(), JsonReader::State::reading);
}

TEST(JsonReader, NestingIsLimited) {
  JsonReader ok;
  ok.read(std::string(100, '[') + std::string(100, ']'));
  EXPECT_EQ(ok.state(), JsonReader::State::done);
  JsonReader deep;
  deep.read(std::string(100000, '['));
  EXPECT_EQ(deep.state(), JsonReader::State::failed);
}

}  // namespace
}  // namespace invar::server
