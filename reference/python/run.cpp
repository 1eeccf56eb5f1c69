#include "reference/python/run.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <thread>

#include "reference/cli/progress.hpp"
#include "reference/deepseek/model.hpp"
#include "reference/fast/model.hpp"
#include "reference/fast/pack.hpp"
#include "reference/fast/source_model.hpp"
#include "reference/io/memory_reuse.hpp"

namespace dsr1::python {
namespace {

// Keeps every selected tensor, in the order the run records them.
struct KeepingTracer : Tracer {
  using Tracer::Tracer;
  std::vector<RecordingTracer::Entry> kept;
  void on_tensor(const std::string& name, const TensorView& x) override {
    if (!x.data) return;  // shape-only records carry no values
    kept.push_back({name, x.shape, std::vector<double>(x.data, x.data + x.numel()), {}});
  }
};

// The model's weight source with a check before every read: a layer of a large model fetches its
// weights in many reads (each matrix, each routed expert, the LM head a block of rows at a time),
// so an interrupt is noticed within one read rather than one layer.
class CheckedSource : public TensorSource {
 public:
  CheckedSource(const TensorSource& inner, std::function<void()> check) : inner_(inner), check_(std::move(check)) {}
  bool has(const std::string& name) const override { return inner_.has(name); }
  std::vector<std::uint64_t> shape(const std::string& name) const override { return inner_.shape(name); }
  TensorData read_rows(const std::string& name, std::uint64_t first, std::uint64_t count) const override {
    if (check_) check_();
    return inner_.read_rows(name, first, count);
  }
  void read_rows_transposed(const std::string& name, std::uint64_t first, std::uint64_t count, double* dst,
                            std::uint64_t ld) const override {
    if (check_) check_();
    inner_.read_rows_transposed(name, first, count, dst, ld);
  }
  std::vector<std::string> names() const override { return inner_.names(); }
  std::string describe() const override { return inner_.describe(); }
  const SourceCounters& counters() const override { return inner_.counters(); }

