// The router (reference/deepseek/router.hpp): hand-computed cases for greedy, group_limited_greedy and
// noaux_tc, ties, the -inf mask, the weights' normalisation and scaling, and every router fault.
//
// Most cases use W_g = identity (d = N_r), so the logits ell are exactly the token x and the
// scores can be written down by hand: a sigmoid logit ell = ln(p / (1 - p)) gives s = p, and a
// softmax logit ell_i = ln(q_i) with sum q_i = 1 gives s = q (both up to ~1e-16 rounding).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "reference/io/golden_json.hpp"
#include "reference/deepseek/router.hpp"
#include "tests/support/check.hpp"

using dsr1::Config;
using dsr1::Faults;
using dsr1::MoeWeights;
using dsr1::ref::route;
using dsr1::ref::Routing;
using dsr1::test::check_close;
using dsr1::test::exact_vs_ref;

namespace {

// V3 rules (sigmoid, noaux_tc, renormalise, x2.5) at a small size.
Config v3_config(std::int64_t N_r, std::int64_t n_group, std::int64_t topk_group, std::int64_t K) {
  Config c;
  c.name = "router-test-v3";
  c.hidden_size = N_r;
  c.n_routed_experts = N_r;
  c.num_experts_per_tok = K;
  c.n_group = n_group;
  c.topk_group = topk_group;
  c.scoring_func = "sigmoid";
  c.topk_method = "noaux_tc";
  c.norm_topk_prob = true;
  c.routed_scaling_factor = 2.5;
  return c;
}

// V2 rules (softmax, group_limited_greedy, no renormalisation, x16).
Config v2_config(std::int64_t N_r, std::int64_t n_group, std::int64_t topk_group, std::int64_t K) {
  Config c = v3_config(N_r, n_group, topk_group, K);
  c.name = "router-test-v2";
  c.scoring_func = "softmax";
  c.topk_method = "group_limited_greedy";
  c.norm_topk_prob = false;
  c.routed_scaling_factor = 16.0;
  return c;
}

// V2-Lite rules (softmax, greedy, no groups, x1).
Config v2_lite_config(std::int64_t N_r, std::int64_t K) {
  Config c = v2_config(N_r, 1, 1, K);
  c.name = "router-test-v2-lite";
  c.topk_method = "greedy";
  c.routed_scaling_factor = 1.0;
  return c;
}

// Router with W_g = I, so ell = x.
MoeWeights identity_router(arma::uword N_r, const arma::vec& b = {}) {
  MoeWeights W;
  W.W_g = arma::eye(N_r, N_r);
  W.b = b;
  return W;
}

// One token whose sigmoid scores are p: ell_i = ln(p_i / (1 - p_i)).
arma::mat sigmoid_logits(const std::vector<double>& p) {
  arma::mat x(p.size(), 1);
  for (size_t i = 0; i < p.size(); ++i) x(i, 0) = std::log(p[i] / (1.0 - p[i]));
  return x;
}

// One token whose softmax scores are q (sum q = 1): ell_i = ln(q_i).
arma::mat softmax_logits(const std::vector<double>& q) {
  arma::mat x(q.size(), 1);
  for (size_t i = 0; i < q.size(); ++i) x(i, 0) = std::log(q[i]);
  return x;
}

std::vector<arma::uword> experts_of(const Routing& r, arma::uword t) {
  std::vector<arma::uword> v;
  for (arma::uword k = 0; k < r.experts.n_rows; ++k) v.push_back(r.experts(k, t));
  return v;
}

using Idx = std::vector<arma::uword>;

// One token as a [n, 1] matrix.
arma::mat column(std::initializer_list<double> v) { return arma::mat(arma::vec(v)); }

// The V3 example used by several cases: 8 experts in 4 groups of 2, keep 2 groups, K = 2.
//   p       = 0.7   0.6   0.5   0.4   0.3   0.2   0.6   0.5
//   b       = 0.0  -0.7  -0.55 -0.5  -0.5  -0.5  -0.8  -1.1
//   s_tilde = 0.7  -0.1  -0.05 -0.1  -0.2  -0.3  -0.2  -0.6
// top-2 group sums: G0 = 0.7 - 0.1 = 0.6, G1 = -0.05 - 0.1 = -0.15, G2 = -0.5, G3 = -0.8
// kept groups {0, 1}; eligible s_tilde: e0 0.7, e1 -0.1, e2 -0.05, e3 -0.1 -> experts 0, 2
// weights from the unbiased p: 2.5 * 0.7 / 1.2 and 2.5 * 0.5 / 1.2.
const std::vector<double> kP = {0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.6, 0.5};
const arma::vec kB = {0.0, -0.7, -0.55, -0.5, -0.5, -0.5, -0.8, -1.1};

}  // namespace

