#include "tokenizer/chat_template.h"

#include <cstdio>
#include <ctime>
#include <string_view>

#include "tokenizer/unicode.h"

namespace invar::tokenizer {

namespace {

bool contains(std::string_view s, std::string_view needle) {
  return s.find(needle) != std::string_view::npos;
}
bool starts_with(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}
bool ends_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

// ---- reading facts out of the template source ----

// The string literals inside {{ }} and {% %} tags, with Jinja's escapes decoded, in order.
std::vector<std::string> string_literals(std::string_view src) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < src.size()) {
    const size_t open = src.find('{', i);
    if (open == std::string_view::npos || open + 1 >= src.size()) break;
    const char kind = src[open + 1];
    if (kind == '#') {  // comment
      const size_t close = src.find("#}", open + 2);
      i = close == std::string_view::npos ? src.size() : close + 2;
      continue;
    }
    if (kind != '{' && kind != '%') {
      i = open + 1;
      continue;
    }
    const std::string_view close_tag = kind == '{' ? "}}" : "%}";
    size_t j = open + 2;
    while (j < src.size() && src.compare(j, 2, close_tag) != 0) {
      const char q = src[j];
      if (q != '\'' && q != '"') {
        ++j;
        continue;
      }
      std::string lit;
      for (++j; j < src.size() && src[j] != q; ++j) {
        if (src[j] == '\\' && j + 1 < src.size()) {
          const char e = src[++j];
          switch (e) {
            case 'n':
              lit += '\n';
              break;
            case 't':
              lit += '\t';
              break;
            case 'r':
              lit += '\r';
              break;
            case '\\':
            case '\'':
            case '"':
              lit += e;
              break;
            default:
              lit += '\\';
              lit += e;
          }
        } else {
          lit += src[j];
        }
      }
      out.push_back(std::move(lit));
      ++j;  // closing quote
    }
    i = j + 2;
  }
  return out;
}

// The first literal that starts with `prefix` and ends with `suffix` and has text between.
std::optional<std::string> literal_between(const std::vector<std::string>& lits,
                                           std::string_view prefix, std::string_view suffix) {
  for (const auto& l : lits) {
    if (l.size() > prefix.size() + suffix.size() && starts_with(l, prefix) && ends_with(l, suffix))
      return l.substr(prefix.size(), l.size() - prefix.size() - suffix.size());
  }
  return std::nullopt;
}

std::optional<std::string> literal_starting(const std::vector<std::string>& lits,
                                            std::string_view prefix) {
  for (const auto& l : lits)
    if (starts_with(l, prefix)) return l;
  return std::nullopt;
}

// Python's str.strip(chars) / lstrip / rstrip for a set of ASCII characters.
std::string_view strip_chars(std::string_view s, std::string_view chars, bool left = true,
                             bool right = true) {
  size_t b = 0, e = s.size();
  if (left)
    while (b < e && chars.find(s[b]) != std::string_view::npos) ++b;
  if (right)
    while (e > b && chars.find(s[e - 1]) != std::string_view::npos) --e;
  return s.substr(b, e - b);
}

std::string trim(std::string_view s) {
  return std::string(python_strip(s));
}

// A JSON string as transformers' tojson filter writes it (json.dumps, ensure_ascii=False).
std::string json_quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

// ---- ChatML ----

struct ChatmlVariant {
  std::optional<std::string> default_system;  // SmolLM2, Qwen2, Qwen2.5
  bool tools = false;                         // Qwen2.5/Qwen3: tool messages, known roles only
  bool think = false;                         // Qwen3: <think> blocks in assistant turns
  bool gen_prompt_needs_message = false;      // generation prompt written inside the loop
  bool bos_first = false;                     // template writes bos_token first
  bool enable_thinking_var = false;
};

ChatmlVariant chatml_variant(const std::string& src) {
  ChatmlVariant v;
  const auto lits = string_literals(src);
  v.default_system = literal_between(lits, "<|im_start|>system\n", "<|im_end|>\n");
  v.tools = contains(src, "<tool_response>");
  v.think = contains(src, "</think>") && contains(src, "last_query_index");
  v.gen_prompt_needs_message = contains(src, "loop.last and add_generation_prompt");
  v.enable_thinking_var = contains(src, "enable_thinking");
  // A ChatML template that writes bos_token does so at the very start.
  v.bos_first = contains(src, "bos_token");
  return v;
}

