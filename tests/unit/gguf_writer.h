// A small GGUF writer for tests: builds v2/v3 files byte by byte so the reader can be checked
// against hand-computed values and against deliberately broken files.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace invar::testing {

// Little-endian byte buffer.
struct Bytes {
  std::vector<uint8_t> b;
  template <typename T>
  Bytes& put(T v) {
    uint8_t tmp[sizeof(T)];
    std::memcpy(tmp, &v, sizeof(T));
    b.insert(b.end(), tmp, tmp + sizeof(T));
    return *this;
  }
  Bytes& str(const std::string& s) {
    put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& raw(const std::vector<uint8_t>& r) {
    b.insert(b.end(), r.begin(), r.end());
    return *this;
  }
};

// GGUF metadata value types.
enum GgufType : uint32_t {
  kGU8 = 0,
  kGI8 = 1,
  kGU16 = 2,
  kGI16 = 3,
  kGU32 = 4,
  kGI32 = 5,
  kGF32 = 6,
  kGBool = 7,
  kGString = 8,
  kGArray = 9,
  kGU64 = 10,
  kGI64 = 11,
  kGF64 = 12,
};

class GgufWriter {
 public:
  explicit GgufWriter(uint32_t version = 3, uint64_t alignment = 32)
      : version_(version), alignment_(alignment) {}

  // A key with an already-encoded value (use Bytes to build nested arrays).
  GgufWriter& kv(const std::string& key, uint32_t type, const Bytes& value) {
    meta_.str(key).put<uint32_t>(type).raw(value.b);
    ++kv_count_;
    return *this;
  }
  GgufWriter& u32(const std::string& key, uint32_t v) { return kv(key, kGU32, Bytes().put(v)); }
  GgufWriter& i32(const std::string& key, int32_t v) { return kv(key, kGI32, Bytes().put(v)); }
  GgufWriter& u64(const std::string& key, uint64_t v) { return kv(key, kGU64, Bytes().put(v)); }
  GgufWriter& f32(const std::string& key, float v) { return kv(key, kGF32, Bytes().put(v)); }
  GgufWriter& str(const std::string& key, const std::string& v) {
    return kv(key, kGString, Bytes().str(v));
  }
  GgufWriter& str_array(const std::string& key, const std::vector<std::string>& v) {
    Bytes b;
    b.put<uint32_t>(kGString).put<uint64_t>(v.size());
    for (const auto& s : v) b.str(s);
    return kv(key, kGArray, b);
  }

  // A tensor with its shape outermost first (written innermost first, as GGUF wants) and its
  // encoded data.
  GgufWriter& tensor(const std::string& name, std::vector<int64_t> shape, uint32_t type,
                     std::vector<uint8_t> data) {
    tensors_.push_back({name, std::move(shape), type, std::move(data), 0});
    return *this;
  }
  // Forces the offset recorded for the last tensor (to build broken files).
  GgufWriter& override_offset(uint64_t offset) {
    tensors_.back().forced_offset = offset;
    tensors_.back().has_forced = true;
    return *this;
  }

  std::vector<uint8_t> build() const {
    Bytes out;
    out.put<uint32_t>(0x46554747).put<uint32_t>(version_);
    out.put<uint64_t>(tensors_.size()).put<uint64_t>(kv_count_);
    out.raw(meta_.b);
    std::vector<uint64_t> offsets;
    uint64_t off = 0;
    for (const auto& t : tensors_) {
      off = (off + alignment_ - 1) / alignment_ * alignment_;
      offsets.push_back(t.has_forced ? t.forced_offset : off);
      off += t.data.size();
    }
    for (size_t i = 0; i < tensors_.size(); ++i) {
      const auto& t = tensors_[i];
      out.str(t.name).put<uint32_t>(uint32_t(t.shape.size()));
      for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) out.put<uint64_t>(uint64_t(*it));
      out.put<uint32_t>(t.type).put<uint64_t>(offsets[i]);
    }
    if (tensors_.empty()) return out.b;
    while (out.b.size() % alignment_) out.b.push_back(0);
    const size_t data_start = out.b.size();
    uint64_t pos = 0;
    for (const auto& t : tensors_) {
      pos = (pos + alignment_ - 1) / alignment_ * alignment_;
      out.b.resize(data_start + pos, 0);
      out.raw(t.data);
      pos += t.data.size();
    }
    return out.b;
  }

 private:
  struct Tensor {
    std::string name;
    std::vector<int64_t> shape;
    uint32_t type;
    std::vector<uint8_t> data;
    uint64_t forced_offset;
    bool has_forced = false;
  };
  uint32_t version_;
  uint64_t alignment_;
  Bytes meta_;
  uint64_t kv_count_ = 0;
  std::vector<Tensor> tensors_;
};

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

template <typename T>
std::vector<uint8_t> as_bytes(const std::vector<T>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(T));
  if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

}  // namespace invar::testing
