// GGUF v2/v3 reader. Layout (little-endian):
//   "GGUF" u32 version, u64 tensor_count, u64 kv_count,
//   kv_count x (string key, u32 type, value), tensor_count x (string name, u32 n_dims,
//   u64 ne[n_dims], u32 ggml_type, u64 offset), padding to `general.alignment` (default 32),
//   then the data section; tensor offsets are relative to it.
// Every read goes through Cursor, which checks the remaining bytes first, and every count is
// checked against the bytes left before anything is allocated for it.
#include "model/gguf.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "model/gguf_dequant.h"

namespace invar::model {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint64_t kDefaultAlignment = 32;
constexpr int kMaxDims = 4;           // GGML_MAX_DIMS
constexpr int kMaxArrayNesting = 16;  // bounds the recursion on nested arrays

enum ValueType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};

// Smallest encoding of one value of a type: a lower bound used to reject impossible counts.
uint64_t min_value_size(uint32_t type) {
  switch (type) {
    case kU8:
    case kI8:
    case kBool:
      return 1;
    case kU16:
    case kI16:
      return 2;
    case kU32:
    case kI32:
    case kF32:
      return 4;
    case kU64:
    case kI64:
    case kF64:
      return 8;
    case kString:
      return 8;  // the length
    case kArray:
      return 12;  // element type + count
  }
  return 1;
}

const char* value_type_name(uint32_t type) {
  static const char* kNames[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                 "bool", "string", "array", "u64", "i64", "f64"};
  return type <= kF64 ? kNames[type] : "unknown";
}

// Bounds-checked little-endian reads from the mapping. Errors name the file and the offset.
class Cursor {
 public:
  Cursor(const std::string& path, const uint8_t* data, uint64_t size)
      : path_(path), data_(data), size_(size) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  Status need(uint64_t n, const std::string& what) const {
    if (n > remaining()) {
      return Status::errorf(
          "{}: {}: needs {} bytes at offset {} but the file ends at {} "
          "(truncated?)",
          path_, what, n, pos_, size_);
    }
    return {};
  }