TEST_CASE("top_k_indices: largest first, exact ties to the lower index, -inf last") {
  using dsr1::ref::top_k_indices;
  const double inf = std::numeric_limits<double>::infinity();
  CHECK(top_k_indices(arma::vec{0.1, 0.9, 0.5, 0.7}, 3) == Idx{1, 3, 2});
  CHECK(top_k_indices(arma::vec{0.5, 0.9, 0.5, 0.9}, 4) == Idx{1, 3, 0, 2});
  CHECK(top_k_indices(arma::vec{-inf, -0.3, -inf, -0.2}, 3) == Idx{3, 1, 0});
  CHECK(top_k_indices(arma::vec{1.0, 1.0 + 1e-12, 1.0}, 1) == Idx{1});
  CHECK_THROWS_AS(top_k_indices(arma::vec{1.0, 2.0}, 3), std::invalid_argument);
  CHECK_THROWS_AS(top_k_indices(arma::vec{1.0, std::nan("")}, 1), std::invalid_argument);
}

TEST_CASE("V3 noaux_tc with a negative bias: hand-computed groups, experts and weights") {
  const Config c = v3_config(8, 4, 2, 2);
  dsr1::RecordingTracer tr;
  const Routing r = route(sigmoid_logits(kP), identity_router(8, kB), c, Faults{}, &tr);

  check_close(tr.get_mat("moe.s"), arma::mat(arma::vec(kP)), exact_vs_ref, "moe.s");
  const arma::vec s_tilde = {0.7, -0.1, -0.05, -0.1, -0.2, -0.3, -0.2, -0.6};
  check_close(tr.get_mat("moe.s_tilde"), arma::mat(s_tilde), exact_vs_ref, "moe.s_tilde");
  check_close(tr.get_mat("moe.group_scores"), arma::mat(arma::vec{0.6, -0.15, -0.5, -0.8}), exact_vs_ref,
              "moe.group_scores");
  check_close(tr.get_mat("moe.group_mask"), arma::mat(arma::vec{1, 1, 0, 0}), exact_vs_ref, "moe.group_mask");
  CHECK(experts_of(r, 0) == Idx{0, 2});
  check_close(r.g, arma::mat(arma::vec{2.5 * 0.7 / 1.2, 2.5 * 0.5 / 1.2}), exact_vs_ref, "moe.g");
}

TEST_CASE("V3: masking dropped groups with 0 instead of -inf picks a masked expert (P6)") {
  // Same token as above. With 0 as the mask, the dropped experts 4..7 score 0, which beats the
  // eligible e2 at -0.05; among the tied zeros the lowest index, expert 4, wins.
  // Its weight: 2.5 * 0.3 / (0.7 + 0.3) = 0.75, and expert 0 gets 2.5 * 0.7 / 1.0 = 1.75.
  const Config c = v3_config(8, 4, 2, 2);
  Faults f;
  f.group_mask_zero = true;
  const Routing r = route(sigmoid_logits(kP), identity_router(8, kB), c, f, nullptr);
  CHECK(experts_of(r, 0) == Idx{0, 4});
  check_close(r.g, arma::mat(arma::vec{1.75, 0.75}), exact_vs_ref, "moe.g (fault)");
}

