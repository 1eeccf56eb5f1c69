// Full-scale accounting against the spec's independently computed figures (spec §12, §5, §10),
// and the formulas against the tensor catalogue (a second route to the same counts).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>

#include "reference/tools/accounting.hpp"
#include "reference/deepseek/config.hpp"
#include "reference/deepseek/loader.hpp"

using dsr1::count_params;
using dsr1::preset;

namespace {

// Parameters of the main model (layers 0..L-1, embedding, norm, head) and of the MTP layer,
// summed over the catalogue's tensors, scales excluded.
struct CatalogueCounts {
  std::uint64_t main = 0, mtp = 0, tensors = 0, bytes = 0;
};

CatalogueCounts catalogue_counts(const dsr1::Config& c) {
  CatalogueCounts k;
  const std::string mtp_prefix = fmt::format("model.layers.{}.", c.num_hidden_layers);
  for (const auto& e : dsr1::checkpoint_catalogue(c)) {
    ++k.tensors;
    k.bytes += e.bytes();
    if (e.name.size() > 10 && e.name.compare(e.name.size() - 10, 10, "_scale_inv") == 0) continue;
    (e.name.rfind(mtp_prefix, 0) == 0 ? k.mtp : k.main) += e.numel();
  }
  return k;
}

}  // namespace

TEST_CASE("parameter totals reproduce spec §12.3 exactly (V2, V2-Lite, V3, R1)") {
  const auto v2 = count_params(preset("deepseek-v2"));
  CHECK(v2.total_params == 235741434880ULL);
  CHECK(v2.active_params == 20851512320ULL);
  const auto lite = count_params(preset("deepseek-v2-lite"));
  CHECK(lite.total_params == 15706484224ULL);
  CHECK(lite.active_params == 2451435008ULL);
  for (const char* name : {"deepseek-v3", "deepseek-r1"}) {
    CAPTURE(name);
    const auto v3 = count_params(preset(name));
    CHECK(v3.total_params == 671026419200ULL);
    CHECK(v3.active_params == 36625618432ULL);
    CHECK(v3.mtp_params == 11610068224ULL);
    CHECK(v3.mtp_params_with_copies == 13463426304ULL);
  }
  // Including the embedding gives the figures the spec rejects as the convention (§12.3).
  CHECK(v2.active_params_with_embedding == 20851512320ULL + 524288000ULL);
}

TEST_CASE("per-layer and per-component counts reproduce spec §12.2 and §12.3") {
  struct Row {
    const char* name;
    std::uint64_t mla, dense, expert, shared, gate, moe_total, moe_active;
    std::uint64_t embedding, attention, dense_all, routed_all, shared_all, gates_all;
  };
  const Row rows[] = {
      {"deepseek-v2", 149227520ULL, 188743680ULL, 23592960ULL, 47185920ULL, 819200ULL, 3822878720ULL,
       189562880ULL, 524288000ULL, 8954265600ULL, 188743680ULL, 222717542400ULL, 2783969280ULL, 48332800ULL},
      {"deepseek-v2-lite", 13763072ULL, 67239936ULL, 8650752ULL, 17301504ULL, 131072ULL, 571080704ULL,
       69337088ULL, 209715200ULL, 371713536ULL, 67239936ULL, 14394851328ULL, 449839104ULL, 3407872ULL},
      {"deepseek-v3", 187107328ULL, 396361728ULL, 44040192ULL, 44040192ULL, 1835264ULL, 11320164608ULL,
       398196992ULL, 926679040ULL, 11414421504ULL, 1189085184ULL, 653908770816ULL, 2554331136ULL, 106445312ULL},
  };
  for (const auto& r : rows) {
    CAPTURE(r.name);
    const auto p = count_params(preset(r.name));
    CHECK(p.mla_per_layer == r.mla);
    CHECK(p.dense_ffn_per_layer == r.dense);
    CHECK(p.expert_params == r.expert);
    CHECK(p.shared_params == r.shared);
    CHECK(p.gate_params == r.gate);
    CHECK(p.moe_layer_total == r.moe_total);
    CHECK(p.moe_layer_active == r.moe_active);
    REQUIRE(p.components.size() == 8);
    CHECK(p.components[0].total == r.embedding);
    CHECK(p.components[0].active == 0);  // the convention: no input embedding
    CHECK(p.components[1].total == r.attention);
    CHECK(p.components[2].total == r.dense_all);
    CHECK(p.components[3].total == r.routed_all);
    CHECK(p.components[4].total == r.shared_all);
    CHECK(p.components[5].total == r.gates_all);
    CHECK(p.components[7].total == r.embedding);  // lm_head is V*d, untied
  }
}

