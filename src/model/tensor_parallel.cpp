#include "model/tensor_parallel.h"

#include <algorithm>
#include <cstring>

#include "core/tree_sum.h"
#include "kernels/cpu/ops.h"

namespace invar::model {

Status check_tensor_parallel(const ModelConfig& c, int size, int slices) {
  if (!is_power_of_two(size) || size > kMaxTreeLeaves)
    return Status::errorf("--tensor-parallel-size {}: must be a power of two (1, 2, 4, 8)", size);
  if (slices < 0 || (slices > 0 && (!is_power_of_two(slices) || slices > kMaxTreeLeaves)))
    return Status::errorf("{} tensor-parallel slices: must be 0 or a power of two up to {}", slices,
                          kMaxTreeLeaves);
  if (slices > 0 && slices % size != 0)
    return Status::errorf(
        "--tensor-parallel-size {} does not divide the {} K slices of the row-parallel GEMMs "
        "(TP-invariant sizes: 1, 2, 4, 8)",
        size, slices);
  if (c.moe.num_experts > 0)
    return Status::error(StatusCode::invalid_argument,
                         "tensor parallelism does not shard mixture-of-experts models yet: "
                         "use --tensor-parallel-size 1");
  if (c.num_heads % size != 0)
    return Status::errorf("--tensor-parallel-size {} does not divide the {} attention heads", size,
                          c.num_heads);
  if (c.num_kv_heads % size != 0 && size % c.num_kv_heads != 0)
    return Status::errorf(
        "--tensor-parallel-size {} neither divides nor is a multiple of the {} kv heads", size,
        c.num_kv_heads);
  if (c.intermediate_size % size != 0)
    return Status::errorf("--tensor-parallel-size {} does not divide the intermediate size {}",
                          size, c.intermediate_size);
  const int64_t attn_k = int64_t(c.num_heads) * c.head_dim;
  if (slices > 0 && (attn_k % slices != 0 || c.intermediate_size % slices != 0))
    return Status::errorf(
        "the row-parallel GEMMs' K ({} for o_proj, {} for down_proj) must divide into {} slices",
        attn_k, c.intermediate_size, slices);
  if (c.vocab_size < size)
    return Status::errorf("--tensor-parallel-size {} exceeds the vocabulary ({})", size,
                          c.vocab_size);
  return Status();
}

namespace {

// Rows [r0, r1) of a matrix (or elements of a vector): a view of its bytes.
HostTensor row_range(const HostTensor& t, int64_t r0, int64_t r1) {
  if (t.empty()) return {};
  const int64_t cols = t.shape.size() == 2 ? t.shape[1] : 1;
  const size_t row_bytes =
      t.shape.size() == 2 ? dtype_row_bytes(t.dtype, cols) : dtype_size(t.dtype);
  HostTensor v;
  v.dtype = t.dtype;
  v.shape = t.shape;
  v.shape[0] = r1 - r0;
  v.bytes = HostBytes::view(nullptr, t.bytes.data() + size_t(r0) * row_bytes,
                            size_t(r1 - r0) * row_bytes);
  return v;
}

// The whole tensor as a view (norm weights, the embedding: every rank reads them).
HostTensor whole(const HostTensor& t) {
  if (t.empty()) return {};
  HostTensor v;
  v.dtype = t.dtype;
  v.shape = t.shape;
  v.bytes = HostBytes::view(nullptr, t.bytes.data(), t.bytes.size());
  return v;
}

std::vector<HostTensor> k_slices(const HostTensor& w, int64_t k0, int64_t k1, int count) {
  std::vector<HostTensor> out;
  const int64_t step = (k1 - k0) / count;
  for (int s = 0; s < count; ++s)
    out.push_back(column_slice(w, k0 + s * step, k0 + (s + 1) * step));
  return out;
}

}  // namespace

HostTensor column_slice(const HostTensor& w, int64_t k0, int64_t k1) {
  const int64_t n = w.shape[0], k = w.shape[1], width = k1 - k0;
  const DTypeBlock blk = dtype_block(w.dtype);
  const bool keep = !dtype_is_packed(w.dtype) || (k0 % blk.elems == 0 && k1 % blk.elems == 0);
  HostTensor out = HostTensor::zeros(keep ? w.dtype : DType::f32, {n, width});
  const size_t row_bytes = dtype_row_bytes(w.dtype, k);
  if (keep) {
    const size_t off = dtype_row_bytes(w.dtype, k0), bytes = dtype_row_bytes(w.dtype, width);
    for (int64_t r = 0; r < n; ++r)
      std::memcpy(out.bytes.data() + size_t(r) * bytes,
                  w.bytes.data() + size_t(r) * row_bytes + off, bytes);
    return out;
  }
  std::vector<float> row(size_t(k), 0.0f);
  for (int64_t r = 0; r < n; ++r) {
    kernels::cpu::decode_rows(w.dtype, w.bytes.data() + size_t(r) * row_bytes, 1, k, row.data());
    std::copy_n(row.data() + k0, width, out.f32() + r * width);
  }
  return out;
}

RankShard shard_for_rank(const ModelConfig& config, const ModelWeights& weights, TpShape shape) {
  const int R = shape.size, r = shape.rank;
  const int64_t d = config.head_dim;
  RankShard s;
  s.config = config;
  s.config.num_heads = config.num_heads / R;
  s.config.intermediate_size = config.intermediate_size / R;
  // kv heads: sharded when R divides them, else each replicated over R / Hkv ranks, the rank
  // taking the kv head of its query heads' group.
  const int kv_local = std::max(1, config.num_kv_heads / R);
  const int kv0 = config.num_kv_heads >= R
                      ? r * kv_local
                      : r * s.config.num_heads / (config.num_heads / config.num_kv_heads);
  s.config.num_kv_heads = kv_local;
  const int64_t q0 = int64_t(r) * s.config.num_heads * d, q1 = q0 + s.config.num_heads * d;
  const int64_t k0 = int64_t(kv0) * d, k1 = k0 + int64_t(kv_local) * d;
  const int64_t i0 = int64_t(r) * s.config.intermediate_size, i1 = i0 + s.config.intermediate_size;
  const int local_slices = shape.slices > 0 ? shape.slices / R : 1;

  ModelWeights& w = s.weights;
  w.embedding = whole(weights.embedding);
  w.final_norm = whole(weights.final_norm);
  s.vocab_begin = int64_t(config.vocab_size) * r / R;
  s.vocab_end = int64_t(config.vocab_size) * (r + 1) / R;
  w.lm_head = row_range(weights.output(), s.vocab_begin, s.vocab_end);
  for (const LayerWeights& full : weights.layers) {
    LayerWeights l;
    l.attn_norm = whole(full.attn_norm);
    l.wq = row_range(full.wq, q0, q1);
    l.wk = row_range(full.wk, k0, k1);
    l.wv = row_range(full.wv, k0, k1);
    l.bq = row_range(full.bq, q0, q1);
    l.bk = row_range(full.bk, k0, k1);
    l.bv = row_range(full.bv, k0, k1);
    l.q_norm = whole(full.q_norm);
    l.k_norm = whole(full.k_norm);
    l.ffn_norm = whole(full.ffn_norm);
    l.w_gate = row_range(full.w_gate, i0, i1);
    l.w_up = row_range(full.w_up, i0, i1);
    l.post_attn_norm = whole(full.post_attn_norm);
    l.post_ffn_norm = whole(full.post_ffn_norm);
    w.layers.push_back(std::move(l));
    s.o_slices.push_back(k_slices(full.wo, q0, q1, local_slices));
    s.down_slices.push_back(k_slices(full.w_down, i0, i1, local_slices));
  }
  return s;
}

}  // namespace invar::model
