// UTF-8 and Unicode helpers shared by the tokenizer layer: the GPT-2 byte <-> unicode alphabet,
// UTF-8 validation that replaces bad bytes the way Python and Rust do (one U+FFFD per maximal
// invalid subpart), and Python's notion of whitespace (for Jinja's trim/strip).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace invar::tokenizer {

// Length in bytes of the UTF-8 sequence starting with lead byte `c` (1 for invalid leads, so a
// walk over arbitrary bytes always advances).
inline size_t utf8_len(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) return 2;
  if ((c & 0xF0) == 0xE0) return 3;
  if ((c & 0xF8) == 0xF0) return 4;
  return 1;
}

// What a lead byte allows (Unicode table 3-7: no overlong forms, no surrogates, nothing above
// U+10FFFF): the sequence's length (0 for an invalid lead, 1 for ASCII) and the range of its
// second byte; later continuation bytes are always 80..BF.
struct Utf8Lead {
  int len;
  unsigned char lo, hi;
};
Utf8Lead utf8_lead(unsigned char c);

void append_utf8(std::string& out, uint32_t cp);

// Decodes the code point at s[i] (advancing i); invalid bytes decode to 0xFFFD, one byte each.
uint32_t next_code_point(std::string_view s, size_t& i);

// Appends `in` to `out` as valid UTF-8: every maximal invalid subpart becomes U+FFFD. When
// `final` is false, an incomplete but so-far valid sequence at the end is left unconsumed.
// Returns the number of bytes of `in` consumed.
size_t append_valid_utf8(std::string_view in, std::string& out, bool final);

bool is_valid_utf8(std::string_view s);

// The GPT-2 byte-level alphabet: each byte maps to one printable code point.
struct ByteAlphabet {
  std::array<uint32_t, 256> byte_to_cp{};
  std::array<std::string, 256> byte_to_utf8{};
  // Code point -> byte, or -1 for code points outside the alphabet (all are < 324).
  std::array<int16_t, 324> cp_to_byte{};
};
const ByteAlphabet& byte_alphabet();

// Token text in the byte alphabet -> raw bytes; a token with any character outside the alphabet
// is returned as it is.
std::string byte_level_decode(std::string_view text);
// Raw bytes -> text in the byte alphabet.
std::string byte_level_encode(std::string_view bytes);

// Python's str.isspace() for one code point (what Jinja's trim and str.strip() remove).
bool is_python_space(uint32_t cp);
// Python's s.strip() / lstrip() / rstrip() with no argument.
std::string_view python_strip(std::string_view s, bool left = true, bool right = true);

}  // namespace invar::tokenizer
