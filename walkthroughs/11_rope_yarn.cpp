// Walkthrough 11: RoPE and YaRN for DeepSeek-V3/R1: θ, θ', the blend range, mscale, s_eff, and
// the rotation of small vectors in both pair layouts.
// Leaves out: the attention that uses them (10_mla).
//
// Every number printed is pinned by tests/test_rope.cpp against golden/rope/*.json, which
// golden/rope/compute_goldens.py derives from the closed forms of spec §4.5-4.6.
//
//   11_rope_yarn                    all steps
//   11_rope_yarn --step             pause for Enter between steps
//   11_rope_yarn --trace 'rope.theta*'  print only the frequency vectors
#include <fmt/format.h>

#include <cmath>
#include <numbers>
#include <string>

#include "reference/deepseek/config.hpp"
#include "reference/deepseek/rope.hpp"
#include "reference/trace/trace_outputs.hpp"
#include "walkthroughs/walkthrough.hpp"

using namespace dsr1;
using namespace dsr1::ref;

namespace {

void run_rope_yarn(walk::Walkthrough& w) {
  const int precision = w.options().precision;
  Tracer* tr = w.tr();
  const auto say = [&](const std::string& text) { w.say(text); };
  const Config c = preset("deepseek-v3");
  const RopeScaling& y = c.rope_scaling;
  const auto p = [&](double v) { return fmt::format("{:.{}f}", v, precision); };
  const auto e = [&](double v) { return fmt::format("{:.{}e}", v, precision); };

  const arma::vec theta = rope_theta(c);
  const arma::vec theta_prime = yarn_theta_prime(c);

  w.section("11", "RoPE, YaRN and the softmax scale of DeepSeek-V3/R1 (spec §4.5, §4.6)");
  {
    w.step("base frequencies θ_i = rope_theta^(-2i/d_rope)");
    say(fmt::format("d_rope = {}, rope_theta = {}: {} pairs. Pair 0 turns 1 radian per position,",
                    c.qk_rope_head_dim, c.rope_theta, theta.n_elem));
    say("pair 31 turns 10000^(-62/64) = 1.33e-4 radians: a wavelength of 47,000 positions.");
    TRACE(tr, "rope.theta", theta);
  }

  {
    w.step("YaRN: which pairs keep θ_i and which are divided by the factor");
    const YarnRange r = yarn_range(c);
    const double D = static_cast<double>(c.qk_rope_head_dim);
    const double L0 = static_cast<double>(y.original_max_position_embeddings);
    const auto corr_dim = [&](double beta) {
      return D * std::log(L0 / (2 * std::numbers::pi * beta)) / (2 * std::log(c.rope_theta));
    };
    say(fmt::format("factor = {}, original context L0 = {}, beta_fast = {}, beta_slow = {}.",
                    y.factor, y.original_max_position_embeddings, y.beta_fast, y.beta_slow));
    say("corr_dim(r) = D ln(L0 / (2π r)) / (2 ln base): the pair that turns r times over L0.");
    say(fmt::format("corr_dim({}) = {}  ->  low  = floor = {}", y.beta_fast,
                    p(corr_dim(y.beta_fast)), r.low));
    say(fmt::format("corr_dim({})  = {}  ->  high = ceil  = {}", y.beta_slow,
                    p(corr_dim(y.beta_slow)), r.high));
    say("keep_i = 1 - clamp((i - low)/(high - low), 0, 1);  θ'_i = θ_i/factor (1 - keep_i) + θ_i "
        "keep_i");
    say("");
    say("  i   θ_i              keep_i     θ'_i             wavelength 2π/θ'_i (positions)");
    for (arma::uword i : {0u, 10u, 11u, 12u, 16u, 22u, 23u, 31u}) {
      const double keep = 1.0 - std::clamp((i - r.low) / (r.high - r.low), 0.0, 1.0);
      say(fmt::format("  {:<3} {:<16} {:<10} {:<16} {:.1f}", i, e(theta(i)), p(keep),
                      e(theta_prime(i)), 2 * std::numbers::pi / theta_prime(i)));
    }
    say("Pairs 0-10 turn many times within 4096 positions and are left alone; pairs 23-31 turn");
    say("less than once and are slowed 40x so that 160K positions look like 4K did in training.");
    say("The reference always applies θ' for these configs, whatever the length (pitfall P3).");
    TRACE(tr, "rope.theta_prime", theta_prime);
    w.picture([&] {
      return html::rope_frequency_plot(
          "DeepSeek-V3/R1: rotation frequency per pair, θ_i (original) and θ'_i (YaRN)", theta,
          theta_prime, true, r, y.factor, precision);
    });
  }

  {
    w.step("mscale and the softmax scale s_eff");
    const double m_v3 = yarn_mscale(y.factor, y.mscale_all_dim);
    const double m_v2 = yarn_mscale(40.0, 0.707);
    say("mscale(f, m) = 0.1 m ln f + 1 (f > 1);  s_eff = (d_nope + d_rope)^(-1/2) mscale(f, "
        "mscale_all_dim)^2");
    say(fmt::format("V3/R1 (mscale_all_dim = 1):     mscale = {}, mscale^2 = {}, s_eff = {}",
                    p(m_v3), p(m_v3 * m_v3), p(softmax_scale(c))));
    say(fmt::format("V2, V2-Lite (mscale_all_dim = 0.707): mscale = {}, mscale^2 = {}, s_eff = {}",
                    p(m_v2), p(m_v2 * m_v2), p(softmax_scale(preset("deepseek-v2-lite")))));
    say(fmt::format("plain 1/sqrt(192) = {}", p(1.0 / std::sqrt(192.0))));
    Faults no_mscale, not_squared;
    no_mscale.no_mscale = true;
    not_squared.mscale_not_squared = true;
    say(fmt::format("Pitfall P2: forgetting mscale gives {}, applying it once gives {}: both make",
                    p(softmax_scale(c, no_mscale)), p(softmax_scale(c, not_squared))));
    say("attention flatter than trained, an error that grows with distance (position 0 hides it).");
    say(fmt::format(
        "cos/sin factor mscale(f, mscale)/mscale(f, mscale_all_dim) = {}: exactly 1 for",
        p(rope_cos_sin_scale(c))));
    say("every official config, so cos and sin are not scaled.");
    TRACE_SCALAR(tr, "rope.s_eff", softmax_scale(c));
  }

  {
    w.step("rotating small vectors");
    Config small = c;
    small.qk_rope_head_dim = 4;
    small.rope_scaling.type = "none";
    const arma::vec th4 = rope_theta(small);  // (1, 0.01)
    const arma::vec x = {1, 2, 3, 4};
    say("d_rope = 4, base 10000, no YaRN: θ = (1, 0.01). x = (1, 2, 3, 4) at position 1.");
    say("Interleaved (official weights): pairs (x0, x1) and (x2, x3), i.e. 1+2i turned by 1 rad,");
    say("3+4i turned by 0.01 rad.");
    const arma::mat y_inter = rope(x, th4, 1, RopeLayout::Interleaved);
    TRACE(tr, "rope.small.x", x);
    TRACE(tr, "rope.small.interleaved", y_inter);
    say(fmt::format("|x| = {}, |RoPE(x)| = {}: a rotation keeps the norm.", p(arma::norm(x)),
                    p(arma::norm(y_inter))));
    say("Half-split (rotate_half) pairs x0 with x2 and x1 with x3. On the raw vector it rotates "
        "the");
    say("wrong pairs (pitfall P1); on the de-interleaved vector (x0, x2, x1, x3) it gives the");
    say("interleaved result, de-interleaved:");
    const arma::mat y_half_raw = rope(x, th4, 1, RopeLayout::HalfSplit);
    const arma::mat y_half = rope(deinterleave(x, 4), th4, 1, RopeLayout::HalfSplit);
    TRACE(tr, "rope.small.half_split_of_raw", y_half_raw);
    TRACE(tr, "rope.small.half_split_of_deinterleaved", y_half);
    TRACE(tr, "rope.small.deinterleaved_interleaved", deinterleave(y_inter, 4));

    say("");
    say("V3 at position 5000 (past L0 = 4096): each pair of a unit vector (1, 0, 1, 0, ...) "
        "becomes");
    say("(cos 5000 θ'_i, sin 5000 θ'_i). Slow pairs have barely turned: pair 31 by 5000 * 3.33e-6 "
        "rad.");
    arma::vec unit(static_cast<arma::uword>(c.qk_rope_head_dim), arma::fill::zeros);
    for (arma::uword i = 0; i < unit.n_elem; i += 2) unit(i) = 1.0;
    const arma::mat y5000 = rope(unit, theta_prime, 5000, RopeLayout::Interleaved);
    for (arma::uword i : {0u, 10u, 16u, 23u, 31u})
      say(fmt::format("  pair {:<2}: angle {:<14} -> ({}, {})", i, p(5000 * theta_prime(i)),
                      p(y5000(2 * i, 0)), p(y5000(2 * i + 1, 0))));
  }
}

}  // namespace

#ifndef DSR1_WALKTHROUGH_NO_MAIN
int main(int argc, char** argv) {
  return walk::run(argc, argv, "11_rope_yarn",
                   "Walkthrough 11: RoPE, YaRN frequencies, mscale and the softmax scale of V3/R1",
                   {run_rope_yarn});
}
#endif
