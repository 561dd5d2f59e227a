// The tool fields of chat requests (src/server/tools_input.h) and tool messages: valid tools
// reach the template in the order sent, tool_choice picks parsing and the forced-call grammar,
// assistant tool_calls and tool results render as the model's template writes them, and every
// bad input is a 400 naming the field.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "engine/grammar.h"
#include "server/completion_request.h"
#include "server/tokenize.h"
#include "test_paths.h"

namespace invar::server {
namespace {

// SmolLM2's vocabulary with Qwen3's chat template (both ChatML), which renders tools.
const tokenizer::Tokenizer& qwen_style() {
  static tokenizer::Tokenizer tok = [] {
    auto t = tokenizer::Tokenizer::from_hf_dir(testing::test_data("tokenizer/smollm2"));
    EXPECT_TRUE(t.ok()) << t.status().message();
    std::ifstream in(testing::test_data("tokenizer/templates/qwen3.jinja"));
    std::stringstream source;
    source << in.rdbuf();
    EXPECT_TRUE(t->set_chat_template(source.str(), "qwen3.jinja").ok());
    return std::move(t).value();
  }();
  return tok;
}

engine::GrammarCompiler& grammars() {
  static engine::GrammarCompiler c(qwen_style(), qwen_style().vocab_size());
  return c;
}

struct Parsed {
  std::optional<ApiError> error;
  CompletionRequest request;
  std::string prompt;  // the rendered prompt, decoded
};

Parsed chat(const std::string& body, ToolCallFormat format = ToolCallFormat::hermes) {
  RequestLimits limits;
  limits.served_model = "smol";
  limits.max_context = 2048;
  limits.tool_format = format;
  Parsed p;
  p.error =
      parse_completion_request(Endpoint::chat, body, qwen_style(), limits, &p.request, &grammars());
  if (!p.error) p.prompt = qwen_style().decode(p.request.prompts[0], /*skip_special=*/false);
  return p;
}

void expect_error(const Parsed& p, const std::string& param, const std::string& fragment) {
  ASSERT_TRUE(p.error.has_value()) << "accepted, expected a 400 on " << param;
  EXPECT_EQ(p.error->status, 400);
  EXPECT_EQ(p.error->param, param) << p.error->message;
  EXPECT_NE(p.error->message.find(fragment), std::string::npos) << p.error->message;
}

const std::string kUser = R"("messages":[{"role":"user","content":"Weather in Paris?"}])";
const std::string kTools = R"("tools":[{"type":"function","function":{"name":"get_weather",
    "description":"The weather","parameters":{"type":"object","properties":{"city":{"type":
    "string"}},"required":["city"]}}},{"type":"function","function":{"name":"get_time"}}])";

TEST(ServerTools, ToolsReachTheTemplateInTheirOrder) {
  Parsed p = chat("{" + kUser + "," + kTools + "}");
  ASSERT_FALSE(p.error) << p.error->message;
  EXPECT_TRUE(p.request.parse_tool_calls);  // auto by default
  EXPECT_FALSE(p.request.params.grammar);
  // Qwen3's template dumps each tool with tojson: keys as sent (type before function).
  EXPECT_NE(p.prompt.find(R"({"type": "function", "function": {"name": "get_weather", )"
                          R"("description": "The weather")"),
            std::string::npos)
      << p.prompt;
  EXPECT_NE(p.prompt.find("<tool_call>"), std::string::npos);
  // Without tools the template writes none of it.
  Parsed plain = chat("{" + kUser + "}");
  ASSERT_FALSE(plain.error);
  EXPECT_EQ(plain.prompt.find("<tools>"), std::string::npos);
  EXPECT_FALSE(plain.request.parse_tool_calls);
}

TEST(ServerTools, ToolChoice) {
  EXPECT_EQ(chat("{" + kUser + "," + kTools + "}").request.max_tool_calls, 0);
  EXPECT_EQ(
      chat("{" + kUser + "," + kTools + R"(,"parallel_tool_calls":false})").request.max_tool_calls,
      1);
  Parsed none = chat("{" + kUser + "," + kTools + R"(,"tool_choice":"none"})");
  ASSERT_FALSE(none.error);
  EXPECT_FALSE(none.request.parse_tool_calls);
  EXPECT_NE(none.prompt.find("get_weather"), std::string::npos);  // still in the template

  Parsed required = chat("{" + kUser + "," + kTools + R"(,"tool_choice":"required"})");
  ASSERT_FALSE(required.error) << required.error->message;
  EXPECT_TRUE(required.request.parse_tool_calls);
  EXPECT_TRUE(required.request.params.grammar);

  Parsed named = chat("{" + kUser + "," + kTools +
                      R"(,"tool_choice":{"type":"function","function":{"name":"get_time"}}})");
  ASSERT_FALSE(named.error) << named.error->message;
  EXPECT_TRUE(named.request.params.grammar);
  // Forced calls in the llama3_json format compile too.
  Parsed llama = chat("{" + kUser + "," + kTools + R"(,"tool_choice":"required"})",
                      ToolCallFormat::llama3_json);
  ASSERT_FALSE(llama.error) << llama.error->message;
  EXPECT_EQ(llama.request.tool_format, ToolCallFormat::llama3_json);
}

TEST(ServerTools, ForcedCallGrammarAcceptsOnlyTheCall) {
  Parsed named = chat("{" + kUser + "," + kTools +
                      R"(,"tool_choice":{"type":"function","function":{"name":"get_weather"}}})");
  ASSERT_FALSE(named.error) << named.error->message;
  auto accepts = [&](const std::string& text) {
    engine::GrammarMatcher m(named.request.params.grammar, qwen_style().stop_ids());
    for (int32_t id : qwen_style().encode(text, false, false))
      if (!m.accept(id)) return false;
    return true;
  };
  EXPECT_TRUE(
      accepts("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
              "\"Paris\"}}\n</tool_call>"));
  EXPECT_FALSE(accepts("Sure"));
  EXPECT_FALSE(accepts("<tool_call>\n{\"name\": \"get_time\""));  // not the named one
  EXPECT_FALSE(accepts("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"town\""));
}