TEST_CASE("V3: the bias chooses experts but the weights use the unbiased scores (P4)") {
  const Config c = v3_config(8, 4, 2, 2);
  // Correct: weights from p (0.7 and 0.5). Fault: from s_tilde (0.7 and -0.05), sum 0.65.
  Faults f;
  f.bias_in_weights = true;
  const Routing good = route(sigmoid_logits(kP), identity_router(8, kB), c, Faults{}, nullptr);
  const Routing bad = route(sigmoid_logits(kP), identity_router(8, kB), c, f, nullptr);
  CHECK(experts_of(bad, 0) == experts_of(good, 0));
  check_close(bad.g, arma::mat(arma::vec{2.5 * 0.7 / 0.65, 2.5 * -0.05 / 0.65}), exact_vs_ref,
              "moe.g (fault)");
  // A zero bias makes the fault invisible: s_tilde = s.
  const Routing zero_b = route(sigmoid_logits(kP), identity_router(8, arma::zeros(8)), c, f, nullptr);
  const Routing zero_b_good = route(sigmoid_logits(kP), identity_router(8, arma::zeros(8)), c, Faults{}, nullptr);
  check_close(zero_b.g, zero_b_good.g, exact_vs_ref, "moe.g (b = 0)");
}

TEST_CASE("group score: V3's top-2 sum and V2's max keep different groups (P5)") {
  // 8 experts, 4 groups of 2, keep 1 group, K = 2, b = 0.
  //   p = 0.95 0.1 | 0.8 0.7 | 0.3 0.2 | 0.4 0.1
  //   max:       0.95, 0.8, 0.3, 0.4  -> group 0 -> experts 0, 1
  //   top-2 sum: 1.05, 1.5, 0.5, 0.5  -> group 1 -> experts 2, 3
  const std::vector<double> p = {0.95, 0.1, 0.8, 0.7, 0.3, 0.2, 0.4, 0.1};
  const Config c = v3_config(8, 4, 1, 2);
  dsr1::RecordingTracer tr;
  const Routing r = route(sigmoid_logits(p), identity_router(8, arma::zeros(8)), c, Faults{}, &tr);
  check_close(tr.get_mat("moe.group_scores"), arma::mat(arma::vec{1.05, 1.5, 0.5, 0.5}), exact_vs_ref,
              "moe.group_scores");
  CHECK(experts_of(r, 0) == Idx{2, 3});
  check_close(r.g, arma::mat(arma::vec{2.5 * 0.8 / 1.5, 2.5 * 0.7 / 1.5}), exact_vs_ref, "moe.g");

  Faults f;
  f.group_score_max = true;
  const Routing bad = route(sigmoid_logits(p), identity_router(8, arma::zeros(8)), c, f, nullptr);
  CHECK(experts_of(bad, 0) == Idx{0, 1});
  check_close(bad.g, arma::mat(arma::vec{2.5 * 0.95 / 1.05, 2.5 * 0.1 / 1.05}), exact_vs_ref, "moe.g (fault)");

  // V2 with the same shape of scores (softmax q = 0.30 0.02 | 0.25 0.20 | 0.08 0.05 | 0.06 0.04):
  // max keeps group 0 (0.30) over group 1 (0.25) although group 1's sum is larger (0.45 > 0.32).
  const std::vector<double> q = {0.30, 0.02, 0.25, 0.20, 0.08, 0.05, 0.06, 0.04};
  dsr1::RecordingTracer tr2;
  const Routing v2 = route(softmax_logits(q), identity_router(8), v2_config(8, 4, 1, 2), Faults{}, &tr2);
  check_close(tr2.get_mat("moe.group_scores"), arma::mat(arma::vec{0.30, 0.25, 0.08, 0.06}), exact_vs_ref,
              "moe.group_scores (V2)");
  CHECK(experts_of(v2, 0) == Idx{0, 1});
}

TEST_CASE("V2: weights are the softmax probabilities times 16, not renormalised (P8)") {
  // Same q as above: experts 0 and 1, g = 16 * 0.30 = 4.8 and 16 * 0.02 = 0.32 (sum 5.12, not 16).
  const std::vector<double> q = {0.30, 0.02, 0.25, 0.20, 0.08, 0.05, 0.06, 0.04};
  const Config c = v2_config(8, 4, 1, 2);
  const Routing r = route(softmax_logits(q), identity_router(8), c, Faults{}, nullptr);
  check_close(r.g, arma::mat(arma::vec{4.8, 0.32}), exact_vs_ref, "moe.g");

  // Fault: renormalised first: 16 * 0.30 / 0.32 = 15 and 16 * 0.02 / 0.32 = 1.
  Faults f;
  f.renormalize_softmax = true;
  const Routing bad = route(softmax_logits(q), identity_router(8), c, f, nullptr);
  check_close(bad.g, arma::mat(arma::vec{15.0, 1.0}), exact_vs_ref, "moe.g (fault)");
}

