// Chat templates run by minja against Python jinja2's renderings of the real templates
// (tests/data/tokenizer/chat_templates_expected.json, from scripts/chat-template-golden).
#include "tokenizer/chat_template.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <sstream>
#include <thread>

#include "test_paths.h"
#include "tokenizer/python_json.h"
#include "tokenizer/tokenizer.h"

namespace invar::tokenizer {
namespace {

using OrderedJson = nlohmann::ordered_json;

std::string read_file(const std::string& rel) {
  std::ifstream in(testing::test_data(rel), std::ios::binary);
  EXPECT_TRUE(in) << "missing test data " << rel;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

ChatTemplate parse_file(const std::string& name, const std::string& bos = "",
                        const std::string& eos = "") {
  auto t = ChatTemplate::parse(read_file("tokenizer/templates/" + name + ".jinja"), name, bos, eos);
  EXPECT_TRUE(t.ok()) << name << ": " << t.status().message();
  return std::move(t).value();
}

ChatTemplateInputs conversation(std::vector<ChatMessage> messages, bool add_generation_prompt) {
  ChatTemplateInputs in;
  in.messages = chat_messages_json(messages);
  in.add_generation_prompt = add_generation_prompt;
  return in;
}

// "2026-11-25T14:30:05" as the broken-down local time strftime_now formats.
std::tm parse_now(const std::string& iso) {
  std::tm tm{};
  std::istringstream in(iso);
  in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%S");
  EXPECT_FALSE(in.fail()) << iso;
  std::tm copy = tm;
  timegm(&copy);  // fills in the weekday and day of the year (%a, %j)
  tm.tm_wday = copy.tm_wday;
  tm.tm_yday = copy.tm_yday;
  return tm;
}

// Where minja (as pinned by scripts/setup-minja) and jinja2 part ways on the golden cases.
// Each entry is checked to still differ, so a minja update that fixes one shows up here.
enum class Divergence {
  none,
  // str.strip()/lstrip()/rstrip() with no argument remove only ASCII " \t\n\r"; Python removes
  // all Unicode whitespace (U+3000 here). The `trim` filter is Python's (chat_template.cpp).
  ascii_strip,
  // str.split(sep, maxsplit) is not supported: the render fails.
  split_maxsplit,
  // "text" + None / + dict and `x in None` render (None as "None") where Python raises a
  // TypeError: input the template does not handle (a tool call's null content or object
  // arguments) comes out as text instead of an error.
  lenient_types,
};

Divergence known_divergence(const std::string& tmpl, const std::string& conversation) {
  if (tmpl == "llama2" && conversation == "multi_turn") return Divergence::ascii_strip;
  if (tmpl == "deepseek_v3_1" && (conversation == "thinking" || conversation == "thinking_last"))
    return Divergence::split_maxsplit;
  if (tmpl == "deepseek_v3_1" && conversation == "tool_call_object_args")
    return Divergence::lenient_types;
  for (const char* t : {"chatml", "chatml_marker", "phi3_5", "qwen2", "qwen3", "smollm2", "zephyr"})
    if (tmpl == t && conversation == "tool_call_string_args") return Divergence::lenient_types;
  return Divergence::none;
}

TEST(ChatTemplate, RendersExactlyAsJinja) {
  const auto golden = OrderedJson::parse(read_file("tokenizer/chat_templates_expected.json"));
  const auto& cases = golden["cases"];
  ASSERT_GT(cases.size(), 300u);
  const std::tm now = parse_now(golden["now"].get<std::string>());
  std::map<std::string, ChatTemplate> templates;
  int equal = 0, raised = 0, failed = 0, divergent = 0;
  for (const auto& c : cases) {
    const std::string name = c["template"].get<std::string>();
    const std::string conv = c["conversation"].get<std::string>();
    auto it = templates.find(name);
    if (it == templates.end())
      it = templates.emplace(name, parse_file(name, c["bos_token"], c["eos_token"])).first;
    ChatTemplateInputs in;
    in.messages = golden["conversations"][conv];
    if (c["tools"].get<bool>()) in.tools = golden["tools"];
    in.add_generation_prompt = c["add_generation_prompt"].get<bool>();
    in.continue_final_message = c["continue_final_message"].get<bool>();
    in.kwargs = c["kwargs"];
    in.now = now;
    const auto out = it->second.render(in);
    // (fmt rather than operator+: GCC 12 at -O3 warns falsely about a chain of them.)
    const std::string where =
        fmt::format("{} / {}{} {}", name, conv, in.add_generation_prompt ? " +gen" : "",
                    c["kwargs"].empty() ? "" : c["kwargs"].dump());
    const Divergence divergence = known_divergence(name, conv);
    if (divergence != Divergence::none) {
      ++divergent;
      if (divergence == Divergence::split_maxsplit) {
        EXPECT_FALSE(out.ok()) << where << ": renders now; drop it from known_divergence";
      } else if (divergence == Divergence::lenient_types) {
        EXPECT_TRUE(c.contains("error")) << where;
        EXPECT_TRUE(out.ok()) << where << ": fails now; drop it from known_divergence";
      } else {
        ASSERT_TRUE(out.ok()) << where << ": " << out.status().message();
        EXPECT_NE(*out, c["expected"].get<std::string>()) << where << ": equal now";
      }
    } else if (c.contains("raised")) {
      ++raised;
      // The template's own message reaches the caller as it is.
      ASSERT_FALSE(out.ok()) << where << " rendered; jinja2 raised: " << c["raised"];
      EXPECT_EQ(out.status().code(), StatusCode::invalid_argument);
      EXPECT_NE(out.status().message().find(c["raised"].get<std::string>()), std::string::npos)
          << where << ": " << out.status().message();
    } else if (c.contains("error")) {
      ++failed;
      EXPECT_FALSE(out.ok()) << where << " rendered; jinja2 failed: " << c["error"];
    } else {
      ++equal;
      EXPECT_TRUE(out.ok()) << where << ": " << out.status().message();
      if (out.ok()) {
        EXPECT_EQ(*out, c["expected"].get<std::string>()) << where;
      }
    }
  }
  EXPECT_GT(equal, 300);
  EXPECT_GT(raised, 30);
  EXPECT_EQ(divergent, 24);  // the table above, over its cases (with and without +gen, kwargs)
  EXPECT_GT(failed + divergent, 0);
}

TEST(ChatTemplate, CoversTheTemplatesOfTheBrief) {
  // Each family's real template is in the golden file, with and without a generation prompt,
  // and the tool-capable ones with a tool call and its result rendered (not refused).
  const auto golden = OrderedJson::parse(read_file("tokenizer/chat_templates_expected.json"));
  std::map<std::string, int> tool_calls_rendered;
  for (const auto& c : golden["cases"])
    if (c.contains("expected") && c["conversation"] == "tool_call_object_args")
      ++tool_calls_rendered[c["template"].get<std::string>()];
  for (const char* name : {"qwen2_5", "qwen3", "llama3_1", "llama3_2", "mistral_v0_3",
                           "mistral_nemo", "mistral_small_3_2"})
    EXPECT_EQ(tool_calls_rendered[name], 2) << name;
}

TEST(ChatTemplate, AnEditedTemplateIsRunAsWritten) {
  // An edited ChatML template is not replaced by stock ChatML: its own text is in the prompt.
  auto tok = Tokenizer::from_hf_dir(testing::test_data("tokenizer/smollm2"));
  ASSERT_TRUE(tok.ok());
  const std::string edited = read_file("tokenizer/templates/chatml_marker.jinja");
  ASSERT_TRUE(tok->set_chat_template(edited, "chatml_marker.jinja").ok());
  auto prompt = encode_chat(*tok, conversation({{"user", "Hi"}}, true));
  ASSERT_TRUE(prompt.ok()) << prompt.status().message();
  EXPECT_EQ(tok->decode(*prompt),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
            "[[edited template: answer in French]]\n");
  // The model's own template is still SmolLM2's (default system prompt) before the edit.
  auto own = Tokenizer::from_hf_dir(testing::test_data("tokenizer/smollm2"));
  ASSERT_TRUE(own.ok());
  prompt = encode_chat(*own, conversation({{"user", "Hi"}}, true));
  ASSERT_TRUE(prompt.ok());
  EXPECT_NE(own->decode(*prompt).find("named SmolLM"), std::string::npos);
  EXPECT_EQ(own->decode(*prompt).find("[[edited"), std::string::npos);
}

TEST(ChatTemplate, RaiseExceptionIsAClearError) {
  auto out =
      parse_file("gemma3", "<bos>").render(conversation({{"user", "a"}, {"user", "b"}}, true));
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::invalid_argument);
  EXPECT_EQ(out.status().message(),
            "the chat template refused the conversation: Conversation roles must alternate "
            "user/assistant/user/assistant/...");
  // Errors that are not a raise name the template and the place.
  auto broken = ChatTemplate::parse("{% for x in 5 %}{% endfor %}", "broken.jinja", "", "");
  ASSERT_TRUE(broken.ok());
  out = broken->render(conversation({{"user", "a"}}, true));
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("broken.jinja"), std::string::npos)
      << out.status().message();
}

TEST(ChatTemplate, ParseErrorsAndMissingTemplates) {
  auto bad = ChatTemplate::parse("{% for m in messages %}{{ m.content }}", "bad.jinja", "", "");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("bad.jinja"), std::string::npos);
  EXPECT_NE(bad.status().message().find("--chat-template"), std::string::npos);

