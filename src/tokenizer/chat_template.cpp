// ChatTemplate: minja parses and runs the template; this file gives it the variables and
// functions transformers gives a template, and turns minja's exceptions into Status values.
// minja is included here only: no other file sees its types (or its global `json` alias).
#include "tokenizer/chat_template.h"

#include <fmt/format.h>

#include <minja/minja.hpp>
#include <regex>

#include "tokenizer/python_json.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace invar::tokenizer {

namespace {

using OrderedJson = nlohmann::ordered_json;

// The variables a render sets itself; chat_template_kwargs may not replace them.
constexpr const char* kReservedNames[] = {"messages",    "tools",     "add_generation_prompt",
                                          "bos_token",   "eos_token", "raise_exception",
                                          "strftime_now"};

// Python's str.strip(chars): `chars` is a set of code points.
std::string strip_code_points(const std::string& s, const std::string& chars) {
  auto in_set = [&](std::string_view ch) { return chars.find(ch) != std::string::npos; };
  size_t begin = 0, end = s.size();
  while (begin < end) {
    size_t next = begin;
    next_code_point(s, next);
    if (!in_set(std::string_view(s).substr(begin, next - begin))) break;
    begin = next;
  }
  while (end > begin) {
    size_t start = end - 1;
    while (start > begin && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    if (!in_set(std::string_view(s).substr(start, end - start))) break;
    end = start;
  }
  return s.substr(begin, end - begin);
}

// Jinja's trim filter is Python's str.strip: Unicode whitespace, or the given characters.
// (minja's own trims ASCII whitespace only; templates trim user text with it.)
minja::Value trim_filter() {
  return minja::Value::callable(
      [](const std::shared_ptr<minja::Context>&, minja::ArgumentsValue& args) -> minja::Value {
        args.expectArgs("trim", {1, 2}, {0, 1});
        const minja::Value& v = args.args[0];
        if (v.is_null()) return v;
        const std::string text = v.to_str();
        minja::Value chars = args.args.size() > 1 ? args.args[1] : args.get_named("chars");
        if (!chars.is_null()) return strip_code_points(text, chars.get<std::string>());
        return std::string(python_strip(text));
      });
}

// transformers' tojson: json.dumps(value, ensure_ascii=False, indent=None, separators=None,
// sort_keys=False), every argument also by keyword.
minja::Value tojson_filter() {
  return minja::Value::callable([](const std::shared_ptr<minja::Context>&,
                                   minja::ArgumentsValue& args) -> minja::Value {
    static const char* kNames[] = {"value", "ensure_ascii", "indent", "separators", "sort_keys"};
    if (args.args.empty() || args.args.size() > 5)
      throw std::runtime_error("tojson takes a value and at most 4 more arguments");
    std::vector<minja::Value> a(5);
    for (size_t i = 0; i < args.args.size(); ++i) a[i] = args.args[i];
    for (auto& kwarg : args.kwargs) {  // not a structured binding: clang 14 cannot capture one
      const std::string& name = kwarg.first;
      auto* it = std::find_if(std::begin(kNames), std::end(kNames),
                              [&](const char* n) { return name == n; });
      if (it == std::end(kNames)) throw std::runtime_error("tojson has no argument " + name);
      a[size_t(it - std::begin(kNames))] = kwarg.second;
    }
    PythonJsonOptions opt;
    if (!a[1].is_null()) opt.ensure_ascii = a[1].to_bool();
    if (!a[2].is_null()) opt.indent = int(a[2].get<int64_t>());
    if (!a[3].is_null()) {
      if (!a[3].is_array() || a[3].size() != 2)
        throw std::runtime_error("tojson: separators must be a pair of strings");
      opt.item_separator = a[3].at(0).get<std::string>();
      opt.key_separator = a[3].at(1).get<std::string>();
    }
    if (!a[4].is_null()) opt.sort_keys = a[4].to_bool();
    return python_json_dumps(a[0].get<OrderedJson>(), opt);
  });
}

// strftime_now(format): `now` (local time) formatted as C strftime, which Python's own wraps.
minja::Value strftime_now_function(const std::tm& now) {
  return minja::Value::callable(
      [now](const std::shared_ptr<minja::Context>&, minja::ArgumentsValue& args) -> minja::Value {
        args.expectArgs("strftime_now", {1, 1}, {0, 0});
        const std::string format = args.args[0].get<std::string>();
        if (format.empty()) return std::string();
        std::string buf(format.size() * 4 + 64, '\0');
        for (;;) {
          const size_t n = std::strftime(buf.data(), buf.size(), format.c_str(), &now);
          if (n > 0 || buf.size() > 65536) return buf.substr(0, n);
          buf.resize(buf.size() * 4);
        }
      });
}

std::tm local_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  return tm;
}

// minja appends " at row R, column C:" and the template lines around it at each level of the
// template it unwinds through; the first (innermost) place is the one that failed.
std::string condense_minja_error(const std::string& what) {
  static const std::regex kWhere(R"( at row (\d+), column (\d+):\n)");
  std::smatch m;
  if (!std::regex_search(what, m, kWhere)) return what;
  return fmt::format("{} (template line {}, column {})", what.substr(0, size_t(m.position(0))),
                     m[1].str(), m[2].str());
}

// The text a prefilled last message should be continued from: transformers' rule, which looks
// for the message's stripped text in the rendered prompt and cuts after it, keeping the message's
// leading and trailing whitespace where the template kept them.
Result<std::string> cut_after_final_message(std::string rendered, const OrderedJson& messages) {
  std::optional<std::string> final_text;
  const OrderedJson& last = messages.back();
  const OrderedJson content =
      last.is_object() ? last.value("content", OrderedJson()) : OrderedJson();
  if (content.is_string()) {
    final_text = content.get<std::string>();
  } else if (content.is_array()) {  // the last part that has text
    for (auto it = content.rbegin(); it != content.rend() && !final_text; ++it)
      if (it->is_object() && it->contains("text") && (*it)["text"].is_string())
        final_text = (*it)["text"].get<std::string>();
  }
  if (!final_text)
    return Status::error(StatusCode::invalid_argument,
                         "continue_final_message: the last message has no text to continue");
  const std::string_view stripped = python_strip(*final_text);
  const size_t at = rendered.rfind(stripped);
  if (at == std::string::npos)
    return Status::error(StatusCode::invalid_argument,
                         "continue_final_message: the chat template does not write the last "
                         "message's text as it is, so there is no place to continue it from");
  const std::string_view lead_stripped = python_strip(*final_text, true, false);
  if (rendered.compare(at, lead_stripped.size(), *final_text) == 0) {
    rendered.resize(at + lead_stripped.size());  // the template kept the trailing whitespace
  } else {
    rendered.resize(at + stripped.size());
  }
  return rendered;
}

}  // namespace