TEST_CASE("formula totals equal the tensor catalogue's element counts for every preset") {
  for (const auto& name : dsr1::preset_names()) {
    CAPTURE(name);
    const auto c = preset(name);
    const auto p = count_params(c);
    const auto k = catalogue_counts(c);
    CHECK(k.main == p.total_params);
    CHECK(k.mtp == (c.num_nextn_predict_layers > 0 ? p.mtp_params_with_copies : 0));
  }
}

TEST_CASE("the V3 FP8 catalogue matches the released checkpoint: 91,991 tensors, 688,574,839,360 bytes") {
  // spec §10: the hub's header listing of deepseek-ai/DeepSeek-V3, MTP layer and scales included.
  const auto k = catalogue_counts(preset("deepseek-v3"));
  CHECK(k.tensors == 91991);
  CHECK(k.bytes == 688574839360ULL);
  // 41,540,496 scale elements (spec §12.3): a count of the scale grids alone.
  std::uint64_t scales = 0;
  for (const auto& e : dsr1::checkpoint_catalogue(preset("deepseek-v3")))
    if (e.name.size() > 10 && e.name.compare(e.name.size() - 10, 10, "_scale_inv") == 0) scales += e.numel();
  CHECK(scales == 41540496ULL);
  // V2-Lite in bf16: 31,412,968,448 bytes (spec §12.3, matches the released dump).
  CHECK(catalogue_counts(preset("deepseek-v2-lite")).bytes == 31412968448ULL);
}

TEST_CASE("KV-cache bytes reproduce spec §5") {
  const auto v3 = dsr1::kv_cache_size(preset("deepseek-r1"));
  CHECK(v3.mla_elements * 61 == 35136);
  CHECK(v3.mla_bytes_per_token == 70272);
  CHECK(v3.mla_bytes_128k == 9210691584ULL);
  CHECK(v3.mla_bytes_max == 11513364480ULL);
  CHECK(v3.mha_elements * 61 == 1998848);
  CHECK(v3.mha_bytes_per_token == 3997696);
  CHECK(v3.mha_bytes_128k == 523986010112ULL);
  CHECK(v3.naive_elements * 61 == 2498560);
  CHECK(v3.naive_bytes_per_token == 4997120);
  CHECK(v3.naive_bytes_128k == 654982512640ULL);
  const auto v2 = dsr1::kv_cache_size(preset("deepseek-v2"));
  CHECK(v2.mla_elements * 60 == 34560);
  CHECK(v2.mla_bytes_per_token == 69120);
  CHECK(v2.mla_bytes_128k == 69120ULL * 131072ULL);
  // "8.438 GiB" in the spec: 8.4375 exactly, rounded half up to three decimals.
  CHECK(v2.mla_bytes_128k / 1073741824.0 == 8.4375);
  const auto lite = dsr1::kv_cache_size(preset("deepseek-v2-lite"));
  CHECK(lite.mla_elements * 27 == 15552);
  CHECK(lite.mla_bytes_per_token == 31104);
  CHECK(std::fabs(lite.mla_bytes_128k / 1073741824.0 - 3.797) < 5e-4);  // "3.797 GiB"
  // MLA's cache is GQA with 2.25 groups: 576 / 256 (spec §5).
  CHECK(static_cast<double>(v3.mla_elements) / (2 * 128) == 2.25);
}

TEST_CASE("FLOPs per token are twice the activated matrix entries, plus attention per position") {
  for (const char* name : {"deepseek-v3", "deepseek-v2", "deepseek-v2-lite", "tiny-v3"}) {
    CAPTURE(name);
    const auto c = preset(name);
    const auto p = count_params(c);
    const auto f = dsr1::flops_per_token(c);
    // Activated parameters that are not matrix entries: norm weights and the gate bias.
    const std::uint64_t L = c.num_hidden_layers, d = c.hidden_size;
    const std::uint64_t vectors = L * (2 * d + c.kv_lora_rank + (c.has_q_lora() ? c.q_lora_rank : 0)) + d +
                                  (c.has_gate_bias() ? c.num_moe_layers() * c.n_routed_experts : 0);
    CHECK(f.linear == 2.0 * static_cast<double>(p.active_params - vectors));
    const double n_h = c.num_attention_heads;
    CHECK(f.attention_per_context_token_naive == L * n_h * (2.0 * c.d_qk() + 2.0 * c.v_head_dim));
    CHECK(f.at_4k_absorbed == f.linear + 4096 * f.attention_per_context_token_absorbed);
  }
  // V3: 2 * 36.6B ~ 73 GFLOP per token before attention.
  const auto f = dsr1::flops_per_token(preset("deepseek-v3"));
  CHECK(f.linear > 7.0e10);
  CHECK(f.linear < 7.4e10);
}
