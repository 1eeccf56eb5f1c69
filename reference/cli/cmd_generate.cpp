// dsr1 generate: a continuation of a prompt (text, a chat or token ids), one token at a time
// through the latent KV cache, greedy or sampled (reference/deepseek/sampling.hpp), printed as it
// is generated; on the reference path, or with --fast on the float32 fast path. docs/generate.md.
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include <unistd.h>

#include "reference/cli/command.hpp"
#include "reference/cli/model_source.hpp"
#include "reference/cli/progress.hpp"
#include "reference/cli/text_input.hpp"
#include "reference/deepseek/model.hpp"
#include "reference/deepseek/sampling.hpp"
#include "reference/fast/model.hpp"
#include "reference/fast/pack.hpp"
#include "reference/fast/source_model.hpp"
#include "reference/io/memory_reuse.hpp"
#include "reference/text/utf8.hpp"
#include "reference/trace/trace_outputs.hpp"

namespace dsr1::cli {
namespace {

struct GenerateArgs {
  ModelSource source;
  RunOptions run;
  PromptOptions prompt;  // --text, --chat or --tokens (--prompt)
  std::int64_t n_new = 8;
  ref::SamplingOptions sampling;
  bool fast = false;
  int threads = 0;
  bool json = false;
  bool progress = false;  // the progress line on stderr even when it would not be shown
  std::vector<std::string> trace;
  int precision = 4;
};

// The logits of the next token: prefill(prompt) runs the whole prompt and gives the logits after
// its last token; step(token) appends one token through the latent cache and gives the logits
// after it. One implementation per path.
struct NextTokenLogits {
  virtual ~NextTokenLogits() = default;
  virtual arma::vec prefill(const std::vector<std::int64_t>& prompt) = 0;
  virtual arma::vec step(std::int64_t token) = 0;
};

// The reference: double precision, weights fetched layer by layer at every step. Traced as
// "prefill.*" and "decode.{position}.*", as ref::generate_greedy names them.
struct ReferenceLogits : NextTokenLogits {
  ReferenceLogits(const WeightStore& W, const Config& c, const ref::ForwardOptions& opt, Tracer* tr)
      : W_(W), c_(c), opt_(opt), tr_(tr), cache_(ref::make_cache(c)) {}
  arma::vec prefill(const std::vector<std::int64_t>& prompt) override {
    TraceScope scope(tr_, "prefill");
    const arma::mat logits = ref::forward(W_, c_, prompt, 0, &cache_, opt_, tr_);  // [V, P]
    return logits.col(logits.n_cols - 1);
  }
  arma::vec step(std::int64_t token) override {
    const std::int64_t pos = cache_.length();
    TraceScope scope(tr_, fmt::format("decode.{}", pos));
    return ref::forward(W_, c_, {token}, pos, &cache_, opt_, tr_).col(0);
  }
  const WeightStore& W_;
  const Config& c_;
  ref::ForwardOptions opt_;
  Tracer* tr_;
  ref::ModelCache cache_;
};

// The fast path (reference/fast/): every weight packed once as float32 (or the checkpoint's
// BF16/FP8 bytes), then prefill and one decode() per token through the float32 latent cache.
// All of the fast path's driving is here.
struct FastLogits : NextTokenLogits {
  // Two ways to hold the weights, as the model's size asks:
  //  * a checkpoint the fast path can map, or a model whose packed copy would take more than a
  //    quarter of this machine's memory (DeepSeek-R1): fast::SourceModel (fast/source_model.hpp),
  //    as `dsr1 run --fast` does, with weights where they lie in the mapped file or packed a
  //    layer (and a chosen expert) at a time, so memory follows one layer at any size;
  //  * a smaller model from the generator (mini-r1, the tiny presets): every weight packed once
  //    (fast::pack_weights), since packing a layer again for every new token would cost more
  //    than the token itself.
  // Both give the same bits (tests/test_fast_source.cpp).
  FastLogits(const ModelSource::Opened& m, fast::WeightType type, int threads, std::int64_t reserve,
             ProgressLine& progress)
      : progress_(progress) {
    opt_.threads = threads;
    fast::PackOptions po;
    po.threads = threads;
    const double quarter_of_memory = 0.25 * static_cast<double>(::sysconf(_SC_PHYS_PAGES)) *
                                     static_cast<double>(::sysconf(_SC_PAGESIZE));
    if (fast::can_map(*m.source, m.config, type) ||
        fast::packed_model_bytes(m.config, type) > quarter_of_memory) {
      on_demand_ = std::make_unique<fast::SourceModel>(*m.source, m.config, type, po);
      cache_ = on_demand_->make_cache(reserve);
      weights_ = on_demand_.get();
      progress.count_also(&on_demand_->counters());
    } else {
      packed_ = std::make_unique<fast::ModelWeightsF>(fast::pack_weights(*m.source, m.config, type, po));
      resident_ = std::make_unique<fast::ResidentWeights>(*packed_);
      weights_ = resident_.get();
      cache_ = fast::make_cache(m.config, reserve);
    }
    config_ = &m.config;
    weights_->on_layer_done = [this](std::int64_t l, std::int64_t L) { progress_.layer_done(l, L); };
  }
  ~FastLogits() override { progress_.count_also(nullptr); }
  arma::vec prefill(const std::vector<std::int64_t>& prompt) override {
    const arma::fmat logits = fast::forward(*weights_, *config_, prompt, 0, &cache_, opt_, nullptr);  // [V, P]
    return arma::conv_to<arma::vec>::from(logits.col(logits.n_cols - 1));
  }
  arma::vec step(std::int64_t token) override {
    const arma::fvec logits = fast::decode(*weights_, *config_, token, cache_, opt_, nullptr);
    return arma::conv_to<arma::vec>::from(logits);
  }
  std::unique_ptr<fast::SourceModel> on_demand_;
  std::unique_ptr<fast::ModelWeightsF> packed_;
  std::unique_ptr<fast::ResidentWeights> resident_;
  fast::WeightsAccess* weights_ = nullptr;  // one of the two above
  const Config* config_ = nullptr;
  ProgressLine& progress_;
  fast::Options opt_;
  fast::ModelCache cache_;
};

// Prints generated bytes as soon as they form whole UTF-8 characters: a token may end in the
// middle of one (byte-level BPE), and the next token completes it. Bytes that can never form a
// character are printed as they are.
class Utf8Stream {
 public:
  void add(const std::string& bytes) {
    pending_ += bytes;
    std::size_t whole = 0;
    while (whole < pending_.size()) {
      const std::size_t n = text::utf8_sequence_length(pending_, whole);
      if (n > 0) {
        whole += n;
        continue;
      }
      if (could_complete(whole)) break;  // the start of a character whose rest is still to come
      ++whole;                           // a byte no continuation can repair
    }
    std::fwrite(pending_.data(), 1, whole, stdout);
    std::fflush(stdout);
    pending_.erase(0, whole);
  }
  void finish() {
    std::fwrite(pending_.data(), 1, pending_.size(), stdout);
    pending_.clear();
    std::fflush(stdout);
  }

