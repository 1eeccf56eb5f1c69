// dsr1 run: the reference forward pass on a token sequence, with tracing and a dump; with
// --fast, the float32 fast path (reference/fast/) on the same inputs, under the same trace names.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <thread>

#include "reference/cli/command.hpp"
#include "reference/io/memory_reuse.hpp"
#include "reference/cli/model_source.hpp"
#include "reference/cli/private_memory.hpp"
#include "reference/cli/progress.hpp"
#include "reference/cli/text_input.hpp"
#include "reference/fast/source_model.hpp"
#include "reference/fast/model.hpp"
#include "reference/fast/pack.hpp"
#include "reference/fast/weights.hpp"
#include "reference/deepseek/model.hpp"
#include "reference/html/html_tracer.hpp"
#include "reference/trace/trace_outputs.hpp"

namespace dsr1::cli {
namespace {

struct RunArgs {
  ModelSource source;
  RunOptions run;
  PromptOptions prompt;  // --text, --chat or --tokens
  std::int64_t decode_from = -1;
  bool mtp = false;
  std::vector<std::string> trace;
  std::string jsonl;
  std::string dump;
  std::string html;                      // --html FILE: the run as a page with pictures
  int precision = 4;
  bool quiet = false;
  bool json = false;      // one JSON object on stdout instead of the text report
  bool progress = false;  // the progress line on stderr even when it is not a terminal
  bool fast = false;
  int threads = 0;                       // --fast: 0 = all hardware threads
  std::string fast_weights = "auto";     // --fast: storage of the packed matrices (fast_weight_type)
  const CLI::Option* attn_opt = nullptr;  // to tell an explicit --attn from its default
};

// What the fast path does not do, refused up front with the reason.
void check_fast_options(const RunArgs& a) {
  if (a.mtp)
    throw std::invalid_argument("--fast: the fast path runs the main model only; drop --mtp or --fast");
  if (a.attn_opt && a.attn_opt->count() > 0 && a.run.attn != "absorbed")
    throw std::invalid_argument(fmt::format(
        "--fast: the fast path computes the absorbed form only, --attn {} was given", a.run.attn));
  if (a.run.rope_layout != "interleaved")
    throw std::invalid_argument(fmt::format(
        "--fast: the fast path uses the interleaved RoPE layout only, --rope-layout {} was given",
        a.run.rope_layout));
}

// --threads, or all hardware threads (at least one).
int fast_threads(const RunArgs& a) {
  return a.threads > 0 ? a.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

// --fast-weights: f32, bf16, fp8, or auto: what a checkpoint (--model) stores (FP8 -> fp8,
// BF16 -> bf16, else f32), and f32 for the generator's weights (float32 values).
fast::WeightType fast_weight_type(const RunArgs& a, const Config& c) {
  if (a.fast_weights != "auto") return fast::weight_type_from_string(a.fast_weights);
  return a.source.model_dir.empty() ? fast::WeightType::F32 : fast::stored_weight_type(c);
}

// What the fast path's model fetched (fast::SourceModelCounters, read when the run is over).
struct FastFacts {
  bool mapped = false;
  std::uint64_t layers = 0, experts = 0, mapped_bytes = 0;
};

// The fast path's logits [V, T], as double: prefill + decode with --decode-from, else one pass.
// The weights come from the source as they are used (fast/source_model.hpp): a checkpoint's
// matrices where they lie in the mapped files when it stores FP8, BF16 or F32 and the run
// keeps that storage, else each layer packed when it runs and each routed expert when chosen.
arma::mat run_fast(const RunArgs& a, const ModelSource::Opened& m,
                   const std::vector<std::int64_t>& tokens, Tracer* tr, ProgressLine& progress,
                   FastFacts& facts) {
  fast::Options opt;
  opt.threads = fast_threads(a);
  fast::PackOptions po;
  po.threads = opt.threads;
  fast::SourceModel model(*m.source, m.config, fast_weight_type(a, m.config), po);
  model.on_layer_done = [&](std::int64_t l, std::int64_t L) { progress.layer_done(l, L); };
  progress.count_also(&model.counters());
  const arma::fmat logits = a.decode_from >= 0
                                ? model.forward_incremental(tokens, a.decode_from, opt, tr)
                                : model.forward(tokens, opt, tr);
  progress.count_also(nullptr);  // the model goes now
  const fast::SourceModelCounters& n = model.counters();
  facts = {model.mapped(), n.layers_fetched.load(), n.experts_fetched.load(), n.mapped_bytes_used.load()};
  return arma::conv_to<arma::mat>::from(logits);
}

// Counts the tensors its filter selects (the tee only forwards names a sink wants).
struct MatchCounter : Tracer {
  using Tracer::Tracer;
  std::uint64_t count = 0;
  void on_tensor(const std::string&, const TensorView&) override { ++count; }
  void check_filter_matched_over(std::uint64_t seen) const {
    throw std::runtime_error(fmt::format(
        "--trace {} matched none of the {} traced tensors of this run (names look like "
        "'layers.0.attn.scores'; use --trace '*' to see them all)",
        fmt::join(filters(), " "), seen));
  }
};

// The token with the largest logit (ties -> lower id), as generation would pick it.
std::int64_t argmax(const arma::vec& x) {
  arma::uword best = 0;
  for (arma::uword i = 1; i < x.n_elem; ++i)
    if (x(i) > x(best)) best = i;
  return static_cast<std::int64_t>(best);
}

// Forward passes the run makes over every layer: one, or a prefill plus one per decoded token;
// MTP after decoding recomputes the final hidden states in one more pass.
std::int64_t count_passes(const RunArgs& a, std::int64_t T) {
  std::int64_t passes = a.decode_from < 0 ? 1 : (a.decode_from > 0 ? 1 : 0) + (T - a.decode_from);
  if (a.mtp && a.decode_from >= 0) ++passes;
  return passes;
}

int run(const RunArgs& a) {
  const auto started = std::chrono::steady_clock::now();
  const Prompt prompt = read_prompt(a.prompt, a.source, a.source.config());
  const std::vector<std::int64_t>& tokens = prompt.ids;
  const auto T = static_cast<std::int64_t>(tokens.size());
  if (a.mtp && a.source.config().num_nextn_predict_layers == 0)
    throw std::invalid_argument(fmt::format("--mtp: model '{}' has no MTP module", a.source.config().name));
  if (a.fast) check_fast_options(a);
  // The weights stay where they are (checkpoint or generator) and are fetched layer by layer,
  // on the fast path too (no copy of the model).
  PrivatePeakSampler private_peak(a.json);
  const ModelSource::Opened m = a.source.open(a.mtp, T);
  const Config& c = m.config;
  ref::ForwardOptions opt = a.run.forward_options();
  const bool show_progress = !a.quiet && !a.json && (a.progress || ProgressLine::stderr_is_terminal());
  ProgressLine progress(show_progress, count_passes(a, T), c.num_hidden_layers, *m.source, *m.weights);
  // Per layer of each pass: the weight values and routed experts fetched while it ran.
  struct LayerAccount {
    std::int64_t layer;
    std::uint64_t values, experts;
  };
  std::vector<LayerAccount> accounts;
  std::uint64_t values_at_begin = 0, experts_at_begin = 0;
  opt.on_layer_begin = [&](std::int64_t l, std::int64_t) {
    if (l == 0) release_freed_memory();  // a new pass: hand back what the last one left free
    values_at_begin = m.weights->counters().values_fetched.load();
    experts_at_begin = m.weights->counters().experts_fetched.load();
  };
  opt.on_layer_done = [&](std::int64_t l, std::int64_t L) {
    accounts.push_back({l, m.weights->counters().values_fetched.load() - values_at_begin,
                        m.weights->counters().experts_fetched.load() - experts_at_begin});
    progress.layer_done(l, L);
  };
  const bool talk = !a.quiet && !a.json;

  // Outputs: text for --trace, JSON Lines for --jsonl, and the dump, which always holds the
  // logits [T, V] plus every traced tensor.
  std::vector<std::unique_ptr<Tracer>> outputs;
  std::vector<Tracer*> sinks;
  std::vector<std::string> filters = a.trace;
  if (!a.trace.empty() && a.jsonl.empty()) {
    PrintOptions po;
    po.precision = a.precision;
    po.position_labels = prompt.position_labels();  // rows of [T, ...] tensors name their token
    outputs.push_back(std::make_unique<PrintTracer>(a.trace, po));
    sinks.push_back(outputs.back().get());
  }
  if (!a.jsonl.empty()) {
    outputs.push_back(std::make_unique<JsonlTracer>(a.jsonl, a.trace.empty() ? std::vector<std::string>{"*"} : a.trace));
    sinks.push_back(outputs.back().get());
  }
  if (!a.dump.empty()) {
    std::vector<std::string> dump_filters = a.trace;
    dump_filters.push_back("logits");
    if (a.mtp) dump_filters.push_back("mtp.logits");
    outputs.push_back(std::make_unique<DumpTracer>(
        a.dump, dump_filters, a.fast ? safetensors::DType::F32 : safetensors::DType::F64));
    sinks.push_back(outputs.back().get());
    filters.push_back("logits");
    if (a.mtp) filters.push_back("mtp.logits");
  }
  // --html: the page draws what --trace selects (everything without --trace).
  std::unique_ptr<html::HtmlTracer> page;
  if (!a.html.empty()) {
    const std::vector<std::string> page_filters = a.trace.empty() ? std::vector<std::string>{"*"} : a.trace;
    page = std::make_unique<html::HtmlTracer>(
        page_filters, fmt::format("dsr1 run: {} ({})", c.name, a.source.describe()), a.precision, false);
    sinks.push_back(page.get());
    filters.insert(filters.end(), page_filters.begin(), page_filters.end());
  }
  // Counts what the user's --trace filter selected: a filter matching nothing is an error.
  std::unique_ptr<MatchCounter> counter;
  if (!a.trace.empty()) {
    counter = std::make_unique<MatchCounter>(a.trace);
    sinks.push_back(counter.get());
  }
  std::unique_ptr<TeeTracer> tee;
  if (!sinks.empty()) tee = std::make_unique<TeeTracer>(filters, sinks);
  Tracer* tr = tee.get();

  if (talk) {
    fmt::print("model: {} ({})\n", c.name, a.source.describe());
    fmt::print("{}\n", describe_conventions(c));
    if (!prompt.text.empty())
      fmt::print("{}{}: {} tokens from \"{}\"\n", prompt.kind,
                 prompt.format ? fmt::format(" ({} format)", text::to_string(*prompt.format)) : "", T,
                 prompt.text);
    if (a.fast)
      fmt::print("fast path (float32 arithmetic, {} weights, absorbed attention, {} threads); tokens: {}\n",
                 fast::to_string(fast_weight_type(a, c)), fast_threads(a), fmt::join(tokens, ","));
    else
      fmt::print("attention form: {}; tokens: {}\n", a.run.attn, fmt::join(tokens, ","));
  }
  if (talk) std::fflush(stdout);
  if (a.decode_from == 0 && talk)
    fmt::print("no prefill: every position decoded one at a time through the latent cache\n");
  else if (a.decode_from > 0 && talk)
    fmt::print("positions 0..{} prefilled in one pass, the rest decoded one at a time\n",
               a.decode_from - 1);
  arma::mat logits;
  arma::mat h_final;
  const WeightStore& W = *m.weights;
  FastFacts fast_facts;
  if (a.fast) {
    logits = run_fast(a, m, tokens, tr, progress, fast_facts);
  } else if (a.decode_from >= 0) {
    logits = ref::forward_incremental(W, c, tokens, a.decode_from, opt, tr);
  } else {
    logits = ref::forward_hidden(W, c, tokens, 0, nullptr, opt, tr, &h_final);
  }
  if (a.mtp) {
    if (a.decode_from >= 0)  // MTP needs the final hidden states of every position
      ref::forward_hidden(W, c, tokens, 0, nullptr, opt, nullptr, &h_final);
    ref::mtp_forward(W, c, h_final, tokens, opt, tr);
  }
  progress.finish();
  if (tr) tr->finish();
  if (counter && counter->count == 0) counter->check_filter_matched_over(tee->seen());
  if (page) {
    html::RunFacts facts;
    facts.tokens = tokens;
    facts.attention_form = a.fast ? "absorbed (fast path)" : a.run.attn;
    facts.filters = a.trace;
    if (prompt.tokenizer) {
      facts.text = prompt.text;
      for (const std::int64_t id : tokens) facts.token_labels.push_back(prompt.label(id));
      facts.label_of = [&prompt](std::int64_t id) { return prompt.label(id); };
    }
    html::build_run_page(*page, c, facts, logits);
    page->write(a.html);
  }

  // What the run cost: time, peak memory, and what the weight source did.
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const SourceCounters& sc = m.source->counters();
  const StoreCounters& wc = m.weights->counters();
  std::vector<std::int64_t> next(static_cast<std::size_t>(logits.n_cols));
  for (arma::uword t = 0; t < logits.n_cols; ++t) next[t] = argmax(logits.col(t));
  if (a.json) {
    nlohmann::json j;
    j["model"] = c.name;
    j["source"] = a.source.describe();
    j["tokens"] = tokens;
    j["argmax_next"] = next;
    if (!prompt.text.empty()) j["text"] = prompt.text;
    if (prompt.tokenizer) {  // the token strings, as bytes decoded (not the visible labels)
      std::vector<std::string> strings, next_strings;
      for (const std::int64_t id : tokens) strings.push_back(prompt.tokenizer->token_bytes(id));
      for (const std::int64_t id : next) next_strings.push_back(prompt.tokenizer->token_bytes(id));
      j["token_strings"] = strings;
      j["argmax_next_strings"] = next_strings;
    }
    j["seconds"] = seconds;
    j["peak_rss_bytes"] = peak_rss_bytes();
    // The highest private (anonymous) memory sampled: without the mapped files' pages, which
    // count in the resident set but belong to the page cache.
    private_peak.stop();
    j["private_peak_bytes"] = private_peak.peak();
    j["bytes_read"] = sc.bytes_read.load();
    j["values_dequantised"] = sc.values_dequantised.load();
    j["values_generated"] = sc.values_generated.load();
    j["blocks_fetched"] = wc.blocks_fetched.load();
    j["experts_fetched"] = wc.experts_fetched.load();
    j["values_fetched"] = wc.values_fetched.load();
    if (a.fast)  // the fast path fetches its own weights: matrices where they lie, or packed per layer
      j["fast"] = {{"mapped", fast_facts.mapped}, {"layers_fetched", fast_facts.layers},
                   {"experts_fetched", fast_facts.experts}, {"mapped_bytes_used", fast_facts.mapped_bytes}};
    if (!a.dump.empty()) j["dump"] = a.dump;
    if (!a.html.empty()) j["html"] = a.html;
    j["layers"] = nlohmann::json::array();  // one entry per layer of every pass, in order
    for (const auto& acc : accounts)
      j["layers"].push_back({{"layer", acc.layer}, {"values_fetched", acc.values}, {"experts_fetched", acc.experts}});
    // error_handler_t::replace: a token may be part of a UTF-8 character (byte-level BPE); its
    // bytes then print as U+FFFD rather than failing the whole report.
    fmt::print("{}\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
  } else if (!a.quiet) {
    if (prompt.tokenizer) {  // each position's token and the argmax next token as strings
      fmt::print("{:>8} {:>8}  {:<24} {:>12}  {}\n", "position", "token", "string", "argmax next", "string");
      for (arma::uword t = 0; t < logits.n_cols; ++t) {
        const std::string here = prompt.label(tokens[t]);
        std::size_t chars = 0;
        for (unsigned char ch : here) chars += (ch & 0xC0) != 0x80;
        fmt::print("{:>8} {:>8}  {}{} {:>12}  {}\n", t, tokens[t], here, std::string(chars < 24 ? 24 - chars : 0, ' '),
                   next[t], prompt.label(next[t]));
      }
    } else {
      fmt::print("{:>8} {:>8} {:>14}\n", "position", "token", "argmax next");
      for (arma::uword t = 0; t < logits.n_cols; ++t)
        fmt::print("{:>8} {:>8} {:>14}\n", t, tokens[t], next[t]);
    }
    if (!a.dump.empty()) fmt::print("dump written to {}\n", a.dump);
    if (!a.html.empty()) fmt::print("page written to {}\n", a.html);
    fmt::print("{} in {}: peak resident memory {:.2f} GB; weights: {:.2f} GB read, {:.4g} values "
               "dequantised, {:.4g} generated; {} blocks and {} routed experts fetched\n",
               T == 1 ? "1 token" : fmt::format("{} tokens", T), format_duration(seconds),
               peak_rss_bytes() / 1e9, static_cast<double>(sc.bytes_read.load()) / 1e9,
               static_cast<double>(sc.values_dequantised.load()),
               static_cast<double>(sc.values_generated.load()), wc.blocks_fetched.load(),
               wc.experts_fetched.load());
    if (a.fast)
      fmt::print("fast path: {}; {} layers and {} routed experts fetched{}\n",
                 fast_facts.mapped ? "the checkpoint's matrices used where they lie (mapped)"
                                   : "weights packed a layer and a chosen expert at a time",
                 fast_facts.layers, fast_facts.experts,
                 fast_facts.mapped ? fmt::format(", {:.3g} GB of matrices used in place",
                                                 static_cast<double>(fast_facts.mapped_bytes) / 1e9)
                                   : "");
  }
  return 0;
}

const Register reg{Command{
    "run", "run the reference (or with --fast the fast path) on a prompt: text, a chat or token ids (trace, dump, HTML page, incremental decoding)",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<RunArgs>();
      a->source.add_options(sub);
      a->run.add_options(sub);
      a->prompt.add_options(sub, "--tokens");
      sub.add_option("--decode-from", a->decode_from,
                     "prefill positions < P in one pass, then decode the rest one token at a "
                     "time through the latent KV cache")
          ->check(CLI::NonNegativeNumber);
      sub.add_flag("--mtp", a->mtp, "also run the Multi-Token Prediction head (V3)");
      sub.add_option("--trace", a->trace,
                     "print the traced tensors whose names match this glob (repeatable), "
                     "e.g. 'layers.0.attn.*'");
      sub.add_option("--jsonl", a->jsonl, "write the traced tensors as JSON Lines to this file");
      sub.add_option("--dump", a->dump,
                     "write logits [T, V] and the traced tensors to this .safetensors file");
      sub.add_option("--html", a->html,
                     "write the run as one self-contained HTML page with pictures (attention maps, "
                     "router, norms, RoPE/YaRN, KV cache, MLA flow, top logits) of what --trace selects");
      sub.add_option("--precision", a->precision, "digits printed after the decimal point")
          ->check(CLI::Range(0, 17))
          ->capture_default_str();
      sub.add_flag("--quiet", a->quiet, "print nothing but the trace");
      sub.add_flag("--json", a->json,
                   "print one JSON object (argmax per position, time, peak memory, bytes read, "
                   "values dequantised and generated) instead of the text report");
      sub.add_flag("--progress", a->progress,
                   "show the progress line on stderr even when it is not a terminal");
      CLI::Option* fast = sub.add_flag("--fast", a->fast,
                   "run the float32 fast path (reference/fast/: absorbed attention, same trace "
                   "names; the dump is F32) instead of the reference");
      sub.add_option("--threads", a->threads, "--fast: threads (default: all hardware threads)")
          ->check(CLI::Range(1, 1024))
          ->needs(fast);
      sub.add_option("--fast-weights", a->fast_weights,
                     "--fast: matrices stored as f32, bf16 (exact for a BF16 checkpoint, else "
                     "rounded), fp8 (e4m3 with 128x128 block scales: an FP8 checkpoint's own "
                     "bytes, else quantised as init-model --dtype fp8 does), or auto (what the "
                     "--model checkpoint stores; f32 for generated weights)")
          ->check(CLI::IsMember({"auto", "f32", "bf16", "fp8"}))
          ->capture_default_str()
          ->needs(fast);
      a->attn_opt = sub.get_option("--attn");
      return [a] { return run(*a); };
    }}};

}  // namespace
}  // namespace dsr1::cli
