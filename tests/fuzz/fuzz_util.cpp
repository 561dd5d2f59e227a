#include "fuzz/fuzz_util.h"

#include <sys/mman.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <vector>

#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace invar::fuzz {

MemFile::MemFile(const void* data, size_t size) {
  fd_ = memfd_create("invar-fuzz", MFD_CLOEXEC);
  INVAR_FUZZ_CHECK(fd_ >= 0, "memfd_create failed");
  const char* p = static_cast<const char*>(data);
  for (size_t done = 0; done < size;) {
    const ssize_t n = ::write(fd_, p + done, size - done);
    INVAR_FUZZ_CHECK(n > 0, "writing the memfd failed");
    done += size_t(n);
  }
  path_ = fmt::format("/proc/self/fd/{}", fd_);
}

MemFile::~MemFile() {
  if (fd_ >= 0) ::close(fd_);
}

ScratchDir::ScratchDir(std::string_view name) {
  namespace fs = std::filesystem;
  fs::path base = fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
  path_ = (base / fmt::format("invar-fuzz-{}-{}", name, ::getpid())).string();
  fs::create_directories(path_);
}

ScratchDir::~ScratchDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

void ScratchDir::write(const std::string& name, std::string_view bytes) const {
  std::ofstream out(path_ + "/" + name, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  INVAR_FUZZ_CHECK(bool(out), "cannot write {}/{}", path_, name);
}

void ScratchDir::remove(const std::string& name) const {
  std::error_code ignored;
  std::filesystem::remove(path_ + "/" + name, ignored);
}

std::string_view input_part(std::string_view input, int index) {
  for (int i = 0; i < index; ++i) {
    const size_t at = input.find(kPartSeparator);
    if (at == std::string_view::npos) return {};
    input.remove_prefix(at + kPartSeparator.size());
  }
  return input.substr(0, input.find(kPartSeparator));
}

namespace {

void check_decoding(const tokenizer::Tokenizer& tok, const std::vector<int32_t>& ids) {
  for (bool skip : {false, true}) {
    const std::string whole = tok.decode(ids, skip);
    INVAR_FUZZ_CHECK(tokenizer::is_valid_utf8(whole), "decode gave invalid UTF-8");
    tokenizer::StreamDecoder stream(tok, skip);
    std::string streamed;
    for (int32_t id : ids) {
      const std::string piece = stream.push(id);
      INVAR_FUZZ_CHECK(tokenizer::is_valid_utf8(piece), "a streamed piece is invalid UTF-8");
      streamed += piece;
    }
    streamed += stream.flush();
    INVAR_FUZZ_CHECK(streamed == whole, "streamed {} bytes, decoded {} (skip_special {})",
                     streamed.size(), whole.size(), skip);
  }
}

}  // namespace

void check_tokenizer(const tokenizer::Tokenizer& tok, std::string_view text, bool add_bos,
                     bool parse_special, std::string_view ids_from) {
  const int32_t vocab = tok.vocab_size();
  const std::vector<int32_t> ids = tok.encode(text, add_bos, parse_special);
  for (int32_t id : ids) INVAR_FUZZ_CHECK(id >= 0 && id < vocab, "encoded id {} of {}", id, vocab);
  INVAR_FUZZ_CHECK(!(add_bos && tok.bos_id()) || (!ids.empty() && ids[0] == *tok.bos_id()),
                   "a BOS was asked for and not put first");
  check_decoding(tok, ids);
  std::vector<int32_t> raw;
  for (size_t i = 0; i + 1 < ids_from.size(); i += 2) {
    // Ids a little past the vocabulary too: decoders skip them.
    const auto u = uint32_t(uint8_t(ids_from[i])) | uint32_t(uint8_t(ids_from[i + 1])) << 8;
    raw.push_back(int32_t(u % uint32_t(vocab + 8)) - (u >> 15 ? 1 : 0));
  }
  check_decoding(tok, raw);
}

}  // namespace invar::fuzz