 private:
  const TensorSource& inner_;
  std::function<void()> check_;
};

fast::WeightType fast_weight_type(const cli::ModelSource& s, const Config& c) {
  return s.model_dir.empty() ? fast::WeightType::F32 : fast::stored_weight_type(c);
}

// Opens the model, turning ModelSource's refusal for lack of memory into DoesNotFit.
cli::ModelSource::Opened open_model(const cli::ModelSource& s, bool mtp, std::int64_t T) {
  try {
    return s.open(mtp, T);
  } catch (const std::runtime_error& e) {
    if (std::string(e.what()).find("but this machine has") != std::string::npos) throw DoesNotFit(e.what());
    throw;
  }
}

// Forward passes over every layer (for the progress line's ETA), as `dsr1 run` counts them.
std::int64_t count_passes(const RunRequest& r, std::int64_t T) {
  std::int64_t passes = r.decode_from < 0 ? 1 : (r.decode_from > 0 ? 1 : 0) + (T - r.decode_from);
  if (r.mtp && r.decode_from >= 0) ++passes;
  return passes;
}

}  // namespace

std::string fast_weight_name(const cli::ModelSource& source, const Config& c) {
  return fast::to_string(fast_weight_type(source, c));
}

RunResult run_model(const cli::ModelSource& source, const RunRequest& req) {
  const auto started = std::chrono::steady_clock::now();
  const auto T = static_cast<std::int64_t>(req.tokens.size());
  if (T == 0) throw std::invalid_argument("tokens: empty list");
  const Config cfg = source.config();
  if (req.decode_from > T)
    throw std::invalid_argument(fmt::format("decode_from: {} is past the {} tokens", req.decode_from, T));
  // The attention form: naive by default, absorbed for the fast path (the only form it has).
  const std::string attn = req.attn.empty() ? (req.fast ? "absorbed" : "naive") : req.attn;
  if (attn != "naive" && attn != "absorbed")
    throw std::invalid_argument(fmt::format("attn: '{}' is neither 'naive' nor 'absorbed'", attn));
  if (req.mtp && cfg.num_nextn_predict_layers == 0)
    throw std::invalid_argument(fmt::format("mtp: model '{}' has no MTP module", cfg.name));
  if (req.fast && req.mtp)
    throw std::invalid_argument("mtp: the fast path runs the main model only; use fast=False for MTP");
  if (req.fast && attn != "absorbed")
    throw std::invalid_argument(fmt::format("attn: the fast path computes the absorbed form only, '{}' was given", attn));

  const cli::ModelSource::Opened m = open_model(source, req.mtp, T);
  const Config& c = m.config;

  std::unique_ptr<KeepingTracer> rec;
  if (!req.trace.empty()) rec = std::make_unique<KeepingTracer>(req.trace);
  Tracer* tr = rec.get();

  // The weights of the reference path come through the checked source.
  const CheckedSource checked(*m.source, req.check_interrupt);
  const SourceStore store(c, checked, req.mtp);
  cli::ProgressLine progress(req.progress, count_passes(req, T), c.num_hidden_layers, *m.source, store);
  ref::ForwardOptions opt;
  opt.attn = attn == "absorbed" ? ref::AttnForm::Absorbed : ref::AttnForm::Naive;
  opt.on_layer_begin = [](std::int64_t l, std::int64_t) {
    if (l == 0) release_freed_memory();  // a new pass: hand back what the last one left free
  };
  opt.on_layer_done = [&](std::int64_t l, std::int64_t L) {
    progress.layer_done(l, L);
    if (req.check_interrupt) req.check_interrupt();
  };

  RunResult out;
  out.fast = req.fast;
  try {
    if (req.fast) {
      // As `dsr1 run --fast`: weights from the source as they are used (fast::SourceModel: a
      // checkpoint's matrices where they lie in the mapped files, or each layer packed when it
      // runs), then one pass (forward) or prefill + decode (forward_incremental). Generated
      // weights come through the checked source, so Ctrl-C is seen between blocks of rows as
      // well as between layers; a checkpoint is handed over as it is (the packer reads its
      // stored bytes through the Checkpoint itself).
      fast::Options fo;
      fo.threads = req.threads > 0 ? req.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
      fast::PackOptions po;
      po.threads = fo.threads;
      const TensorSource& from = source.model_dir.empty() ? static_cast<const TensorSource&>(checked) : *m.source;
      fast::SourceModel F(from, c, fast_weight_type(source, c), po);
      F.on_layer_done = opt.on_layer_done;
      progress.count_also(&F.counters());
      out.logits_f = req.decode_from >= 0 ? F.forward_incremental(req.tokens, req.decode_from, fo, tr)
                                          : F.forward(req.tokens, fo, tr);
      progress.count_also(nullptr);
    } else {
      arma::mat h_final;
      const WeightStore& W = store;
      if (req.decode_from >= 0) out.logits = ref::forward_incremental(W, c, req.tokens, req.decode_from, opt, tr);
      else out.logits = ref::forward_hidden(W, c, req.tokens, 0, nullptr, opt, tr, &h_final);
      if (req.mtp) {
        if (req.decode_from >= 0) ref::forward_hidden(W, c, req.tokens, 0, nullptr, opt, nullptr, &h_final);
        out.mtp_logits = ref::mtp_forward(W, c, h_final, req.tokens, opt, tr);
      }
    }
  } catch (...) {
    progress.finish();
    throw;
  }
  progress.finish();
  if (rec) {
    // A glob that selected nothing is a mistake in the name, as with `dsr1 run --trace`.
    for (const auto& g : req.trace) {
      const bool hit = std::any_of(rec->kept.begin(), rec->kept.end(),
                                   [&](const RecordingTracer::Entry& e) { return glob_match(g, e.name); });
      if (!hit)
        throw std::invalid_argument(fmt::format(
            "trace: '{}' matched none of the {} traced tensors of this run (names look like "
            "'layers.0.attn.scores'; trace=['*'] keeps them all)",
            g, rec->seen()));
    }
    // The entries move out: their buffers become the arrays' memory (module.cpp), no copy.
    out.tensors = std::move(rec->kept);
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return out;
}

}  // namespace dsr1::python
