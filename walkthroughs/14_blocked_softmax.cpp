// Walkthrough 14: why the fast path may cut the keys into blocks. A softmax-weighted sum over six
// keys, computed directly, then by blocks that are merged afterwards (the fast path's decode),
// then online block by block (its prefill), then with the last block masked.
// Leaves out: heads, threads and float32 (docs/fast-path.md; reference/fast/mla.cpp).
//
// The numbers are golden/fast/blocked_softmax.json, which golden/fast/compute_goldens.py derives
// independently; tests/test_blocked_softmax.cpp pins the functions to it.
//
//   14_blocked_softmax                  all steps
//   14_blocked_softmax --step           pause for Enter between steps
//   14_blocked_softmax --trace 'merge.*'
#include <fmt/format.h>

#include <string>
#include <vector>

#include "reference/deepseek/blocked_softmax.hpp"
#include "reference/io/golden_json.hpp"
#include "walkthroughs/walkthrough.hpp"

using namespace dsr1;
using namespace dsr1::ref;

namespace {

GoldenFile load_example() {
  return GoldenFile::load(std::string(DSR1_SOURCE_DIR) + "/golden/fast/blocked_softmax.json");
}

// Blocks of `size` keys, each shown with its own max, sum and weighted sum.
std::vector<SoftmaxBlock> show_blocks(walk::Walkthrough& w, const std::string& prefix,
                                      const arma::vec& s, const arma::mat& C, arma::uword size) {
  std::vector<SoftmaxBlock> blocks;
  for (arma::uword j0 = 0; j0 < s.n_elem; j0 += size) {
    const arma::uword j1 = std::min<arma::uword>(s.n_elem, j0 + size);
    blocks.push_back(block_softmax(s, C, j0, j1));
    const SoftmaxBlock& b = blocks.back();
    const std::string name = fmt::format("{}.block{}", prefix, blocks.size() - 1);
    w.say(fmt::format("block {} = keys {}..{}:", blocks.size() - 1, j0, j1 - 1));
    w.show_scalar(name + ".m", b.m);
    w.show_scalar(name + ".l", b.l);
    w.show(name + ".z", b.z);
  }
  return blocks;
}

void run_blocked_softmax(walk::Walkthrough& w) {
  const GoldenFile g = load_example();
  const arma::vec s = g.vec("inputs.scores");
  const arma::vec s_masked = g.vec("inputs.scores_masked");
  const arma::mat C = g.tokens("inputs.latents");  // [2, 6]: column j is c_j
  const auto B = static_cast<arma::uword>(g.number("parameters.block"));

  w.section("14", "Attention over keys in blocks: merge and online softmax (docs/fast-path.md)");
  {
    w.step("the direct softmax-weighted sum");
    w.say("One query has scores s_j against six keys, and each key carries a latent c_j (in MLA,");
    w.say("z = sum_j p_j c_kv_hat_j). The direct way needs every score first:");
    w.say("p_j = exp(s_j - M) / sum_k exp(s_k - M) with M = max_k s_k = 4, then z = sum_j p_j c_j.");
    w.show("scores", s);
    w.show("latents", C);
    w.show("direct.z", softmax_weighted_sum(s, C));
  }
  std::vector<SoftmaxBlock> blocks;
  {
    w.step("each block of two keys on its own (one task per block in the fast path's decode)");
    w.say("A block only knows its own scores, so it uses its own max m_b:");
    w.say("l_b = sum exp(s_j - m_b) and z_b = sum exp(s_j - m_b) c_j, over its keys only.");
    blocks = show_blocks(w, "blocks", s, C, B);
  }
  {
    w.step("merge the blocks");
    w.say("The true max is m = max_b m_b = 4. Block b's terms exp(s_j - m_b) become exp(s_j - m)");
    w.say("when multiplied by w_b = exp(m_b - m), so: z = sum_b w_b z_b / sum_b w_b l_b.");
    std::vector<double> weights;
    const arma::vec z = merge_blocks(blocks, &weights);
    w.show("merge.w", arma::vec(weights));
    w.show("merge.z", z);
    w.say("w = (e^-1, e^-2, 1): block 2 holds the largest score. The merged z equals the");
    w.say("direct one: the same terms, added in another order. In the fast path the blocks run in");
    w.say("parallel, and one thread merges them in block order, so the bits never depend on the");
    w.say("number of threads.");
  }
  {
    w.step("the online walk (the fast path's prefill: one pass, no stored block results)");
    w.say("Keep a running (m, l, z). For each new block: m' = max(m, m_b), alpha = exp(m - m'),");
    w.say("l' = alpha l + sum exp(s_j - m'), z' = alpha z + sum exp(s_j - m') c_j. At the end z / l.");
    SoftmaxBlock state;
    for (arma::uword j0 = 0; j0 < s.n_elem; j0 += B) {
      double alpha = 0;
      state = online_softmax_step(state, s, C, j0, std::min<arma::uword>(s.n_elem, j0 + B), &alpha);
      const std::string name = fmt::format("online.step{}", j0 / B);
      w.say(fmt::format("after keys {}..{}:", j0, std::min<arma::uword>(s.n_elem, j0 + B) - 1));
      w.show_scalar(name + ".alpha", alpha);
      w.show_scalar(name + ".m", state.m);
      w.show_scalar(name + ".l", state.l);
    }
    w.show("online.z", arma::vec(state.z / state.l));
    w.say("alpha is 0 at the first block (nothing before it), 1 at the second (the max stays 3),");
    w.say("e^-1 at the third (the max grows from 3 to 4): old terms are rescaled only when it grows.");
  }
  {
    w.step("masked keys: a query at position 3 must not see keys 4 and 5");
    w.say("Their scores are -inf. Block 2 then has no visible key: m_b = -inf, l_b = 0, z_b = 0,");
    w.say("and its merge weight is 0, so it drops out; the result is the softmax over keys 0..3.");
    w.show("scores_masked", s_masked);
    std::vector<double> weights;
    const arma::vec z = merge_blocks(show_blocks(w, "masked", s_masked, C, B), &weights);
    w.show("masked.merge.w", arma::vec(weights));
    w.show("masked.merge.z", z);
    w.show("masked.direct.z", softmax_weighted_sum(s.head(4), C.head_cols(4)));
  }
}

}  // namespace

#ifndef DSR1_WALKTHROUGH_NO_MAIN
int main(int argc, char** argv) {
  return walk::run(argc, argv, "14_blocked_softmax",
                   "Walkthrough 14: softmax over keys in blocks, merged or online, as the fast path computes attention",
                   {run_blocked_softmax});
}
#endif
