// Chat templates against Python jinja2 renderings of the real templates
// (tests/data/tokenizer/chat_templates_expected.json, from scripts/tokenizer-reference.py).
#include "tokenizer/chat_template.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test_paths.h"

namespace invar::tokenizer {
namespace {

std::string read_file(const std::string& rel) {
  std::ifstream in(testing::test_data(rel), std::ios::binary);
  EXPECT_TRUE(in) << "missing test data " << rel;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(ChatTemplate, RendersExactlyAsJinja) {
  const auto cases =
      nlohmann::json::parse(read_file("tokenizer/chat_templates_expected.json"))["cases"];
  ASSERT_FALSE(cases.empty());
  std::map<std::string, std::string> sources;
  for (const auto& c : cases) {
    const std::string name = c["template"].get<std::string>();
    if (!sources.count(name)) sources[name] = read_file("tokenizer/templates/" + name + ".jinja");
    std::vector<ChatMessage> messages;
    for (const auto& m : c["messages"]) messages.push_back({m["role"], m["content"]});
    ChatTemplateOptions options;
    if (c["date_string"].is_string()) options.date_string = c["date_string"].get<std::string>();
    auto out = apply_chat_template(sources[name], messages, c["add_generation_prompt"].get<bool>(),
                                   c["bos_token"].get<std::string>(),
                                   c["eos_token"].get<std::string>(), options);
    const std::string where =
        name + " " + c["messages"].dump() + (c["add_generation_prompt"].get<bool>() ? " +gen" : "");
    if (c["error"].get<bool>()) {
      EXPECT_FALSE(out.ok()) << where;
    } else {
      ASSERT_TRUE(out.ok()) << where << ": " << out.status().message();
      EXPECT_EQ(*out, c["expected"].get<std::string>()) << where;
    }
  }
}

TEST(ChatTemplate, RecognizesFamiliesAndRejectsOthers) {
  EXPECT_EQ(*chat_template_family(read_file("tokenizer/templates/smollm2.jinja")),
            ChatTemplateFamily::chatml);
  EXPECT_EQ(*chat_template_family(read_file("tokenizer/templates/llama3_2.jinja")),
            ChatTemplateFamily::llama3);
  EXPECT_EQ(*chat_template_family(read_file("tokenizer/templates/llama2.jinja")),
            ChatTemplateFamily::llama2);
  EXPECT_EQ(*chat_template_family(read_file("tokenizer/templates/zephyr.jinja")),
            ChatTemplateFamily::zephyr);
  auto gemma =
      apply_chat_template("{{ bos_token }}{% for m in messages %}<start_of_turn>{% endfor %}",
                          {{"user", "hi"}}, true, "<bos>", "<eos>");
  ASSERT_FALSE(gemma.ok());
  EXPECT_NE(gemma.status().message().find("unrecognized chat template"), std::string::npos);
  EXPECT_FALSE(apply_chat_template("", {{"user", "hi"}}, true, "", "").ok());
  EXPECT_FALSE(
      apply_chat_template(read_file("tokenizer/templates/chatml.jinja"), {}, true, "", "").ok());
}

TEST(ChatTemplate, ReadsDefaultsFromTheTemplateSource) {
  // SmolLM2's default system prompt comes from its template text.
  auto out = apply_chat_template(read_file("tokenizer/templates/smollm2.jinja"), {{"user", "Hi"}},
                                 true, "", "");
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(*out,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  // Llama-3.1 style with a literal default date; Qwen3 with thinking switched off.
  std::string llama31 = read_file("tokenizer/templates/llama3_2.jinja");
  const std::string call = "strftime_now(\"%d %b %Y\")";
  llama31.replace(llama31.find(call), call.size(), "\"26 Jul 2024\"");
  llama31.replace(llama31.find("strftime_now is defined"), 23, "false");
  out = apply_chat_template(llama31, {{"user", "Hi"}}, false, "<|begin_of_text|>", "");
  ASSERT_TRUE(out.ok());
  EXPECT_NE(out->find("Today Date: 26 Jul 2024\n\n<|eot_id|>"), std::string::npos) << *out;
  ChatTemplateOptions no_think;
  no_think.enable_thinking = false;
  out = apply_chat_template(read_file("tokenizer/templates/qwen3.jinja"), {{"user", "Hi"}}, true,
                            "", "", no_think);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(*out, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
}

}  // namespace
}  // namespace invar::tokenizer
