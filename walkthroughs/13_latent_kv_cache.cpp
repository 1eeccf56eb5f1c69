// Walkthrough 13: the latent KV cache growing token by token, and what it saves at full scale.
// Leaves out: paging and batching; one sequence, one layer of the hand case, then V3's accounting.
//
// The case is golden/mla/kv_cache_decode.json (the weights of 10_mla): three tokens decoded one
// at a time from position 0. Its numbers and golden/mla/v3_cache_bytes.json are pinned by
// tests/test_mla.cpp against golden/mla/compute_goldens.py.
//
//   13_latent_kv_cache                  all steps
//   13_latent_kv_cache --step           pause for Enter between steps
//   13_latent_kv_cache --trace 'attn.probs'
#include <fmt/format.h>

#include <string>

#include "reference/deepseek/config.hpp"
#include "reference/io/golden_json.hpp"
#include "reference/deepseek/kv_cache.hpp"
#include "reference/deepseek/mla.hpp"
#include "reference/trace/trace_outputs.hpp"
#include "walkthroughs/mla_hand_case.hpp"
#include "walkthroughs/walkthrough.hpp"

using namespace dsr1;
using namespace dsr1::ref;

namespace {

using Case = walk::MlaHandCase;
Case load_case() { return walk::load_mla_hand_case("kv_cache_decode.json"); }

std::string gib(double bytes) { return fmt::format("{:.3f} GiB", bytes / (1024.0 * 1024.0 * 1024.0)); }

void run_latent_cache(walk::Walkthrough& w) {
  const auto say = [&](const std::string& text) { w.say(text); };
  const Case k = load_case();
  const Config& c = k.c;
  const std::int64_t T = static_cast<std::int64_t>(k.x.n_cols);
  MlaOptions opt;
  opt.form = AttnForm::Absorbed;  // reads the cache as it is stored

  arma::mat u_decode(c.hidden_size, T);
  w.section("13", "The latent KV cache, token by token (spec §4.3, §4.4, §5)");
  {
    {
      w.step("decode three tokens one at a time");
      say("Per token the cache stores c_kv_hat (r_kv = 2 numbers, already RMS-normalised) and");
      say("k_rope (d_rope = 2, already rotated at the token's own position). Nothing else: the");
      say("absorbed form scores q_tilde against c_kv_hat and never builds a per-head key.");
    }
    LatentKvCache cache;
    for (std::int64_t t = 0; t < T; ++t) {
      say(fmt::format("\n-- token {} at position {} --", t, t));
      TraceScope scope(w.tr(), fmt::format("decode.{}", t));
      u_decode.col(static_cast<arma::uword>(t)) =
          mla_forward(k.x.col(static_cast<arma::uword>(t)), k.W, c, t, &cache, opt, w.tr());
      {
        w.show("cache.c_kv_hat", cache.c_kv_hat);
        w.show("cache.k_rope", cache.k_rope);
        say(fmt::format(
            "cache length {} tokens, {} numbers per token, {} numbers in all "
            "({} bytes as float64)",
            cache.length(), cache.elements_per_token(), cache.length() * cache.elements_per_token(),
            cache.length() * cache.elements_per_token() * 8));
        say(fmt::format("a naive cache of per-head k and v would hold {} numbers per token",
                        naive_cache_elements(c)));
      }
    }
    {
      say("\nEach decode step needs no mask: every cached key is at or before the new query.");
      say("k_rope of old tokens is never rotated again; its angle is fixed by its own position.");
    }
  }

  {
    w.step("decode equals the full forward pass");
    const arma::mat u_full = mla_forward(k.x, k.W, c, 0, nullptr, opt, nullptr);
    w.say("u_decoded: one token at a time;  u_full: all three tokens in one call, causal mask.");
    w.show("u_decoded", u_decode);
    w.show("u_full", u_full);
    say(fmt::format("max |difference| = {:.3e}", arma::abs(u_decode - u_full).max()));
    say("The full pass masks key j for query t when j > t; the decode never sees key j > t");
    say("because it is not in the cache yet. Same keys, same numbers.");
    say("They are also the numbers of 10_mla, where the same tokens sit at positions 3, 4, 5:");
    say("RoPE makes q·k depend only on the distance between positions, not on where they start.");
  }

  {
    w.step("what the latent cache saves for DeepSeek-V3/R1 (bf16, one sequence)");
    const Config v3 = preset("deepseek-v3");
    const std::int64_t L = v3.num_hidden_layers, ctx = 131072, bytes = 2;
    const std::int64_t latent = latent_cache_elements(v3), naive = naive_cache_elements(v3),
                       mha = mha_cache_elements(v3);
    say(fmt::format("latent:  r_kv + d_rope = {} + {} = {} numbers per token per layer",
                    v3.kv_lora_rank, v3.qk_rope_head_dim, latent));
    say(fmt::format("naive:   n_h (d_nope + d_rope + d_v) = {} x {} = {}", v3.num_attention_heads,
                    v3.qk_nope_head_dim + v3.qk_rope_head_dim + v3.v_head_dim, naive));
    say(fmt::format("MHA:     2 n_h d_h = {}", mha));
    say(fmt::format("per token over {} layers: latent {} bytes, naive {} bytes, MHA {} bytes", L,
                    latent * L * bytes, naive * L * bytes, mha * L * bytes));
    say(fmt::format("at 128K = {} tokens: latent {} ({} bytes), naive {}, MHA {}", ctx,
                    gib(static_cast<double>(latent * L * bytes * ctx)), latent * L * bytes * ctx,
                    gib(static_cast<double>(naive * L * bytes * ctx)),
                    gib(static_cast<double>(mha * L * bytes * ctx))));
    say(fmt::format("The latent cache is {:.1f}x smaller than the naive one (spec §5).",
                    static_cast<double>(naive) / static_cast<double>(latent)));
    w.picture([&] {
      return html::kv_cache_curve("KV cache of DeepSeek-V3/R1 against context length (bf16)", v3);
    });
  }
}

}  // namespace

#ifndef DSR1_WALKTHROUGH_NO_MAIN
int main(int argc, char** argv) {
  return walk::run(argc, argv, "13_latent_kv_cache",
                   "Walkthrough 13: the latent KV cache, token by token", {run_latent_cache});
}
#endif
