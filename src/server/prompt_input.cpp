// Prompts and chat messages to token ids; see prompt_input.h.
#include "server/prompt_input.h"

#include "core/json_depth.h"
#include "tokenizer/chat_template.h"

namespace invar::server {

using nlohmann::json;

std::optional<ApiError> parse_token_list(const json& list, const std::string& param, int32_t vocab,
                                         std::vector<int32_t>* out) {
  if (!list.is_array()) return Fields::type_error(param, "a list of integer token ids");
  for (const auto& t : list) {
    if (!t.is_number_integer()) return Fields::type_error(param, "a list of integer token ids");
    int64_t id = t.get<int64_t>();
    if (id < 0 || id >= vocab) {
      return ApiError::bad_request(
          param,
          fmt::format("token id {} in '{}' is outside the vocabulary [0, {})", id, param, vocab));
    }
    out->push_back(int32_t(id));
  }
  return std::nullopt;
}

namespace {

// An assistant message's tool_calls, checked and put into `message` for the template: each
// call's arguments (JSON text in the API) as an object, as transformers hands them over.
std::optional<ApiError> parse_tool_calls_field(const json& calls, const std::string& param,
                                               nlohmann::ordered_json* message) {
  constexpr const char* kShape =
      "a list of {\"id\", \"type\": \"function\", \"function\": {\"name\", \"arguments\"}}";
  if (!calls.is_array()) return Fields::type_error(param, kShape);
  auto list = nlohmann::ordered_json::array();
  for (size_t j = 0; j < calls.size(); ++j) {
    const json& call = calls[j];
    const std::string at = fmt::format("{}[{}]", param, j);
    if (!call.is_object()) return Fields::type_error(at, kShape);
    Fields fields(call, at + ".");
    std::string id, type = "function";
    if (auto e = fields.string("id", &id)) return e;
    if (auto e = fields.string("type", &type)) return e;
    if (type != "function")
      return ApiError::bad_request(at + ".type", fmt::format("'{}.type' must be \"function\"", at));
    const json* fn = fields.get("function");
    if (!fn || !fn->is_object())
      return Fields::type_error(at + ".function", "an object with 'name' and 'arguments'");
    Fields fn_fields(*fn, at + ".function.");
    std::string name, arguments = "{}";
    if (auto e = fn_fields.string("name", &name)) return e;
    if (name.empty())
      return ApiError::bad_request(at + ".function.name", "a tool call needs the function's name");
    if (auto e = fn_fields.string("arguments", &arguments)) return e;
    auto args = nlohmann::ordered_json::parse(arguments, nullptr, /*allow_exceptions=*/false);
    if (args.is_discarded() || !args.is_object() || !json_depth_within(arguments)) {
      return ApiError::bad_request(at + ".function.arguments",
                                   fmt::format("'{}.function.arguments' must be a JSON object "
                                               "written as a string",
                                               at));
    }
    nlohmann::ordered_json entry = nlohmann::ordered_json::object();
    if (!id.empty()) entry["id"] = id;
    entry["type"] = "function";
    entry["function"] = {{"name", name}, {"arguments", std::move(args)}};
    list.push_back(std::move(entry));
  }
  (*message)["tool_calls"] = std::move(list);
  return std::nullopt;
}

}  // namespace

std::optional<ApiError> parse_prompt(const Fields& f, const tokenizer::Tokenizer& tok,
                                     bool add_special, PromptInput* out) {
  const json* prompt = f.get("prompt");
  if (!prompt) return ApiError::bad_request("prompt", "'prompt' is required");
  auto encode = [&](const json& text) -> std::optional<ApiError> {
    // Checked before encoding: a BOS alone would hide an empty prompt.
    if (text.get_ref<const std::string&>().empty())
      return ApiError::bad_request("prompt", "the prompt is empty");
    // parse_special: special tokens written in the text are matched, as Hugging Face does.
    out->ids.push_back(
        tok.encode(text.get<std::string>(), add_special && tok.add_bos_default(), true));
    out->echo_texts.push_back(text.get<std::string>());
    return std::nullopt;
  };
  auto ids = [&](const json& list) -> std::optional<ApiError> {
    out->ids.emplace_back();
    if (auto e = parse_token_list(list, "prompt", tok.vocab_size(), &out->ids.back())) return e;
    out->echo_texts.push_back(tok.decode(out->ids.back(), /*skip_special=*/false));
    return std::nullopt;
  };
  const char* kShape = "a string, a list of strings, a list of token ids or a list of such lists";
  if (prompt->is_string()) return encode(*prompt);
  if (!prompt->is_array() || prompt->empty()) return Fields::type_error("prompt", kShape);
  if ((*prompt)[0].is_number_integer()) return ids(*prompt);
  for (const auto& item : *prompt) {
    if (item.is_string()) {
      if (auto e = encode(item)) return e;
    } else if (item.is_array()) {
      if (auto e = ids(item)) return e;
    } else {
      return Fields::type_error("prompt", kShape);
    }
  }
  return std::nullopt;
}

std::optional<ApiError> parse_messages(const Fields& f, const tokenizer::Tokenizer& tok,
                                       bool add_special, const nlohmann::ordered_json& tools,
                                       PromptInput* out) {
  const json* messages = f.get("messages");
  if (!messages) return ApiError::bad_request("messages", "'messages' is required");
  if (!messages->is_array() || messages->empty())
    return Fields::type_error("messages", "a non-empty list of {role, content} objects");
  tokenizer::ChatTemplateInputs inputs;
  if (auto e = f.boolean("add_generation_prompt", &inputs.add_generation_prompt)) return e;
  if (auto e = f.boolean("continue_final_message", &inputs.continue_final_message)) return e;
  if (inputs.continue_final_message && inputs.add_generation_prompt) {
    return ApiError::bad_request(
        "continue_final_message",
        "'continue_final_message' continues the last message, 'add_generation_prompt' opens a "
        "new one: set 'add_generation_prompt': false with it");
  }
  if (const json* kwargs = f.get("chat_template_kwargs")) {
    if (!kwargs->is_object())
      return Fields::type_error("chat_template_kwargs", "an object of template variables");
    // Templates take ordered_json; the body's keys were sorted on parsing, no loss for a set of
    // variables.
    inputs.kwargs = nlohmann::ordered_json::parse(kwargs->dump());
    if (Status st = tokenizer::check_chat_template_kwargs(inputs.kwargs); !st.ok())
      return ApiError::bad_request("chat_template_kwargs", st.message());
  }

  std::vector<tokenizer::ChatMessage> chat;
  std::vector<nlohmann::ordered_json> extras;  // per message, its keys besides role and content
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& m = (*messages)[i];
    std::string param = fmt::format("messages[{}]", i);
    if (!m.is_object()) return Fields::type_error(param, "an object with 'role' and 'content'");
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) {
      return Fields::type_error(param + ".role",
                                "one of \"system\", \"user\", \"assistant\", \"tool\"");
    }
    std::string r = role->get<std::string>();
    if (r == "developer") r = "system";  // OpenAI's newer name for the system role
    if (r != "system" && r != "user" && r != "assistant" && r != "tool") {
      return ApiError::bad_request(
          param + ".role", fmt::format("role \"{}\" is not supported; use \"system\", \"user\", "
                                       "\"assistant\" or \"tool\"",
                                       role->get<std::string>()));
    }
    for (const auto& [key, value] : m.items()) {
      if (value.is_null() || key == "role" || key == "content" || key == "name") continue;
      if (key == "tool_calls" && r == "assistant") continue;
      if (key == "tool_call_id" && r == "tool") continue;
      return ApiError::bad_request(
          param + "." + key,
          fmt::format("'{}' in a {} message is not supported: messages take role, content and "
                      "name; an assistant's also tool_calls, a tool's also tool_call_id",
                      key, r));
    }
    nlohmann::ordered_json extra = nlohmann::ordered_json::object();
    Fields fields(m, param + ".");
    std::string name;
    if (auto e = fields.string("name", &name)) return e;
    if (!name.empty()) extra["name"] = name;
    if (r == "tool") {
      std::string call_id;
      if (auto e = fields.string("tool_call_id", &call_id)) return e;
      if (call_id.empty()) {
        return ApiError::bad_request(param + ".tool_call_id",
                                     "a tool message needs 'tool_call_id': the id of the call it "
                                     "answers");
      }
      extra["tool_call_id"] = call_id;
    }
    if (const json* calls = fields.get("tool_calls")) {
      if (auto e = parse_tool_calls_field(*calls, param + ".tool_calls", &extra)) return e;
    }
    std::string text;
    auto content = m.find("content");
    if (content == m.end() || content->is_null()) {
      if (r != "assistant")
        return ApiError::bad_request(param + ".content", "'content' is required");
    } else if (content->is_string()) {
      text = content->get<std::string>();
    } else if (content->is_array()) {
      for (const auto& part : *content) {
        auto type = part.is_object() ? part.find("type") : part.end();
        auto part_text = part.is_object() ? part.find("text") : part.end();
        if (type == part.end() || *type != "text" || part_text == part.end() ||
            !part_text->is_string()) {
          return ApiError::bad_request(
              param + ".content",
              "only text content parts ({\"type\": \"text\", \"text\": ...}) "
              "are supported");
        }
        if (!text.empty()) text += "\n";  // parts joined as vLLM joins them
        text += part_text->get<std::string>();
      }
    } else {
      return Fields::type_error(param + ".content", "a string or a list of text parts");
    }
    chat.push_back({r, std::move(text)});
    extras.push_back(std::move(extra));
  }
  inputs.messages = tokenizer::chat_messages_json(chat);
  // Names, tool calls and call ids go to the template as transformers passes them: keys of
  // the message.
  for (size_t i = 0; i < extras.size(); ++i)
    for (auto& [key, value] : extras[i].items()) inputs.messages[i][key] = std::move(value);
  inputs.tools = tools;

  // The model's own template (or `serve --chat-template`'s); its errors, a raise_exception
  // included, are the client's to fix: 400.
  auto prompt = tokenizer::encode_chat(tok, inputs);
  if (!prompt.ok()) return ApiError::bad_request("messages", prompt.status().message());
  std::vector<int32_t> ids = std::move(prompt).value();
  if (add_special && tok.bos_id()) ids.insert(ids.begin(), *tok.bos_id());
  out->ids.push_back(std::move(ids));
  // echo (vLLM): a conversation that ends with the assistant's message has it repeated first.
  out->echo_texts.push_back(chat.back().role == "assistant" ? chat.back().content : "");
  return std::nullopt;
}

}  // namespace invar::server
