// What the explorer's page shows, as JSON: the numbers, and the pictures of reference/html/
// rendered on the server as SVG/HTML fragments (one drawing code for the pages of `--html` and
// for the explorer; the page's script only places them). Leaves out: computing (exploration.hpp)
// and HTTP (server.hpp).
//
// Every view reads what a finished run kept; none computes model arithmetic, so choosing a layer,
// a head or a token after a run costs the drawing only. Numbers are JSON doubles, which carry
// every bit of the float64 values (the browser test compares them with `dsr1 run --dump`);
// the pictures print them at `precision` digits, as the terminal does.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "reference/deepseek/config.hpp"
#include "reference/serve/exploration.hpp"
#include "reference/serve/request.hpp"

namespace dsr1::serve {

// The model before any run: its dimensions, the map of its blocks (dense or MoE, the MTP block),
// the limits of this server, and the config's own pictures (RoPE/YaRN frequencies, KV-cache
// bytes against context length).
// With `text` (may be null), the page offers text and chat prompts.
nlohmann::json model_view(const Config& c, const std::string& source, const Limits& limits, int precision,
                          const TextSupport* text = nullptr);

// A finished run: the tokens, how it was computed (path, attention form, time, memory, bytes
// kept), the next-token candidates after each position (top k with probabilities), and the
// pictures that span all layers: the residual stream's norm through the layers, the logits
// table, the RoPE rotation at the prompt's positions.
nlohmann::json run_view(const Exploration& run, int precision);

// One block of a finished run (layer l, or the MTP block when l == L): attention maps of heads
// head0 .. head0+heads-1 with their weights, the latent cache (c_kv_hat, k_rope), the RMSNorms
// around attention and FFN for token t, the router of token t (scores, groups, chosen experts,
// gates) and the expert load over the prompt for an MoE block, and the MLA data flow with the
// traced shapes. Throws RequestError (404) when the run did not compute that block.
nlohmann::json layer_view(const Exploration& run, std::int64_t l, std::int64_t head0, std::int64_t heads,
                          std::int64_t t, int precision);

}  // namespace dsr1::serve
