// RoPE in float32 (see rope.hpp).
#include "reference/fast/rope.hpp"

#include <cmath>

#include "reference/deepseek/rope.hpp"

namespace dsr1::fast {

RopeTable rope_table(const Config& c, std::int64_t pos0, std::int64_t T) {
  const arma::vec theta_prime = ref::yarn_theta_prime(c);  // [d_rope/2]
  const double scale = ref::rope_cos_sin_scale(c);
  RopeTable tab;
  tab.half = static_cast<std::int64_t>(theta_prime.n_elem);
  tab.T = T;
  tab.cos.resize(static_cast<std::size_t>(tab.half * T));
  tab.sin.resize(static_cast<std::size_t>(tab.half * T));
  for (std::int64_t t = 0; t < T; ++t) {
    const double pos = static_cast<double>(pos0 + t);
    for (std::int64_t i = 0; i < tab.half; ++i) {
      const double angle = pos * theta_prime(static_cast<arma::uword>(i));
      tab.cos[t * tab.half + i] = static_cast<float>(std::cos(angle) * scale);
      tab.sin[t * tab.half + i] = static_cast<float>(std::sin(angle) * scale);
    }
  }
  return tab;
}

void rope(float* x, std::int64_t ldx, std::int64_t m, const RopeTable& table, std::int64_t T) {
  const std::int64_t half = table.half;
  for (std::int64_t t = 0; t < T; ++t) {
    const float* cs = table.cos.data() + t * half;
    const float* sn = table.sin.data() + t * half;
    for (std::int64_t b = 0; b < m; ++b) {
      float* xb = x + t * ldx + b * 2 * half;
      for (std::int64_t i = 0; i < half; ++i) {
        const float x0 = xb[2 * i], x1 = xb[2 * i + 1];
        xb[2 * i] = x0 * cs[i] - x1 * sn[i];
        xb[2 * i + 1] = x0 * sn[i] + x1 * cs[i];
      }
    }
  }
}

}  // namespace dsr1::fast
