// Memory-mapped safetensors: one file, or a sharded set listed by model.safetensors.index.json.
// File layout: u64 little-endian header length N, N bytes of JSON
//   {"<name>": {"dtype": "BF16", "shape": [rows, cols], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {...}}
// then the data; offsets are relative to byte 8 + N. Every offset is checked against the
// file size at open, and every failure names the file and the tensor.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/mapped_file.h"
#include "core/status.h"

namespace invar::model {

struct SafetensorsTensorInfo {
  std::string name;
  std::string dtype;           // as written in the header: "F32", "BF16", "I64", ...
  std::vector<int64_t> shape;  // row-major, outermost first
  uint64_t begin = 0;          // absolute byte offsets in the file
  uint64_t end = 0;
  int64_t numel() const;
};

class SafetensorsFile {
 public:
  static Result<SafetensorsFile> open(const std::string& path);

  const std::string& path() const { return path_; }
  const std::vector<SafetensorsTensorInfo>& tensors() const { return tensors_; }
  const SafetensorsTensorInfo* find_tensor(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Converts a tensor of dtype F32, F16, BF16 or F8_E4M3 into `out` (numel elements, f32 or
  // bf16, or f16 for an F16 tensor). FP8 values are decoded as stored: block scales are the
  // loader's (load_weights.cpp).
  Status read_tensor(const SafetensorsTensorInfo& t, DType dtype, void* out) const;

 private:
  std::string path_;
  std::shared_ptr<MappedFile> file_;
  std::vector<SafetensorsTensorInfo> tensors_;
  std::map<std::string, size_t> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
};

// All tensors of a Hugging Face checkpoint directory, single file or sharded.
class SafetensorsSet {
 public:
  // `dir` holds model.safetensors.index.json (sharded) or model.safetensors.
  static Result<SafetensorsSet> open_dir(const std::string& dir);
  // A single file.
  static Result<SafetensorsSet> open_file(const std::string& path);

  const std::string& where() const { return where_; }
  const std::vector<SafetensorsFile>& files() const { return files_; }
  // nullptr when absent; `file` (optional) receives the shard that holds it.
  const SafetensorsTensorInfo* find_tensor(const std::string& name,
                                           const SafetensorsFile** file = nullptr) const;
  Status read_tensor(const std::string& name, DType dtype, void* out) const;

 private:
  std::string where_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, std::pair<size_t, size_t>> index_;  // name -> (file, tensor)
};

}  // namespace invar::model
