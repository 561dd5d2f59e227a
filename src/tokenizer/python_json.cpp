#include "tokenizer/python_json.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "tokenizer/unicode.h"

namespace invar::tokenizer {

namespace {

using Json = nlohmann::ordered_json;

// \uXXXX with lowercase hex digits, as json.dumps writes it; `unit` < 0x10000.
void append_u_escape(std::string& out, uint32_t unit) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += "\\u";
  for (int shift = 12; shift >= 0; shift -= 4) out += kHex[(unit >> shift) & 0xF];
}

// json.dumps' string escapes: the two-character forms it knows, \u00XX for the other control
// characters, and with ensure_ascii every non-ASCII code point as \uXXXX (surrogate pairs above
// the BMP).
void append_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out += '"';
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const size_t start = i;
      const uint32_t cp = next_code_point(s, i);
      if (!ensure_ascii) {
        out.append(s, start, i - start);
      } else if (cp >= 0x10000) {
        append_u_escape(out, 0xD800 + ((cp - 0x10000) >> 10));
        append_u_escape(out, 0xDC00 + ((cp - 0x10000) & 0x3FF));
      } else {
        append_u_escape(out, cp);
      }
      continue;
    }
    ++i;
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
        if (c < 0x20) {
          append_u_escape(out, c);
        } else {
          out += char(c);
        }
    }
  }
  out += '"';
}

// Python's float repr (the shortest text that reads back the same) for finite values; NaN and
// the infinities as json.dumps spells them.
void append_float(std::string& out, double x) {
  if (std::isnan(x)) {
    out += "NaN";
  } else if (std::isinf(x)) {
    out += x > 0 ? "Infinity" : "-Infinity";
  } else {
    out += Json(x).dump();  // nlohmann writes the same shortest round-trip digits
  }
}

struct Writer {
  const PythonJsonOptions& opt;
  std::string item_sep, key_sep;
  std::string out;

  void newline(int level) {
    out += '\n';
    out.append(size_t(*opt.indent) * size_t(level), ' ');
  }

  void write(const Json& v, int level) {
    switch (v.type()) {
      case Json::value_t::null:
        out += "null";
        return;
      case Json::value_t::boolean:
        out += v.get<bool>() ? "true" : "false";
        return;
      case Json::value_t::number_integer:
      case Json::value_t::number_unsigned:
        out += v.dump();
        return;
      case Json::value_t::number_float:
        append_float(out, v.get<double>());
        return;
      case Json::value_t::string:
        append_string(out, v.get_ref<const std::string&>(), opt.ensure_ascii);
        return;
      case Json::value_t::array:
        write_container(v, level, '[', ']');
        return;
      case Json::value_t::object:
        write_container(v, level, '{', '}');
        return;
      default:
        out += "null";  // binary and discarded values have no JSON text
    }
  }

  void write_container(const Json& v, int level, char open, char close) {
    out += open;
    if (v.empty()) {  // json.dumps writes [] and {} even with an indent
      out += close;
      return;
    }
    std::vector<Json::const_iterator> items;
    for (auto it = v.begin(); it != v.end(); ++it) items.push_back(it);
    if (v.is_object() && opt.sort_keys)
      std::stable_sort(items.begin(), items.end(),
                       [](const auto& a, const auto& b) { return a.key() < b.key(); });
    for (size_t i = 0; i < items.size(); ++i) {
      if (i > 0) out += item_sep;
      if (opt.indent) newline(level + 1);
      if (v.is_object()) {
        append_string(out, items[i].key(), opt.ensure_ascii);
        out += key_sep;
      }
      write(*items[i], level + 1);
    }
    if (opt.indent) newline(level);
    out += close;
  }
};

}  // namespace

std::string python_json_dumps(const Json& value, const PythonJsonOptions& options) {
  Writer w{options,
           options.item_separator.value_or(options.indent ? "," : ", "),
           options.key_separator.value_or(": "),
           {}};
  w.write(value, 0);
  return std::move(w.out);
}

}  // namespace invar::tokenizer
