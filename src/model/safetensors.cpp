#include "model/safetensors.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/json_depth.h"

namespace invar::model {
namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the format's own limit

// 0 for dtypes whose size is not known here (they may be listed but not read).
uint64_t dtype_bytes(const std::string& d) {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
  return 0;
}

uint16_t load_u16(const uint8_t* p) {
  uint16_t x;
  std::memcpy(&x, p, 2);
  return x;
}

Result<std::vector<uint64_t>> unsigned_list(const json& j, const std::string& where) {
  if (!j.is_array()) return Status::errorf("{}: expected a list of non-negative integers", where);
  std::vector<uint64_t> out;
  for (const auto& x : j) {
    if (!x.is_number_unsigned()) {
      return Status::errorf("{}: expected a list of non-negative integers, got {}", where,
                            j.dump());
    }
    out.push_back(x.get<uint64_t>());
  }
  return out;
}

Result<json> parse_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::errorf("{}: cannot open", path);
  std::stringstream ss;
  ss << in.rdbuf();
  if (!json_depth_within(ss.view()))
    return Status::errorf("{}: nests arrays and objects more than {} levels deep", path,
                          kMaxJsonDepth);
  try {
    return json::parse(ss.str());
  } catch (const json::exception& e) {
    return Status::errorf("{}: invalid JSON: {}", path, e.what());
  }
}

}  // namespace

int64_t SafetensorsTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Result<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  INVAR_ASSIGN_OR_RETURN(auto mapped, MappedFile::open(path));
  SafetensorsFile f;
  f.path_ = path;
  f.file_ = mapped;
  const uint64_t size = mapped->size();
  if (size < 8) {
    return Status::errorf("{}: file of {} bytes is too short for a safetensors header (needs 8)",
                          path, size);
  }
  uint64_t header_len = 0;
  std::memcpy(&header_len, mapped->data(), 8);
  if (header_len > size - 8 || header_len > kMaxHeaderBytes) {
    return Status::errorf(
        "{}: header length {} runs past the end of the file (size {}) or "
        "exceeds 100 MiB; not a safetensors file?",
        path, header_len, size);
  }
  const char* header_text = reinterpret_cast<const char*>(mapped->data() + 8);
  if (!json_depth_within(std::string_view(header_text, size_t(header_len)))) {
    return Status::errorf("{}: header nests arrays and objects more than {} levels deep", path,
                          kMaxJsonDepth);
  }
  json header;
  try {
    header = json::parse(header_text, header_text + header_len);
  } catch (const json::exception& e) {
    return Status::errorf("{}: header is not valid JSON: {}", path, e.what());
  }
  if (!header.is_object()) {
    return Status::errorf("{}: header must be a JSON object", path);
  }
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size - data_start;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) return Status::errorf("{}: '__metadata__' must be an object", path);
      for (const auto& [k, v] : entry.items()) {
        f.metadata_[k] = v.is_string() ? v.get<std::string>() : v.dump();
      }
      continue;
    }
    const std::string where = path + ": tensor '" + name + "'";
    if (!entry.is_object() || !entry.contains("dtype") || !entry["dtype"].is_string() ||
        !entry.contains("shape") || !entry.contains("data_offsets")) {
      return Status::errorf(
          "{}: expected an object with 'dtype', 'shape' and 'data_offsets', "
          "got {}",
          where, entry.dump());
    }
    SafetensorsTensorInfo t;
    t.name = name;
    t.dtype = entry["dtype"].get<std::string>();
    INVAR_ASSIGN_OR_RETURN(auto shape, unsigned_list(entry["shape"], where + " shape"));
    INVAR_ASSIGN_OR_RETURN(auto offs,
                           unsigned_list(entry["data_offsets"], where + " data_offsets"));
    if (offs.size() != 2 || offs[0] > offs[1]) {
      return Status::errorf("{}: data_offsets {} must be [begin, end] with begin <= end", where,
                            entry["data_offsets"].dump());
    }
    uint64_t numel = 1;
    for (uint64_t d : shape) {
      if (d > uint64_t(std::numeric_limits<int64_t>::max()) ||
          (d != 0 && numel > uint64_t(std::numeric_limits<int64_t>::max()) / d)) {
        return Status::errorf("{}: shape {} is too large", where, entry["shape"].dump());
      }
      numel *= d;
      t.shape.push_back(int64_t(d));
    }
    if (offs[1] > data_size) {
      return Status::errorf("{}: data [offset {}, {} bytes] runs past end of file (size {})", where,
                            data_start + offs[0], offs[1] - offs[0], size);
    }
    if (uint64_t eb = dtype_bytes(t.dtype)) {
      if (numel > std::numeric_limits<uint64_t>::max() / eb || offs[1] - offs[0] != numel * eb) {
        return Status::errorf("{}: data_offsets {} span {} bytes but {} of shape {} needs {}",
                              where, entry["data_offsets"].dump(), offs[1] - offs[0], t.dtype,
                              entry["shape"].dump(), numel * eb);
      }
    }
    t.begin = data_start + offs[0];
    t.end = data_start + offs[1];
    f.index_[t.name] = f.tensors_.size();
    f.tensors_.push_back(std::move(t));
  }
  return f;
}

