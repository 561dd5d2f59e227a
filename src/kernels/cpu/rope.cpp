// rope: rotates the first rot_dim dims of every head of x by angle = position * inv_freq[i].
//
// Pair i (i < rot_dim / 2) is (2i, 2i + 1) in the interleaved style and (i, i + rot_dim / 2) in
// the half ("neox") style; dims past rot_dim pass through. cos and sin are computed per token in
// double from the f32 angle (as Hugging Face forms it) and rounded, then scaled by
// attention_factor. Element-wise per (token, head, pair); no reduction.
//   T = tokens, H = heads, D = head dim
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/ops.h"

namespace invar::kernels::cpu {

static void rotate_head(float* __restrict h, const float* __restrict cs, const float* __restrict sn,
                        int half, RopeStyle style) {
  if (style == RopeStyle::half) {
    float* __restrict a = h;
    float* __restrict b = h + half;
    for (int i = 0; i < half; ++i) {
      const float x0 = a[i], x1 = b[i];
      a[i] = x0 * cs[i] - x1 * sn[i];
      b[i] = x1 * cs[i] + x0 * sn[i];
    }
  } else {
    for (int i = 0; i < half; ++i) {
      const float x0 = h[2 * i], x1 = h[2 * i + 1];
      h[2 * i] = x0 * cs[i] - x1 * sn[i];
      h[2 * i + 1] = x1 * cs[i] + x0 * sn[i];
    }
  }
}

void rope(float* x, const int32_t* positions, int64_t tokens, int heads, int head_dim,
          const RopeParams& params, ThreadPool& pool) {
  const int half = params.rot_dim / 2;
  if (tokens <= 0 || half <= 0) return;
  const int64_t per_token = int64_t(heads) * head_dim;
  pool.parallel_for(tokens, std::max<int64_t>(1, 8192 / std::max<int64_t>(1, per_token)),
                    [&](int64_t b, int64_t e) {
                      std::vector<float> cs(static_cast<size_t>(half)),
                          sn(static_cast<size_t>(half));
                      for (int64_t t = b; t < e; ++t) {
                        const float pos = float(positions[t]);
                        for (int i = 0; i < half; ++i) {
                          const double angle = double(pos * params.inv_freq[i]);
                          cs[size_t(i)] = float(std::cos(angle)) * params.attention_factor;
                          sn[size_t(i)] = float(std::sin(angle)) * params.attention_factor;
                        }
                        for (int hd = 0; hd < heads; ++hd) {
                          rotate_head(x + t * per_token + int64_t(hd) * head_dim, cs.data(),
                                      sn.data(), half, params.style);
                        }
                      }
                    });
}

}  // namespace invar::kernels::cpu