Result<std::string> render_chatml(const std::string& src, const std::vector<ChatMessage>& msgs,
                                  bool add_gen, const std::string& bos,
                                  const ChatTemplateOptions& opt) {
  const ChatmlVariant v = chatml_variant(src);
  std::string out;
  if (v.bos_first) out += bos;
  auto turn = [&](const std::string& role, std::string_view content) {
    out += "<|im_start|>";
    out += role;
    out += '\n';
    out += content;
    out += "<|im_end|>\n";
  };
  if (v.default_system && msgs[0].role != "system") turn("system", *v.default_system);

  // Qwen3: the last real user query (not a wrapped tool response) splits history from the
  // turn being answered.
  int64_t last_query = int64_t(msgs.size()) - 1;
  if (v.think) {
    for (int64_t i = int64_t(msgs.size()) - 1; i >= 0; --i) {
      const auto& c = msgs[i].content;
      if (msgs[i].role == "user" &&
          !(starts_with(c, "<tool_response>") && ends_with(c, "</tool_response>"))) {
        last_query = i;
        break;
      }
    }
  }
  const int64_t n = int64_t(msgs.size());
  for (int64_t i = 0; i < n; ++i) {
    const ChatMessage& m = msgs[i];
    if (!v.tools) {
      turn(m.role, m.content);
      continue;
    }
    if (m.role == "user" || m.role == "system") {
      turn(m.role, m.content);
    } else if (m.role == "assistant") {
      if (!v.think) {
        turn(m.role, m.content);
        continue;
      }
      std::string_view content = m.content, reasoning;
      const size_t close = content.rfind("</think>");
      if (close != std::string_view::npos) {
        const std::string_view whole = m.content;
        content = strip_chars(whole.substr(close + 8), "\n", true, false);
        std::string_view before =
            strip_chars(whole.substr(0, whole.find("</think>")), "\n", false, true);
        const size_t open = before.rfind("<think>");
        if (open != std::string_view::npos) before = before.substr(open + 7);
        reasoning = strip_chars(before, "\n", true, false);
      }
      out += "<|im_start|>assistant\n";
      if (i > last_query && (i == n - 1 || !reasoning.empty())) {
        out += "<think>\n";
        out += strip_chars(reasoning, "\n");
        out += "\n</think>\n\n";
        out += strip_chars(content, "\n", true, false);
      } else {
        out += content;
      }
      out += "<|im_end|>\n";
    } else if (m.role == "tool") {
      if (i == 0 || msgs[i - 1].role != "tool") out += "<|im_start|>user";
      out += "\n<tool_response>\n";
      out += m.content;
      out += "\n</tool_response>";
      if (i == n - 1 || msgs[i + 1].role != "tool") out += "<|im_end|>\n";
    }
    // Other roles: these templates write nothing.
  }
  if (add_gen) {
    out += "<|im_start|>assistant\n";
    if (v.enable_thinking_var && opt.enable_thinking && !*opt.enable_thinking)
      out += "<think>\n\n</think>\n\n";
  }
  return out;
}

// ---- Llama-3 ----

std::string today_date_string() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%d %b %Y", &tm);
  return buf;
}

Result<std::string> render_llama3(const std::string& src, const std::vector<ChatMessage>& msgs,
                                  bool add_gen, const std::string& bos,
                                  const ChatTemplateOptions& opt) {
  auto header = [](std::string_view role) {
    return "<|start_header_id|>" + std::string(role) + "<|end_header_id|>\n\n";
  };
  std::string out = bos;
  size_t first = 0;
  const auto lits = string_literals(src);
  if (auto cutoff = literal_starting(lits, "Cutting Knowledge Date:")) {
    // 3.1+: a system turn always comes first, holding the knowledge cutoff and the date.
    std::string date;
    if (opt.date_string) {
      date = *opt.date_string;
    } else if (contains(src, "strftime_now")) {
      date = today_date_string();
    } else {
      const size_t at = src.find("date_string = ");
      const size_t q = at == std::string::npos ? at : src.find_first_of("\"'", at);
      const size_t q2 = q == std::string::npos ? q : src.find(src[q], q + 1);
      if (q2 == std::string::npos)
        return Status::error("chat template (Llama-3.1 family): no default date_string found");
      date = src.substr(q + 1, q2 - q - 1);
    }
    std::string system;
    if (msgs[0].role == "system") {
      system = trim(msgs[0].content);
      first = 1;
    }
    out += header("system") + *cutoff + "Today Date: " + date + "\n\n" + system + "<|eot_id|>";
    for (size_t i = first; i < msgs.size(); ++i) {
      const ChatMessage& m = msgs[i];
      if (m.role == "tool" || m.role == "ipython") {
        // A string "is iterable" in Jinja, so the template writes tool output through tojson.
        out += header("ipython") + json_quote(m.content) + "<|eot_id|>";
      } else {
        out += header(m.role) + trim(m.content) + "<|eot_id|>";
      }
    }
    if (add_gen) out += header("assistant");
    return out;
  }
  for (size_t i = first; i < msgs.size(); ++i)
    out += header(msgs[i].role) + trim(msgs[i].content) + "<|eot_id|>";
  if (add_gen) out += header("assistant");
  return out;
}