TEST_CASE("routed_scaling_factor is applied exactly once (P17)") {
  // V3 weights sum to 2.5; applied twice they sum to 6.25. V2: 4.8 becomes 76.8.
  Faults f;
  f.double_routed_scaling = true;
  const Routing v3 = route(sigmoid_logits(kP), identity_router(8, kB), v3_config(8, 4, 2, 2), f, nullptr);
  check_close(v3.g, arma::mat(arma::vec{6.25 * 0.7 / 1.2, 6.25 * 0.5 / 1.2}), exact_vs_ref, "moe.g (fault)");
  const std::vector<double> q = {0.30, 0.02, 0.25, 0.20, 0.08, 0.05, 0.06, 0.04};
  const Routing v2 = route(softmax_logits(q), identity_router(8), v2_config(8, 4, 1, 2), f, nullptr);
  check_close(v2.g, arma::mat(arma::vec{256 * 0.30, 256 * 0.02}), exact_vs_ref, "moe.g (V2 fault)");
}

TEST_CASE("near-ties 1e-12 apart are resolved by value, exact ties go to the lower index") {
  // V2-Lite greedy, 4 experts, K = 2. softmax is monotone, so the order of ell is the order of s.
  const Config c = v2_lite_config(4, 2);
  const MoeWeights W = identity_router(4);
  arma::mat near = column({1.0, 2.0, 2.0 + 1e-12, 0.5});
  CHECK(experts_of(route(near, W, c, Faults{}, nullptr), 0) == Idx{2, 1});
  near(1, 0) = 2.0 + 2e-12;  // now expert 1 is ahead by 1e-12
  CHECK(experts_of(route(near, W, c, Faults{}, nullptr), 0) == Idx{1, 2});
  const arma::mat tie = column({1.0, 2.0, 2.0, 0.5});
  CHECK(experts_of(route(tie, W, c, Faults{}, nullptr), 0) == Idx{1, 2});
  const arma::mat tie_at_cut = column({3.0, 1.0, 1.0, 1.0});  // three tied for the second place
  CHECK(experts_of(route(tie_at_cut, W, c, Faults{}, nullptr), 0) == Idx{0, 1});

  // V3, sigmoid: ell = 4e-12 vs 0 gives s = 0.5 + 1e-12 vs 0.5 (sigmoid'(0) = 1/4).
  // 4 experts in 2 groups of 2, keep 1 group, K = 1, b = 0.
  const Config c3 = v3_config(4, 2, 1, 1);
  const MoeWeights W3 = identity_router(4, arma::zeros(4));
  const arma::mat near3 = column({0.0, -3.0, 4e-12, -3.0});  // group sums: 0.5+s(-3) < 0.5+1e-12+s(-3)
  CHECK(experts_of(route(near3, W3, c3, Faults{}, nullptr), 0) == Idx{2});
  const arma::mat tie3 = column({0.0, -3.0, 0.0, -3.0});  // equal groups -> group 0 -> expert 0
  dsr1::RecordingTracer tr;
  CHECK(experts_of(route(tie3, W3, c3, Faults{}, &tr), 0) == Idx{0});
  check_close(tr.get_mat("moe.group_mask"), arma::mat(arma::vec{1, 0}), exact_vs_ref, "moe.group_mask");
}

TEST_CASE("V2-Lite greedy with K = N_r returns the plain softmax, largest first") {
  // ell = (0, ln 2, ln 3, ln 4): softmax = (1, 2, 3, 4) / 10, sorted: experts 3, 2, 1, 0.
  const arma::mat x = column({0.0, std::log(2.0), std::log(3.0), std::log(4.0)});
  const Routing r = route(x, identity_router(4), v2_lite_config(4, 4), Faults{}, nullptr);
  CHECK(experts_of(r, 0) == Idx{3, 2, 1, 0});
  check_close(r.g, arma::mat(arma::vec{0.4, 0.3, 0.2, 0.1}), exact_vs_ref, "moe.g");
}

