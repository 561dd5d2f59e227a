// Tool-call parsing (src/server/tool_calls.h): hermes and llama3_json outputs split into content
// and calls, whole or fed in pieces (every split point gives the same result), malformed calls
// kept as content exactly as written, several calls in one output, and the format a template
// teaches.
#include "server/tool_calls.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "test_paths.h"

namespace invar::server {
namespace {

// The output fed one byte at a time, as a stream would deliver it at worst.
ToolCallDelta parse_bytewise(ToolCallFormat format, const std::string& text) {
  ToolCallStream stream(format);
  ToolCallDelta all;
  auto add = [&all](ToolCallDelta d) {
    all.content += d.content;
    for (auto& c : d.calls) all.calls.push_back(std::move(c));
  };
  for (char c : text) add(stream.feed(std::string_view(&c, 1)));
  add(stream.finish());
  return all;
}

// Every two-piece split of `text` gives what the whole does.
void expect_split_invariant(ToolCallFormat format, const std::string& text) {
  ToolCallDelta whole = parse_tool_calls(format, text);
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    ToolCallStream stream(format);
    ToolCallDelta a = stream.feed(text.substr(0, cut));
    ToolCallDelta b = stream.feed(text.substr(cut));
    ToolCallDelta c = stream.finish();
    std::string content = a.content + b.content + c.content;
    size_t calls = a.calls.size() + b.calls.size() + c.calls.size();
    EXPECT_EQ(content, whole.content) << "cut at " << cut << " of: " << text;
    EXPECT_EQ(calls, whole.calls.size()) << "cut at " << cut << " of: " << text;
  }
  ToolCallDelta bytes = parse_bytewise(format, text);
  EXPECT_EQ(bytes.content, whole.content);
  ASSERT_EQ(bytes.calls.size(), whole.calls.size());
  for (size_t i = 0; i < bytes.calls.size(); ++i) {
    EXPECT_EQ(bytes.calls[i].name, whole.calls[i].name);
    EXPECT_EQ(bytes.calls[i].arguments, whole.calls[i].arguments);
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
  EXPECT_TRUE(d.calls.empty());  // a call is delivered whole
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
}

TEST(ToolCalls, FormatNamesAndTemplates) {
  EXPECT_EQ(tool_call_format_named("hermes"), kHermes);
  EXPECT_EQ(tool_call_format_named("llama3_json"), kLlama);
  EXPECT_FALSE(tool_call_format_named("auto").has_value());
  EXPECT_EQ(tool_call_format_for_template("...<tool_call>\\n{\"name\"..."), kHermes);
  EXPECT_EQ(tool_call_format_for_template(R"({{- '"parameters": ' }})"), kLlama);
  EXPECT_EQ(tool_call_format_for_template("{{ messages }}"), kHermes);
  EXPECT_EQ(new_tool_call_id().rfind("call_", 0), 0u);
  EXPECT_EQ(new_tool_call_id().size(), 29u);
  EXPECT_NE(new_tool_call_id(), new_tool_call_id());
}

}  // namespace
}  // namespace invar::server