  template <typename T>
  Status read(T* out, const std::string& what) {
    INVAR_RETURN_IF_ERROR(need(sizeof(T), what));
    std::memcpy(out, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return {};
  }

  Status read_string(std::string* out, const std::string& what) {
    uint64_t len = 0;
    INVAR_RETURN_IF_ERROR(read(&len, what + " (string length)"));
    if (len > remaining()) {
      return Status::errorf(
          "{}: {}: string of {} bytes at offset {} runs past the end of the "
          "file (size {})",
          path_, what, len, pos_, size_);
    }
    out->assign(reinterpret_cast<const char*>(data_ + pos_), size_t(len));
    pos_ += len;
    return {};
  }

 private:
  const std::string& path_;
  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
};

Status read_value(Cursor& c, const std::string& path, const std::string& key, uint32_t type,
                  int depth, GgufValue* out);

Status read_array(Cursor& c, const std::string& path, const std::string& key, int depth,
                  GgufValue* out) {
  if (depth >= kMaxArrayNesting) {
    return Status::errorf("{}: metadata key '{}': arrays nested deeper than {} levels", path, key,
                          kMaxArrayNesting);
  }
  uint32_t elem_type = 0;
  uint64_t count = 0;
  INVAR_RETURN_IF_ERROR(c.read(&elem_type, "metadata key '" + key + "' (array type)"));
  INVAR_RETURN_IF_ERROR(c.read(&count, "metadata key '" + key + "' (array length)"));
  if (elem_type > kF64) {
    return Status::errorf("{}: metadata key '{}': unknown array element type {} (expected 0..12)",
                          path, key, elem_type);
  }
  if (count > c.remaining() / min_value_size(elem_type)) {
    return Status::errorf(
        "{}: metadata key '{}': array of {} {} values at offset {} cannot fit "
        "in the {} bytes left in the file",
        path, key, count, value_type_name(elem_type), c.pos(), c.remaining());
  }
  auto arr = std::make_shared<GgufArray>();
  arr->resize(size_t(count));
  for (uint64_t i = 0; i < count; ++i) {
    INVAR_RETURN_IF_ERROR(read_value(c, path, key, elem_type, depth + 1, &(*arr)[i]));
  }
  out->v = std::move(arr);
  return {};
}

Status read_value(Cursor& c, const std::string& path, const std::string& key, uint32_t type,
                  int depth, GgufValue* out) {
  const std::string what = "metadata key '" + key + "'";
  switch (type) {
#define INVAR_GGUF_SCALAR_(tag, ctype, store) \
  case tag: {                                 \
    ctype x{};                                \
    INVAR_RETURN_IF_ERROR(c.read(&x, what));  \
    out->v = store(x);                        \
    return {};                                \
  }
    INVAR_GGUF_SCALAR_(kU8, uint8_t, uint64_t)
    INVAR_GGUF_SCALAR_(kU16, uint16_t, uint64_t)
    INVAR_GGUF_SCALAR_(kU32, uint32_t, uint64_t)
    INVAR_GGUF_SCALAR_(kU64, uint64_t, uint64_t)
    INVAR_GGUF_SCALAR_(kI8, int8_t, int64_t)
    INVAR_GGUF_SCALAR_(kI16, int16_t, int64_t)
    INVAR_GGUF_SCALAR_(kI32, int32_t, int64_t)
    INVAR_GGUF_SCALAR_(kI64, int64_t, int64_t)
    INVAR_GGUF_SCALAR_(kF32, float, double)
    INVAR_GGUF_SCALAR_(kF64, double, double)
#undef INVAR_GGUF_SCALAR_
    case kBool: {
      uint8_t x = 0;
      INVAR_RETURN_IF_ERROR(c.read(&x, what));
      if (x > 1) {
        return Status::errorf("{}: {}: bool value {} at offset {} (expected 0 or 1)", path, what, x,
                              c.pos() - 1);
      }
      out->v = x != 0;
      return {};
    }
    case kString: {
      std::string s;
      INVAR_RETURN_IF_ERROR(c.read_string(&s, what));
      out->v = std::move(s);
      return {};
    }
    case kArray:
      return read_array(c, path, key, depth, out);
  }
  return Status::errorf("{}: {}: unknown value type {} at offset {} (expected 0..12)", path, what,
                        type, c.pos() - 4);
}

// numel with overflow checks; ne are GGUF's innermost-first extents.
Status checked_numel(const std::string& path, const std::string& name,
                     const std::vector<int64_t>& shape, int64_t* numel) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) {
      return Status::errorf("{}: tensor '{}': negative dimension {}", path, name, d);
    }
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) {
      return Status::errorf("{}: tensor '{}': element count overflows 64 bits", path, name);
    }
    n *= d;
  }
  *numel = n;
  return {};
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

}  // namespace

