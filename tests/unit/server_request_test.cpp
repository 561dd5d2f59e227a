// Parsing and validation of OpenAI request bodies (src/server/completion_request.h): what is
// accepted becomes the right engine parameters; every bad input is a 4xx naming the field.
#include <gtest/gtest.h>

#include <string>

#include "server/completion_request.h"
#include "test_paths.h"
#include "tokenizer/chat_template.h"

namespace invar::server {
namespace {

const tokenizer::Tokenizer& smollm2() {
  static auto tok = tokenizer::Tokenizer::from_hf_dir(testing::test_data("tokenizer/smollm2"));
  EXPECT_TRUE(tok.ok()) << tok.status().message();
  return *tok;
}

RequestLimits limits(int context = 256) {
  RequestLimits l;
  l.served_model = "smol";
  l.max_context = context;
  l.max_choices = 8;
  return l;
}

struct Parsed {
  std::optional<ApiError> error;
  CompletionRequest request;
};

Parsed parse(Endpoint endpoint, const std::string& body, int context = 256) {
  Parsed p;
  p.error = parse_completion_request(endpoint, body, smollm2(), limits(context), &p.request);
  return p;
}
Parsed completion(const std::string& body, int context = 256) {
  return parse(Endpoint::completions, body, context);
}
Parsed chat(const std::string& body, int context = 256) {
  return parse(Endpoint::chat, body, context);
}

// The error of `p`, which must be a `status` naming `param` with `fragment` in its message.
void expect_error(const Parsed& p, int status, const std::string& param,
                  const std::string& fragment) {
  ASSERT_TRUE(p.error.has_value()) << "accepted, expected " << status << " on " << param;
  EXPECT_EQ(p.error->status, status) << p.error->message;
  EXPECT_EQ(p.error->param, param) << p.error->message;
  EXPECT_NE(p.error->message.find(fragment), std::string::npos) << p.error->message;
}

void expect_ok(const Parsed& p) {
  EXPECT_FALSE(p.error) << p.error->param << ": " << p.error->message;
}

TEST(ServerRequest, CompletionDefaults) {
  auto p = completion(R"({"model":"smol","prompt":"The capital of France is"})");
  ASSERT_FALSE(p.error) << p.error->message;
  const auto& r = p.request;
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(r.prompts[0], smollm2().encode("The capital of France is", false, true));
  EXPECT_EQ(r.n, 1);
  EXPECT_FALSE(r.stream);
  EXPECT_FALSE(r.logprobs);
  auto params = r.choice_params(0);
  EXPECT_EQ(params.max_tokens, 16);  // OpenAI's default for completions
  EXPECT_EQ(params.sampling.temperature, 0.0f);
  EXPECT_FALSE(params.has_seed);
  EXPECT_EQ(params.top_logprobs, -1);
  EXPECT_EQ(params.prompt, r.prompts[0]);
}

TEST(ServerRequest, CompletionSamplingFields) {
  auto p = completion(R"({"prompt":"hi","max_tokens":5,"temperature":0.7,"top_p":0.9,"top_k":40,
      "min_p":0.05,"seed":7,"n":3,"stop":["\n","END"],"stop_token_ids":[2],"presence_penalty":0.5,
      "frequency_penalty":-0.5,"repetition_penalty":1.1,"logprobs":2,"ignore_eos":true,
      "stream":true,"stream_options":{"include_usage":true},"user":"ignored"})");
  ASSERT_FALSE(p.error) << p.error->message;
  const auto& r = p.request;
  EXPECT_EQ(r.model, "smol");  // left out: the served model
  EXPECT_EQ(r.n, 3);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(r.top_logprobs, 2);
  for (int i = 0; i < 3; ++i) {
    auto params = r.choice_params(i);
    EXPECT_EQ(params.max_tokens, 5);
    EXPECT_FLOAT_EQ(params.sampling.temperature, 0.7f);
    EXPECT_FLOAT_EQ(params.sampling.top_p, 0.9f);
    EXPECT_EQ(params.sampling.top_k, 40);
    EXPECT_FLOAT_EQ(params.sampling.min_p, 0.05f);
    EXPECT_TRUE(params.has_seed);
    EXPECT_EQ(params.sampling.seed, 7u + uint64_t(i));  // distinct seeds for the n choices
    EXPECT_EQ(params.stop_strings, (std::vector<std::string>{"\n", "END"}));
    EXPECT_EQ(params.stop_ids, (std::vector<int32_t>{2}));
    EXPECT_FLOAT_EQ(params.presence_penalty, 0.5f);
    EXPECT_FLOAT_EQ(params.frequency_penalty, -0.5f);
    EXPECT_FLOAT_EQ(params.repetition_penalty, 1.1f);
    EXPECT_TRUE(params.ignore_eos);
    EXPECT_EQ(params.top_logprobs, 2);
  }
}

TEST(ServerRequest, PromptShapes) {
  auto ids = completion(R"({"prompt":[1,2,3],"max_tokens":1})");
  ASSERT_FALSE(ids.error) << ids.error->message;
  EXPECT_EQ(ids.request.prompts, (std::vector<std::vector<int32_t>>{{1, 2, 3}}));

  auto batch = completion(R"({"prompt":["a b",[5,6]],"n":2,"seed":1})");
  ASSERT_FALSE(batch.error) << batch.error->message;
  ASSERT_EQ(batch.request.choices(), 4);
  EXPECT_EQ(batch.request.choice_params(2).prompt, (std::vector<int32_t>{5, 6}));
  EXPECT_EQ(batch.request.choice_params(3).sampling.seed, 2u);

  auto single = completion(R"({"prompt":["only"],"stop":"x"})");
  ASSERT_FALSE(single.error);
  EXPECT_EQ(single.request.prompts.size(), 1u);
  EXPECT_EQ(single.request.params.stop_strings, std::vector<std::string>{"x"});
}

TEST(ServerRequest, ChatUsesTheTemplate) {
  auto p = chat(R"({"model":"smol","messages":[{"role":"system","content":"Be brief."},
      {"role":"user","content":[{"type":"text","text":"Hello"},{"type":"text","text":"there"}]}],
      "max_completion_tokens":7,"logprobs":true,"top_logprobs":3})");
  ASSERT_FALSE(p.error) << p.error->message;
  const auto& tok = smollm2();
  auto tmpl = tok.chat_template();
  ASSERT_TRUE(tmpl.ok()) << tmpl.status().message();
  tokenizer::ChatTemplateInputs inputs;
  inputs.messages =
      tokenizer::chat_messages_json({{"system", "Be brief."}, {"user", "Hello\nthere"}});
  auto rendered = (*tmpl)->render(inputs);
  ASSERT_TRUE(rendered.ok()) << rendered.status().message();
  EXPECT_EQ(*rendered,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello\nthere<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(p.request.prompts[0], tok.encode(*rendered, false, true));
  EXPECT_EQ(p.request.choice_params(0).max_tokens, 7);
  EXPECT_EQ(p.request.choice_params(0).top_logprobs, 3);

  // Without max_tokens a chat may use the rest of the context (vLLM).
  auto rest = chat(R"({"messages":[{"role":"user","content":"Hi"}]})");
  ASSERT_FALSE(rest.error);
  EXPECT_EQ(rest.request.choice_params(0).max_tokens, 256 - int(rest.request.prompts[0].size()));
}