struct ChatTemplate::Impl {
  std::string source, origin, bos_token, eos_token;
  std::shared_ptr<minja::TemplateNode> root;
};

Status check_chat_template_kwargs(const OrderedJson& kwargs) {
  if (kwargs.is_null()) return {};
  if (!kwargs.is_object())
    return Status::error(StatusCode::invalid_argument,
                         "chat_template_kwargs must be an object of variable names and values");
  for (const auto& [name, value] : kwargs.items())
    for (const char* reserved : kReservedNames)
      if (name == reserved)
        return Status::error(StatusCode::invalid_argument,
                             fmt::format("chat_template_kwargs may not set '{}': it comes from "
                                         "the request itself",
                                         name));
  return {};
}

OrderedJson chat_messages_json(const std::vector<ChatMessage>& messages) {
  OrderedJson list = OrderedJson::array();
  for (const auto& m : messages) list.push_back({{"role", m.role}, {"content", m.content}});
  return list;
}

Result<ChatTemplate> ChatTemplate::parse(const std::string& source, std::string origin,
                                         std::string bos_token, std::string eos_token) {
  auto impl = std::make_shared<Impl>();
  impl->source = source;
  impl->origin = std::move(origin);
  impl->bos_token = std::move(bos_token);
  impl->eos_token = std::move(eos_token);
  try {
    // As transformers compiles chat templates: trim_blocks, lstrip_blocks, and Jinja's default
    // of dropping one trailing newline of the source.
    impl->root = minja::Parser::parse(source, {/*trim_blocks=*/true, /*lstrip_blocks=*/true,
                                               /*keep_trailing_newline=*/false});
  } catch (const std::exception& e) {
    return Status::error(
        StatusCode::invalid_argument,
        fmt::format("the chat template ({}) is not valid Jinja: {}; pass a working one with "
                    "--chat-template FILE",
                    impl->origin, condense_minja_error(e.what())));
  }
  return ChatTemplate(std::move(impl));
}