 private:
  // Fewer bytes than the lead byte announces, all of them continuation bytes so far.
  bool could_complete(std::size_t at) const {
    const auto lead = static_cast<unsigned char>(pending_[at]);
    const std::size_t want = lead >= 0xF0 && lead <= 0xF4 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC2 && lead < 0xE0 ? 2 : 0;
    if (want == 0 || pending_.size() - at >= want) return false;
    for (std::size_t i = at + 1; i < pending_.size(); ++i)
      if ((static_cast<unsigned char>(pending_[i]) & 0xC0) != 0x80) return false;
    return true;
  }
  std::string pending_;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int generate(const GenerateArgs& a) {
  ref::check_sampling_options(a.sampling);
  const Config config = a.source.config();
  const Prompt prompt = read_prompt(a.prompt, a.source, config);
  const std::vector<std::int64_t>& ids = prompt.ids;
  // Every position must exist before any is computed; compared without forming prompt + n, which
  // could overflow 64 bits.
  const auto P = static_cast<std::int64_t>(ids.size());
  const std::int64_t max_pos = config.max_position_embeddings;
  if (P > max_pos || a.n_new > max_pos - P)
    throw std::invalid_argument(fmt::format(
        "--new-tokens: {} prompt tokens and {} new ones run past max_position_embeddings = {}", P,
        a.n_new, max_pos));
  if (a.fast && !a.trace.empty())
    throw std::invalid_argument("--fast: --trace is for the reference path; drop one of them");
  const int threads = a.threads > 0 ? a.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const fast::WeightType weight_type =
      a.source.model_dir.empty() ? fast::WeightType::F32 : fast::stored_weight_type(config);
  // Weights stay in the checkpoint or the generator, fetched layer by layer on either path.
  const ModelSource::Opened m = a.source.open(false, P + a.n_new);
  std::unique_ptr<PrintTracer> printer;
  if (!a.trace.empty()) {
    PrintOptions po;
    po.precision = a.precision;
    po.position_labels = prompt.position_labels();
    printer = std::make_unique<PrintTracer>(a.trace, po, stderr);  // stdout carries the text
  }
  // The progress line (stderr) of long runs: by default only when stderr is a terminal and the
  // text goes elsewhere (not --json), since the line is rewritten in place and would run over
  // the text; always with --progress.
  const bool show_progress =
      a.progress || (!a.json && ProgressLine::stderr_is_terminal() && ::isatty(STDOUT_FILENO) != 1);
  // Passes: the prefill, then one per generated token but the last.
  ProgressLine progress(show_progress, std::max<std::int64_t>(1, a.n_new), m.config.num_hidden_layers,
                        *m.source, *m.weights);
  ref::ForwardOptions opt = a.run.forward_options();
  opt.on_layer_begin = [](std::int64_t l, std::int64_t) {
    if (l == 0) release_freed_memory();  // a new pass: hand back what the last one left free
  };
  opt.on_layer_done = [&progress](std::int64_t l, std::int64_t L) { progress.layer_done(l, L); };
  const auto t_start = std::chrono::steady_clock::now();
  std::unique_ptr<NextTokenLogits> model;
  if (a.fast) model = std::make_unique<FastLogits>(m, weight_type, threads, P + a.n_new, progress);
  else model = std::make_unique<ReferenceLogits>(*m.weights, m.config, opt, printer.get());
  const double setup_seconds = seconds_since(t_start);

  const bool talk = !a.json;
  if (talk) {
    fmt::print(stderr, "model: {} ({}); {} path; {}\n", m.config.name, a.source.describe(),
               a.fast ? fmt::format("fast ({} weights, {} threads)", fast::to_string(weight_type), threads) : "reference",
               a.sampling.temperature == 0
                   ? std::string("greedy")
                   : fmt::format("sampling at temperature {}, top-k {}, top-p {}, seed {}", a.sampling.temperature,
                                 a.sampling.top_k, a.sampling.top_p, a.sampling.seed));
    fmt::print(stderr, "prompt: {} tokens ({}{}): {}\n", P, prompt.kind,
               prompt.format ? fmt::format(", {} chat format", text::to_string(*prompt.format)) : "",
               fmt::join(ids, ","));
  }
  // The text streams on stdout: a text prompt first (as typed), then every token as it comes.
  Utf8Stream out;
  if (talk && prompt.tokenizer && prompt.kind == "text") out.add(prompt.text);

  ref::Sampler sampler(a.sampling);
  std::vector<ref::Choice> chosen;
  std::string generated_text;
  std::string stop = "length";
  double time_to_first = 0;
  const auto t_prefill = std::chrono::steady_clock::now();
  if (a.n_new > 0) {
    arma::vec logits = model->prefill(ids);
    for (std::int64_t i = 0; i < a.n_new; ++i) {
      const ref::Choice c = sampler.next(logits);
      chosen.push_back(c);
      if (i == 0) time_to_first = seconds_since(t_prefill);
      const bool eos = prompt.eos_id && c.id == *prompt.eos_id;
      if (prompt.tokenizer) {
        const std::string bytes = prompt.tokenizer->token_bytes(c.id);
        generated_text += bytes;
        if (talk && !eos) out.add(bytes);
      } else if (talk) {
        fmt::print("{}{}", i == 0 ? "" : ",", c.id);  // no tokenizer: the ids as they come
        std::fflush(stdout);
      }
      if (eos) {
        stop = "eos";
        break;
      }
      if (i + 1 == a.n_new) break;
      logits = model->step(c.id);
    }
  }
  const double total = seconds_since(t_prefill);
  progress.finish();
  if (printer) {
    printer->finish();
    printer->check_filter_matched();
  }
  const auto n = static_cast<std::int64_t>(chosen.size());
  // Decode speed: the tokens after the first, over the time after it.
  const double decode_rate = n > 1 && total > time_to_first ? (n - 1) / (total - time_to_first) : 0.0;
  if (a.json) {
    nlohmann::json j;
    j["model"] = m.config.name;
    j["source"] = a.source.describe();
    j["path"] = a.fast ? "fast" : "reference";
    j["prompt"] = {{"kind", prompt.kind}, {"ids", ids}};
    if (!prompt.text.empty()) j["prompt"]["text"] = prompt.text;
    j["sampling"] = {{"temperature", a.sampling.temperature}, {"top_k", a.sampling.top_k},
                     {"top_p", a.sampling.top_p}, {"seed", a.sampling.seed}};
    std::vector<std::int64_t> out_ids;
    nlohmann::json tokens = nlohmann::json::array();
    for (const ref::Choice& c : chosen) {
      out_ids.push_back(c.id);
      nlohmann::json t = {{"id", c.id}, {"probability", c.probability},
                          {"sampling_probability", c.sampling_probability}};
      if (prompt.tokenizer) t["string"] = prompt.tokenizer->token_bytes(c.id);
      tokens.push_back(t);
    }
    j["ids"] = out_ids;
    if (prompt.tokenizer) j["text"] = text::utf8_lossy(generated_text);
    j["tokens"] = tokens;
    j["stop"] = stop;
    j["timings"] = {{"setup_seconds", setup_seconds},
                    {"time_to_first_token_seconds", time_to_first},
                    {"decode_tokens_per_second", decode_rate},
                    {"total_seconds", total}};
    // error_handler_t::replace: a token may be part of a UTF-8 character (byte-level BPE); its
    // bytes then print as U+FFFD rather than failing the whole report.
    fmt::print("{}\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
    return 0;
  }
  out.finish();
  fmt::print("\n");
  std::fflush(stdout);
  fmt::print(stderr, "{} tokens generated ({}); time to first token {:.3f} s (prefill of {} tokens), then {:.2f} "
                     "tokens/s; setup {:.2f} s; peak resident memory {:.2f} GB\n",
             n, stop == "eos" ? "stopped at EOS" : "stopped at -n", time_to_first, P, decode_rate, setup_seconds,
             peak_rss_bytes() / 1e9);
  return 0;
}

const Register reg{Command{
    "generate",
    "generate a continuation of a prompt (text, a chat or token ids) through the latent KV cache, greedy or "
    "sampled, printed as it is generated",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<GenerateArgs>();
      a->source.add_options(sub);
      // --seed seeds the sampler here; the generator's weights take --weights-seed.
      sub.remove_option(sub.get_option("--seed"));
      sub.add_option("--weights-seed", a->source.seed, "generator seed for --preset / --config weights")
          ->capture_default_str();
      a->run.add_options(sub);
      a->prompt.add_options(sub, "--tokens,--prompt");
      sub.add_option("-n,--new-tokens", a->n_new, "how many tokens to generate at most (EOS stops earlier)")
          ->check(CLI::NonNegativeNumber)
          ->capture_default_str();
      sub.add_option("--temperature", a->sampling.temperature, "sampling temperature; 0 = greedy")
          ->capture_default_str();
      sub.add_option("--top-k", a->sampling.top_k, "sample among the k most likely tokens only; 0 = all")
          ->capture_default_str();
      sub.add_option("--top-p", a->sampling.top_p,
                     "sample among the most likely tokens whose probabilities sum to p (nucleus); 1 = all")
          ->capture_default_str();
      sub.add_option("--seed", a->sampling.seed, "seed of the sampler (SplitMix64)")->capture_default_str();
      CLI::Option* fast = sub.add_flag("--fast", a->fast,
                                       "decode on the float32 fast path (reference/fast/) through its latent cache");
      sub.add_option("--threads", a->threads, "--fast: threads (default: all hardware threads)")
          ->check(CLI::Range(1, 1024))
          ->needs(fast);
      sub.add_flag("--json", a->json,
                   "print one JSON object (ids, text, each chosen token's probability, timings) instead of "
                   "streaming the text");
      sub.add_option("--trace", a->trace, "print traced tensors matching this glob (repeatable) on stderr");
      sub.add_option("--precision", a->precision, "digits after the decimal point")
          ->check(CLI::Range(0, 17));
      sub.add_flag("--progress", a->progress,
                   "show the progress line on stderr (pass, layer, experts, bytes, ETA) even when it is not a "
                   "terminal or the text goes to the same terminal");
      return [a] { return generate(*a); };
    }}};

}  // namespace
}  // namespace dsr1::cli
