// dsr1 generate: greedy continuation through the latent KV cache.
#include <fmt/format.h>

#include <memory>

#include "reference/cli/command.hpp"
#include "reference/io/memory_reuse.hpp"
#include "reference/cli/model_source.hpp"
#include "reference/deepseek/model.hpp"
#include "reference/trace/trace_outputs.hpp"

namespace dsr1::cli {
namespace {

struct GenerateArgs {
  ModelSource source;
  RunOptions run;
  std::string prompt;
  std::int64_t n_new = 8;
  std::vector<std::string> trace;
  int precision = 4;
};

int generate(const GenerateArgs& a) {
  const std::vector<std::int64_t> prompt = parse_token_list(a.prompt, "--prompt");
  // Every position must exist before any is computed; compared without forming prompt + n, which
  // could overflow 64 bits.
  const auto P = static_cast<std::int64_t>(prompt.size());
  const std::int64_t max_pos = a.source.config().max_position_embeddings;
  if (P > max_pos || a.n_new > max_pos - P)
    throw std::invalid_argument(fmt::format(
        "--new-tokens: {} prompt tokens and {} new ones run past max_position_embeddings = {}", P,
        a.n_new, max_pos));
  // Weights fetched layer by layer from the checkpoint or the generator, at every step.
  const ModelSource::Opened m = a.source.open(false, P + a.n_new);
  std::unique_ptr<PrintTracer> printer;
  if (!a.trace.empty()) {
    PrintOptions po;
    po.precision = a.precision;
    printer = std::make_unique<PrintTracer>(a.trace, po);
  }
  fmt::print("model: {} ({})\n", m.config.name, a.source.describe());
  ref::ForwardOptions opt = a.run.forward_options();
  opt.on_layer_begin = [](std::int64_t l, std::int64_t) {
    if (l == 0) release_freed_memory();  // a new pass: hand back what the last one left free
  };
  const auto out = ref::generate_greedy(*m.weights, m.config, prompt, a.n_new, opt, printer.get());
  if (printer) {
    printer->finish();
    printer->check_filter_matched();
  }
  const std::vector<std::int64_t> added(out.begin() + static_cast<std::ptrdiff_t>(prompt.size()),
                                        out.end());
  fmt::print("prompt:    {}\n", fmt::join(prompt, ","));
  fmt::print("generated: {}\n", fmt::join(added, ","));
  return 0;
}

const Register reg{Command{
    "generate", "greedy generation of N tokens after a prompt, through the latent KV cache",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<GenerateArgs>();
      a->source.add_options(sub);
      a->run.add_options(sub);
      sub.add_option("--prompt", a->prompt, "prompt token ids, comma-separated")->required();
      sub.add_option("-n,--new-tokens", a->n_new, "how many tokens to generate")
          ->check(CLI::NonNegativeNumber)
          ->capture_default_str();
      sub.add_option("--trace", a->trace, "print traced tensors matching this glob (repeatable)");
      sub.add_option("--precision", a->precision, "digits after the decimal point")
          ->check(CLI::Range(0, 17));
      return [a] { return generate(*a); };
    }}};

}  // namespace
}  // namespace dsr1::cli
