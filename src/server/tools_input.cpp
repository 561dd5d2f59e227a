// The tool fields of a chat request; see tools_input.h.
#include "server/tools_input.h"

#include <fmt/format.h>

#include <set>
#include <tuple>
#include <utility>

namespace invar::server {

using nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

namespace {

// OpenAI's rule for function names: letters, digits, '_' and '-', at most 64.
bool valid_function_name(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// The parts of a JSON schema every schema engine reads the same way: a wrong type there is a
// schema no one can follow. (A forced call compiles the whole schema, which checks the rest.)
std::optional<ApiError> check_parameters(const OrderedJson& p, const std::string& param) {
  if (!p.is_object()) return Fields::type_error(param, "a JSON schema object");
  if (auto t = p.find("type"); t != p.end() && !t->is_string() && !t->is_array())
    return Fields::type_error(param + ".type", "a JSON schema type name or a list of them");
  if (auto props = p.find("properties"); props != p.end()) {
    if (!props->is_object())
      return Fields::type_error(param + ".properties", "an object of property schemas");
    for (const auto& [name, schema] : props->items())
      if (!schema.is_object() && !schema.is_boolean())
        return Fields::type_error(param + ".properties." + name, "a JSON schema");
  }
  if (auto req = p.find("required"); req != p.end()) {
    bool ok = req->is_array();
    for (size_t i = 0; ok && i < req->size(); ++i) ok = (*req)[i].is_string();
    if (!ok) return Fields::type_error(param + ".required", "a list of property names");
  }
  return std::nullopt;
}

std::optional<ApiError> check_tool(const OrderedJson& tool, size_t i,
                                   std::set<std::string>* names) {
  const std::string param = fmt::format("tools[{}]", i);
  if (!tool.is_object())
    return Fields::type_error(param, "an object {\"type\": \"function\", \"function\": {...}}");
  auto type = tool.find("type");
  if (type == tool.end() || *type != "function")
    return ApiError::bad_request(param + ".type",
                                 fmt::format("'{}.type' must be \"function\"", param));
  auto fn = tool.find("function");
  if (fn == tool.end() || !fn->is_object())
    return Fields::type_error(param + ".function", "an object with 'name' and 'parameters'");
  auto name = fn->find("name");
  if (name == fn->end() || !name->is_string() || !valid_function_name(name->get<std::string>())) {
    return ApiError::bad_request(
        param + ".function.name",
        fmt::format("'{}.function.name' must be 1 to 64 letters, digits, '_' or '-'", param));
  }
  if (!names->insert(name->get<std::string>()).second) {
    return ApiError::bad_request(
        param + ".function.name",
        fmt::format("two tools are named \"{}\"; names must be unique", name->get<std::string>()));
  }
  if (auto d = fn->find("description"); d != fn->end() && !d->is_string() && !d->is_null())
    return Fields::type_error(param + ".function.description", "a string");
  if (auto s = fn->find("strict"); s != fn->end() && !s->is_boolean() && !s->is_null())
    return Fields::type_error(param + ".function.strict", "a boolean");
  if (auto p = fn->find("parameters"); p != fn->end() && !p->is_null())
    return check_parameters(*p, param + ".function.parameters");
  return std::nullopt;
}

// The schema of one call to `tool` as the format writes it: {"name": <const>, "arguments" or
// "parameters": <the tool's parameter schema>}, name first.
OrderedJson call_schema(const OrderedJson& tool, ToolCallFormat format) {
  const OrderedJson& fn = tool["function"];
  OrderedJson params = {{"type", "object"}, {"properties", OrderedJson::object()}};
  if (fn.contains("parameters") && !fn["parameters"].is_null()) {
    params = fn["parameters"];
    // A schema without a type allows any JSON; a call's arguments are an object.
    if (!params.contains("type")) params["type"] = "object";
  }
  const char* args_key = format == ToolCallFormat::llama3_json ? "parameters" : "arguments";
  OrderedJson props = OrderedJson::object();
  props["name"] = {{"const", fn["name"]}};
  props[args_key] = std::move(params);
  return {{"type", "object"},
          {"properties", std::move(props)},
          {"required", OrderedJson::array({"name", args_key})}};
}

// The text a forced call is written between: the format's tags around its JSON.
std::pair<std::string, std::string> call_frame(ToolCallFormat format) {
  switch (format) {
    case ToolCallFormat::hermes:
      return {"<tool_call>\n", "\n</tool_call>"};
    case ToolCallFormat::mistral:
      return {"[TOOL_CALLS][", "]"};  // the list form, which every Mistral template reads back
    case ToolCallFormat::llama3_json:
      break;
  }
  return {};
}

// required / named: exactly one call to one of `allowed`, framed as the format frames calls.
engine::GrammarSpec forced_call_grammar(const OrderedJson& tools, const std::string& only,
                                        ToolCallFormat format) {
  OrderedJson any = OrderedJson::array();
  for (const auto& tool : tools)
    if (only.empty() || tool["function"]["name"] == only) any.push_back(call_schema(tool, format));
  OrderedJson schema = any.size() == 1 ? any[0] : OrderedJson{{"anyOf", std::move(any)}};
  engine::GrammarSpec spec;
  spec.kind = engine::GrammarSpec::Kind::json_schema;
  spec.source = schema.dump();
  std::tie(spec.prefix, spec.suffix) = call_frame(format);
  return spec;
}

std::optional<ApiError> parse_tool_choice(const json* v, const OrderedJson& tools,
                                          const std::set<std::string>& names, ToolsInput* out) {
  const bool have_tools = !tools.is_null();
  out->choice = have_tools ? ToolChoice::automatic : ToolChoice::none;  // OpenAI's defaults
  if (!v) return std::nullopt;
  constexpr const char* kShape =
      "\"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": "
      "...}}";
  if (v->is_string()) {
    const std::string& s = v->get_ref<const std::string&>();
    if (s == "none") {
      out->choice = ToolChoice::none;
    } else if (s == "auto") {
      out->choice = have_tools ? ToolChoice::automatic : ToolChoice::none;
    } else if (s == "required") {
      out->choice = ToolChoice::required;
    } else {
      return ApiError::bad_request(
          "tool_choice", fmt::format("'tool_choice' is \"{}\"; it must be {}", s, kShape));
    }
  } else if (v->is_object()) {
    auto type = v->find("type");
    auto fn = v->find("function");
    auto name = fn != v->end() && fn->is_object() ? fn->find("name") : v->end();
    if (type == v->end() || *type != "function" || fn == v->end() || !fn->is_object() ||
        name == fn->end() || !name->is_string())
      return Fields::type_error("tool_choice", kShape);
    out->choice = ToolChoice::named;
    out->named = name->get<std::string>();
    if (have_tools && !names.count(out->named)) {
      return ApiError::bad_request(
          "tool_choice",
          fmt::format("'tool_choice' names the function \"{}\", which is not among 'tools'",
                      out->named));
    }
  } else {
    return Fields::type_error("tool_choice", kShape);
  }
  if (!have_tools && out->choice != ToolChoice::none) {
    return ApiError::bad_request("tool_choice",
                                 "'tool_choice' asks for a tool call, but the request has no "
                                 "'tools'");
  }
  return std::nullopt;
}

}  // namespace

std::optional<ApiError> parse_tools_input(const Fields& f, std::string_view body,
                                          ToolCallFormat format, ToolsInput* out) {
  *out = ToolsInput{};
  if (auto e = f.boolean("parallel_tool_calls", &out->parallel)) return e;
  std::set<std::string> names;
  if (const json* tools = f.get("tools")) {
    if (!tools->is_array()) return Fields::type_error("tools", "a list of function tools");
    if (!tools->empty()) {
      // The body was checked as JSON already; parsed again for the order of its keys.
      OrderedJson ordered = OrderedJson::parse(body, nullptr, /*allow_exceptions=*/false);
      out->tools = std::move(ordered["tools"]);
      for (size_t i = 0; i < out->tools.size(); ++i)
        if (auto e = check_tool(out->tools[i], i, &names)) return e;
    }
  }
  if (auto e = parse_tool_choice(f.get("tool_choice"), out->tools, names, out)) return e;
  if (out->choice == ToolChoice::required || out->choice == ToolChoice::named) {
    out->grammar =
        forced_call_grammar(out->tools, out->choice == ToolChoice::named ? out->named : "", format);
  }
  return std::nullopt;
}

}  // namespace invar::server
