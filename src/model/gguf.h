// GGUF v2/v3 reader: metadata, tensor table, and tensor data, either viewed in place in the
// file's memory mapping (packed as stored) or converted to f32 or bf16.
// Every malformed input gives a Status naming the file, the key or tensor, and what was
// expected; nothing is read past the end of the mapping.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "core/dtype.h"
#include "core/mapped_file.h"
#include "core/status.h"

namespace invar::model {

struct GgufValue;
using GgufArray = std::vector<GgufValue>;
// One metadata value: integers widen to int64/uint64, floats to double.
struct GgufValue {
  std::variant<int64_t, uint64_t, double, bool, std::string, std::shared_ptr<GgufArray>> v;
};

enum class GgmlType : uint32_t {
  f32 = 0,
  f16 = 1,
  q4_0 = 2,
  q4_1 = 3,
  q8_0 = 8,
  q2_k = 10,
  q3_k = 11,
  q4_k = 12,
  q5_k = 13,
  q6_k = 14,
  bf16 = 30,
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> shape;  // row-major, outermost first (GGUF's ne reversed)
  uint32_t type = 0;           // raw GgmlType value (unsupported ones are rejected on read)
  uint64_t offset = 0;         // from the start of the data section
  uint64_t nbytes = 0;
  int64_t numel() const;
};

class GgufFile {
 public:
  static Result<GgufFile> open(const std::string& path);

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(const std::string& name) const;

  // Typed metadata lookups; a missing key or a wrong type is an error naming the key.
  Result<int64_t> get_int(const std::string& key) const;
  Result<double> get_float(const std::string& key) const;
  Result<std::string> get_string(const std::string& key) const;
  Result<std::vector<std::string>> get_string_array(const std::string& key) const;
  Result<std::vector<double>> get_float_array(const std::string& key) const;
  Result<std::vector<int64_t>> get_int_array(const std::string& key) const;
  bool has(const std::string& key) const { return metadata_.count(key) != 0; }

  // Converts a tensor into `out`: numel elements of `dtype`, which is f32, bf16 or the
  // tensor's own encoding (stored_dtype; then a copy of its bytes).
  Status read_tensor(const GgufTensorInfo& t, DType dtype, void* out) const;
  // The same for `rows` rows from `row0` on, the tensor seen as [numel / row_len, row_len]
  // (row_len = its innermost extent): one expert of a stacked [E, I, H] tensor, one part of a
  // fused one. Whole rows are whole blocks, so packed encodings decode alone.
  Status read_rows(const GgufTensorInfo& t, int64_t row0, int64_t rows, DType dtype,
                   void* out) const;

  // The DType holding a tensor's encoding as stored; an error names an unsupported type.
  Result<DType> stored_dtype(const GgufTensorInfo& t) const;
  // A tensor's bytes in place, inside the mapping (valid while mapping() is held): nbytes
  // bytes of its stored_dtype, after the same checks as read_tensor.
  Result<const uint8_t*> tensor_data(const GgufTensorInfo& t) const;
  const std::shared_ptr<MappedFile>& mapping() const { return file_; }

 private:
  std::string path_;
  uint32_t version_ = 0;
  std::shared_ptr<MappedFile> file_;
  uint64_t data_offset_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensorInfo> tensors_;
};

}  // namespace invar::model
