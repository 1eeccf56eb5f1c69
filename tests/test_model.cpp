// The whole model: two routes to the same logits (naive vs absorbed attention, cached
// incremental decoding vs the full forward pass), causality, greedy generation, MTP, the
// trace-name catalogue, and clear errors for bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <set>

#include "reference/deepseek/loader.hpp"
#include "reference/deepseek/model.hpp"
#include "tests/support/check.hpp"

using namespace dsr1;
using dsr1::test::check_close;

namespace {

struct Tiny {
  Config c;
  ModelWeights W;
};

const Tiny& tiny(const std::string& name) {
  static std::map<std::string, Tiny> cache;
  auto it = cache.find(name);
  if (it == cache.end()) {
    Config c = preset(name);
    it = cache.emplace(name, Tiny{c, generate_weights(c, 7)}).first;
  }
  return it->second;
}

// 12 tokens: long enough that positions well past 0 are exercised (position 0 hides scale
// bugs, since a single key gets probability 1 whatever the scale).
const std::vector<std::int64_t> kTokens = {3, 17, 5, 99, 42, 7, 127, 0, 64, 64, 12, 88};

ref::ForwardOptions with_form(ref::AttnForm f) {
  ref::ForwardOptions o;
  o.attn = f;
  return o;
}

}  // namespace

TEST_CASE("naive and absorbed MLA give the same logits (tiny-v3, tiny-v2-lite, tiny-v2)") {
  for (const char* name : {"tiny-v3", "tiny-v2-lite", "tiny-v2"}) {
    CAPTURE(name);
    const Tiny& m = tiny(name);
    const arma::mat naive =
        ref::forward(m.W, m.c, kTokens, 0, nullptr, with_form(ref::AttnForm::Naive), nullptr);
    const arma::mat absorbed =
        ref::forward(m.W, m.c, kTokens, 0, nullptr, with_form(ref::AttnForm::Absorbed), nullptr);
    check_close(absorbed, naive, dsr1::test::same_math_reordered, std::string(name) + " logits");
  }
}

TEST_CASE("incremental decoding through the latent cache equals the full forward pass") {
  for (const char* name : {"tiny-v3", "tiny-v2-lite", "tiny-yarn"}) {
    const Tiny& m = tiny(name);
    for (auto form : {ref::AttnForm::Naive, ref::AttnForm::Absorbed}) {
      const auto opt = with_form(form);
      const arma::mat full = ref::forward(m.W, m.c, kTokens, 0, nullptr, opt, nullptr);
      for (std::int64_t P : {0, 1, 5, 12}) {
        CAPTURE(name);
        CAPTURE(P);
        check_close(ref::forward_incremental(m.W, m.c, kTokens, P, opt, nullptr), full,
                    dsr1::test::same_math_reordered, "incremental logits");
      }
    }
  }
}

TEST_CASE("a chunked prefill that starts at position 5 sees the first chunk through the cache") {
  const Tiny& m = tiny("tiny-v3");
  const ref::ForwardOptions opt;
  const arma::mat full = ref::forward(m.W, m.c, kTokens, 0, nullptr, opt, nullptr);
  ref::ModelCache cache = ref::make_cache(m.c);
  const std::vector<std::int64_t> first(kTokens.begin(), kTokens.begin() + 5);
  const std::vector<std::int64_t> second(kTokens.begin() + 5, kTokens.end());
  const arma::mat a = ref::forward(m.W, m.c, first, 0, &cache, opt, nullptr);
  CHECK(cache.length() == 5);
  const arma::mat b = ref::forward(m.W, m.c, second, 5, &cache, opt, nullptr);
  CHECK(cache.length() == 12);
  check_close(arma::join_rows(a, b), full, dsr1::test::same_math_reordered, "chunked logits");
}

TEST_CASE("the model is causal: appending tokens leaves earlier logits unchanged") {
  const Tiny& m = tiny("tiny-v3");
  const ref::ForwardOptions opt;
  const arma::mat full = ref::forward(m.W, m.c, kTokens, 0, nullptr, opt, nullptr);
  const std::vector<std::int64_t> prefix(kTokens.begin(), kTokens.begin() + 6);
  const arma::mat part = ref::forward(m.W, m.c, prefix, 0, nullptr, opt, nullptr);
  // Bit-identical, not just close: the first 6 columns see exactly the same arithmetic.
  CHECK(arma::approx_equal(part, full.cols(0, 5), "absdiff", 0.0));
}

TEST_CASE("greedy generation picks the argmax of the full forward pass at every step") {
  const Tiny& m = tiny("tiny-v3");
  const ref::ForwardOptions opt;
  const std::vector<std::int64_t> prompt = {3, 17, 5};
  const auto out = ref::generate_greedy(m.W, m.c, prompt, 5, opt, nullptr);
  REQUIRE(out.size() == 8);
  const arma::mat logits = ref::forward(m.W, m.c, out, 0, nullptr, opt, nullptr);
  for (std::size_t t = 2; t + 1 < out.size(); ++t) {
    CAPTURE(t);
    CHECK(static_cast<std::int64_t>(logits.col(t).index_max()) == out[t + 1]);
  }
}