const SafetensorsTensorInfo* SafetensorsFile::find_tensor(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Status SafetensorsFile::read_tensor(const SafetensorsTensorInfo& t, DType dtype, void* out) const {
  if (dtype != DType::f32 && dtype != DType::bf16 && !(dtype == DType::f16 && t.dtype == "F16")) {
    return Status::errorf("{}: tensor '{}': cannot read {} into {} (expected f32, bf16 or {})",
                          path_, t.name, t.dtype, dtype_name(dtype), t.dtype);
  }
  if (t.dtype != "F32" && t.dtype != "F16" && t.dtype != "BF16" && t.dtype != "F8_E4M3") {
    return Status::errorf("{}: tensor '{}' has dtype {}; supported: F32, F16, BF16, F8_E4M3", path_,
                          t.name, t.dtype);
  }
  const int64_t n = t.numel();
  // Re-check: `t` may not come from this file.
  if (t.end > file_->size() || t.begin > t.end ||
      t.end - t.begin != uint64_t(n) * dtype_bytes(t.dtype)) {
    return Status::errorf("{}: tensor '{}': byte range [{}, {}) does not fit this file", path_,
                          t.name, t.begin, t.end);
  }
  const uint8_t* src = file_->data() + t.begin;
  float* of = static_cast<float*>(out);
  uint16_t* ob = static_cast<uint16_t*>(out);
  if (t.dtype == "F32") {
    if (dtype == DType::f32) {
      std::memcpy(out, src, size_t(n) * 4);
    } else {
      for (int64_t i = 0; i < n; ++i) {
        float v;
        std::memcpy(&v, src + 4 * i, 4);
        ob[i] = f32_to_bf16(v);
      }
    }
  } else if (t.dtype == "BF16") {
    if (dtype == DType::bf16) {
      std::memcpy(out, src, size_t(n) * 2);
    } else {
      for (int64_t i = 0; i < n; ++i) of[i] = bf16_to_f32(load_u16(src + 2 * i));
    }
  } else if (t.dtype == "F8_E4M3") {  // every value is exact in f32 and bf16
    for (int64_t i = 0; i < n; ++i) {
      const float v = fp8_e4m3_to_f32(src[i]);
      if (dtype == DType::f32)
        of[i] = v;
      else
        ob[i] = f32_to_bf16(v);
    }
  } else if (dtype == DType::f16) {
    std::memcpy(out, src, size_t(n) * 2);
  } else {  // F16
    for (int64_t i = 0; i < n; ++i) {
      const float v = f16_to_f32(load_u16(src + 2 * i));
      if (dtype == DType::f32)
        of[i] = v;
      else
        ob[i] = f32_to_bf16(v);
    }
  }
  return {};
}

Result<SafetensorsSet> SafetensorsSet::open_file(const std::string& path) {
  INVAR_ASSIGN_OR_RETURN(auto f, SafetensorsFile::open(path));
  SafetensorsSet s;
  s.where_ = path;
  for (size_t i = 0; i < f.tensors().size(); ++i) s.index_[f.tensors()[i].name] = {0, i};
  s.files_.push_back(std::move(f));
  return s;
}

Result<SafetensorsSet> SafetensorsSet::open_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  const fs::path single_path = fs::path(dir) / "model.safetensors";
  if (!fs::exists(index_path)) {
    if (fs::exists(single_path)) return open_file(single_path.string());
    return Status::errorf(
        "{}: no model.safetensors or model.safetensors.index.json (expected a "
        "Hugging Face model directory)",
        dir);
  }
  const std::string ipath = index_path.string();
  INVAR_ASSIGN_OR_RETURN(json index, parse_json_file(ipath));
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
    return Status::errorf("{}: missing object 'weight_map' (tensor name -> shard file)", ipath);
  }
  SafetensorsSet s;
  s.where_ = dir;
  std::map<std::string, size_t> shard_ids;
  for (const auto& [name, shard] : index["weight_map"].items()) {
    if (!shard.is_string()) {
      return Status::errorf("{}: weight_map['{}'] must be a file name, got {}", ipath, name,
                            shard.dump());
    }
    const std::string file = shard.get<std::string>();
    if (file.empty() || file.find('/') != std::string::npos || file == "." || file == "..") {
      return Status::errorf(
          "{}: weight_map['{}'] = '{}' is not a plain file name in the "
          "directory",
          ipath, name, file);
    }
    auto it = shard_ids.find(file);
    if (it == shard_ids.end()) {
      INVAR_ASSIGN_OR_RETURN(auto f, SafetensorsFile::open((fs::path(dir) / file).string()));
      it = shard_ids.emplace(file, s.files_.size()).first;
      s.files_.push_back(std::move(f));
    }
    const SafetensorsFile& f = s.files_[it->second];
    const SafetensorsTensorInfo* t = f.find_tensor(name);
    if (t == nullptr) {
      return Status::errorf(
          "{}: weight_map puts tensor '{}' in '{}', but that file has no such "
          "tensor",
          ipath, name, file);
    }
    s.index_[name] = {it->second, size_t(t - f.tensors().data())};
  }
  return s;
}

const SafetensorsTensorInfo* SafetensorsSet::find_tensor(const std::string& name,
                                                         const SafetensorsFile** file) const {
  auto it = index_.find(name);
  if (it == index_.end()) return nullptr;
  const SafetensorsFile& f = files_[it->second.first];
  if (file) *file = &f;
  return &f.tensors()[it->second.second];
}

Status SafetensorsSet::read_tensor(const std::string& name, DType dtype, void* out) const {
  const SafetensorsFile* f = nullptr;
  const SafetensorsTensorInfo* t = find_tensor(name, &f);
  if (t == nullptr) return Status::errorf("{}: tensor '{}' not found", where_, name);
  return f->read_tensor(*t, dtype, out);
}

}  // namespace invar::model
