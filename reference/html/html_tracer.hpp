// The tracer behind --html: it keeps the traced tensors a page needs (like RecordingTracer) and
// turns them into pictures, either as they arrive (a walkthrough: sections, steps, commentary,
// errata and tensors in the order the terminal prints them) or after a forward pass (the page of
// `dsr1 run`: per traced block the attention maps, the router, the norms; then the config's RoPE
// and KV-cache curves, the MLA data flow and the top logits).
// Leaves out: the pictures themselves (pictures.hpp) and the page's frame (page.hpp).
//
// Numbers on the page are the traced tensors' own values at the page's precision, the same
// values the terminal prints; curves of the config (θ, θ', cache bytes) come from
// deepseek/rope.hpp and tools/accounting.hpp, the functions the model and `dsr1 info` use.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "reference/deepseek/config.hpp"
#include "reference/html/page.hpp"
#include "reference/html/pictures.hpp"
#include "reference/trace/trace.hpp"

namespace dsr1::html {

class HtmlTracer : public RecordingTracer {
 public:
  // lay_out_tensors: every selected tensor goes onto the page as it arrives (walkthroughs);
  // false: tensors are only kept for the pictures built after the run (dsr1 run).
  HtmlTracer(std::vector<std::string> filters, std::string title, int precision, bool lay_out_tensors);

  // The page's structure, called by the walkthrough driver alongside its terminal output.
  void section(const std::string& heading) { page_.section(heading); }
  void step(const std::string& text) { page_.heading(text); }
  void note(std::string_view text) override { page_.note(std::string(text)); }
  void erratum(const std::string& text) { page_.erratum(text); }
  void figure(const std::string& html) { page_.add(html); }

  void on_tensor(const std::string& full_name, const TensorView& x) override;

  int precision() const { return precision_; }
  Page& page() { return page_; }
  void write(const std::string& path) const { page_.write(path); }

 private:
  // Pictures a tensor completes: attention maps for "...probs", the MLA flow for "...attn.u",
  // router bars for "...moe.g" and "...router.g".
  void draw_pictures_of(const std::string& full_name);
  Page page_;
  int precision_;
  bool lay_out_tensors_;
};

// Attention heatmaps of a traced "<prefix>probs" ([n_h, T, T_k] or [T, T_k] on disk), masked
// where "<prefix>scores" is -inf if traced, else where key j lies after query t and its weight is
// exactly 0 (a causal mask; a bidirectional reading has no zero weights there).
// position_labels (optional): the visible token of every position of the run, so that query t
// (position T_k - T + t) and key j (position j) are labelled with their tokens.
std::vector<std::string> attention_heatmaps(const RecordingTracer& rec, const std::string& probs_name,
                                            int precision, const std::string& title,
                                            const std::vector<std::string>& position_labels = {});
// The MLA data flow drawn with the shapes traced under "<block>attn." ("layers.0.", or "").
std::string mla_flow_picture(const RecordingTracer& rec, const std::string& block);
// Router bars of every token of a traced block: needs "<prefix>moe.s" and "<prefix>moe.experts"
// (or the explainer's "<prefix>router.p" and "router.experts"); uses s_tilde, g, group_scores
// and group_mask when traced.
// position_labels (optional) name each token's picture with its token; a prefix "decode.{p}."
// holds position p.
std::vector<std::string> router_pictures(const RecordingTracer& rec, const std::string& prefix,
                                         int precision,
                                         const std::vector<std::string>& position_labels = {});

// What `dsr1 run --html` knows besides the traced tensors.
struct RunFacts {
  std::vector<std::int64_t> tokens;    // the input token ids
  std::string attention_form;          // "naive" | "absorbed"
  std::vector<std::string> filters;    // the --trace filters, for the page's first section
  // With a tokenizer (text/visible.hpp labels): the prompt as text, each position's token, and
  // any id's token (for the top logits). Empty / null: pictures show ids alone.
  std::string text;
  std::vector<std::string> token_labels;
  std::function<std::string(std::int64_t)> label_of;
};

// The page of a forward pass, from the tensors an HtmlTracer (lay_out_tensors = false) collected.
// logits: [V, T] as the model returns them (one column per position).
void build_run_page(HtmlTracer& h, const Config& c, const RunFacts& facts, const arma::mat& logits);

}  // namespace dsr1::html