TEST_CASE("V3 on many tokens: weights sum to routed_scaling_factor, experts match a sort-based route") {
  // A dense router (d = 6, N_r = 16, 4 groups of 4, keep 2, K = 4) on deterministic data, and a
  // second, independent implementation: std::stable_sort on (score desc, index asc).
  const arma::uword d = 6, N_r = 16, T = 9;
  Config c = v3_config(N_r, 4, 2, 4);
  c.hidden_size = d;
  MoeWeights W;
  W.W_g.set_size(N_r, d);
  for (arma::uword i = 0; i < N_r; ++i)
    for (arma::uword j = 0; j < d; ++j) W.W_g(i, j) = std::sin(1.0 + 3.0 * i + 7.0 * j);
  W.b.set_size(N_r);
  for (arma::uword i = 0; i < N_r; ++i) W.b(i) = 0.3 * std::cos(2.0 * i);  // negative and positive
  arma::mat x(d, T);
  for (arma::uword t = 0; t < T; ++t)
    for (arma::uword j = 0; j < d; ++j) x(j, t) = std::cos(0.5 + 1.3 * t + 0.7 * j);

  const Routing r = route(x, W, c, Faults{}, nullptr);
  for (arma::uword t = 0; t < T; ++t) {
    CAPTURE(t);
    std::vector<double> s(N_r), st(N_r);
    for (arma::uword i = 0; i < N_r; ++i) {
      double ell = 0;
      for (arma::uword j = 0; j < d; ++j) ell += W.W_g(i, j) * x(j, t);
      s[i] = 1.0 / (1.0 + std::exp(-ell));
      st[i] = s[i] + W.b(i);
    }
    const auto by_score = [](const std::vector<double>& v) {
      std::vector<arma::uword> idx(v.size());
      std::iota(idx.begin(), idx.end(), 0);
      std::stable_sort(idx.begin(), idx.end(), [&](arma::uword a, arma::uword b) { return v[a] > v[b]; });
      return idx;
    };
    std::vector<double> G(4);
    for (int grp = 0; grp < 4; ++grp) {
      std::vector<double> m(st.begin() + 4 * grp, st.begin() + 4 * grp + 4);
      std::sort(m.rbegin(), m.rend());
      G[grp] = m[0] + m[1];
    }
    const std::vector<arma::uword> groups = by_score(G);
    std::vector<double> eligible(N_r, -1e300);
    for (int j = 0; j < 2; ++j)
      for (arma::uword i = 4 * groups[j]; i < 4 * groups[j] + 4; ++i) eligible[i] = st[i];
    std::vector<arma::uword> want = by_score(eligible);
    want.resize(4);
    CHECK(experts_of(r, t) == want);
    double sum_s = 0;
    for (arma::uword i : want) sum_s += s[i];
    arma::vec g_want(4);
    for (int k = 0; k < 4; ++k) g_want(k) = 2.5 * s[want[k]] / sum_s;
    check_close(arma::mat(r.g.col(t)), arma::mat(g_want), exact_vs_ref, "moe.g");
    check_close(arma::accu(r.g.col(t)), 2.5, exact_vs_ref, "sum of g");
  }
}

TEST_CASE("route records the spec's trace names in order, with on-disk shapes [T, .]") {
  const std::vector<std::string> v3_names = {"moe.ell", "moe.s", "moe.s_tilde", "moe.group_scores",
                                             "moe.group_mask", "moe.experts", "moe.g"};
  arma::mat x2 = arma::join_rows(sigmoid_logits(kP), sigmoid_logits(kP));  // T = 2
  dsr1::RecordingTracer tr;
  const Routing r = route(x2, identity_router(8, kB), v3_config(8, 4, 2, 2), Faults{}, &tr);
  REQUIRE(tr.entries().size() == v3_names.size());
  for (size_t i = 0; i < v3_names.size(); ++i) CHECK(tr.entries()[i].name == v3_names[i]);
  CHECK(tr.get("moe.ell").shape == std::vector<std::uint64_t>{2, 8});
  CHECK(tr.get("moe.group_scores").shape == std::vector<std::uint64_t>{2, 4});
  CHECK(tr.get("moe.experts").shape == std::vector<std::uint64_t>{2, 2});
  CHECK(tr.get("moe.experts").data == std::vector<double>{0, 2, 0, 2});

  // V2-Lite greedy: no bias, no groups.
  dsr1::RecordingTracer tr2;
  route(column({0.1, 0.2, 0.3, 0.4}), identity_router(4), v2_lite_config(4, 2), Faults{}, &tr2);
  const std::vector<std::string> greedy_names = {"moe.ell", "moe.s", "moe.experts", "moe.g"};
  REQUIRE(tr2.entries().size() == greedy_names.size());
  for (size_t i = 0; i < greedy_names.size(); ++i) CHECK(tr2.entries()[i].name == greedy_names[i]);
}