TEST(ServerTools, ConversationWithCallsAndResults) {
  Parsed p = chat(R"({"messages":[{"role":"user","content":"Weather in Paris?"},
      {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",
      "function":{"name":"get_weather","arguments":"{\"city\": \"Paris\", \"unit\": \"C\"}"}}]},
      {"role":"tool","tool_call_id":"call_1","content":"22 C, sunny"}],)" +
                  kTools + "}");
  ASSERT_FALSE(p.error) << p.error->message;
  // The call as the template writes it (arguments in the order given), and the result.
  EXPECT_NE(p.prompt.find("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                          "\"Paris\", \"unit\": \"C\"}}\n</tool_call>"),
            std::string::npos)
      << p.prompt;
  EXPECT_NE(p.prompt.find("<tool_response>\n22 C, sunny\n</tool_response>"), std::string::npos)
      << p.prompt;
}

TEST(ServerTools, BadToolsAre400NamingTheField) {
  const std::string u = "{" + kUser + ",";
  expect_error(chat(u + R"("tools":{"type":"function"}})"), "tools", "a list");
  expect_error(chat(u + R"("tools":[{"type":"retrieval"}]})"), "tools[0].type", "\"function\"");
  expect_error(chat(u + R"("tools":[{"type":"function"}]})"), "tools[0].function", "an object");
  expect_error(chat(u + R"("tools":[{"type":"function","function":{"description":"x"}}]})"),
               "tools[0].function.name", "letters");
  expect_error(chat(u + R"("tools":[{"type":"function","function":{"name":"a b"}}]})"),
               "tools[0].function.name", "letters");
  expect_error(chat(u + R"("tools":[{"type":"function","function":{"name":"f"}},
      {"type":"function","function":{"name":"f"}}]})"),
               "tools[1].function.name", "unique");
  expect_error(chat(u + R"("tools":[{"type":"function","function":{"name":"f","parameters":5}}]})"),
               "tools[0].function.parameters", "JSON schema");
  expect_error(chat(u + R"("tools":[{"type":"function","function":{"name":"f","parameters":
      {"type":"object","properties":{"a":3}}}}]})"),
               "tools[0].function.parameters.properties.a", "JSON schema");
  // A schema XGrammar cannot follow: found when a call is forced.
  expect_error(chat(u + R"("tools":[{"type":"function","function":{"name":"f","parameters":
      {"type":"object","properties":{"a":{"type":"strange"}}}}}],"tool_choice":"required"})"),
               "tool_choice", "cannot be compiled");
  expect_error(chat(u + kTools + R"(,"tool_choice":"sometimes"})"), "tool_choice", "\"required\"");
  expect_error(
      chat(u + kTools + R"(,"tool_choice":{"type":"function","function":{"name":"nope"}}})"),
      "tool_choice", "\"nope\", which is not among");
  expect_error(chat(u + R"("tool_choice":"required"})"), "tool_choice", "no 'tools'");
  expect_error(chat(u + kTools + R"(,"tool_choice":"required","guided_regex":"a+"})"),
               "guided_regex", "both constrain");
  expect_error(chat(u + kTools + R"(,"parallel_tool_calls":"yes"})"), "parallel_tool_calls",
               "a boolean");
}

TEST(ServerTools, BadToolMessagesAre400NamingTheField) {
  const std::string t = "," + kTools + "}";
  expect_error(chat(R"({"messages":[{"role":"tool","content":"22 C"}])" + t),
               "messages[0].tool_call_id", "tool_call_id");
  expect_error(chat(R"({"messages":[{"role":"tool","tool_call_id":"c1"}])" + t),
               "messages[0].content", "required");
  expect_error(chat(R"({"messages":[{"role":"user","content":"x","tool_call_id":"c1"}])" + t),
               "messages[0].tool_call_id", "not supported");
  expect_error(chat(R"({"messages":[{"role":"assistant","tool_calls":{}}])" + t),
               "messages[0].tool_calls", "a list");
  expect_error(chat(R"({"messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function",
      "function":{"name":"f","arguments":"{oops"}}]}])" +
                    t),
               "messages[0].tool_calls[0].function.arguments", "JSON object");
  expect_error(chat(R"({"messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function",
      "function":{"arguments":"{}"}}]}])" +
                    t),
               "messages[0].tool_calls[0].function.name", "name");
}

// /tokenize renders a chat with tools exactly as a chat completion does.
TEST(ServerTools, TokenizeRendersTools) {
  RequestLimits limits;
  limits.served_model = "smol";
  limits.max_context = 2048;
  RouteReply reply = tokenize("{" + kUser + "," + kTools + "}", qwen_style(), limits);
  ASSERT_FALSE(reply.error) << reply.error->message;
  auto tokens = nlohmann::json::parse(reply.body)["tokens"].get<std::vector<int32_t>>();
  Parsed p = chat("{" + kUser + "," + kTools + "}");
  ASSERT_FALSE(p.error);
  EXPECT_EQ(tokens, p.request.prompts[0]);
  Parsed plain = chat("{" + kUser + "}");
  EXPECT_NE(tokens, plain.request.prompts[0]);
  RouteReply bad =
      tokenize("{" + kUser + R"(,"tools":[{"type":"function"}]})", qwen_style(), limits);
  ASSERT_TRUE(bad.error);
  EXPECT_EQ(bad.error->param, "tools[0].function");
}

}  // namespace
}  // namespace invar::server