TEST_CASE("MTP predicts from [enorm(emb), hnorm(h)] and its concat order matters") {
  const Tiny& m = tiny("tiny-v3");
  REQUIRE(m.W.mtp.has_value());
  ref::ForwardOptions opt;
  arma::mat h_final;
  ref::forward_hidden(m.W, m.c, kTokens, 0, nullptr, opt, nullptr, &h_final);
  RecordingTracer tr;
  const arma::mat mtp = ref::mtp_forward(m.W, m.c, h_final, kTokens, opt, &tr);
  CHECK(mtp.n_rows == static_cast<arma::uword>(m.c.vocab_size));
  CHECK(mtp.n_cols == kTokens.size() - 1);
  CHECK(tr.has("mtp.h_proj"));
  CHECK(tr.has("mtp.block.attn.scores"));
  CHECK(tr.has("mtp.logits"));
  // The projection input is [emb ; h]: check h_proj at one position by hand.
  const arma::vec e = m.W.mtp->E.is_empty() ? arma::vec(m.W.E.col(kTokens[4]))
                                            : arma::vec(m.W.mtp->E.col(kTokens[4]));
  const arma::mat emb_norm = tr.get_mat("mtp.emb_norm");
  const arma::mat h_norm = tr.get_mat("mtp.h_norm");
  const arma::vec want = m.W.mtp->W_eh * arma::join_cols(emb_norm.col(3), h_norm.col(3));
  check_close(tr.get_mat("mtp.h_proj").col(3), want, dsr1::test::exact_vs_ref, "h_proj col 3");
  const double inv_rms = 1.0 / std::sqrt(arma::dot(e, e) / e.n_elem + m.c.rms_norm_eps);
  check_close(emb_norm.col(3), (e * inv_rms) % m.W.mtp->w_enorm, dsr1::test::exact_vs_ref,
              "emb_norm col 3 is RMSNorm_e of the embedding of token 4");
  opt.faults.mtp_concat_hidden_first = true;
  const arma::mat swapped = ref::mtp_forward(m.W, m.c, h_final, kTokens, opt, nullptr);
  CHECK(arma::abs(swapped - mtp).max() > 1e-3);
}

TEST_CASE("one forward pass records every trace name of docs/trace-names.md") {
  const Tiny& m = tiny("tiny-v3");  // q-LoRA, dense first layer, MoE with groups and bias
  for (auto form : {ref::AttnForm::Naive, ref::AttnForm::Absorbed}) {
    RecordingTracer tr;
    ref::forward(m.W, m.c, kTokens, 0, nullptr, with_form(form), &tr);
    std::vector<std::string> want = {"embed.h", "final_norm", "logits"};
    for (const char* n : {"attn_norm", "attn.c_q", "attn.c_q_hat", "attn.q_nope", "attn.q_rope_pre",
                          "attn.q_rope", "attn.c_kv", "attn.c_kv_hat", "attn.k_rope_pre",
                          "attn.k_rope", "attn.scores", "attn.probs", "attn.o", "attn.u",
                          "h_attn", "ffn_norm", "h"})
      for (int l = 0; l < 3; ++l) want.push_back(fmt::format("layers.{}.{}", l, n));
    for (const char* n : {"ffn.gate", "ffn.up", "ffn.act", "ffn.out"})
      want.push_back(fmt::format("layers.0.{}", n));
    for (const char* n : {"moe.ell", "moe.s", "moe.s_tilde", "moe.group_scores", "moe.group_mask",
                          "moe.experts", "moe.g", "moe.routed", "moe.shared", "moe.out"})
      for (int l = 1; l < 3; ++l) want.push_back(fmt::format("layers.{}.{}", l, n));
    for (const char* n : form == ref::AttnForm::Naive
                             ? std::vector<const char*>{"attn.k_nope", "attn.v"}
                             : std::vector<const char*>{"attn.q_tilde", "attn.z"})
      for (int l = 0; l < 3; ++l) want.push_back(fmt::format("layers.{}.{}", l, n));
    for (const auto& n : want) {
      CAPTURE(n);
      CHECK(tr.has(n));
    }
    // Shapes on disk: tokens outermost.
    CHECK(tr.get("logits").shape == std::vector<std::uint64_t>{kTokens.size(), 128});
    CHECK(tr.get("layers.1.attn.scores").shape ==
          std::vector<std::uint64_t>{4, kTokens.size(), kTokens.size()});
    CHECK(tr.get("layers.2.moe.experts").shape == std::vector<std::uint64_t>{kTokens.size(), 3});
  }
}

TEST_CASE("bad input gets a clear error, never a wrong number") {
  const Tiny& m = tiny("tiny-v3");
  const ref::ForwardOptions opt;
  CHECK_THROWS_WITH_AS(ref::forward(m.W, m.c, {1, 128}, 0, nullptr, opt, nullptr),
                       doctest::Contains("token id 128 at input position 1 is out of range"),
                       std::out_of_range);
  CHECK_THROWS_WITH_AS(ref::forward(m.W, m.c, {-1}, 0, nullptr, opt, nullptr),
                       doctest::Contains("token id -1"), std::out_of_range);
  std::vector<std::int64_t> too_long(static_cast<std::size_t>(m.c.max_position_embeddings) + 1, 1);
  CHECK_THROWS_WITH_AS(ref::forward(m.W, m.c, too_long, 0, nullptr, opt, nullptr),
                       doctest::Contains("max_position_embeddings = 256"), std::out_of_range);
  CHECK_THROWS_WITH_AS(ref::forward(m.W, m.c, {}, 0, nullptr, opt, nullptr),
                       doctest::Contains("no tokens"), std::invalid_argument);
  ref::ModelCache cache = ref::make_cache(m.c);
  CHECK_THROWS_WITH_AS(ref::forward(m.W, m.c, {1}, 3, &cache, opt, nullptr),
                       doctest::Contains("cache holds 0 tokens"), std::invalid_argument);
  CHECK_THROWS_AS(ref::forward_incremental(m.W, m.c, kTokens, 13, opt, nullptr),
                  std::invalid_argument);

  ModelWeights poisoned = m.W;
  poisoned.layers[1].attn.W_O(0, 0) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH_AS(ref::forward(poisoned, m.c, kTokens, 0, nullptr, opt, nullptr),
                       doctest::Contains("non-finite value nan in layers.1.h_attn"),
                       std::runtime_error);
}
