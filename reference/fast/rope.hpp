// RoPE (interleaved pairs, with YaRN's θ') in float32 for the fast path; mirrors reference/deepseek/rope.hpp.
// Leaves out: the half-split layout (the fast path runs the official interleaved convention only).
//
// The angle pos * θ'_i and its cos and sin are computed in double (as the reference does) and
// rounded to float32 once per (position, pair); only the rotation itself runs in float32.
#pragma once

#include <cstdint>
#include <vector>

#include "reference/deepseek/config.hpp"

namespace dsr1::fast {

// cos and sin of pos * θ'_i for positions pos0 .. pos0+T-1, both [d_rope/2, T] column-major,
// already multiplied by rope_cos_sin_scale (1 for every official model).
struct RopeTable {
  std::int64_t half = 0, T = 0;
  std::vector<float> cos, sin;
};
RopeTable rope_table(const Config& c, std::int64_t pos0, std::int64_t T);

// Rotates in place every d_rope-block of the m blocks of token t's column:
//   y[2i] = x[2i] cos - x[2i+1] sin,  y[2i+1] = x[2i] sin + x[2i+1] cos      spec §4.6
// x: column t starts at x + t * ldx and holds m * d_rope floats.
void rope(float* x, std::int64_t ldx, std::int64_t m, const RopeTable& table, std::int64_t T);

}  // namespace dsr1::fast
