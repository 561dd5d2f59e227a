// What the fuzz targets (tests/fuzz) share: a failed property check that aborts (a crash for
// libFuzzer, a failure for the replay test), inputs handed to readers that take a path, and a
// scratch directory for readers that take a folder.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace invar::tokenizer {
class Tokenizer;
}

namespace invar::fuzz {

// A property every input must keep (e.g. "a refused request has a 4xx status"). Aborting makes
// the input a crash that libFuzzer saves, and fails fuzz_replay_test when it is kept.
#define INVAR_FUZZ_CHECK(cond, ...)                                                         \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      fmt::print(stderr, "fuzz check failed at {}:{}: {}: {}\n", __FILE__, __LINE__, #cond, \
                 fmt::format(__VA_ARGS__));                                                 \
      std::abort();                                                                         \
    }                                                                                       \
  } while (0)

// The bytes as an anonymous in-memory file (memfd), opened by path as /proc/self/fd/N: the
// readers under test map files by path, and this costs no disk.
class MemFile {
 public:
  MemFile(const void* data, size_t size);
  ~MemFile();
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// A directory under /dev/shm (TMPDIR when that is missing), made once per process and removed
// at exit, for readers that take a folder (a Hugging Face model directory).
class ScratchDir {
 public:
  explicit ScratchDir(std::string_view name);
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }
  // Writes (replaces) `name` in the directory.
  void write(const std::string& name, std::string_view bytes) const;
  void remove(const std::string& name) const;

 private:
  std::string path_;
};

// Splits an input into parts at a separator that is unlikely in real files, so one input can
// carry several files; missing parts are empty.
std::string_view input_part(std::string_view input, int index);
inline constexpr std::string_view kPartSeparator = "\n#--#\n";

// The tokenizer properties every text keeps: `text` encodes to ids inside the vocabulary, and
// those ids (and `ids_from`, read as little-endian u16 ids, some outside the vocabulary) decode
// to valid UTF-8, streamed piece by piece exactly as decoded whole, with and without
// skip_special.
void check_tokenizer(const tokenizer::Tokenizer& tok, std::string_view text, bool add_bos,
                     bool parse_special, std::string_view ids_from);

}  // namespace invar::fuzz
