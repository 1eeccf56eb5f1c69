// Tolerances used by the tests, each with the reason for its size.
// An element passes iff |got - want| <= abs + rel * |want|.
#pragma once

namespace dsr1::test {

struct Tol {
  double abs, rel;
};

// float64 reference against a closed form or hand arithmetic: a few ulps of accumulated
// rounding on O(1) values.
inline constexpr Tol exact_vs_ref{1e-15, 1e-12};
// The same math in another association order (absorbed vs naive MLA, cached vs full forward).
inline constexpr Tol same_math_reordered{1e-14, 1e-12};
// A float32 computation against the float64 reference on O(1) activations: float32 has a
// unit roundoff of 6e-8, and sums of a few thousand terms lose up to ~2 orders of that.
inline constexpr Tol f32_vs_ref{1e-6, 1e-5};

}  // namespace dsr1::test
