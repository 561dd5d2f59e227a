#include "tokenizer/unicode.h"

namespace invar::tokenizer {

Utf8Lead utf8_lead(unsigned char c) {
  if (c < 0x80) return {1, 0, 0};
  if (c >= 0xC2 && c <= 0xDF) return {2, 0x80, 0xBF};
  if (c == 0xE0) return {3, 0xA0, 0xBF};
  if (c == 0xED) return {3, 0x80, 0x9F};
  if (c >= 0xE1 && c <= 0xEF) return {3, 0x80, 0xBF};
  if (c == 0xF0) return {4, 0x90, 0xBF};
  if (c >= 0xF1 && c <= 0xF3) return {4, 0x80, 0xBF};
  if (c == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

}  // namespace

size_t append_valid_utf8(std::string_view in, std::string& out, bool final) {
  size_t i = 0;
  const size_t n = in.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(in[i]);
    const Utf8Lead lead = utf8_lead(c);
    if (lead.len == 1) {
      out += char(c);
      ++i;
      continue;
    }
    if (lead.len == 0) {
      out += kReplacement;
      ++i;
      continue;
    }
    int k = 1;
    bool bad = false;
    for (; k < lead.len; ++k) {
      if (i + k >= n) break;
      const auto b = static_cast<unsigned char>(in[i + k]);
      const unsigned char lo = k == 1 ? lead.lo : 0x80, hi = k == 1 ? lead.hi : 0xBF;
      if (b < lo || b > hi) {
        bad = true;
        break;
      }
    }
    if (bad) {  // the maximal subpart is the k bytes checked so far
      out += kReplacement;
      i += k;
    } else if (k < lead.len) {  // ran out of input inside a valid prefix
      if (!final) return i;
      out += kReplacement;
      i = n;
    } else {
      out.append(in.data() + i, lead.len);
      i += lead.len;
    }
  }
  return i;
}

bool is_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const Utf8Lead lead = utf8_lead(static_cast<unsigned char>(s[i]));
    if (lead.len == 0 || i + lead.len > s.size()) return false;
    for (int k = 1; k < lead.len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      const unsigned char lo = k == 1 ? lead.lo : 0x80, hi = k == 1 ? lead.hi : 0xBF;
      if (b < lo || b > hi) return false;
    }
    i += lead.len;
  }
  return true;
}

uint32_t next_code_point(std::string_view s, size_t& i) {
  const auto c = static_cast<unsigned char>(s[i]);
  const Utf8Lead lead = utf8_lead(c);
  if (lead.len == 1) {
    ++i;
    return c;
  }
  if (lead.len == 0 || i + lead.len > s.size()) {
    ++i;
    return 0xFFFD;
  }
  uint32_t cp = c & (0xFF >> (lead.len + 1));
  for (int k = 1; k < lead.len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    const unsigned char lo = k == 1 ? lead.lo : 0x80, hi = k == 1 ? lead.hi : 0xBF;
    if (b < lo || b > hi) {
      ++i;
      return 0xFFFD;
    }
    cp = (cp << 6) | (b & 0x3F);
  }
  i += lead.len;
  return cp;
}

const ByteAlphabet& byte_alphabet() {
  static const ByteAlphabet alphabet = [] {
    ByteAlphabet a;
    a.cp_to_byte.fill(-1);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      // Printable Latin-1 bytes stand for themselves; the rest are moved to 256 and up.
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      a.byte_to_cp[b] = printable ? uint32_t(b) : next++;
      append_utf8(a.byte_to_utf8[b], a.byte_to_cp[b]);
      a.cp_to_byte[a.byte_to_cp[b]] = int16_t(b);
    }
    return a;
  }();
  return alphabet;
}

std::string byte_level_decode(std::string_view text) {
  // As Hugging Face's ByteLevel decoder: a token with a character outside the alphabet is
  // taken as raw UTF-8, whole.
  const auto& a = byte_alphabet();
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const uint32_t cp = next_code_point(text, i);
    if (cp >= a.cp_to_byte.size() || a.cp_to_byte[cp] < 0) return std::string(text);
    out += char(a.cp_to_byte[cp]);
  }
  return out;
}

std::string byte_level_encode(std::string_view bytes) {
  const auto& a = byte_alphabet();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) out += a.byte_to_utf8[b];
  return out;
}

bool is_python_space(uint32_t cp) {
  if (cp >= 0x09 && cp <= 0x0D) return true;
  if (cp >= 0x1C && cp <= 0x20) return true;
  switch (cp) {
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

std::string_view python_strip(std::string_view s, bool left, bool right) {
  size_t begin = 0, end = s.size();
  if (left) {
    while (begin < end) {
      size_t i = begin;
      if (!is_python_space(next_code_point(s, i))) break;
      begin = i;
    }
  }
  if (right) {
    while (end > begin) {
      size_t start = end - 1;  // back up to the lead byte of the last character
      while (start > begin && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
      size_t i = start;
      const uint32_t cp = next_code_point(s, i);
      if (i != end || !is_python_space(cp)) break;
      end = start;
    }
  }
  return s.substr(begin, end - begin);
}

}  // namespace invar::tokenizer