  // No template at all: the error says how to pass one.
  auto bare = Tokenizer::from_hf_dir(testing::test_data("tokenizer/spm_tiny_hf"));
  ASSERT_TRUE(bare.ok());
  auto none = encode_chat(*bare, conversation({{"user", "Hi"}}, true));
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("no chat template"), std::string::npos);
  EXPECT_NE(none.status().message().find("--chat-template FILE"), std::string::npos);
  // set_chat_template keeps the old template when the new one does not parse.
  EXPECT_FALSE(bare->set_chat_template("{% if %}", "x.jinja").ok());
  EXPECT_FALSE(bare->chat_template().ok());
  EXPECT_TRUE(bare->set_chat_template("{{ messages[0].content }}", "x.jinja").ok());
  none = encode_chat(*bare, conversation({{"user", "Hi"}}, true));
  ASSERT_TRUE(none.ok());
}

TEST(ChatTemplate, HuggingFaceDirectoriesPreferChatTemplateJinja) {
  // As transformers: chat_template.jinja beside tokenizer_config.json wins over its
  // chat_template; without it the config's is used, and the origin names the file.
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(::testing::TempDir()) / "invar_chat_template_dir";
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(testing::test_data("tokenizer/spm_tiny_hf/tokenizer.json"), dir / "tokenizer.json");
  std::ofstream(dir / "tokenizer_config.json")
      << R"({"bos_token": "<s>", "eos_token": "</s>", "chat_template": "config:{{ bos_token }}"})";
  auto render_dir = [&]() -> std::string {
    auto tok = Tokenizer::from_hf_dir(dir.string());
    EXPECT_TRUE(tok.ok()) << tok.status().message();
    auto tmpl = tok->chat_template();
    EXPECT_TRUE(tmpl.ok()) << tmpl.status().message();
    auto out = (*tmpl)->render(conversation({{"user", "Hi"}}, true));
    return (*tmpl)->origin() + " -> " + (out.ok() ? *out : out.status().message());
  };
  EXPECT_EQ(render_dir(), (dir / "tokenizer_config.json").string() + " -> config:<s>");
  std::ofstream(dir / "chat_template.jinja") << "jinja file:{{ eos_token }}\n";
  EXPECT_EQ(render_dir(), (dir / "chat_template.jinja").string() + " -> jinja file:</s>");
  fs::remove_all(dir);
}

