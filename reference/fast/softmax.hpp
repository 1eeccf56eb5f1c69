// float32 exp, sigmoid and silu for the fast path, written so that GCC vectorises loops over them.
// Leaves out: the double-precision definitions (reference/deepseek/softmax.hpp), which these must match.
//
// exp(x) = 2^n * exp(r) with n = round(x / ln 2) and r = x - n ln 2 (|r| <= ln2/2), exp(r) by a
// degree-6 polynomial (the Cephes expf coefficients); the result is within 2 float32 ulps of
// std::exp over [-87, 88]. Inputs are clamped to that range, so exp_f32(-inf) is a tiny positive
// number, not 0: callers that need an exact 0 for masked scores select it themselves.
// Branch-free and without library calls, so a loop over an array becomes SIMD code.
#pragma once

#include <cstdint>
#include <cstring>

namespace dsr1::fast {

inline float exp_f32(float x) {
  x = x < 88.0f ? x : 88.0f;
  x = x > -87.0f ? x : -87.0f;
  // n = round(x / ln 2): adding and removing 1.5 * 2^23 rounds to an integer (ties to even).
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693359375f;                                // ln 2 split in two parts,
  r = r - n * -2.12194440e-4f;                                   // so r is exact to ~1 ulp
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e_r = p * r * r + r + 1.0f;
  const std::int32_t bits = (static_cast<std::int32_t>(n) + 127) << 23;  // 2^n, n in [-126, 127]
  float two_n;
  std::memcpy(&two_n, &bits, sizeof two_n);
  return e_r * two_n;
}

// sigmoid(z) = 1 / (1 + exp(-z));  silu(z) = z * sigmoid(z)                        spec §6
inline float sigmoid_f32(float z) { return 1.0f / (1.0f + exp_f32(-z)); }
inline float silu_f32(float z) { return z / (1.0f + exp_f32(-z)); }

}  // namespace dsr1::fast
