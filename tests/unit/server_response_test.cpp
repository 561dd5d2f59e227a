// OpenAI response shapes (src/server/completion_response.h) and /metrics text
// (src/server/metrics.h): parsed back and checked field by field.
#include <gtest/gtest.h>

#include <limits>
#include <nlohmann/json.hpp>

#include "server/completion_response.h"
#include "server/metrics.h"
#include "test_paths.h"

namespace invar::server {
namespace {

using nlohmann::json;

const tokenizer::Tokenizer& smollm2() {
  static auto tok = tokenizer::Tokenizer::from_hf_dir(testing::test_data("tokenizer/smollm2"));
  EXPECT_TRUE(tok.ok()) << tok.status().message();
  return *tok;
}

ResponseHeader header(Endpoint endpoint) {
  return {endpoint, endpoint == Endpoint::chat ? "chatcmpl-1" : "cmpl-1", 1700000000, "smol",
          "invar-test-fp"};
}

engine::GeneratedToken token(int32_t id, float lp, std::string text,
                             std::vector<engine::TokenLogprob> top = {}) {
  engine::GeneratedToken t;
  t.id = id;
  t.logprob = lp;
  t.text = std::move(text);
  t.top = std::move(top);
  return t;
}

CompletionRequest request(Endpoint endpoint, bool logprobs, int top = 0) {
  CompletionRequest r;
  r.endpoint = endpoint;
  r.logprobs = logprobs;
  r.top_logprobs = top;
  return r;
}

TEST(ServerResponse, CompletionWithLogprobs) {
  const auto& tok = smollm2();
  int32_t paris = tok.encode(" Paris", false, false).at(0);
  ChoiceResult c;
  c.text = " Paris.";
  c.tokens = {token(paris, -0.25f, " Paris", {{paris, -0.25f}, {7, -2.0f}}), token(30, -0.5f, ".")};
  c.finish = engine::FinishReason::length;
  auto out = json::parse(format_response(
      header(Endpoint::completions), request(Endpoint::completions, true, 2), {c}, {5, 2, 3}, tok));
  EXPECT_EQ(out["id"], "cmpl-1");
  EXPECT_EQ(out["object"], "text_completion");
  EXPECT_EQ(out["model"], "smol");
  EXPECT_EQ(out["system_fingerprint"], "invar-test-fp");
  const auto& choice = out["choices"][0];
  EXPECT_EQ(choice["index"], 0);
  EXPECT_EQ(choice["text"], " Paris.");
  EXPECT_EQ(choice["finish_reason"], "length");
  const auto& lp = choice["logprobs"];
  EXPECT_EQ(lp["tokens"], json({" Paris", "."}));
  EXPECT_EQ(lp["token_logprobs"], json({-0.25, -0.5}));
  EXPECT_EQ(lp["text_offset"], json({0, 6}));
  EXPECT_EQ(lp["top_logprobs"][0].size(), 2u);
  EXPECT_EQ(lp["top_logprobs"][0][" Paris"], -0.25);
  EXPECT_EQ(lp["top_logprobs"][1]["."], -0.5);  // no alternatives: the token itself
  EXPECT_EQ(out["usage"]["prompt_tokens"], 5);
  EXPECT_EQ(out["usage"]["completion_tokens"], 2);
  EXPECT_EQ(out["usage"]["total_tokens"], 7);
  EXPECT_EQ(out["usage"]["prompt_tokens_details"]["cached_tokens"], 3);
}

TEST(ServerResponse, ChatWithoutAndWithLogprobs) {
  const auto& tok = smollm2();
  ChoiceResult c;
  c.text = "Hi!";
  c.tokens = {token(1, -0.1f, "Hi"), token(2, -std::numeric_limits<float>::infinity(), "!")};
  c.finish = engine::FinishReason::stop;
  auto plain = json::parse(format_response(header(Endpoint::chat), request(Endpoint::chat, false),
                                           {c, c}, {4, 6, 0}, tok));
  EXPECT_EQ(plain["object"], "chat.completion");
  ASSERT_EQ(plain["choices"].size(), 2u);
  EXPECT_EQ(plain["choices"][1]["index"], 1);
  EXPECT_EQ(plain["choices"][0]["message"], json({{"role", "assistant"}, {"content", "Hi!"}}));
  EXPECT_TRUE(plain["choices"][0]["logprobs"].is_null());
  EXPECT_EQ(plain["choices"][0]["finish_reason"], "stop");

  auto with = json::parse(format_response(header(Endpoint::chat), request(Endpoint::chat, true, 1),
                                          {c}, {4, 2, 0}, tok));
  const auto& content = with["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 2u);
  EXPECT_EQ(content[0]["token"], "Hi");
  EXPECT_EQ(content[0]["bytes"], json({72, 105}));
  EXPECT_TRUE(content[0]["top_logprobs"].is_array());
  EXPECT_EQ(content[1]["logprob"], -9999.0);  // JSON has no -inf
}

TEST(ServerResponse, StreamChunks) {
  const auto& tok = smollm2();
  auto r = request(Endpoint::chat, false);
  std::vector<engine::GeneratedToken> tokens = {token(1, -0.1f, "Hel")};
  ChunkPart first;
  first.index = 1;
  first.text = "Hel";
  first.tokens = &tokens;
  first.first = true;
  auto a = json::parse(format_chunk(header(Endpoint::chat), r, first, tok));
  EXPECT_EQ(a["object"], "chat.completion.chunk");
  EXPECT_EQ(a["system_fingerprint"], "invar-test-fp");
  EXPECT_EQ(a["choices"][0]["index"], 1);
  EXPECT_EQ(a["choices"][0]["delta"], json({{"role", "assistant"}, {"content", "Hel"}}));
  EXPECT_TRUE(a["choices"][0]["finish_reason"].is_null());

  ChunkPart last;
  last.finish = engine::FinishReason::length;
  auto b = json::parse(format_chunk(header(Endpoint::chat), r, last, tok));
  EXPECT_EQ(b["choices"][0]["delta"], json::object());
  EXPECT_EQ(b["choices"][0]["finish_reason"], "length");

  auto cr = request(Endpoint::completions, true, 0);
  ChunkPart mid;
  mid.text = "lo";
  std::vector<engine::GeneratedToken> lo = {token(3, -0.3f, "lo")};
  mid.tokens = &lo;
  mid.text_offset = 3;
  auto c = json::parse(format_chunk(header(Endpoint::completions), cr, mid, tok));
  EXPECT_EQ(c["object"], "text_completion");
  EXPECT_EQ(c["choices"][0]["text"], "lo");
  EXPECT_EQ(c["choices"][0]["logprobs"]["text_offset"], json({3}));

  auto u = json::parse(format_usage_chunk(header(Endpoint::completions), {3, 4, 0}));
  EXPECT_EQ(u["choices"], json::array());
  EXPECT_EQ(u["usage"]["total_tokens"], 7);

  EXPECT_EQ(sse_event("{}"), "data: {}\n\n");
  EXPECT_STREQ(kSseDone, "data: [DONE]\n\n");
}

// Chat with tool-call parsing: calls split out of the text (content null when none is left,
// finish "tool_calls" for an output that stopped), and streamed as OpenAI streams calls.
TEST(ServerResponse, ToolCalls) {
  const auto& tok = smollm2();
  CompletionRequest r = request(Endpoint::chat, false);
  r.parse_tool_calls = true;
  ChoiceResult c;
  c.text = "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call>";
  c.finish = engine::FinishReason::stop;
  ChoiceResult cut = c;
  cut.finish = engine::FinishReason::length;
  ChoiceResult plain;
  plain.text = "No call.";
  plain.finish = engine::FinishReason::stop;
  auto out = json::parse(format_response(header(Endpoint::chat), r, {c, cut, plain}, {}, tok));
  const auto& m = out["choices"][0]["message"];
  EXPECT_TRUE(m["content"].is_null());
  ASSERT_EQ(m["tool_calls"].size(), 1u);
  EXPECT_EQ(m["tool_calls"][0]["type"], "function");
  EXPECT_EQ(m["tool_calls"][0]["id"].get<std::string>().rfind("call_", 0), 0u);
  EXPECT_EQ(m["tool_calls"][0]["function"], json({{"name", "f"}, {"arguments", R"({"a": 1})"}}));
  EXPECT_EQ(out["choices"][0]["finish_reason"], "tool_calls");
  EXPECT_EQ(out["choices"][1]["finish_reason"], "length");  // the engine's reason when not stop
  EXPECT_EQ(out["choices"][2]["message"]["content"], "No call.");
  EXPECT_FALSE(out["choices"][2]["message"].contains("tool_calls"));
  EXPECT_EQ(out["choices"][2]["finish_reason"], "stop");
  // parallel_tool_calls: false keeps the first call of several.
  ChoiceResult two = c;
  two.text += "\n<tool_call>{\"name\": \"g\", \"arguments\": {}}</tool_call>";
  EXPECT_EQ(json::parse(format_response(header(Endpoint::chat), r, {two}, {},
                                        tok))["choices"][0]["message"]["tool_calls"]
                .size(),
            2u);
  r.max_tool_calls = 1;
  auto one = json::parse(format_response(header(Endpoint::chat), r, {two}, {}, tok));
  ASSERT_EQ(one["choices"][0]["message"]["tool_calls"].size(), 1u);
  EXPECT_EQ(one["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "f");
  r.max_tool_calls = 0;
  // Without parsing (tool_choice none) the same text is content.
  r.parse_tool_calls = false;
  out = json::parse(format_response(header(Endpoint::chat), r, {c}, {}, tok));
  EXPECT_EQ(out["choices"][0]["message"]["content"], c.text);
  EXPECT_EQ(out["choices"][0]["finish_reason"], "stop");

  ChunkPart head;
  head.tool_call = {0, "call_1", "f", ""};
  auto chunk = json::parse(format_chunk(header(Endpoint::chat), r, head, tok));
  EXPECT_EQ(chunk["choices"][0]["delta"],
            json::parse(R"({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                            "function": {"name": "f", "arguments": ""}}]})"));
  ChunkPart args;
  args.tool_call = {0, "", "", R"({"a": 1})"};
  chunk = json::parse(format_chunk(header(Endpoint::chat), r, args, tok));
  EXPECT_EQ(
      chunk["choices"][0]["delta"],
      json::parse(R"({"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\": 1}"}}]})"));
  ChunkPart last;
  last.finish = engine::FinishReason::stop;
  last.called_tools = true;
  chunk = json::parse(format_chunk(header(Endpoint::chat), r, last, tok));
  EXPECT_EQ(chunk["choices"][0]["finish_reason"], "tool_calls");
}

TEST(ServerResponse, TokenDisplayAndErrors) {
  EXPECT_EQ(token_display("ok"), "ok");
  EXPECT_EQ(token_display("\xE2\x80"), "bytes:\\xe2\\x80");
  auto e = json::parse(error_body(ApiError::bad_request("temperature", "too hot")));
  EXPECT_EQ(e["error"]["message"], "too hot");
  EXPECT_EQ(e["error"]["type"], "invalid_request_error");
  EXPECT_EQ(e["error"]["param"], "temperature");
  EXPECT_TRUE(e["error"]["code"].is_null());
  auto n = json::parse(error_body({404, "no", "invalid_request_error", "", "model_not_found"}));
  EXPECT_TRUE(n["error"]["param"].is_null());
  EXPECT_EQ(n["error"]["code"], "model_not_found");
}

TEST(ServerResponse, ModelList) {
  auto list = json::parse(format_model_list("smol", 5, 2048));
  EXPECT_EQ(list["object"], "list");
  EXPECT_EQ(list["data"][0]["id"], "smol");
  EXPECT_EQ(list["data"][0]["object"], "model");
  EXPECT_EQ(list["data"][0]["max_model_len"], 2048);
}

TEST(ServerMetrics, PrometheusText) {
  engine::EngineStats s;
  s.waiting = 3;
  s.kv_blocks_total = 100;
  s.kv_blocks_used = 25;
  s.generated_tokens = 42;
  s.time_to_first_token.counts[5] = 1;  // cumulative: le=0.05 and above hold it
  for (size_t i = 6; i < s.time_to_first_token.counts.size(); ++i)
    s.time_to_first_token.counts[i] = 1;
  s.time_to_first_token.count = 1;
  s.time_to_first_token.sum = 0.04;
  ServerCounters c;
  c.rejected_queue_full = 2;
  std::string text = format_metrics(s, c, "sm\"ol");
  auto has = [&](const std::string& line) {
    EXPECT_NE(text.find(line), std::string::npos) << "missing: " << line << "\n" << text;
  };
  has("# TYPE invar_num_requests_waiting gauge\n");
  has("invar_num_requests_waiting{model_name=\"sm\\\"ol\"} 3\n");
  has("invar_kv_blocks_used{model_name=\"sm\\\"ol\"} 25\n");
  has("invar_kv_cache_usage_ratio{model_name=\"sm\\\"ol\"} 0.25\n");
  has("invar_generation_tokens_total{model_name=\"sm\\\"ol\"} 42\n");
  has("# TYPE invar_time_to_first_token_seconds histogram\n");
  has("invar_time_to_first_token_seconds_bucket{model_name=\"sm\\\"ol\",le=\"0.025\"} 0\n");
  has("invar_time_to_first_token_seconds_bucket{model_name=\"sm\\\"ol\",le=\"0.05\"} 1\n");
  has("invar_time_to_first_token_seconds_bucket{model_name=\"sm\\\"ol\",le=\"+Inf\"} 1\n");
  has("invar_time_to_first_token_seconds_count{model_name=\"sm\\\"ol\"} 1\n");
  has("invar_requests_rejected_queue_full_total{model_name=\"sm\\\"ol\"} 2\n");
  has("invar_inter_token_latency_seconds_bucket");
  has("invar_step_seconds_sum");
}

// The same quantities under vLLM's names, for dashboards made for vLLM.
TEST(ServerMetrics, VllmNames) {
  engine::EngineStats s;
  s.running = 2;
  s.waiting = 1;
  s.prompt_tokens = 10;
  s.cached_prompt_tokens = 6;
  s.generated_tokens = 7;
  s.finished_by_reason = {4, 3, 2, 1};  // stop, length, cancelled, error
  s.e2e_request_latency.observe(0.3);
  s.queue_time.observe(0.002);
  std::string text = format_metrics(s, ServerCounters{}, "smol");
  auto has = [&](const std::string& line) {
    EXPECT_NE(text.find(line), std::string::npos) << "missing: " << line << "\n" << text;
  };
  has("vllm:num_requests_running{model_name=\"smol\"} 2\n");
  has("vllm:num_requests_waiting{model_name=\"smol\"} 1\n");
  has("vllm:prompt_tokens_total{model_name=\"smol\"} 16\n");  // computed + cached
  has("vllm:generation_tokens_total{model_name=\"smol\"} 7\n");
  has("# TYPE vllm:request_success_total counter\n");
  has("vllm:request_success_total{model_name=\"smol\",finished_reason=\"stop\"} 4\n");
  has("vllm:request_success_total{model_name=\"smol\",finished_reason=\"abort\"} 2\n");
  has("# TYPE vllm:e2e_request_latency_seconds histogram\n");
  has("vllm:e2e_request_latency_seconds_bucket{model_name=\"smol\",le=\"0.25\"} 0\n");
  has("vllm:e2e_request_latency_seconds_bucket{model_name=\"smol\",le=\"0.5\"} 1\n");
  has("vllm:request_queue_time_seconds_count{model_name=\"smol\"} 1\n");
  has("vllm:time_to_first_token_seconds_bucket");
  has("vllm:inter_token_latency_seconds_bucket");
}

// echo with logprobs, prompt_logprobs and the token ids of vLLM, in whole responses and chunks.
TEST(ServerResponse, EchoPromptLogprobsAndTokenIds) {
  const auto& tok = smollm2();
  auto r = request(Endpoint::completions, true, 1);
  r.n = 1;
  r.echo = true;
  r.prompts = {{504, 3575}};
  r.echo_texts = {"The capital"};
  r.prompt_logprobs = 1;
  r.return_token_ids = true;
  engine::PromptLogprob scored{3575, -11.5f, 2923, {{29, -0.87f}, {3575, -11.5f}}};
  ChoiceResult c;
  c.text = " of";
  c.tokens = {token(282, -0.34f, " of", {{282, -0.34f}})};
  c.prompt_logprobs = {scored};
  c.finish = engine::FinishReason::length;
  auto out = json::parse(
      format_response(header(Endpoint::completions), r, {c}, {2, 1, 0}, tok))["choices"][0];
  EXPECT_EQ(out["text"], "The capital of");
  EXPECT_EQ(out["logprobs"]["tokens"], json({"The", " capital", " of"}));
  EXPECT_EQ(out["logprobs"]["token_logprobs"], json({nullptr, -11.5, double(-0.34f)}));
  EXPECT_TRUE(out["logprobs"]["top_logprobs"][0].is_null());
  EXPECT_EQ(out["logprobs"]["top_logprobs"][1], json({{"-", double(-0.87f)}}));  // 1 of 2
  EXPECT_EQ(out["logprobs"]["text_offset"], json({0, 3, 11}));
  EXPECT_EQ(out["token_ids"], json({282}));
  EXPECT_EQ(out["prompt_token_ids"], json({504, 3575}));
  const json& plp = out["prompt_logprobs"];
  ASSERT_EQ(plp.size(), 2u);
  EXPECT_TRUE(plp[0].is_null());
  EXPECT_EQ(plp[1]["3575"],
            json({{"logprob", -11.5}, {"rank", 2923}, {"decoded_token", " capital"}}));
  EXPECT_EQ(plp[1]["29"]["rank"], 1);
  EXPECT_EQ(plp[1].size(), 2u);

  // The first chunk of a streamed echo: the prompt's tokens, then the output's; its ids only.
  auto echoed = echo_tokens(r.prompts[0], c.prompt_logprobs, 1, tok);
  ASSERT_EQ(echoed.size(), 2u);
  echoed.push_back(c.tokens[0]);
  ChunkPart part;
  part.text = "The capital of";
  part.tokens = &echoed;
  part.echoed = 2;
  part.prompt_ids = &r.prompts[0];
  auto chunk = json::parse(format_chunk(header(Endpoint::completions), r, part, tok))["choices"][0];
  EXPECT_EQ(chunk["logprobs"]["token_logprobs"][0], nullptr);
  EXPECT_EQ(chunk["token_ids"], json({282}));
  EXPECT_EQ(chunk["prompt_token_ids"], json({504, 3575}));

  // Chat: the prompt's logprobs and ids at the top level; tokens named by id on request.
  auto chat = request(Endpoint::chat, true, 0);
  chat.prompts = {{504, 3575}};
  chat.prompt_logprobs = 0;
  chat.return_token_ids = true;
  chat.tokens_as_ids = true;
  auto whole = json::parse(format_response(header(Endpoint::chat), chat, {c}, {2, 1, 0}, tok));
  EXPECT_EQ(whole["prompt_token_ids"], json({504, 3575}));
  EXPECT_EQ(whole["prompt_logprobs"][1].size(), 1u);  // the token itself, no alternatives
  EXPECT_EQ(whole["choices"][0]["logprobs"]["content"][0]["token"], "token_id:282");
  EXPECT_FALSE(whole["choices"][0].contains("prompt_logprobs"));
}

}  // namespace
}  // namespace invar::server