// The text of the prompt a chat request was rendered into.
std::string chat_prompt_text(const std::string& body, const tokenizer::Tokenizer& tok) {
  CompletionRequest r;
  auto error = parse_completion_request(Endpoint::chat, body, tok, limits(), &r);
  EXPECT_FALSE(error) << error->message;
  return error ? std::string() : tok.decode(r.prompts[0]);
}

TEST(ServerRequest, ChatTemplateFields) {
  // A Qwen3-style switch in a template of the test's own: chat_template_kwargs reach it.
  auto tok = tokenizer::Tokenizer::from_hf_dir(testing::test_data("tokenizer/smollm2"));
  ASSERT_TRUE(tok.ok());
  ASSERT_TRUE(tok->set_chat_template(
                     "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
                     "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
                     "{% if enable_thinking is defined and not enable_thinking %}<think></think>"
                     "{% endif %}{% endif %}",
                     "test template")
                  .ok());
  const std::string user = R"("messages":[{"role":"user","content":"Hi"}])";
  EXPECT_EQ(chat_prompt_text("{" + user + "}", *tok),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(
      chat_prompt_text("{" + user + R"(,"chat_template_kwargs":{"enable_thinking":false}})", *tok),
      "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think></think>");
  EXPECT_EQ(chat_prompt_text("{" + user + R"(,"add_generation_prompt":false})", *tok),
            "<|im_start|>user\nHi<|im_end|>\n");
  // continue_final_message: the prompt stops inside the assistant's prefilled answer.
  EXPECT_EQ(chat_prompt_text(R"({"messages":[{"role":"user","content":"Hi"},
      {"role":"assistant","content":"Hello, "}],"add_generation_prompt":false,
      "continue_final_message":true})",
                             *tok),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello, ");

  expect_error(chat("{" + user + R"(,"chat_template_kwargs":"enable_thinking"})"), 400,
               "chat_template_kwargs", "an object");
  expect_error(chat("{" + user + R"(,"chat_template_kwargs":{"messages":[]}})"), 400,
               "chat_template_kwargs", "may not set 'messages'");
  expect_error(chat("{" + user + R"(,"continue_final_message":true})"), 400,
               "continue_final_message", "'add_generation_prompt': false");
  expect_error(chat("{" + user + R"(,"continue_final_message":1})"), 400, "continue_final_message",
               "a boolean");
}