const std::string& ChatTemplate::source() const {
  return impl_->source;
}
const std::string& ChatTemplate::origin() const {
  return impl_->origin;
}

Result<std::string> ChatTemplate::render(const ChatTemplateInputs& in) const {
  if (!in.messages.is_array())
    return Status::error(StatusCode::invalid_argument, "chat template: messages must be a list");
  if (in.continue_final_message && in.add_generation_prompt)
    return Status::error(StatusCode::invalid_argument,
                         "continue_final_message and add_generation_prompt exclude each other: "
                         "one continues the last message, the other opens a new assistant turn");
  if (in.continue_final_message && in.messages.empty())
    return Status::error(StatusCode::invalid_argument,
                         "continue_final_message needs a last message to continue");
  INVAR_RETURN_IF_ERROR(check_chat_template_kwargs(in.kwargs));
  // raise_exception's message, kept aside: minja rethrows every exception as a runtime_error
  // with the template's location appended at each level.
  auto raised = std::make_shared<std::optional<std::string>>();
  try {
    auto context = minja::Context::make(minja::Value(OrderedJson::object()));
    if (in.kwargs.is_object())
      for (const auto& [name, value] : in.kwargs.items()) context->set(name, minja::Value(value));
    context->set("messages", minja::Value(in.messages));
    if (!in.tools.is_null()) context->set("tools", minja::Value(in.tools));
    context->set("add_generation_prompt", in.add_generation_prompt);
    context->set("bos_token", impl_->bos_token);
    context->set("eos_token", impl_->eos_token);
    context->set("raise_exception",
                 minja::Value::callable([raised](const std::shared_ptr<minja::Context>&,
                                                 minja::ArgumentsValue& args) -> minja::Value {
                   *raised = args.args.empty() ? std::string() : args.args[0].to_str();
                   throw std::runtime_error(**raised);
                 }));
    context->set("strftime_now", strftime_now_function(in.now ? *in.now : local_now()));
    context->set("trim", trim_filter());
    context->set("tojson", tojson_filter());
    std::string rendered = impl_->root->render(context);
    if (in.continue_final_message) return cut_after_final_message(std::move(rendered), in.messages);
    return rendered;
  } catch (const std::exception& e) {
    if (*raised)
      return Status::error(StatusCode::invalid_argument,
                           fmt::format("the chat template refused the conversation: {}", **raised));
    return Status::error(StatusCode::invalid_argument,
                         fmt::format("the chat template ({}) failed: {}", impl_->origin,
                                     condense_minja_error(e.what())));
  }
}

Result<std::vector<int32_t>> encode_chat(const Tokenizer& tok, const ChatTemplateInputs& inputs) {
  INVAR_ASSIGN_OR_RETURN(const ChatTemplate* tmpl, tok.chat_template());
  INVAR_ASSIGN_OR_RETURN(std::string text, tmpl->render(inputs));
  return tok.encode(text, /*add_bos=*/false, /*parse_special=*/true);
}

}  // namespace invar::tokenizer
