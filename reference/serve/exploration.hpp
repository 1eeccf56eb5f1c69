// One run of the classroom explorer: the reference forward pass over a prompt, keeping only what
// the page can show (the traced tensors of every layer that the pictures draw, the top next
// tokens), never the weights. Leaves out: HTTP (server.hpp), one-run-at-a-time (run_queue.hpp)
// and the pictures (views.hpp draws them from what is kept here).
//
// Memory. The weights come from a WeightStore that fetches each layer when it runs and releases
// it after (deepseek/weight_store.hpp), so a run needs the working set of `dsr1 run`; what stays
// afterwards is, per layer, a few [T, d] vectors, the attention weights [n_h, T, T], the latent
// cache [T, r_kv + d_rope] and the router's scores [T, N_r], and the logits [V, T]
// (kept_bytes_estimate), plus the shapes of every other traced tensor (for the MLA data-flow
// picture).
#pragma once

#include <armadillo>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "reference/deepseek/config.hpp"
#include "reference/deepseek/mla.hpp"
#include "reference/deepseek/model.hpp"
#include "reference/deepseek/weight_store.hpp"
#include "reference/trace/trace.hpp"

namespace dsr1::serve {

// What the client asked for, validated (request.hpp parses it).
struct RunRequest {
  std::vector<std::int64_t> tokens;  // the prompt as token ids
  std::string kind = "token ids";    // "text", "chat" or "token ids"
  std::string text;                  // what the ids encode: the text, or the rendered chat
  ref::AttnForm attn = ref::AttnForm::Naive;
  bool mtp = false;                  // also run the Multi-Token Prediction module
};

// Keeps the values of the tensors the page draws and the shapes of the rest.
class ExplorerTracer : public RecordingTracer {
 public:
  ExplorerTracer() : RecordingTracer({"*"}) {}
  void on_tensor(const std::string& full_name, const TensorView& x) override;
  // Does the page draw this tensor's values? (attention weights, latent cache, norms' inputs and
  // outputs, the residual stream, the router), by the last part of its name.
  static bool keeps_values(const std::string& full_name);
  std::uint64_t kept_values() const { return kept_values_; }

 private:
  std::uint64_t kept_values_ = 0;
};

// A next-token candidate after one position: id, logit, softmax probability over the vocabulary.
struct NextToken {
  std::int64_t id;
  double logit;
  double prob;
};

// A finished run.
struct Exploration {
  std::uint64_t id = 0;
  Config config;
  RunRequest request;
  std::string source;                    // "preset deepseek-r1 (generator seed 1)", ...
  // A token's visible string ("␣Paris"; text/visible.hpp) when the server has a tokenizer, else null.
  std::function<std::string(std::int64_t)> label_of;
  std::unique_ptr<ExplorerTracer> trace;  // what the pictures draw
  arma::mat logits;                      // [V, T], column t = logits after token t
  arma::mat mtp_logits;                  // [V, T-1] with MTP (predicting token t+2), else empty
  std::vector<std::vector<NextToken>> next;      // [T][k]: the top k after each position, best first
  std::vector<std::vector<NextToken>> mtp_next;  // [T-1][k] with MTP, else empty
  double seconds = 0;                    // the forward pass(es), weights fetched included
  double peak_rss_bytes = 0;             // the server process's peak resident set so far
};

// Called when a layer of a pass begins and when it ends: (pass name, layers done, layers L).
using LayerProgress = std::function<void(const std::string& pass, std::int64_t l, std::int64_t L)>;

// Runs the reference over request.tokens with the weights of `weights` and keeps what the page
// shows. `top_k` next tokens per position. Throws what the model throws (bad ids, positions past
// the context, non-finite values), naming the cause.
std::unique_ptr<Exploration> explore(const WeightStore& weights, const Config& c, const RunRequest& request,
                                     std::size_t top_k, const LayerProgress& progress);

// The top k of one column of logits [V], with the probabilities of a softmax over all V
// (computed stably: p_v = exp(l_v - max) / sum exp(l_u - max)); ties go to the lower id.
std::vector<NextToken> top_next_tokens(const arma::vec& logits, std::size_t k);

// Bytes an Exploration keeps for T tokens of this config (the traced values it keeps, in double),
// an upper estimate used to refuse prompts whose traces would not fit, and printed at start.
double kept_bytes_estimate(const Config& c, std::int64_t T, bool mtp);

// This process's peak resident set so far, in bytes (getrusage).
double peak_rss_bytes();

}  // namespace dsr1::serve