TEST(ServerRequest, ChatTemplateErrorsAre400) {
  // A template's raise_exception reaches the client as its own message.
  auto tok = tokenizer::Tokenizer::from_hf_dir(testing::test_data("tokenizer/smollm2"));
  ASSERT_TRUE(tok.ok());
  ASSERT_TRUE(tok->set_chat_template("{% if messages[0].role == 'system' %}"
                                     "{{ raise_exception('System role not supported') }}"
                                     "{% endif %}{{ messages[0].content }}",
                                     "test template")
                  .ok());
  CompletionRequest r;
  auto error = parse_completion_request(
      Endpoint::chat, R"({"messages":[{"role":"system","content":"x"}]})", *tok, limits(), &r);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->status, 400);
  EXPECT_EQ(error->param, "messages");
  EXPECT_NE(error->message.find("System role not supported"), std::string::npos) << error->message;

  // A model without any template: 400, saying how to give one.
  auto bare = tokenizer::Tokenizer::from_hf_dir(testing::test_data("tokenizer/spm_tiny_hf"));
  ASSERT_TRUE(bare.ok());
  error = parse_completion_request(
      Endpoint::chat, R"({"messages":[{"role":"user","content":"x"}]})", *bare, limits(), &r);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->status, 400);
  EXPECT_NE(error->message.find("no chat template"), std::string::npos) << error->message;
  EXPECT_NE(error->message.find("--chat-template"), std::string::npos) << error->message;
}

TEST(ServerRequest, MalformedBodies) {
  expect_error(completion(R"({"prompt": "x",)"), 400, "", "not valid JSON");
  expect_error(completion("[1,2]"), 400, "", "must be a JSON object");
  expect_error(completion(std::string("{\"prompt\":\"caf\xC3\x28\"}")), 400, "", "not valid UTF-8");
  expect_error(completion("{\"prompt\":\"\\ud800\"}"), 400, "",
               "not valid JSON");  // lone surrogate
}

TEST(ServerRequest, WrongTypes) {
  expect_error(completion(R"({"prompt":"x","temperature":"hot"})"), 400, "temperature", "a number");
  expect_error(completion(R"({"prompt":"x","max_tokens":"5"})"), 400, "max_tokens", "an integer");
  expect_error(completion(R"({"prompt":"x","max_tokens":2.5})"), 400, "max_tokens", "an integer");
  expect_error(completion(R"({"prompt":"x","stream":1})"), 400, "stream", "a boolean");
  expect_error(completion(R"({"prompt":42})"), 400, "prompt", "a string");
  expect_error(completion(R"({"prompt":"x","stop":[1]})"), 400, "stop", "a string");
  expect_error(completion(R"({"prompt":"x","model":3})"), 400, "model", "a string");
  expect_error(chat(R"({"messages":"hi"})"), 400, "messages", "non-empty list");
  expect_error(chat(R"({"messages":[{"role":"user","content":5}]})"), 400, "messages[0].content",
               "a string");
  expect_error(chat(R"({"messages":[{"role":"function","content":"x"}]})"), 400, "messages[0].role",
               "not supported");
  expect_error(chat(R"({"messages":[{"role":"user","content":[{"type":"image_url"}]}]})"), 400,
               "messages[0].content", "only text");
}

