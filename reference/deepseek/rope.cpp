// RoPE, YaRN frequencies and the softmax scale (see rope.hpp for the formulas).
#include "reference/deepseek/rope.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>

namespace dsr1::ref {

namespace {

// d_rope must be a positive even number: RoPE rotates pairs.
std::int64_t checked_d_rope(const Config& c, const char* who) {
  const std::int64_t d_rope = c.qk_rope_head_dim;
  if (d_rope <= 0 || d_rope % 2 != 0)
    throw std::invalid_argument(fmt::format(
        "{}: config '{}' has qk_rope_head_dim = {}, expected a positive even number", who,
        c.name, d_rope));
  return d_rope;
}

bool is_yarn(const Config& c) { return c.rope_scaling.type == "yarn"; }

}  // namespace

const char* rope_layout_name(RopeLayout layout) {
  return layout == RopeLayout::Interleaved ? "interleaved" : "half-split";
}

arma::vec rope_theta(const Config& c) {
  const std::int64_t d_rope = checked_d_rope(c, "rope_theta");
  if (!(c.rope_theta > 1.0))
    throw std::invalid_argument(fmt::format(
        "rope_theta: config '{}' has rope_theta = {}, expected a base > 1", c.name, c.rope_theta));
  arma::vec theta(static_cast<arma::uword>(d_rope / 2));
  for (arma::uword i = 0; i < theta.n_elem; ++i)
    // θ_i = base^(-2i/D): pair 0 turns by one radian per position, the last pair slowest.
    theta(i) = std::pow(c.rope_theta, -2.0 * static_cast<double>(i) / static_cast<double>(d_rope));
  return theta;
}

YarnRange yarn_range(const Config& c) {
  const std::int64_t d_rope = checked_d_rope(c, "yarn_range");
  const RopeScaling& y = c.rope_scaling;
  if (y.original_max_position_embeddings <= 0 || !(y.beta_fast > 0) || !(y.beta_slow > 0))
    throw std::invalid_argument(fmt::format(
        "yarn_range: config '{}' has rope_scaling.original_max_position_embeddings = {}, "
        "beta_fast = {}, beta_slow = {}; expected all > 0",
        c.name, y.original_max_position_embeddings, y.beta_fast, y.beta_slow));
  const double D = static_cast<double>(d_rope);
  const double L0 = static_cast<double>(y.original_max_position_embeddings);
  // corr_dim(r): the pair index whose wavelength 2π/θ_i fits r times into the original
  // context L0. Pairs that turn faster than beta_fast times keep θ_i (extrapolate); pairs that
  // turn fewer than beta_slow times are interpolated (θ_i / factor).
  auto corr_dim = [&](double r) {
    return D * std::log(L0 / (2.0 * std::numbers::pi * r)) / (2.0 * std::log(c.rope_theta));
  };
  YarnRange range;
  range.low = std::max(std::floor(corr_dim(y.beta_fast)), 0.0);
  range.high = std::min(std::ceil(corr_dim(y.beta_slow)), D - 1.0);
  if (range.low == range.high) range.high += 0.001;  // avoid a zero-width ramp (model.py, HF)
  return range;
}

arma::vec yarn_theta_prime(const Config& c) {
  const arma::vec theta = rope_theta(c);
  if (!is_yarn(c)) return theta;
  const double factor = c.rope_scaling.factor;
  if (!(factor > 0))
    throw std::invalid_argument(fmt::format(
        "yarn_theta_prime: config '{}' has rope_scaling.factor = {}, expected > 0", c.name,
        factor));
  const YarnRange range = yarn_range(c);
  arma::vec theta_prime(theta.n_elem);
  for (arma::uword i = 0; i < theta.n_elem; ++i) {
    // keep_i: 1 for fast pairs (i <= low), 0 for slow pairs (i >= high), linear in between.
    const double ramp =
        std::clamp((static_cast<double>(i) - range.low) / (range.high - range.low), 0.0, 1.0);
    const double keep = 1.0 - ramp;
    theta_prime(i) = (theta(i) / factor) * (1.0 - keep) + theta(i) * keep;
  }
  return theta_prime;
}

double yarn_mscale(double factor, double m) {
  if (factor <= 1.0) return 1.0;
  return 0.1 * m * std::log(factor) + 1.0;
}

double softmax_scale(const Config& c, const Faults& f) {
  const std::int64_t d_qk = c.qk_nope_head_dim + c.qk_rope_head_dim;
  if (d_qk <= 0)
    throw std::invalid_argument(fmt::format(
        "softmax_scale: config '{}' has qk_nope_head_dim + qk_rope_head_dim = {}, expected > 0",
        c.name, d_qk));
  // The paper's scale: one over the square root of the query/key width d_nope + d_rope.
  const double base = 1.0 / std::sqrt(static_cast<double>(d_qk));
  if (!is_yarn(c)) return base;
  // YaRN's attention temperature sqrt(1/t) = 0.1 ln(s) + 1 enters once through q and once
  // through k in the YaRN paper; DeepSeek folds both into the softmax scale, hence the square.
  const double m = yarn_mscale(c.rope_scaling.factor, c.rope_scaling.mscale_all_dim);
  if (f.no_mscale) return base;                 // conformance fault P2: correction forgotten
  if (f.mscale_not_squared) return base * m;    // conformance fault P2: applied once
  return base * m * m;
}

double rope_cos_sin_scale(const Config& c) {
  if (!is_yarn(c)) return 1.0;
  const double f = c.rope_scaling.factor;
  return yarn_mscale(f, c.rope_scaling.mscale) / yarn_mscale(f, c.rope_scaling.mscale_all_dim);
}

arma::mat rope(const arma::mat& x, const arma::vec& theta_prime, std::int64_t pos0,
               RopeLayout layout, double cos_sin_scale) {
  const arma::uword half = theta_prime.n_elem;  // d_rope / 2
  const arma::uword d_rope = 2 * half;
  if (half == 0 || x.n_rows % d_rope != 0)
    throw std::invalid_argument(fmt::format(
        "rope: x is [{} x {}], expected [m*d_rope x T] with d_rope = 2 * theta_prime.n_elem = {}",
        x.n_rows, x.n_cols, d_rope));
  if (pos0 < 0)
    throw std::invalid_argument(fmt::format("rope: pos0 = {}, expected >= 0", pos0));
  const arma::uword m = x.n_rows / d_rope;
  arma::mat y(x.n_rows, x.n_cols);
  for (arma::uword t = 0; t < x.n_cols; ++t) {
    const double pos = static_cast<double>(pos0) + static_cast<double>(t);  // absolute position
    for (arma::uword i = 0; i < half; ++i) {
      const double angle = pos * theta_prime(i);
      const double cos_a = std::cos(angle) * cos_sin_scale;
      const double sin_a = std::sin(angle) * cos_sin_scale;
      for (arma::uword b = 0; b < m; ++b) {
        // The two channels of pair i in block b.
        const arma::uword a0 = b * d_rope + (layout == RopeLayout::Interleaved ? 2 * i : i);
        const arma::uword a1 = b * d_rope + (layout == RopeLayout::Interleaved ? 2 * i + 1 : i + half);
        y(a0, t) = x(a0, t) * cos_a - x(a1, t) * sin_a;
        y(a1, t) = x(a0, t) * sin_a + x(a1, t) * cos_a;
      }
    }
  }
  return y;
}

arma::mat deinterleave(const arma::mat& x, std::int64_t d_rope) {
  if (d_rope <= 0 || d_rope % 2 != 0 || x.n_rows % static_cast<arma::uword>(d_rope) != 0)
    throw std::invalid_argument(fmt::format(
        "deinterleave: x is [{} x {}], expected [m*d_rope x T] with an even d_rope = {}",
        x.n_rows, x.n_cols, d_rope));
  const arma::uword D = static_cast<arma::uword>(d_rope), half = D / 2;
  arma::mat y(x.n_rows, x.n_cols);
  for (arma::uword t = 0; t < x.n_cols; ++t)
    for (arma::uword b = 0; b < x.n_rows / D; ++b)
      for (arma::uword i = 0; i < half; ++i) {
        y(b * D + i, t) = x(b * D + 2 * i, t);             // even channels first
        y(b * D + half + i, t) = x(b * D + 2 * i + 1, t);  // then the odd ones
      }
  return y;
}

}  // namespace dsr1::ref
