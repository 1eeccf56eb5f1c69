// Golden sets: every traced intermediate of the double-precision reference for a config, a
// seed and a token sequence, written in open formats with a manifest that `dsr1 compare` walks.
// Leaves out: the comparison itself (compare.hpp) and the full-scale layer checks (fullscale.hpp).
//
// A golden set is a directory:
//   config.json          the HF-style configuration (config.hpp)
//   model.safetensors    the generator's weights (generator.hpp) under HF names, float32
//                        (every generator value is a float32, so this is exact)
//   inputs.safetensors   input_ids [T] (I64)
//   trace.safetensors    the traced tensors, float64 (or float32 with --dtype f32):
//                          the full forward pass (naive attention) and the MTP head, under the
//                          names of docs/trace-names.md, then incremental decoding (absorbed
//                          attention through the latent KV cache) under "incremental.": the
//                          prefill as "incremental.prefill.*", each step as
//                          "incremental.decode.{t}.*", the assembled logits as
//                          "incremental.logits"
//   manifest.json        format version, dsr1 version, config, seed, token ids (and the prompt
//                        text with each token's string, when the ids came from text), and per
//                        tensor: name, file, shape, dtype, meaning, docs page, order
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "reference/tools/compare.hpp"
#include "reference/deepseek/config.hpp"
#include "reference/deepseek/model.hpp"
#include "reference/io/safetensors.hpp"
#include "reference/deepseek/weights.hpp"

namespace dsr1 {

inline constexpr int kGoldenFormatVersion = 1;

struct GoldenSpec {
  Config config;
  std::uint64_t seed = 0;
  std::vector<std::int64_t> tokens;
  std::int64_t decode_from = 0;  // P: positions >= P are decoded one at a time through the cache
  safetensors::DType dtype = safetensors::DType::F64;  // of trace.safetensors: F64 or F32
  // When the tokens came from text (dsr1 golden --text / --chat), the manifest records it under
  // "prompt": the text (a chat as rendered), each token's string, the tokenizer, the chat format.
  struct PromptText {
    std::string kind;                        // "text" | "chat"
    std::string text;
    std::vector<std::string> token_strings;  // the bytes each token decodes to
    std::string tokenizer;                   // the tokenizer.json it was encoded with
    std::string chat_format;                 // "v3" | "r1" for a chat, else ""
  };
  PromptText prompt;  // kind empty: the tokens were given as ids
};

// The traced tensors of one golden set, in computation order (the order of the manifest).
// `opt` carries the conformance faults; a golden set itself is always computed without them.
std::vector<compare::TensorSet::Entry> golden_tensors(const ModelWeights& W, const Config& c,
                                                      const std::vector<std::int64_t>& tokens,
                                                      std::int64_t decode_from,
                                                      const ref::ForwardOptions& opt);

// What a traced tensor means and the docs page of its formula, from its trace name.
std::string trace_meaning(const std::string& name);
std::string trace_docs_page(const std::string& name);

// Computes and writes a golden set into `dir` (created if needed). Throws naming the problem
// for an invalid config, out-of-range tokens or a decode_from outside 0..T.
void write_golden_set(const std::string& dir, const GoldenSpec& spec);

}  // namespace dsr1