TEST(ServerRequest, MissingOrEmptyPrompt) {
  expect_error(completion(R"({"model":"smol"})"), 400, "prompt", "required");
  expect_error(completion(R"({"prompt":""})"), 400, "prompt", "empty");
  expect_error(completion(R"({"prompt":[]})"), 400, "prompt", "a string");
  expect_error(chat(R"({"messages":[]})"), 400, "messages", "non-empty");
  expect_error(completion(R"({"prompt":[1, 999999]})"), 400, "prompt", "outside the vocabulary");
}

TEST(ServerRequest, UnknownModelIs404) {
  auto p = completion(R"({"model":"gpt-4","prompt":"x"})");
  expect_error(p, 404, "model", "does not exist");
  EXPECT_EQ(p.error->code, "model_not_found");
}

TEST(ServerRequest, ContextLimits) {
  std::string long_prompt(400, 'a');
  for (size_t i = 1; i < long_prompt.size(); i += 2) long_prompt[i] = ' ';
  expect_error(completion(R"({"prompt":")" + long_prompt + R"("})", 64), 400, "prompt",
               "maximum context length is 64");
  expect_error(completion(R"({"prompt":"hello","max_tokens":64})", 64), 400, "max_tokens",
               "maximum context length is 64");
  expect_error(chat(R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":1000})", 64), 400,
               "max_tokens", "maximum context length");
  // The default max_tokens shrinks to fit instead.
  auto fits = completion(R"({"prompt":[1,2,3,4,5,6,7,8,9,10]})", 20);
  ASSERT_FALSE(fits.error);
  EXPECT_EQ(fits.request.choice_params(0).max_tokens, 10);
}

TEST(ServerRequest, AbsurdValues) {
  expect_error(completion(R"({"prompt":"x","max_tokens":-1})"), 400, "max_tokens", "between 0 and");
  expect_error(completion(R"({"prompt":"x","max_tokens":0})"), 400, "max_tokens",
               "0 with echo or prompt_logprobs");
  expect_error(completion(R"({"prompt":"x","temperature":-0.5})"), 400, "temperature", ">= 0");
  expect_error(completion(R"({"prompt":"x","temperature":1e9})"), 400, "temperature", "<= 2");
  expect_error(completion(R"({"prompt":"x","top_p":0})"), 400, "top_p", "> 0");
  expect_error(completion(R"({"prompt":"x","top_p":1.5})"), 400, "top_p", "<= 1");
  expect_error(completion(R"({"prompt":"x","top_k":-5})"), 400, "top_k", "between -1");
  expect_error(completion(R"({"prompt":"x","n":0})"), 400, "n", "between 1 and 8");
  expect_error(completion(R"({"prompt":"x","n":1000})"), 400, "n", "between 1 and 8");
  expect_error(completion(R"({"prompt":["a","b","c"],"n":4})"), 400, "n", "12 choices");
  expect_error(completion(R"({"prompt":"x","logprobs":21})"), 400, "logprobs", "between 0 and 20");
  expect_error(completion(R"({"prompt":"x","presence_penalty":5})"), 400, "presence_penalty",
               "<= 2");
  expect_error(completion(R"({"prompt":"x","repetition_penalty":0})"), 400, "repetition_penalty",
               "> 0");
  expect_error(completion(R"({"prompt":"x","seed":1.5})"), 400, "seed", "an integer");
  expect_error(completion(R"({"prompt":"x","seed":18446744073709551615})"), 400, "seed", "between");
}