namespace {
// Runs f, expects std::invalid_argument whose message contains `needle`.
template <class F>
void check_rejects(F f, const std::string& needle) {
  CAPTURE(needle);
  bool threw = false;
  try {
    f();
  } catch (const std::invalid_argument& e) {
    threw = true;
    CHECK_MESSAGE(std::string(e.what()).find(needle) != std::string::npos, std::string(e.what()));
  }
  CHECK_MESSAGE(threw, (std::string("expected std::invalid_argument mentioning '") + needle + "'"));
}
}  // namespace

TEST_CASE("route rejects inconsistent shapes and configs with a message naming the field") {
  const arma::mat x = sigmoid_logits(kP);
  const Config c = v3_config(8, 4, 2, 2);
  check_rejects([&] { route(x, identity_router(8), c, Faults{}, nullptr); }, "e_score_correction_bias");
  check_rejects([&] { route(x, identity_router(8, kB), v2_config(8, 4, 2, 2), Faults{}, nullptr); },
                "uses no bias");
  check_rejects([&] { route(x.rows(0, 6), identity_router(8, kB), c, Faults{}, nullptr); }, "expected [d=8");
  MoeWeights W = identity_router(8, kB);
  W.W_g = arma::eye(7, 8);
  check_rejects([&] { route(x, W, c, Faults{}, nullptr); }, "W_g");
  check_rejects([&] { route(x, identity_router(8, kB), v3_config(8, 3, 2, 2), Faults{}, nullptr); },
                "not divisible by n_group");
  check_rejects([&] { route(x, identity_router(8, kB), v3_config(8, 4, 5, 2), Faults{}, nullptr); },
                "topk_group");
  check_rejects([&] { route(x, identity_router(8, kB), v3_config(8, 4, 1, 3), Faults{}, nullptr); },
                "exceeds the 2 experts");
  check_rejects([&] { route(x, identity_router(8, kB), v3_config(8, 8, 2, 2), Faults{}, nullptr); },
                "top-2 sum");
  check_rejects([&] { route(x, identity_router(8, kB), v3_config(8, 4, 2, 9), Faults{}, nullptr); },
                "num_experts_per_tok");
  Config bad_func = c;
  bad_func.scoring_func = "relu";
  check_rejects([&] { route(x, identity_router(8, kB), bad_func, Faults{}, nullptr); }, "scoring_func");
  arma::mat nan_x = x;
  nan_x(3, 0) = std::nan("");
  check_rejects([&] { route(nan_x, identity_router(8, kB), c, Faults{}, nullptr); }, "x[3] of token 0");
  MoeWeights W_inf = identity_router(8, kB);
  W_inf.W_g(5, 2) = std::numeric_limits<double>::infinity();
  check_rejects([&] { route(x, W_inf, c, Faults{}, nullptr); }, "ell[5] of token 0");
}

