#include "reference/tools/golden_set.hpp"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "reference/deepseek/loader.hpp"
#include "reference/trace/trace.hpp"

namespace fs = std::filesystem;

namespace dsr1 {

std::vector<compare::TensorSet::Entry> golden_tensors(const ModelWeights& W, const Config& c,
                                                      const std::vector<std::int64_t>& tokens,
                                                      std::int64_t decode_from,
                                                      const ref::ForwardOptions& opt) {
  const auto T = static_cast<std::int64_t>(tokens.size());
  if (T == 0) throw std::invalid_argument("golden set: no tokens given");
  if (decode_from < 0 || decode_from > T)
    throw std::invalid_argument(
        fmt::format("golden set: --decode-from {} is outside 0..{} (the number of tokens)", decode_from, T));
  RecordingTracer tr({"*"});
  // 1. The full forward pass in one call, naive attention (per-head keys and values).
  ref::ForwardOptions full = opt;
  full.attn = ref::AttnForm::Naive;
  arma::mat h_final;
  ref::forward_hidden(W, c, tokens, 0, nullptr, full, &tr, &h_final);
  // 2. The MTP head on the main model's post-norm hidden state (V3 configs).
  if (W.mtp && T >= 2) ref::mtp_forward(W, c, h_final, tokens, full, &tr);
  // 3. Incremental decoding: prefill, then one token at a time through the latent cache, in
  // the absorbed form (only c_kv_hat and k_rope are cached, spec §4.3).
  {
    TraceScope scope(&tr, "incremental");
    ref::ForwardOptions inc = opt;
    inc.attn = ref::AttnForm::Absorbed;
    ref::forward_incremental(W, c, tokens, decode_from, inc, &tr);
  }
  std::vector<compare::TensorSet::Entry> out;
  for (const auto& e : tr.entries()) {
    if (e.data.empty() && !e.shape.empty()) continue;  // shape-only records carry no values
    out.push_back({e.name, e.shape, e.data, "F64"});
  }
  return out;
}

namespace {

struct Meaning {
  const char* stage;
  const char* meaning;
  const char* docs;
};

// One line per trace name of docs/trace-names.md.
const Meaning kMeanings[] = {
    {"embed.h", "token embeddings h_t = E[token_t]", "docs/model.md"},
    {"attn_norm", "RMSNorm_attn(h), the attention input", "docs/model.md"},
    {"attn.c_q", "query latent c_q = W_DQ x (q-LoRA only)", "docs/mla.md"},
    {"attn.c_q_hat", "RMSNorm_q(c_q) (q-LoRA only)", "docs/mla.md"},
    {"attn.q_nope", "q_nope = W_UQ c_q_hat (or W_UQ x), heads stacked", "docs/mla.md"},
    {"attn.q_rope_pre", "W_QR c_q_hat before RoPE, heads stacked", "docs/mla.md"},
    {"attn.q_rope", "q_rope after RoPE (interleaved pairs, YaRN frequencies) at absolute positions", "docs/mla.md"},
    {"attn.c_kv", "KV latent c_kv = W_DKV x, before its RMSNorm", "docs/mla.md"},
    {"attn.c_kv_hat", "RMSNorm_kv(c_kv): what the latent cache stores", "docs/mla.md"},
    {"attn.k_rope_pre", "W_KR x, the one RoPE key shared by all heads, before RoPE", "docs/mla.md"},
    {"attn.k_rope", "k_rope after RoPE: what the cache stores next to c_kv_hat", "docs/mla.md"},
    {"attn.k_nope", "naive form: W_UK c_kv_hat for every key, heads stacked", "docs/mla.md"},
    {"attn.v", "naive form: W_UV c_kv_hat for every key, heads stacked", "docs/mla.md"},
    {"attn.q_tilde", "absorbed form: W_UK_h^T q_nope_h per head", "docs/mla.md"},
    {"attn.scores", "s_eff q.k per head, query, key; future keys -inf", "docs/mla.md"},
    {"attn.probs", "softmax of the scores over keys", "docs/mla.md"},
    {"attn.z", "absorbed form: sum_j p_j c_kv_hat_j per head", "docs/mla.md"},
    {"attn.o", "per-head attention outputs, concatenated", "docs/mla.md"},
    {"attn.u", "u = W_O o", "docs/mla.md"},
    {"h_attn", "h + u (residual around attention)", "docs/model.md"},
    {"ffn_norm", "RMSNorm_ffn(h_attn)", "docs/model.md"},
    {"ffn.gate", "W_gate x (dense SwiGLU)", "docs/routing-moe.md"},
    {"ffn.up", "W_up x (dense SwiGLU)", "docs/routing-moe.md"},
    {"ffn.act", "silu(gate) * up", "docs/routing-moe.md"},
    {"ffn.out", "W_down act", "docs/routing-moe.md"},
    {"moe.ell", "router logits W_g x", "docs/routing-moe.md"},
    {"moe.s", "router scores: softmax (V2) or sigmoid (V3)", "docs/routing-moe.md"},
    {"moe.s_tilde", "s + b, the biased scores used only for selection (V3)", "docs/routing-moe.md"},
    {"moe.group_scores", "group scores: max (V2) or top-2 sum of s_tilde (V3)", "docs/routing-moe.md"},
    {"moe.group_mask", "1 for the topk_group kept groups, 0 for dropped ones", "docs/routing-moe.md"},
    {"moe.experts", "chosen expert ids, best first, ties to the lower id", "docs/routing-moe.md"},
    {"moe.g", "gating weights of the chosen experts (normalised for V3, times routed_scaling_factor)",
     "docs/routing-moe.md"},
    {"moe.routed", "sum_k g_k E_{i_k}(x)", "docs/routing-moe.md"},
    {"moe.shared", "shared expert output", "docs/routing-moe.md"},
    {"moe.out", "shared + routed", "docs/routing-moe.md"},
    {"h", "block output h_attn + FFN(RMSNorm_ffn(h_attn))", "docs/model.md"},
    {"final_norm", "RMSNorm_final(h)", "docs/model.md"},
    {"logits", "W_head final_norm; row t = logits after token t", "docs/model.md"},
    {"emb_norm", "MTP: RMSNorm_e(E[token_{i+1}])", "docs/model.md"},
    {"h_norm", "MTP: RMSNorm_h(h_final_i), the main model's post-norm state", "docs/model.md"},
    {"h_proj", "MTP: W_eh [emb_norm ; h_norm] (embedding first, pitfall P10)", "docs/model.md"},
    {"head_norm", "MTP: shared_head.norm before the head", "docs/model.md"},
};

// The name without "incremental.", "prefill.", "decode.{t}.", "layers.{l}." and "mtp.(block.)".
std::string stage_of(std::string n, std::string& context) {
  auto strip = [&](const std::string& p) {
    if (n.rfind(p, 0) == 0) {
      n = n.substr(p.size());
      return true;
    }
    return false;
  };
  if (strip("incremental.")) context += "incremental decoding (absorbed attention, latent cache)";
  if (strip("prefill.")) context += ", prefill";
  if (n.rfind("decode.", 0) == 0) {
    const auto dot = n.find('.', 7);
    if (dot != std::string::npos) {
      context += fmt::format(", decode step at position {}", n.substr(7, dot - 7));
      n = n.substr(dot + 1);
    }
  }
  if (n.rfind("layers.", 0) == 0) {
    const auto dot = n.find('.', 7);
    if (dot != std::string::npos) n = n.substr(dot + 1);
  }
  if (strip("mtp.")) {
    if (strip("block.")) context += context.empty() ? "MTP block" : ", MTP block";
  }
  return n;
}

}  // namespace

std::string trace_meaning(const std::string& name) {
  std::string context;
  const std::string st = stage_of(name, context);
  for (const auto& m : kMeanings)
    if (st == m.stage) return context.empty() ? m.meaning : fmt::format("{} [{}]", m.meaning, context);
  return context.empty() ? "traced tensor" : fmt::format("traced tensor [{}]", context);
}

std::string trace_docs_page(const std::string& name) {
  std::string context;
  const std::string st = stage_of(name, context);
  for (const auto& m : kMeanings)
    if (st == m.stage) return m.docs;
  return "docs/trace-names.md";
}

void write_golden_set(const std::string& dir, const GoldenSpec& spec) {
  if (spec.dtype != safetensors::DType::F64 && spec.dtype != safetensors::DType::F32)
    throw std::invalid_argument("golden set: --dtype must be f64 or f32");
  validate(spec.config);
  const ModelWeights W = generate_weights(spec.config, spec.seed);
  const auto tensors = golden_tensors(W, spec.config, spec.tokens, spec.decode_from, {});
  fs::create_directories(dir);
  // config.json and model.safetensors: the generator's float32 values, stored exactly.
  write_checkpoint(dir, spec.config, W, safetensors::DType::F32);
  std::vector<double> ids(spec.tokens.begin(), spec.tokens.end());
  safetensors::write((fs::path(dir) / "inputs.safetensors").string(),
                     {{"input_ids", {static_cast<std::uint64_t>(ids.size())}, ids, safetensors::DType::I64}});
  std::vector<safetensors::NamedTensor> named;
  nlohmann::json list = nlohmann::json::array();
  const std::string dtype_name = safetensors::to_string(spec.dtype);
  for (std::size_t k = 0; k < tensors.size(); ++k) {
    const auto& t = tensors[k];
    named.push_back({t.name, t.shape, t.data, spec.dtype});
    list.push_back({{"name", t.name},
                    {"file", "trace.safetensors"},
                    {"shape", t.shape},
                    {"dtype", dtype_name},
                    {"meaning", trace_meaning(t.name)},
                    {"docs", trace_docs_page(t.name)},
                    {"order", k}});
  }
  safetensors::write((fs::path(dir) / "trace.safetensors").string(), named,
                     {{"format", "dsr1-golden"}, {"dsr1_version", DSR1_VERSION}});
  nlohmann::json m;
  m["format"] = "dsr1-golden";
  m["format_version"] = kGoldenFormatVersion;
  m["dsr1_version"] = DSR1_VERSION;
  m["config_name"] = spec.config.name;
  m["config"] = nlohmann::json::parse(config_to_json_text(spec.config));
  m["seed"] = spec.seed;
  m["tokens"] = spec.tokens;
  if (!spec.prompt.kind.empty()) {
    nlohmann::json prompt = {{"kind", spec.prompt.kind},
                             {"text", spec.prompt.text},
                             {"token_strings", spec.prompt.token_strings},
                             {"tokenizer", spec.prompt.tokenizer}};
    if (!spec.prompt.chat_format.empty()) prompt["chat_format"] = spec.prompt.chat_format;
    m["prompt"] = prompt;
  }
  m["decode_from"] = spec.decode_from;
  m["dtype"] = dtype_name;
  m["weights"] = {{"file", "model.safetensors"},
                  {"generator", "docs/generator.md"},
                  {"note", "the portable generator's values for this seed, stored as F32 (exact)"}};
  m["inputs"] = {{"file", "inputs.safetensors"}, {"name", "input_ids"}};
  m["forms"] = {{"full", "one forward pass over every token, naive attention (per-head keys and values)"},
                {"incremental", "prefill of the first decode_from tokens, then one token at a time through the "
                                "latent KV cache, absorbed attention"}};
  m["independent_checks"] = nlohmann::json::array(
      {"tests/independent/: a numpy implementation written from the spec alone reproduces the logits",
       "incremental.logits equals logits (cached absorbed decoding vs one naive pass), tests/test_golden_sets.cpp",
       "the weights are reproduced bit-exactly by docs/examples/generator.py, written from docs/generator.md"});
  // Indented header, then one line per tensor: readable, diffable, and a third of the size.
  m["tensors"] = nlohmann::json::array();
  // A prompt's token may be part of a UTF-8 character (byte-level BPE): its bytes are written as
  // U+FFFD (error_handler_t::replace); the ids beside them are exact.
  std::string text = m.dump(1, ' ', false, nlohmann::json::error_handler_t::replace);
  const std::string empty = "\"tensors\": []";
  const std::size_t at = text.rfind(empty);
  std::string lines = "\"tensors\": [\n";
  for (std::size_t k = 0; k < list.size(); ++k)
    lines += "  " + list[k].dump() + (k + 1 < list.size() ? ",\n" : "\n");
  text.replace(at, empty.size(), lines + " ]");
  std::ofstream out(fs::path(dir) / "manifest.json", std::ios::trunc);
  if (!out) throw std::runtime_error(fmt::format("cannot write '{}/manifest.json'", dir));
  out << text << "\n";
}

}  // namespace dsr1