// Every field is implemented, ignored by design, or refused with a 400 naming it; an unknown
// one is refused too (request_fields.cpp).
TEST(ServerRequest, FieldPolicy) {
  expect_error(completion(R"({"prompt":"x","suffix":"y"})"), 400, "suffix", "not supported");
  expect_error(completion(R"({"prompt":"x","best_of":3})"), 400, "best_of", "not supported");
  expect_error(completion(R"({"prompt":"x","guided_json":{"type":"object"}})"), 400, "guided_json",
               "structured output");
  expect_error(completion(R"({"prompt":"x","response_format":{"type":"json_object"}})"), 400,
               "response_format", "structured output");
  expect_error(chat(R"({"messages":[{"role":"user","content":"x"}],"functions":[{"name":"f"}]})"),
               400, "functions", "use those");
  expect_error(completion(R"({"prompt":"x","use_beam_search":true})"), 400, "use_beam_search",
               "beam search");
  expect_error(completion(R"({"prompt":"x","top_logprobs":2})"), 400, "top_logprobs",
               "unknown field");  // a chat field
  expect_error(completion(R"({"prompt":"x","temprature":0.5})"), 400, "temprature",
               "unknown field");
  expect_error(chat(R"({"messages":[{"role":"user","content":"x"}],"prompt":"y"})"), 400, "prompt",
               "unknown field");
  expect_error(chat(R"({"messages":[{"role":"user","content":"x","tool_calls":[]}]})"), 400,
               "messages[0].tool_calls", "not supported");
  expect_error(chat(R"({"messages":[{"role":"user","content":"x"}],"top_logprobs":2})"), 400,
               "top_logprobs", "needs 'logprobs'");
  expect_error(completion(R"({"prompt":"x","stream_options":{"include_usage":true}})"), 400,
               "stream_options", "needs 'stream'");
  expect_error(completion(R"({"prompt":"x","stream":true,"stream_options":{"usage":true}})"), 400,
               "stream_options.usage", "unknown field");
  expect_error(completion(R"({"prompt":"x","stream":true,"prompt_logprobs":1})"), 400,
               "prompt_logprobs", "stream");
  expect_error(completion(R"({"prompt":"x","user":5})"), 400, "user", "a string");
  // Defaults of refused fields, nulls and the fields ignored by design are accepted.
  expect_ok(completion(R"({"prompt":"x","echo":false,"suffix":"","best_of":1,"logit_bias":{},
      "response_format":{"type":"text"},"use_beam_search":false,"length_penalty":1.0,
      "guided_json":null,"user":"u","metadata":{"a":"b"},"spaces_between_special_tokens":false,
      "service_tier":"auto","stream":true,"stream_options":{"include_usage":true,
      "continuous_usage_stats":false}})"));
  expect_ok(chat(R"({"messages":[{"role":"user","content":"x","name":"ann"}],"tools":[],
      "tool_choice":"none","parallel_tool_calls":false,"store":false,"include_reasoning":true,
      "modalities":["text"]})"));
}

TEST(ServerRequest, VllmSamplingFields) {
  auto p = completion(R"({"prompt":"x","max_tokens":9,"min_tokens":4,"logit_bias":{"5":-100,
      "17":2.5},"include_stop_str_in_output":true,"skip_special_tokens":false,
      "return_token_ids":true,"return_tokens_as_token_ids":true})");
  ASSERT_FALSE(p.error) << p.error->message;
  auto params = p.request.choice_params(0);
  EXPECT_EQ(params.min_tokens, 4);
  EXPECT_EQ(params.logit_bias,
            (std::vector<std::pair<int32_t, float>>{{17, 2.5f}, {5, -100.0f}}));  // keys sorted
  EXPECT_TRUE(params.include_stop_str_in_output);
  EXPECT_FALSE(params.skip_special_tokens);
  EXPECT_TRUE(p.request.return_token_ids);
  EXPECT_TRUE(p.request.tokens_as_ids);
  EXPECT_EQ(params.prompt_logprobs, -1);

  expect_error(completion(R"({"prompt":"x","max_tokens":3,"min_tokens":4})"), 400, "min_tokens",
               "at most max_tokens = 3");
  expect_error(completion(R"({"prompt":"x","min_tokens":17})"), 400, "min_tokens",
               "the default max_tokens = 16");
  expect_error(completion(R"({"prompt":"x","logit_bias":{"abc":1}})"), 400, "logit_bias",
               "not a token id");
  expect_error(completion(R"({"prompt":"x","logit_bias":{"999999":1}})"), 400, "logit_bias",
               "not a token id");
  expect_error(completion(R"({"prompt":"x","logit_bias":{"5":101}})"), 400, "logit_bias",
               "[-100, 100]");
  expect_error(completion(R"({"prompt":"x","logit_bias":[1]})"), 400, "logit_bias", "an object");
  expect_error(completion(R"({"prompt":"x","skip_special_tokens":"no"})"), 400,
               "skip_special_tokens", "a boolean");
}