// ---- Llama-2 ----

Result<std::string> render_llama2(const std::vector<ChatMessage>& msgs, const std::string& bos,
                                  const std::string& eos) {
  size_t first = 0;
  std::optional<std::string> system;
  if (msgs[0].role == "system") {
    system = msgs[0].content;
    first = 1;
  }
  std::string out;
  for (size_t i = first; i < msgs.size(); ++i) {
    const size_t k = i - first;
    const ChatMessage& m = msgs[i];
    if ((m.role == "user") != (k % 2 == 0))
      return Status::error(
          "chat template (Llama-2): Conversation roles must alternate "
          "user/assistant/user/assistant/...");
    std::string content = m.content;
    if (k == 0 && system) content = "<<SYS>>\n" + *system + "\n<</SYS>>\n\n" + m.content;
    if (m.role == "user") {
      out += bos + "[INST] " + trim(content) + " [/INST]";
    } else if (m.role == "assistant") {
      out += ' ';
      out += trim(content);
      out += ' ';
      out += eos;
    }
  }
  return out;
}

// ---- Zephyr / TinyLlama ----

Result<std::string> render_zephyr(const std::string& src, const std::vector<ChatMessage>& msgs,
                                  bool add_gen, const std::string& eos) {
  // The template's own text after each turn and after the generation prompt (a newline in
  // Zephyr's and TinyLlama's: the raw "\n" that follows "}}" survives trim_blocks).
  const std::string after_turn = contains(src, "eos_token }}\n") ? "\n" : "";
  const std::string after_prompt = contains(src, "'<|assistant|>' }}\n") ? "\n" : "";
  std::string out;
  for (const auto& m : msgs) {
    if (m.role != "user" && m.role != "system" && m.role != "assistant") continue;
    out += "<|" + m.role + "|>\n" + m.content + eos + after_turn;
  }
  if (add_gen) out += "<|assistant|>" + after_prompt;
  return out;
}

}  // namespace

Result<ChatTemplateFamily> chat_template_family(const std::string& src) {
  if (contains(src, "<|im_start|>")) return ChatTemplateFamily::chatml;
  if (contains(src, "<|start_header_id|>")) return ChatTemplateFamily::llama3;
  if (contains(src, "[INST]") && contains(src, "<<SYS>>")) return ChatTemplateFamily::llama2;
  if (contains(src, "<|user|>") && contains(src, "<|assistant|>"))
    return ChatTemplateFamily::zephyr;
  if (src.empty())
    return Status::error(
        "the model has no chat template; pass a plain prompt instead of chat messages");
  return Status::errorf(
      "unrecognized chat template (supported families: ChatML <|im_start|>, Llama-3 "
      "<|start_header_id|>, Llama-2 [INST] <<SYS>>, Zephyr <|user|>); it begins: {}",
      src.substr(0, 120));
}

Result<std::string> apply_chat_template(const std::string& src,
                                        const std::vector<ChatMessage>& messages,
                                        bool add_generation_prompt, const std::string& bos_token,
                                        const std::string& eos_token) {
  return apply_chat_template(src, messages, add_generation_prompt, bos_token, eos_token, {});
}

Result<std::string> apply_chat_template(const std::string& src,
                                        const std::vector<ChatMessage>& messages,
                                        bool add_generation_prompt, const std::string& bos_token,
                                        const std::string& eos_token,
                                        const ChatTemplateOptions& options) {
  INVAR_ASSIGN_OR_RETURN(ChatTemplateFamily family, chat_template_family(src));
  if (messages.empty()) return Status::error("chat template: the conversation has no messages");
  switch (family) {
    case ChatTemplateFamily::chatml:
      return render_chatml(src, messages, add_generation_prompt, bos_token, options);
    case ChatTemplateFamily::llama3:
      return render_llama3(src, messages, add_generation_prompt, bos_token, options);
    case ChatTemplateFamily::llama2:
      return render_llama2(messages, bos_token, eos_token);
    case ChatTemplateFamily::zephyr:
      return render_zephyr(src, messages, add_generation_prompt, eos_token);
  }
  return Status::error("chat template: unknown family");
}

}  // namespace invar::tokenizer