int64_t GgufTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Result<GgufFile> GgufFile::open(const std::string& path) {
  INVAR_ASSIGN_OR_RETURN(auto mapped, MappedFile::open(path));
  GgufFile f;
  f.path_ = path;
  f.file_ = mapped;
  Cursor c(f.path_, mapped->data(), mapped->size());

  uint32_t magic = 0;
  INVAR_RETURN_IF_ERROR(c.read(&magic, "header (magic)"));
  if (magic != kGgufMagic) {
    return Status::errorf("{}: not a GGUF file (magic 0x{:08x}, expected 0x{:08x} \"GGUF\")", path,
                          magic, kGgufMagic);
  }
  INVAR_RETURN_IF_ERROR(c.read(&f.version_, "header (version)"));
  if (f.version_ != 2 && f.version_ != 3) {
    return Status::errorf("{}: unsupported GGUF version {} (expected 2 or 3)", path, f.version_);
  }
  uint64_t tensor_count = 0, kv_count = 0;
  INVAR_RETURN_IF_ERROR(c.read(&tensor_count, "header (tensor count)"));
  INVAR_RETURN_IF_ERROR(c.read(&kv_count, "header (metadata count)"));
  // Lower bounds on the encoded sizes: a key-value pair takes at least 13 bytes, a tensor
  // info at least 24.
  if (kv_count > c.remaining() / 13) {
    return Status::errorf(
        "{}: header claims {} metadata entries, which cannot fit in a file of "
        "{} bytes",
        path, kv_count, mapped->size());
  }
  if (tensor_count > c.remaining() / 24) {
    return Status::errorf("{}: header claims {} tensors, which cannot fit in a file of {} bytes",
                          path, tensor_count, mapped->size());
  }

  for (uint64_t i = 0; i < kv_count; ++i) {
    std::string key;
    INVAR_RETURN_IF_ERROR(c.read_string(&key, "metadata entry " + std::to_string(i) + " (key)"));
    uint32_t type = 0;
    INVAR_RETURN_IF_ERROR(c.read(&type, "metadata key '" + key + "' (type)"));
    GgufValue value;
    INVAR_RETURN_IF_ERROR(read_value(c, path, key, type, 0, &value));
    if (!f.metadata_.emplace(key, std::move(value)).second) {
      return Status::errorf("{}: metadata key '{}' appears twice", path, key);
    }
  }

  uint64_t alignment = kDefaultAlignment;
  if (f.has("general.alignment")) {
    INVAR_ASSIGN_OR_RETURN(int64_t a, f.get_int("general.alignment"));
    if (a <= 0 || (a & (a - 1)) != 0 || a > (1 << 20)) {
      return Status::errorf(
          "{}: metadata key 'general.alignment' is {} (expected a power of "
          "two, at most 1 MiB)",
          path, a);
    }
    alignment = uint64_t(a);
  }

  f.tensors_.reserve(size_t(tensor_count));
  for (uint64_t i = 0; i < tensor_count; ++i) {
    GgufTensorInfo t;
    INVAR_RETURN_IF_ERROR(c.read_string(&t.name, "tensor info " + std::to_string(i) + " (name)"));
    const std::string what = "tensor '" + t.name + "'";
    uint32_t n_dims = 0;
    INVAR_RETURN_IF_ERROR(c.read(&n_dims, what + " (dimension count)"));
    if (n_dims == 0 || n_dims > kMaxDims) {
      return Status::errorf("{}: {}: {} dimensions (expected 1..{})", path, what, n_dims, kMaxDims);
    }
    std::vector<int64_t> ne(n_dims);
    for (auto& d : ne) {
      uint64_t x = 0;
      INVAR_RETURN_IF_ERROR(c.read(&x, what + " (dimensions)"));
      if (x > uint64_t(std::numeric_limits<int64_t>::max())) {
        return Status::errorf("{}: {}: dimension {} is too large", path, what, x);
      }
      d = int64_t(x);
    }
    t.shape.assign(ne.rbegin(), ne.rend());
    INVAR_RETURN_IF_ERROR(c.read(&t.type, what + " (type)"));
    INVAR_RETURN_IF_ERROR(c.read(&t.offset, what + " (offset)"));
    int64_t numel = 0;
    INVAR_RETURN_IF_ERROR(checked_numel(path, t.name, t.shape, &numel));
    if (t.offset % alignment != 0) {
      return Status::errorf("{}: {}: data offset {} is not a multiple of the alignment {}", path,
                            what, t.offset, alignment);
    }
    if (const GgmlBlockLayout* b = ggml_block_layout(t.type)) {
      if (ne[0] % b->block_elems != 0) {
        return Status::errorf("{}: {}: row length {} is not a multiple of the {} block size {}",
                              path, what, ne[0], b->name, b->block_elems);
      }
      uint64_t blocks = uint64_t(numel) / uint64_t(b->block_elems);
      if (blocks > std::numeric_limits<uint64_t>::max() / b->block_bytes) {
        return Status::errorf("{}: {}: byte size overflows 64 bits", path, what);
      }
      t.nbytes = blocks * b->block_bytes;
    }
    if (f.find_tensor(t.name) != nullptr) {
      return Status::errorf("{}: tensor '{}' appears twice in the tensor table", path, t.name);
    }
    f.tensors_.push_back(std::move(t));
  }

  uint64_t data_offset = (c.pos() + alignment - 1) / alignment * alignment;
  const uint64_t size = mapped->size();
  if (data_offset > size) {
    if (tensor_count == 0)
      data_offset = size;  // a metadata-only file may end unpadded
    else {
      return Status::errorf(
          "{}: data section would start at offset {} but the file ends at {} "
          "(truncated?)",
          path, data_offset, size);
    }
  }
  f.data_offset_ = data_offset;
  const uint64_t data_size = size - data_offset;
  for (const auto& t : f.tensors_) {
    // Unsupported types have no known size here; read_tensor rejects them by name.
    if (ggml_block_layout(t.type) == nullptr) continue;
    if (t.offset > data_size || t.nbytes > data_size - t.offset) {
      return Status::errorf(
          "{}: tensor '{}': data [offset {}, {} bytes] runs past end of file "
          "(size {}, data section starts at {})",
          path, t.name, data_offset + t.offset, t.nbytes, size, data_offset);
    }
  }
  return f;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  // Linear: tables hold a few hundred entries and lookups happen once per load.
  for (const auto& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

namespace {

const GgufValue* lookup(const std::map<std::string, GgufValue>& m, const std::string& key) {
  auto it = m.find(key);
  return it == m.end() ? nullptr : &it->second;
}

const char* held_type(const GgufValue& v) {
  switch (v.v.index()) {
    case 0:
      return "a signed integer";
    case 1:
      return "an unsigned integer";
    case 2:
      return "a float";
    case 3:
      return "a bool";
    case 4:
      return "a string";
    case 5:
      return "an array";
  }
  return "?";
}

Result<int64_t> as_int(const GgufValue& v, const std::string& path, const std::string& key) {
  if (auto* i = std::get_if<int64_t>(&v.v)) return *i;
  if (auto* u = std::get_if<uint64_t>(&v.v)) {
    if (*u > uint64_t(std::numeric_limits<int64_t>::max())) {
      return Status::errorf("{}: metadata key '{}': value {} does not fit in int64", path, key, *u);
    }
    return int64_t(*u);
  }
  return Status::errorf("{}: metadata key '{}' holds {}, expected an integer", path, key,
                        held_type(v));
}

Result<double> as_float(const GgufValue& v, const std::string& path, const std::string& key) {
  if (auto* d = std::get_if<double>(&v.v)) return *d;
  if (auto* i = std::get_if<int64_t>(&v.v)) return double(*i);
  if (auto* u = std::get_if<uint64_t>(&v.v)) return double(*u);
  return Status::errorf("{}: metadata key '{}' holds {}, expected a number", path, key,
                        held_type(v));
}

}  // namespace

Result<int64_t> GgufFile::get_int(const std::string& key) const {
  const GgufValue* v = lookup(metadata_, key);
  if (!v) return Status::errorf("{}: metadata key '{}' is missing", path_, key);
  return as_int(*v, path_, key);
}

Result<double> GgufFile::get_float(const std::string& key) const {
  const GgufValue* v = lookup(metadata_, key);
  if (!v) return Status::errorf("{}: metadata key '{}' is missing", path_, key);
  return as_float(*v, path_, key);
}

Result<std::string> GgufFile::get_string(const std::string& key) const {
  const GgufValue* v = lookup(metadata_, key);
  if (!v) return Status::errorf("{}: metadata key '{}' is missing", path_, key);
  if (auto* s = std::get_if<std::string>(&v->v)) return *s;
  return Status::errorf("{}: metadata key '{}' holds {}, expected a string", path_, key,
                        held_type(*v));
}

namespace {

Result<const GgufArray*> get_array(const std::map<std::string, GgufValue>& m,
                                   const std::string& path, const std::string& key) {
  const GgufValue* v = lookup(m, key);
  if (!v) return Status::errorf("{}: metadata key '{}' is missing", path, key);
  auto* a = std::get_if<std::shared_ptr<GgufArray>>(&v->v);
  if (!a) {
    return Status::errorf("{}: metadata key '{}' holds {}, expected an array", path, key,
                          held_type(*v));
  }
  return static_cast<const GgufArray*>(a->get());
}

}  // namespace

Result<std::vector<std::string>> GgufFile::get_string_array(const std::string& key) const {
  INVAR_ASSIGN_OR_RETURN(const GgufArray* a, get_array(metadata_, path_, key));
  std::vector<std::string> out;
  out.reserve(a->size());
  for (size_t i = 0; i < a->size(); ++i) {
    auto* s = std::get_if<std::string>(&(*a)[i].v);
    if (!s) {
      return Status::errorf("{}: metadata key '{}': element {} holds {}, expected a string", path_,
                            key, i, held_type((*a)[i]));
    }
    out.push_back(*s);
  }
  return out;
}

Result<std::vector<double>> GgufFile::get_float_array(const std::string& key) const {
  INVAR_ASSIGN_OR_RETURN(const GgufArray* a, get_array(metadata_, path_, key));
  std::vector<double> out;
  out.reserve(a->size());
  for (size_t i = 0; i < a->size(); ++i) {
    INVAR_ASSIGN_OR_RETURN(double x, as_float((*a)[i], path_, key + "[" + std::to_string(i) + "]"));
    out.push_back(x);
  }
  return out;
}

Result<std::vector<int64_t>> GgufFile::get_int_array(const std::string& key) const {
  INVAR_ASSIGN_OR_RETURN(const GgufArray* a, get_array(metadata_, path_, key));
  std::vector<int64_t> out;
  out.reserve(a->size());
  for (size_t i = 0; i < a->size(); ++i) {
    INVAR_ASSIGN_OR_RETURN(int64_t x, as_int((*a)[i], path_, key + "[" + std::to_string(i) + "]"));
    out.push_back(x);
  }
  return out;
}

Result<DType> GgufFile::stored_dtype(const GgufTensorInfo& t) const {
  const GgmlBlockLayout* b = ggml_block_layout(t.type);
  if (b == nullptr) {
    return Status::errorf("{}: tensor '{}' has unsupported type {} ({}); supported: {}", path_,
                          t.name, t.type, ggml_type_name(t.type), ggml_supported_types());
  }
  return b->dtype;
}

Result<const uint8_t*> GgufFile::tensor_data(const GgufTensorInfo& t) const {
  INVAR_RETURN_IF_ERROR(stored_dtype(t).status());
  const GgmlBlockLayout* b = ggml_block_layout(t.type);
  // Re-check against this file: `t` may not come from tensors().
  int64_t numel = 0;
  INVAR_RETURN_IF_ERROR(checked_numel(path_, t.name, t.shape, &numel));
  const uint64_t data_size = file_->size() - data_offset_;
  if (t.shape.empty() || t.shape.back() % b->block_elems != 0 ||
      uint64_t(numel) / uint64_t(b->block_elems) * b->block_bytes != t.nbytes ||
      t.offset > data_size || t.nbytes > data_size - t.offset) {
    return Status::errorf(
        "{}: tensor '{}': shape {} type {} at data offset {} does not "
        "describe data inside this file",
        path_, t.name, shape_str(t.shape), b->name, t.offset);
  }
  return file_->data() + data_offset_ + t.offset;
}

Status GgufFile::read_tensor(const GgufTensorInfo& t, DType dtype, void* out) const {
  INVAR_ASSIGN_OR_RETURN(DType stored, stored_dtype(t));
  if (dtype != DType::f32 && dtype != DType::bf16 && dtype != stored) {
    return Status::errorf("{}: tensor '{}': cannot read {} into {} (expected f32, bf16 or {})",
                          path_, t.name, dtype_name(stored), dtype_name(dtype), dtype_name(stored));
  }
  INVAR_ASSIGN_OR_RETURN(const uint8_t* data, tensor_data(t));
  dequantize_ggml(t.type, data, t.numel(), dtype, out);
  return {};
}

Status GgufFile::read_rows(const GgufTensorInfo& t, int64_t row0, int64_t rows, DType dtype,
                           void* out) const {
  INVAR_ASSIGN_OR_RETURN(DType stored, stored_dtype(t));
  if (dtype != DType::f32 && dtype != DType::bf16 && dtype != stored) {
    return Status::errorf("{}: tensor '{}': cannot read {} into {} (expected f32, bf16 or {})",
                          path_, t.name, dtype_name(stored), dtype_name(dtype), dtype_name(stored));
  }
  INVAR_ASSIGN_OR_RETURN(const uint8_t* data, tensor_data(t));
  const int64_t row_len = t.shape.back();
  const int64_t total_rows = row_len == 0 ? 0 : t.numel() / row_len;
  if (row0 < 0 || rows < 0 || row0 > total_rows || rows > total_rows - row0) {
    return Status::errorf("{}: tensor '{}': rows {}..{} are outside its {} rows", path_, t.name,
                          row0, row0 + rows, total_rows);
  }
  const GgmlBlockLayout* b = ggml_block_layout(t.type);
  const uint64_t row_bytes = uint64_t(row_len / b->block_elems) * b->block_bytes;
  dequantize_ggml(t.type, data + uint64_t(row0) * row_bytes, rows * row_len, dtype, out);
  return {};
}

}  // namespace invar::model
