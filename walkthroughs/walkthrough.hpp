// Shared driver of the walkthroughs: command-line options, the tracer set-up, step pauses, and
// access to the golden files whose numbers the walkthroughs print.
// Leaves out: the formulas (reference/) and the numbers (golden/seed/*.json).
//
// Options of every walkthrough program:
//   --step               pause for Enter between steps (a closed stdin just continues)
//   --precision N        digits after the decimal point (default 4)
//   --trace GLOB         print only the tensors whose full name matches (repeatable); a filter
//                        that matches nothing is an error (exit code 1)
//   --jsonl FILE         also write every selected tensor to FILE as JSON Lines
//   --dump FILE          also write every selected tensor to FILE (.safetensors, F64)
//   --shapes             print only names and shapes
//   --html FILE          also write the walkthrough as one self-contained HTML page: the same
//                        sections, steps, commentary and tensors, with pictures (reference/html/)
#pragma once

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <armadillo>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "reference/html/html_tracer.hpp"
#include "reference/io/golden_json.hpp"
#include "reference/trace/trace.hpp"
#include "reference/trace/trace_outputs.hpp"

namespace dsr1::walk {

struct Options {
  bool step = false;
  int precision = 4;
  std::vector<std::string> trace{"*"};
  std::string jsonl, dump, html;
  bool shapes = false;
};

class Walkthrough {
 public:
  Walkthrough(const Options& opt, const std::string& title) : opt_(opt) {
    PrintOptions popt;
    popt.precision = opt.precision;
    popt.shapes_only = opt.shapes;
    print_ = std::make_unique<PrintTracer>(opt.trace, popt);
    std::vector<Tracer*> outs{print_.get()};
    if (!opt.jsonl.empty()) {
      jsonl_ = std::make_unique<JsonlTracer>(opt.jsonl, opt.trace);
      outs.push_back(jsonl_.get());
    }
    if (!opt.dump.empty()) {
      dump_ = std::make_unique<DumpTracer>(opt.dump, opt.trace);
      outs.push_back(dump_.get());
    }
    if (!opt.html.empty()) {
      html_ = std::make_unique<html::HtmlTracer>(opt.trace, title, opt.precision, true);
      outs.push_back(html_.get());
    }
    tee_ = std::make_unique<TeeTracer>(opt.trace, outs);
  }

  // The tracer every formula of the walkthrough records into (never null).
  Tracer* tr() { return tee_.get(); }
  const Options& options() const { return opt_; }

  // A section heading: "§1.1 RMSNorm" (with --html, a new section of the page's step mode).
  void section(std::string_view number, std::string_view title) {
    print_->note(fmt::format("\n{}\n§{} {}\n{}", std::string(72, '='), number, title, std::string(72, '=')));
    if (html_) html_->section(fmt::format("§{} {}", number, title));
  }

  // A numbered step; with --step, waits for Enter before every step but the first.
  void step(std::string_view text) {
    if (opt_.step && steps_ > 0) {
      fmt::print("  [Enter for the next step]");
      std::fflush(stdout);
      std::string line;
      if (!std::getline(std::cin, line)) opt_.step = false;  // stdin closed: run to the end
    }
    ++steps_;
    print_->note(fmt::format("\n-- step {}: {}", steps_, text));
    if (html_) html_->step(fmt::format("step {}: {}", steps_, text));
  }

  // Where the explainer document rounds or is wrong (docs/errata.md): a marked line in the
  // terminal, a call-out on the page.
  void erratum(std::string_view text) {
    print_->note(fmt::format("  [erratum, docs/errata.md] {}", text));
    if (html_) html_->erratum(std::string(text));
  }

  // A picture for the page (drawn only with --html): `draw` returns a figure of reference/html/.
  void picture(const std::function<std::string()>& draw) {
    if (html_) html_->figure(draw());
  }

  // Commentary, printed between the tensors.
  void say(std::string_view text) { tee_->note(text); }

  // Show an input or a derived quantity through the tracer (so filters, JSONL and dumps see it).
  void show(std::string_view name, const arma::mat& x) { TRACE(tr(), name, x); }
  void show(std::string_view name, const arma::vec& x) { TRACE(tr(), name, x); }
  void show_scalar(std::string_view name, double x) { TRACE_SCALAR(tr(), name, x); }

  // A weight matrix as the document writes it, one matrix row per line. Weights are parameters,
  // not traced activations: the tracer's disk layout would print W transposed ([cols, rows]).
  void show_weight(std::string_view name, const arma::mat& W) {
    if (opt_.shapes) {
      say(fmt::format("{} (weight) [{} x {}]", name, W.n_rows, W.n_cols));
      return;
    }
    std::string s = fmt::format("{} (weight, rows as written) =", name);
    for (arma::uword r = 0; r < W.n_rows; ++r) {
      std::vector<std::string> row;
      for (arma::uword c = 0; c < W.n_cols; ++c) row.push_back(num(W(r, c)));
      s += fmt::format("\n  [{}]", fmt::join(row, ", "));
    }
    say(s);
  }

  // A number as the printout shows it, at the chosen precision.
  std::string num(double v) const { return format_number(v, opt_.precision); }

  // A golden file of the explainer's examples, found from the source tree.
  GoldenFile golden(const std::string& name) const { return GoldenFile::load(seed_golden_path(name)); }

  // End of the run: flush the outputs, then insist that the filter selected something.
  void finish() {
    tee_->finish();
    tee_->check_filter_matched();
    if (html_) html_->write(opt_.html);
  }

 private:
  Options opt_;
  int steps_ = 0;
  std::unique_ptr<PrintTracer> print_;
  std::unique_ptr<JsonlTracer> jsonl_;
  std::unique_ptr<DumpTracer> dump_;
  std::unique_ptr<html::HtmlTracer> html_;
  std::unique_ptr<TeeTracer> tee_;
};

using Section = std::function<void(Walkthrough&)>;

// Parses the options, runs the sections in order, reports errors; returns the exit code.
inline int run(int argc, char** argv, const std::string& name, const std::string& description,
               const std::vector<Section>& sections) {
  CLI::App app{description, name};
  Options opt;
  app.add_flag("--step", opt.step, "Pause for Enter between steps (for live classroom use)");
  app.add_option("--precision", opt.precision, "Digits after the decimal point")
      ->check(CLI::Range(0, 17));
  app.add_option("--trace", opt.trace,
                 "Print only tensors whose full name matches this glob ('*' any run of "
                 "characters, '?' one character); repeatable, e.g. --trace '*.probs'");
  app.add_option("--jsonl", opt.jsonl, "Also write the selected tensors to FILE as JSON Lines");
  app.add_option("--dump", opt.dump, "Also write the selected tensors to FILE (.safetensors, F64)");
  app.add_flag("--shapes", opt.shapes, "Shape-only mode: print names and shapes, no values");
  app.add_option("--html", opt.html,
                 "Also write the walkthrough as one self-contained HTML page with pictures to FILE");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    Walkthrough w(opt, description);
    for (const auto& s : sections) s(w);
    w.finish();
  } catch (const std::exception& e) {
    std::fflush(stdout);
    fmt::print(stderr, "{}: error: {}\n", name, e.what());
    return 1;
  }
  return 0;
}

}  // namespace dsr1::walk