// echo and prompt_logprobs: what the engine is asked to compute, and max_tokens 0 for scoring.
TEST(ServerRequest, EchoAndPromptLogprobs) {
  auto echo = completion(R"({"prompt":["a b",[5,6]],"echo":true,"logprobs":2,"max_tokens":0})");
  ASSERT_FALSE(echo.error) << echo.error->message;
  const auto& r = echo.request;
  EXPECT_TRUE(r.echo_logprobs());
  EXPECT_EQ(r.echo_texts[0], "a b");
  EXPECT_EQ(r.echo_texts[1], smollm2().decode({5, 6}, false));
  EXPECT_EQ(r.choice_params(0).max_tokens, 0);
  EXPECT_EQ(r.choice_params(0).prompt_logprobs, 2);  // the echoed tokens' alternatives
  EXPECT_EQ(r.prompt_logprobs, -1);                  // no prompt_logprobs field in the answer

  auto both = completion(R"({"prompt":"x","echo":true,"logprobs":1,"prompt_logprobs":4})");
  ASSERT_FALSE(both.error);
  EXPECT_EQ(both.request.choice_params(0).prompt_logprobs, 4);
  auto plain_echo = completion(R"({"prompt":"x","echo":true})");
  ASSERT_FALSE(plain_echo.error);
  EXPECT_EQ(plain_echo.request.choice_params(0).prompt_logprobs, -1);  // text only: no scoring

  auto scoring = chat(R"({"messages":[{"role":"user","content":"x"},
      {"role":"assistant","content":"Sure"}],"prompt_logprobs":0,"max_tokens":0,"echo":true,
      "add_generation_prompt":false,"continue_final_message":true})");
  ASSERT_FALSE(scoring.error) << scoring.error->message;
  EXPECT_EQ(scoring.request.echo_texts[0], "Sure");  // vLLM: the assistant's last message
  EXPECT_EQ(scoring.request.choice_params(0).prompt_logprobs, 0);
  expect_error(completion(R"({"prompt":"x","prompt_logprobs":21})"), 400, "prompt_logprobs",
               "between 0 and 20");
}

TEST(ServerRequest, AddSpecialTokens) {
  // SmolLM2 adds no BOS by default; the tiny sentencepiece tokenizer does.
  auto spm = tokenizer::Tokenizer::from_hf_dir(testing::test_data("tokenizer/spm_tiny_hf"));
  ASSERT_TRUE(spm.ok());
  ASSERT_TRUE(spm->add_bos_default());
  CompletionRequest with, without;
  ASSERT_FALSE(parse_completion_request(Endpoint::completions, R"({"prompt":"hello"})", *spm,
                                        limits(), &with));
  ASSERT_FALSE(parse_completion_request(Endpoint::completions,
                                        R"({"prompt":"hello","add_special_tokens":false})", *spm,
                                        limits(), &without));
  EXPECT_EQ(with.prompts[0].front(), *spm->bos_id());
  EXPECT_EQ(std::vector<int32_t>(with.prompts[0].begin() + 1, with.prompts[0].end()),
            without.prompts[0]);
}

TEST(ServerRequest, Utf8Validation) {
  EXPECT_TRUE(valid_utf8("plain"));
  EXPECT_TRUE(valid_utf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"));
  size_t at = 0;
  EXPECT_FALSE(valid_utf8("ab\xC0\xAF", &at));  // overlong
  EXPECT_EQ(at, 2u);
  EXPECT_FALSE(valid_utf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(valid_utf8("\xF4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_FALSE(valid_utf8("\xE2\x82"));          // cut short
}

}  // namespace
}  // namespace invar::server