TEST_CASE("golden/router/v3_routing.json: walkthrough 12's token, its faults and the V2 contrast (NumPy)") {
  const dsr1::GoldenFile g = dsr1::GoldenFile::load("golden/router/v3_routing.json");
  const dsr1::test::Tol tol{g.tol_abs(), g.tol_rel()};
  const arma::mat x = g.tokens("inputs.x");
  MoeWeights W;
  W.W_g = g.matrix("inputs.W_g");
  W.b = g.vec("inputs.b");
  Config c = v3_config(8, 4, 2, 2);
  c.hidden_size = static_cast<std::int64_t>(g.number("parameters.hidden_size"));
  REQUIRE(g.number("parameters.v3_routed_scaling_factor") == c.routed_scaling_factor);

  dsr1::RecordingTracer tr;
  const Routing r = route(x, W, c, Faults{}, &tr);
  for (const char* name : {"ell", "s", "s_tilde", "group_scores", "group_mask", "experts", "g"})
    check_close(tr.get_mat(std::string("moe.") + name), g.tokens(std::string("expected.") + name), tol, name);
  check_close(arma::conv_to<arma::mat>::from(r.experts), g.tokens("expected.experts"), tol, "experts");

  const auto with = [&](auto set) {
    Faults f;
    set(f);
    return route(x, W, c, f, nullptr);
  };
  const auto ids = [](const Routing& rr) { return arma::mat(arma::conv_to<arma::mat>::from(rr.experts)); };
  check_close(with([](Faults& f) { f.bias_in_weights = true; }).g, g.tokens("expected.fault_P4_bias_in_weights_g"),
              tol, "P4 g");
  const Routing p5 = with([](Faults& f) { f.group_score_max = true; });
  check_close(ids(p5), g.tokens("expected.fault_P5_group_score_max_experts"), tol, "P5 experts");
  check_close(p5.g, g.tokens("expected.fault_P5_group_score_max_g"), tol, "P5 g");
  const Routing p6 = with([](Faults& f) { f.group_mask_zero = true; });
  check_close(ids(p6), g.tokens("expected.fault_P6_group_mask_zero_experts"), tol, "P6 experts");
  check_close(p6.g, g.tokens("expected.fault_P6_group_mask_zero_g"), tol, "P6 g");
  check_close(with([](Faults& f) { f.double_routed_scaling = true; }).g,
              g.tokens("expected.fault_P17_double_routed_scaling_g"), tol, "P17 g");

  Config c2 = v2_config(8, 4, 2, 2);
  c2.hidden_size = c.hidden_size;
  REQUIRE(g.number("parameters.v2_routed_scaling_factor") == c2.routed_scaling_factor);
  MoeWeights W2 = W;
  W2.b.reset();
  dsr1::RecordingTracer tr2;
  const Routing v2 = route(x, W2, c2, Faults{}, &tr2);
  check_close(tr2.get_mat("moe.s"), g.tokens("expected.v2_s"), tol, "v2 s");
  check_close(tr2.get_mat("moe.group_scores"), g.tokens("expected.v2_group_scores"), tol, "v2 group_scores");
  check_close(tr2.get_mat("moe.group_mask"), g.tokens("expected.v2_group_mask"), tol, "v2 group_mask");
  check_close(ids(v2), g.tokens("expected.v2_experts"), tol, "v2 experts");
  check_close(v2.g, g.tokens("expected.v2_g"), tol, "v2 g");
  Faults f8;
  f8.renormalize_softmax = true;
  check_close(route(x, W2, c2, f8, nullptr).g, g.tokens("expected.v2_fault_P8_renormalize_softmax_g"), tol, "P8 g");
}

TEST_CASE("route at full V3 scale (deepseek-v3 preset: d = 7168, 256 experts, 8 groups, keep 4, K = 8)") {
  const Config c = dsr1::preset("deepseek-v3");
  const arma::uword d = c.hidden_size, N_r = c.n_routed_experts, T = 3;
  MoeWeights W;
  W.W_g.set_size(N_r, d);
  for (arma::uword j = 0; j < d; ++j)
    for (arma::uword i = 0; i < N_r; ++i) W.W_g(i, j) = std::sin(0.37 * i + 1.91 * j + 0.001 * i * j) / std::sqrt(d);
  W.b.set_size(N_r);
  for (arma::uword i = 0; i < N_r; ++i) W.b(i) = 0.05 * std::cos(1.3 * i);
  arma::mat x(d, T);
  for (arma::uword t = 0; t < T; ++t)
    for (arma::uword j = 0; j < d; ++j) x(j, t) = std::cos(0.7 * j + 2.3 * t);
  dsr1::RecordingTracer tr;
  const Routing r = route(x, W, c, Faults{}, &tr);
  REQUIRE(r.experts.n_rows == 8);
  const arma::mat mask = tr.get_mat("moe.group_mask");  // [n_group = 8, T]
  for (arma::uword t = 0; t < T; ++t) {
    CAPTURE(t);
    CHECK(arma::accu(mask.col(t)) == 4.0);
    std::vector<arma::uword> e = experts_of(r, t);
    for (arma::uword i : e) CHECK(mask(i / 32, t) == 1.0);  // 32 consecutive experts per group
    std::sort(e.begin(), e.end());
    CHECK(std::adjacent_find(e.begin(), e.end()) == e.end());  // 8 distinct experts
    check_close(arma::accu(r.g.col(t)), 2.5, exact_vs_ref, "sum of g");
  }
}
