// Tool-call parsing (src/server/tool_calls.h): hermes, llama3_json and mistral outputs split
// into content and calls, whole or fed in pieces (every split point, byte by byte, random
// pieces: the same content, calls, and streamed arguments text, which concatenated is exactly
// the call's arguments), arguments streamed as they are read, malformed calls kept as content
// exactly as written (and `broken` when they had begun), several calls in one output, the ids
// Mistral models give their calls, and the format a template teaches.
#include "server/tool_calls.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cctype>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "test_paths.h"

namespace invar::server {
namespace {

// An output as a client of the stream sees it: the content, the calls completed, and each
// call's name and arguments as assembled from its updates.
struct Streamed {
  std::string content;
  std::vector<ToolCall> calls;
  std::map<int, std::string> names, arguments;  // by call number, from begin and arguments
  std::map<int, std::string> ids;               // by call number, from begin
  std::set<int> ended, broken;
};

Streamed stream_in_pieces(ToolCallFormat format, std::string_view text,
                          const std::vector<size_t>& cuts) {
  ToolCallStream stream(format);
  Streamed s;
  auto add = [&s, text](ToolCallDelta d) {
    s.content += d.content;
    for (auto& c : d.calls) s.calls.push_back(std::move(c));
    for (const ToolCallUpdate& u : d.updates) {
      // Nothing comes for a call before its begin or after its end.
      if (u.kind != ToolCallUpdate::Kind::begin) {
        EXPECT_TRUE(s.names.count(u.call));
      }
      EXPECT_FALSE(s.ended.count(u.call) || s.broken.count(u.call))
          << int(u.kind) << " " << u.call << " [" << u.text << "] in " << text;
      switch (u.kind) {
        case ToolCallUpdate::Kind::begin:
          EXPECT_FALSE(s.names.count(u.call));
          EXPECT_EQ(u.call, int(s.names.size()));  // numbered in order
          s.names[u.call] = u.text;
          s.ids[u.call] = u.id;
          break;
        case ToolCallUpdate::Kind::arguments:
          s.arguments[u.call] += u.text;
          break;
        case ToolCallUpdate::Kind::end:
          s.ended.insert(u.call);
          break;
        case ToolCallUpdate::Kind::broken:
          s.broken.insert(u.call);
          break;
      }
    }
  };
  size_t from = 0;
  for (size_t cut : cuts) {
    add(stream.feed(text.substr(from, cut - from)));
    from = cut;
  }
  add(stream.feed(text.substr(from)));
  add(stream.finish());
  // The calls completed are the calls that ended, with the streamed names and arguments.
  EXPECT_EQ(s.calls.size(), s.ended.size());
  size_t i = 0;
  for (int call : s.ended) {
    if (i >= s.calls.size()) break;
    EXPECT_EQ(s.calls[i].name, s.names[call]);
    EXPECT_EQ(s.calls[i].arguments, s.arguments[call]);
    EXPECT_EQ(s.calls[i].id, s.ids[call]);
    ++i;
  }
  return s;
}

// Cuttings of an output: at every point in two, byte by byte, and in random pieces.
std::vector<std::vector<size_t>> cuttings(size_t size, uint32_t seed) {
  std::vector<std::vector<size_t>> all;
  for (size_t cut = 0; cut <= size; ++cut) all.push_back({cut});
  std::vector<size_t> bytes;
  for (size_t i = 1; i < size; ++i) bytes.push_back(i);
  all.push_back(bytes);
  std::mt19937 rng(seed);
  for (int k = 0; k < 30; ++k) {
    std::vector<size_t> cuts;
    for (size_t at = 0; at < size;) {
      at += 1 + rng() % 9;
      if (at < size) cuts.push_back(at);
    }
    all.push_back(cuts);
  }
  return all;
}

// Every way of feeding `text` gives what the whole does: content, calls, and the same
// arguments text streamed (which, concatenated, is each completed call's arguments).
void expect_split_invariant(ToolCallFormat format, const std::string& text) {
  const ToolCallDelta whole = parse_tool_calls(format, text);
  const Streamed one = stream_in_pieces(format, text, {});
  EXPECT_EQ(one.content, whole.content);
  ASSERT_EQ(one.calls.size(), whole.calls.size());
  for (const auto& cuts : cuttings(text.size(), uint32_t(text.size()))) {
    const Streamed s = stream_in_pieces(format, text, cuts);
    const std::string where = fmt::format("{} pieces of: {}", cuts.size() + 1, text);
    EXPECT_EQ(s.content, whole.content) << where;
    ASSERT_EQ(s.calls.size(), whole.calls.size()) << where;
    for (size_t i = 0; i < s.calls.size(); ++i) {
      EXPECT_EQ(s.calls[i].name, whole.calls[i].name) << where;
      EXPECT_EQ(s.calls[i].arguments, whole.calls[i].arguments) << where;
      EXPECT_EQ(s.calls[i].id, whole.calls[i].id) << where;
    }
    EXPECT_EQ(s.names, one.names) << where;
    EXPECT_EQ(s.ids, one.ids) << where;
    EXPECT_EQ(s.arguments, one.arguments) << where;
    EXPECT_EQ(s.broken, one.broken) << where;
  }
}

constexpr auto kHermes = ToolCallFormat::hermes;
constexpr auto kLlama = ToolCallFormat::llama3_json;

TEST(ToolCalls, HermesOneCall) {
  const std::string out =
      "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": "
      "3}}\n</tool_call>";
  ToolCallDelta d = parse_tool_calls(kHermes, out);
  EXPECT_EQ(d.content, "");
  ASSERT_EQ(d.calls.size(), 1u);
  EXPECT_EQ(d.calls[0].name, "get_weather");
  EXPECT_EQ(d.calls[0].arguments, R"({"city": "Paris", "days": 3})");  // the model's key order
  expect_split_invariant(kHermes, out);
}

TEST(ToolCalls, HermesContentThenSeveralCalls) {
  const std::string out =
      "Let me check both.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": \"}{\"}}\n"
      "</tool_call>\n<tool_call>\n{\"arguments\": {}, \"name\": \"b\"}\n</tool_call>\n";
  ToolCallDelta d = parse_tool_calls(kHermes, out);
  EXPECT_EQ(d.content, "Let me check both.");  // whitespace around calls dropped
  ASSERT_EQ(d.calls.size(), 2u);
  EXPECT_EQ(d.calls[0].name, "a");
  EXPECT_EQ(d.calls[0].arguments, R"({"x": "}{"})");
  EXPECT_EQ(d.calls[1].name, "b");
  EXPECT_EQ(d.calls[1].arguments, "{}");
  expect_split_invariant(kHermes, out);
}

TEST(ToolCalls, HermesMalformedCallIsContentAsWritten) {
  for (const std::string out : {
           "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}\n</tool_call>",  // no }
           "<tool_call>{\"arguments\": {}}</tool_call>",                              // no name
           "<tool_call>{\"name\": \"f\", \"arguments\": [1]}</tool_call>",  // not an object
           "<tool_call>{\"name\": \"\", \"arguments\": {}}</tool_call>",    // empty name
           "I would call <tool_call>get_weather(Paris)</tool_call> now.\n",
           "<tool_call>{\"name\": \"f\", \"argu",  // cut off by max_tokens
           "Plain text with a < sign and <tool_ca",
           "  \n",
       }) {
    ToolCallDelta d = parse_tool_calls(kHermes, out);
    EXPECT_TRUE(d.calls.empty()) << out;
    EXPECT_EQ(d.content, out);
    expect_split_invariant(kHermes, out);
  }
}

TEST(ToolCalls, HermesUnterminatedWholeCallCounts) {
  // A model may stop right after the object, before </tool_call>.
  ToolCallDelta d =
      parse_tool_calls(kHermes, "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n");
  ASSERT_EQ(d.calls.size(), 1u);
  EXPECT_EQ(d.calls[0].name, "f");
  EXPECT_EQ(d.content, "");
}

TEST(ToolCalls, HermesGoodAndBadCalls) {
  const std::string out =
      "<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>\n<tool_call>{oops}</tool_call>";
  ToolCallDelta d = parse_tool_calls(kHermes, out);
  ASSERT_EQ(d.calls.size(), 1u);
  EXPECT_EQ(d.content, "\n<tool_call>{oops}</tool_call>");
  expect_split_invariant(kHermes, out);
}

TEST(ToolCalls, StreamHoldsOnlyWhatMayBeACall) {
  ToolCallStream s(kHermes);
  EXPECT_EQ(s.feed("Hello").content, "Hello");
  EXPECT_EQ(s.feed(" wor").content, " wor");
  EXPECT_EQ(s.feed("ld <tool").content, "ld");  // " <tool" may open a call
  EXPECT_EQ(s.feed("box> x").content, " <toolbox> x");
  ToolCallDelta d = s.feed("\n<tool_call>{\"name\": \"f\", ");
  EXPECT_EQ(d.content, "");
  EXPECT_TRUE(d.calls.empty());
  EXPECT_TRUE(d.updates.empty());  // announced only once its arguments open
  d = s.feed("\"arguments\": {\"q\": 1}}</tool_call>");
  ASSERT_EQ(d.calls.size(), 1u);
  EXPECT_EQ(d.calls[0].arguments, R"({"q": 1})");
  EXPECT_TRUE(s.called());
  EXPECT_EQ(s.finish().content, "");
}

TEST(ToolCalls, Llama3Json) {
  const std::string one = R"({"name": "get_weather", "parameters": {"city": "Paris"}})";
  ToolCallDelta d = parse_tool_calls(kLlama, one);
  ASSERT_EQ(d.calls.size(), 1u);
  EXPECT_EQ(d.calls[0].name, "get_weather");
  EXPECT_EQ(d.calls[0].arguments, R"({"city": "Paris"})");
  EXPECT_EQ(d.content, "");
  expect_split_invariant(kLlama, one);

  const std::string two =
      "<|python_tag|>{\"name\": \"a\", \"parameters\": {\"s\": \"{;}\"}}; {\"name\": \"b\", "
      "\"arguments\": {}}";
  d = parse_tool_calls(kLlama, two);
  ASSERT_EQ(d.calls.size(), 2u);
  EXPECT_EQ(d.calls[0].arguments, R"({"s": "{;}"})");
  EXPECT_EQ(d.calls[1].name, "b");
  expect_split_invariant(kLlama, two);
}

TEST(ToolCalls, Llama3JsonMalformedOrPlainIsContent) {
  for (const std::string out : {
           "The weather in Paris is sunny.",
           " {\"name\": \"f\", \"parameters\": {}} and some words",
           "{\"name\": \"f\", \"parameters\": {\"a\": }}",
           "{\"city\": \"Paris\"}",
           "{\"name\": \"f\", \"param",
           "<|python",
       }) {
    ToolCallDelta d = parse_tool_calls(kLlama, out);
    EXPECT_TRUE(d.calls.empty()) << out;
    EXPECT_EQ(d.content, out);
    expect_split_invariant(kLlama, out);
  }
  // Plain text streams as it comes, not held to the end.
  ToolCallStream s(kLlama);
  EXPECT_EQ(s.feed("  ").content, "");
  EXPECT_EQ(s.feed("Sure").content, "  Sure");
  EXPECT_EQ(s.feed(" {").content, " {");
}

constexpr auto kMistral = ToolCallFormat::mistral;

std::vector<ToolCallUpdate::Kind> kinds(const ToolCallDelta& d) {
  std::vector<ToolCallUpdate::Kind> out;
  for (const auto& u : d.updates) out.push_back(u.kind);
  return out;
}

using Kind = ToolCallUpdate::Kind;

TEST(ToolCalls, HermesArgumentsStreamAsTheyCome) {
  ToolCallStream s(kHermes);
  ToolCallDelta d = s.feed("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"ci");
  ASSERT_EQ(kinds(d), (std::vector{Kind::begin, Kind::arguments}));
  EXPECT_EQ(d.updates[0].call, 0);
  EXPECT_EQ(d.updates[0].text, "get_weather");
  EXPECT_EQ(d.updates[1].text, "{");  // a key goes out once it is whole
  d = s.feed("ty\":\"Par");
  ASSERT_EQ(kinds(d), (std::vector{Kind::arguments}));
  EXPECT_EQ(d.updates[0].text, "\"city\": \"Par");  // json.dumps' spacing, whatever the model's
  d = s.feed("is\", \"days\": 12");
  EXPECT_EQ(d.updates[0].text, "is\", \"days\": ");  // a number waits for the byte after it
  d = s.feed("}}\n</tool_");
  ASSERT_EQ(kinds(d), (std::vector{Kind::arguments}));
  EXPECT_EQ(d.updates[0].text, "12}");
  EXPECT_TRUE(d.calls.empty());  // complete at its closing tag
  d = s.feed("call>");
  ASSERT_EQ(kinds(d), (std::vector{Kind::end}));
  ASSERT_EQ(d.calls.size(), 1u);
  EXPECT_EQ(d.calls[0].arguments, R"({"city": "Paris", "days": 12})");
}

TEST(ToolCalls, ArgumentsBeforeNameWaitForIt) {
  ToolCallStream s(kHermes);
  ToolCallDelta d = s.feed("<tool_call>{\"arguments\": {\"q\": [1, 2]}, ");
  EXPECT_TRUE(d.updates.empty());
  d = s.feed("\"name\": \"search\"}</tool_call>");
  ASSERT_EQ(kinds(d), (std::vector{Kind::begin, Kind::arguments, Kind::end}));
  EXPECT_EQ(d.updates[1].text, R"({"q": [1, 2]})");
}

TEST(ToolCalls, ArgumentsAreRewrittenAsJsonDumps) {
  const std::string out =
      "<tool_call>{\"name\":\"f\",\"arguments\":{\"x\":1.50,\"y\":\"\\u00e9\\/\",\"z\":[ ]},"
      "\"id\":7}</tool_call>";
  ToolCallDelta d = parse_tool_calls(kHermes, out);
  ASSERT_EQ(d.calls.size(), 1u);
  EXPECT_EQ(d.calls[0].arguments, "{\"x\": 1.5, \"y\": \"\xc3\xa9/\", \"z\": []}");
  expect_split_invariant(kHermes, out);
}

// A call that turns out malformed after it was announced: `broken`, its text in the content
// exactly as the response without streaming has it, and the calls around it unharmed.
TEST(ToolCalls, CallBrokenAfterItBegan) {
  for (const std::string out : {
           "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}\n</tool_call>",  // no }
           "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": Rome}}</tool_call>",
           "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1, \"a\": 2}}</tool_call>",
           "<tool_call>{\"name\": \"f\", \"arguments\": {}, \"parameters\": {}}</tool_call>",
           "<tool_call>{\"name\": \"f\", \"arguments\": {}} trailing</tool_call>",
           "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": \"cut off by max_tok",
       }) {
    ToolCallDelta whole = parse_tool_calls(kHermes, out);
    EXPECT_TRUE(whole.calls.empty()) << out;
    EXPECT_EQ(whole.content, out);
    ASSERT_FALSE(whole.updates.empty()) << out;
    EXPECT_EQ(whole.updates.front().kind, Kind::begin) << out;
    EXPECT_EQ(whole.updates.back().kind, Kind::broken) << out;
    expect_split_invariant(kHermes, out);
  }
  const std::string mixed =
      "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>\n"
      "<tool_call>{\"name\": \"b\", \"arguments\": {\"x\": }}</tool_call>\n"
      "<tool_call>{\"name\": \"c\", \"arguments\": {\"y\": 2}}</tool_call>";
  ToolCallDelta d = parse_tool_calls(kHermes, mixed);
  ASSERT_EQ(d.calls.size(), 2u);
  EXPECT_EQ(d.calls[0].name, "a");
  EXPECT_EQ(d.calls[1].name, "c");
  EXPECT_EQ(d.content, "\n<tool_call>{\"name\": \"b\", \"arguments\": {\"x\": }}</tool_call>");
  Streamed s = stream_in_pieces(kHermes, mixed, {});
  EXPECT_EQ(s.broken, (std::set<int>{1}));  // numbers keep counting past a broken call
  EXPECT_EQ(s.ended, (std::set<int>{0, 2}));
  expect_split_invariant(kHermes, mixed);
}

TEST(ToolCalls, NotACallBeforeItBeganSendsNoUpdate) {
  for (const std::string out : {
           "<tool_call>{\"name\": 3, \"arguments\": {}}</tool_call>",
           "<tool_call>{\"name\": \"f\", \"arguments\": \"{}\"}</tool_call>",
           "<tool_call>{\"name\": \"f\", \"name\": \"g\", \"arguments\": {}}</tool_call>",
           "<tool_call>{\"city\": \"Paris\"}</tool_call>",
           "<tool_call>{\"name\": \"f\"}</tool_call>",
       }) {
    ToolCallDelta d = parse_tool_calls(kHermes, out);
    EXPECT_TRUE(d.updates.empty()) << out;
    EXPECT_EQ(d.content, out);
    expect_split_invariant(kHermes, out);
  }
}

TEST(ToolCalls, MistralList) {
  const std::string out =
      "[TOOL_CALLS] [{\"name\": \"add\", \"arguments\":{\"a\": 3.5, \"b\": 4}}, "
      "{\"arguments\": {\"city\": \"San Francisco\"}, \"name\": \"get_weather\"}]";
  ToolCallDelta d = parse_tool_calls(kMistral, out);
  EXPECT_EQ(d.content, "");
  ASSERT_EQ(d.calls.size(), 2u);
  EXPECT_EQ(d.calls[0].name, "add");
  EXPECT_EQ(d.calls[0].arguments, R"({"a": 3.5, "b": 4})");
  EXPECT_EQ(d.calls[1].name, "get_weather");
  EXPECT_EQ(d.calls[1].arguments, R"({"city": "San Francisco"})");
  expect_split_invariant(kMistral, out);

  const std::string after_text =
      "Hello[TOOL_CALLS][{\"name\": \"add\", \"arguments\": {\"a\": 1}}]\nextra words";
  d = parse_tool_calls(kMistral, after_text);
  ASSERT_EQ(d.calls.size(), 1u);
  EXPECT_EQ(d.content, "Hello\nextra words");  // text after the list is content, not lost
  expect_split_invariant(kMistral, after_text);
}

TEST(ToolCalls, MistralNameThenArguments) {
  const std::string out =
      "[TOOL_CALLS]add[ARGS]{\"a\": 3.5, \"b\": 4}[TOOL_CALLS]multiply{\"a\": 3, \"b\": 6}";
  ToolCallDelta d = parse_tool_calls(kMistral, out);
  EXPECT_EQ(d.content, "");
  ASSERT_EQ(d.calls.size(), 2u);
  EXPECT_EQ(d.calls[0].name, "add");
  EXPECT_EQ(d.calls[0].arguments, R"({"a": 3.5, "b": 4})");
  EXPECT_EQ(d.calls[1].name, "multiply");
  EXPECT_EQ(d.calls[1].arguments, R"({"a": 3, "b": 6})");
  expect_split_invariant(kMistral, out);

  // Streamed: the name, then the arguments as they come; complete with its object.
  ToolCallStream s(kMistral);
  d = s.feed("Let me run it.[TOOL_CALLS]bash[AR");
  EXPECT_EQ(d.content, "Let me run it.");
  EXPECT_TRUE(d.updates.empty());
  d = s.feed("GS]{\"command\": \"ls -");
  ASSERT_EQ(kinds(d), (std::vector{Kind::begin, Kind::arguments}));
  EXPECT_EQ(d.updates[0].text, "bash");
  EXPECT_EQ(d.updates[1].text, "{\"command\": \"ls -");
  d = s.feed("l\"}");
  ASSERT_EQ(kinds(d), (std::vector{Kind::arguments, Kind::end}));
  ASSERT_EQ(d.calls.size(), 1u);
  EXPECT_EQ(s.finish().content, "");
}

TEST(ToolCalls, MistralCallIds) {
  // Mistral-Small-3.2, Magistral, Devstral: name[CALL_ID]id[ARGS]{...}, several in a row. The
  // model's id is the call's: the template wants it back with the call and its result.
  const std::string out =
      "Checking both.[TOOL_CALLS]get_weather[CALL_ID]a1B2c3D4e[ARGS]{\"city\": \"Paris\"}"
      "[TOOL_CALLS]get_time[CALL_ID]Zz9Yy8Xx7[ARGS]{}\n";
  ToolCallDelta d = parse_tool_calls(kMistral, out);
  EXPECT_EQ(d.content, "Checking both.");
  ASSERT_EQ(d.calls.size(), 2u);
  EXPECT_EQ(d.calls[0].name, "get_weather");
  EXPECT_EQ(d.calls[0].arguments, R"({"city": "Paris"})");
  EXPECT_EQ(d.calls[0].id, "a1B2c3D4e");
  EXPECT_EQ(d.calls[1].name, "get_time");
  EXPECT_EQ(d.calls[1].arguments, "{}");
  EXPECT_EQ(d.calls[1].id, "Zz9Yy8Xx7");
  expect_split_invariant(kMistral, out);

  // Mixed with the forms without an id, in one output.
  const std::string mixed =
      "[TOOL_CALLS]f[ARGS]{\"a\": [1, 2]}[TOOL_CALLS]g[CALL_ID]123456789[ARGS]{\"b\": null}"
      "[TOOL_CALLS]h{}";
  d = parse_tool_calls(kMistral, mixed);
  ASSERT_EQ(d.calls.size(), 3u);
  EXPECT_EQ(d.calls[0].id, "");
  EXPECT_EQ(d.calls[1].id, "123456789");
  EXPECT_EQ(d.calls[1].arguments, R"({"b": null})");
  EXPECT_EQ(d.calls[2].id, "");
  expect_split_invariant(kMistral, mixed);

  // An id Mistral's templates would refuse back is read (the call stands) but not kept: the
  // response gives the call a fresh one.
  for (const std::string call : {
           "[TOOL_CALLS]f[CALL_ID]abc12[ARGS]{\"a\": 1}",       // too short
           "[TOOL_CALLS]f[CALL_ID]abcdef1234[ARGS]{\"a\": 1}",  // too long
           "[TOOL_CALLS]f[CALL_ID]abc_12345[ARGS]{\"a\": 1}",   // not alphanumeric
           "[TOOL_CALLS]f[CALL_ID][ARGS]{\"a\": 1}",            // empty
       }) {
    d = parse_tool_calls(kMistral, call);
    ASSERT_EQ(d.calls.size(), 1u) << call;
    EXPECT_EQ(d.calls[0].name, "f");
    EXPECT_EQ(d.calls[0].arguments, R"({"a": 1})");
    EXPECT_EQ(d.calls[0].id, "") << call;
    EXPECT_EQ(d.content, "");
    expect_split_invariant(kMistral, call);
  }
  // The [ARGS] text left out after the id, as after a name.
  d = parse_tool_calls(kMistral, "[TOOL_CALLS]f[CALL_ID]abc123XYZ{\"a\": 1}");
  ASSERT_EQ(d.calls.size(), 1u);
  EXPECT_EQ(d.calls[0].id, "abc123XYZ");

  // Not a call: its text stays content as written.
  for (const std::string& bad : std::vector<std::string>{
           "[TOOL_CALLS]f[CALL_ID]abc123XYZ",                             // cut off
           "[TOOL_CALLS]f[CALL_ID]abc123XYZ[ARGS]",                       // cut off
           "[TOOL_CALLS]f[CALL_ID]abc123XYZ[ARGS]{\"a\"",                 // cut off
           "[TOOL_CALLS]f[CALL_ID]abc 123XY[ARGS]{}",                     // a space in the id
           "[TOOL_CALLS]f[CALL_ID]abc123XYZ[CALL_ID]abc123XYZ[ARGS]{}",   // two ids
           "[TOOL_CALLS]f[ARGS][CALL_ID]abc123XYZ{}",                     // the id after [ARGS]
           "[TOOL_CALLS][CALL_ID]abc123XYZ[ARGS]{}",                      // no name
           "[TOOL_CALLS]f[CALL]abc123XYZ[ARGS]{}",                        // another tag
           "[TOOL_CALLS]f[CALL_ID]abc123XYZ[ARGS]\"x\"",                  // arguments not an object
           "[TOOL_CALLS]f[CALL_ID]" + std::string(65, 'a') + "[ARGS]{}",  // id too long to read
       }) {
    d = parse_tool_calls(kMistral, bad);
    EXPECT_TRUE(d.calls.empty()) << bad;
    EXPECT_EQ(d.content, bad);
    expect_split_invariant(kMistral, bad);
  }

  // Streamed: the call begins, id and name known, once its arguments open.
  ToolCallStream s(kMistral);
  d = s.feed("[TOOL_CALLS]bash[CALL_");
  EXPECT_TRUE(d.updates.empty());
  d = s.feed("ID]k3Jd9sP0q[AR");
  EXPECT_TRUE(d.updates.empty());
  d = s.feed("GS]{\"command\": \"ls -");
  ASSERT_EQ(kinds(d), (std::vector{Kind::begin, Kind::arguments}));
  EXPECT_EQ(d.updates[0].text, "bash");
  EXPECT_EQ(d.updates[0].id, "k3Jd9sP0q");
  EXPECT_EQ(d.updates[1].text, "{\"command\": \"ls -");
  d = s.feed("l\"}[TOOL_CALLS]pwd[CALL_ID]X2[ARGS]{");
  ASSERT_EQ(kinds(d), (std::vector{Kind::arguments, Kind::end, Kind::begin, Kind::arguments}));
  ASSERT_EQ(d.calls.size(), 1u);
  EXPECT_EQ(d.calls[0].id, "k3Jd9sP0q");
  EXPECT_EQ(d.updates[2].text, "pwd");
  EXPECT_EQ(d.updates[2].id, "");  // "X2": not an id the template takes back
  d = s.feed("}");
  ASSERT_EQ(kinds(d), (std::vector{Kind::arguments, Kind::end}));
  EXPECT_EQ(s.finish().content, "");
}

TEST(ToolCalls, MistralMalformedIsContentAsWritten) {
  for (const std::string out : {
           "[TOOL_CALLS] not json at all",
           "[TOOL_CALLS]",
           "[TOOL_CALLS][]",
           "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {\"a\": }}]",
           "[TOOL_CALLS]bash{\"command\": \"print(1)\"",  // cut off
           "[TOOL_CALLS]bash {\"a\": 1}",                 // space before the arguments
           "[TOOL_CALLS]bash[ARGS]\"not an object\"",
           "Plain text with [TOOL_CA",
           "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {}} {",
       }) {
    ToolCallDelta d = parse_tool_calls(kMistral, out);
    if (out == "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {}} {") {
      // The first call is whole; what follows it is no list and stays content.
      ASSERT_EQ(d.calls.size(), 1u);
      EXPECT_EQ(d.content, " {");
    } else {
      EXPECT_TRUE(d.calls.empty()) << out;
      EXPECT_EQ(d.content, out);
    }
    expect_split_invariant(kMistral, out);
  }
  // A broken call after a good one in a list: the good one stands.
  const std::string out =
      "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {}}, {\"name\": \"g\", \"arguments\": {]";
  ToolCallDelta d = parse_tool_calls(kMistral, out);
  ASSERT_EQ(d.calls.size(), 1u);
  EXPECT_EQ(d.content, ", {\"name\": \"g\", \"arguments\": {]");
  expect_split_invariant(kMistral, out);
}

TEST(ToolCalls, Llama3CallsAreDeliveredWholeAtTheEnd) {
  ToolCallStream s(kLlama);
  ToolCallDelta d = s.feed("<|python_tag|>{\"name\": \"f\", \"parameters\": {\"a\": 1}}");
  EXPECT_TRUE(d.updates.empty());  // only the end tells calls from JSON content
  d = s.finish();
  ASSERT_EQ(kinds(d), (std::vector{Kind::begin, Kind::arguments, Kind::end}));
  EXPECT_EQ(d.updates[1].text, R"({"a": 1})");
}

// Outputs damaged at random (bytes dropped, doubled or replaced by JSON's structural ones):
// however they are fed, the same content, calls and streamed arguments; every call's arguments
// are a JSON object; an output without calls is all content.
TEST(ToolCalls, RandomlyDamagedOutputs) {
  const std::vector<std::pair<ToolCallFormat, std::string>> seeds = {
      {kHermes,
       "Sure. <tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par\\u00eds\", "
       "\"days\": [1, 2.5e1, true, null]}}\n</tool_call>\n<tool_call>{\"name\": \"t\", "
       "\"arguments\": {}}</tool_call>"},
      {kMistral,
       "ok [TOOL_CALLS] [{\"name\": \"add\", \"arguments\": {\"a\": -3.5, \"b\": \"x\\\"y\"}}, "
       "{\"name\": \"neg\", \"arguments\": {\"n\": {\"m\": []}}}]"},
      {kMistral, "[TOOL_CALLS]add[ARGS]{\"a\": 1, \"b\": [2]}[TOOL_CALLS]f{\"s\": \"\\n\"}"},
      {kMistral,
       "[TOOL_CALLS]add[CALL_ID]a1B2c3D4e[ARGS]{\"a\": 1}[TOOL_CALLS]f[CALL_ID]Zz9Yy8Xx7[ARGS]"
       "{\"s\": [true]}"},
      {kLlama,
       "<|python_tag|>{\"name\": \"a\", \"parameters\": {\"s\": 1}}; {\"name\": \"b\", "
       "\"parameters\": {}}"},
  };
  const std::string structural = "{}[]\",: \\<>/[]";
  std::mt19937 rng(2024);
  for (int trial = 0; trial < 1000; ++trial) {
    const auto& [format, seed] = seeds[size_t(trial) % seeds.size()];
    std::string text = seed;
    for (int edits = 1 + int(rng() % 3); edits > 0; --edits) {
      const size_t at = rng() % text.size();
      switch (rng() % 3) {
        case 0:
          text.erase(at, 1);
          break;
        case 1:
          text.insert(at, 1, text[at]);
          break;
        default:
          text[at] = structural[rng() % structural.size()];
      }
    }
    const ToolCallDelta whole = parse_tool_calls(format, text);
    for (const ToolCall& call : whole.calls) {
      auto args = nlohmann::json::parse(call.arguments, nullptr, false);
      EXPECT_TRUE(args.is_object()) << call.arguments << " from " << text;
    }
    if (whole.calls.empty()) {
      EXPECT_EQ(whole.content, text);
    }
    std::vector<size_t> bytes;
    for (size_t i = 1; i < text.size(); ++i) bytes.push_back(i);
    for (const auto& cuts : {bytes, std::vector<size_t>{text.size() / 2}}) {
      const Streamed s = stream_in_pieces(format, text, cuts);
      EXPECT_EQ(s.content, whole.content) << text;
      ASSERT_EQ(s.calls.size(), whole.calls.size()) << text;
      for (size_t i = 0; i < s.calls.size(); ++i) {
        EXPECT_EQ(s.calls[i].arguments, whole.calls[i].arguments) << text;
        EXPECT_EQ(s.calls[i].id, whole.calls[i].id) << text;
      }
    }
  }
}

std::string template_source(const std::string& name) {
  std::ifstream in(testing::test_data("tokenizer/templates/" + name));
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_FALSE(ss.str().empty()) << name;
  return ss.str();
}

TEST(ToolCalls, FormatOfRealTemplates) {
  EXPECT_EQ(tool_call_format_for_template(template_source("qwen3.jinja")), kHermes);
  EXPECT_EQ(tool_call_format_for_template(template_source("qwen2_5.jinja")), kHermes);
  EXPECT_EQ(tool_call_format_for_template(template_source("llama3_1.jinja")), kLlama);
  EXPECT_EQ(tool_call_format_for_template(template_source("llama3_2.jinja")), kLlama);
  EXPECT_EQ(tool_call_format_for_template(template_source("smollm2.jinja")), kHermes);
  EXPECT_EQ(tool_call_format_for_template(template_source("mistral_v0_3.jinja")), kMistral);
  EXPECT_EQ(tool_call_format_for_template(template_source("mistral_nemo.jinja")), kMistral);
  EXPECT_EQ(tool_call_format_for_template(template_source("mistral_small_3_2.jinja")), kMistral);
}

TEST(ToolCalls, FormatNamesAndTemplates) {
  EXPECT_EQ(tool_call_format_named("hermes"), kHermes);
  EXPECT_EQ(tool_call_format_named("llama3_json"), kLlama);
  EXPECT_EQ(tool_call_format_named("mistral"), kMistral);
  EXPECT_STREQ(tool_call_format_name(kMistral), "mistral");
  EXPECT_FALSE(tool_call_format_named("auto").has_value());
  EXPECT_EQ(tool_call_format_for_template("...<tool_call>\\n{\"name\"..."), kHermes);
  EXPECT_EQ(tool_call_format_for_template(R"({{- '"parameters": ' }})"), kLlama);
  EXPECT_EQ(tool_call_format_for_template("{{ messages }}"), kHermes);
  EXPECT_EQ(new_tool_call_id().rfind("call_", 0), 0u);
  EXPECT_EQ(new_tool_call_id().size(), 29u);
  EXPECT_NE(new_tool_call_id(), new_tool_call_id());
  // Mistral's templates accept back only ids of 9 letters and digits.
  const std::string mistral_id = new_tool_call_id(kMistral);
  EXPECT_EQ(mistral_id.size(), 9u);
  for (char c : mistral_id) EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c))) << c;
  // A call the model gave an id keeps it; one without gets a fresh id.
  EXPECT_EQ(tool_call_id("a1B2c3D4e", kMistral), "a1B2c3D4e");
  EXPECT_EQ(tool_call_id("", kMistral).size(), 9u);
  EXPECT_EQ(tool_call_id("", kHermes).substr(0, 5), "call_");
}

}  // namespace
}  // namespace invar::server