TEST(ChatTemplate, KwargsAndTheVariablesARenderOwns) {
  ChatTemplate qwen3 = parse_file("qwen3", "", "<|im_end|>");
  ChatTemplateInputs in = conversation({{"user", "Hi"}}, true);
  in.kwargs = {{"enable_thinking", false}};
  auto out = qwen3.render(in);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(*out, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
  in.kwargs = {{"add_generation_prompt", false}};
  out = qwen3.render(in);
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("may not set 'add_generation_prompt'"), std::string::npos);
  in.kwargs = OrderedJson::array();
  EXPECT_FALSE(qwen3.render(in).ok());
}

TEST(ChatTemplate, StrftimeNowDefaultsToTheLocalDate) {
  auto t = ChatTemplate::parse("{{ strftime_now('%Y-%m-%d') }}", "date", "", "");
  ASSERT_TRUE(t.ok());
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char today[16];
  std::strftime(today, sizeof(today), "%Y-%m-%d", &local);
  auto out = t->render(conversation({{"user", "Hi"}}, true));
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(*out, today);  // (fails only if the day turns between the two calls)
}

TEST(ChatTemplate, ContinueFinalMessage) {
  ChatTemplate chatml = parse_file("chatml");
  ChatTemplateInputs in = conversation({{"user", "Hi"}, {"assistant", "  Hello "}}, false);
  in.continue_final_message = true;
  auto out = chatml.render(in);
  ASSERT_TRUE(out.ok());
  // Leading whitespace in the message: cut after its stripped text (transformers' rule).
  EXPECT_EQ(*out, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n  Hello");
  in.add_generation_prompt = true;
  EXPECT_FALSE(chatml.render(in).ok());
}

TEST(ChatTemplate, RendersConcurrently) {
  // The server renders on several threads with one parsed template.
  ChatTemplate llama = parse_file("llama3_1", "<|begin_of_text|>", "<|eot_id|>");
  ChatTemplateInputs in = conversation({{"system", "Be brief."}, {"user", "Hi"}}, true);
  in.now = parse_now("2026-11-25T14:30:05");
  const auto want = llama.render(in);
  ASSERT_TRUE(want.ok());
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        auto out = llama.render(in);
        if (!out.ok() || *out != *want) ++mismatches[size_t(t)];
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

TEST(PythonJson, WritesWhatJsonDumpsWrites) {
  // Expected strings are Python 3.11's json.dumps of the same values.
  const auto v = OrderedJson::parse(
      R"({"b": [1, 2.5, true, null], "a": {"é": "x\"y\n\u0001"}, "e": [], "o": {}, "big": 1e20})");
  EXPECT_EQ(
      python_json_dumps(v, {}),
      R"({"b": [1, 2.5, true, null], "a": {"é": "x\"y\n\u0001"}, "e": [], "o": {}, "big": 1e+20})");
  PythonJsonOptions ascii;
  ascii.ensure_ascii = true;
  EXPECT_EQ(python_json_dumps(OrderedJson("é😀"), ascii), R"("\u00e9\ud83d\ude00")");
  PythonJsonOptions indent;
  indent.indent = 2;
  indent.sort_keys = true;
  EXPECT_EQ(python_json_dumps(v, indent),
            "{\n  \"a\": {\n    \"é\": \"x\\\"y\\n\\u0001\"\n  },\n  \"b\": [\n    1,\n    2.5,\n"
            "    true,\n    null\n  ],\n  \"big\": 1e+20,\n  \"e\": [],\n  \"o\": {}\n}");
  PythonJsonOptions compact;
  compact.item_separator = ",";
  compact.key_separator = ":";
  EXPECT_EQ(python_json_dumps(OrderedJson::parse(R"({"k": [1, 2]})"), compact), R"({"k":[1,2]})");
}

}  // namespace
}  // namespace invar::tokenizer
