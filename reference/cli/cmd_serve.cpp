// dsr1 serve: the classroom explorer, a local web page where a prompt runs through the model and
// every layer, head and expert can be looked at afterwards (reference/serve/, docs/serve.md).
// Parsing and printing only: the server, the runs and the pictures live in reference/serve/.
#include <fmt/format.h>

#include <memory>

#include "reference/cli/command.hpp"
#include "reference/cli/model_source.hpp"
#include "reference/serve/exploration.hpp"
#include "reference/serve/server.hpp"

namespace dsr1::cli {
namespace {

struct ServeArgs {
  ModelSource source;
  serve::ServeOptions options;
};

int run_serve(const ServeArgs& a) {
  const Config c = a.source.config();
  serve::ServeOptions options = a.options;
  if (!serve::is_loopback(options.host))
    fmt::print(stderr,
               "dsr1 serve: WARNING: listening on {}, not on loopback: anyone who can reach this machine "
               "on port {} can start runs on it and read their results. The server has no authentication "
               "and no encryption; use it on a network you trust, or drop --host.\n",
               options.host, options.port);
  // What one run costs: the working set of `dsr1 run` while it computes (weights fetched a layer
  // at a time), and the traced tensors it keeps for the pictures afterwards.
  const std::int64_t T = options.limits.max_prompt_tokens;
  fmt::print(stderr,
             "dsr1 serve: {} ({}); prompts of up to {} tokens, one run at a time; a run of {} tokens needs a "
             "working set of about {:.2f} GB while it computes and keeps about {:.1f} MB for the page\n",
             c.name, a.source.describe(), T, T, working_set_bytes(c, T) / 1e9,
             serve::kept_bytes_estimate(c, T, c.num_nextn_predict_layers > 0) / 1e6);
  const ModelSource source = a.source;
  return serve::serve(options, c, source.describe(), [source](std::int64_t tokens, bool mtp) {
    // Opened per run (the memory check of `dsr1 run` included) and closed when the run ends.
    ModelSource::Opened m = source.open(mtp, tokens);
    serve::OpenedModel opened;
    opened.source = std::move(m.source);
    opened.weights = std::move(m.weights);
    return opened;
  });
}

const Register reg{Command{
    "serve", "the classroom explorer: a local web page to run a prompt and walk through every layer, head and expert",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<ServeArgs>();
      a->source.add_options(sub);
      sub.add_option("--host", a->options.host,
                     "address to listen on; anything but loopback (127.0.0.1, ::1) exposes the server to the network")
          ->capture_default_str();
      sub.add_option("--port", a->options.port, "TCP port; 0 picks a free one (printed on stdout)")
          ->check(CLI::Range(0, 65535))
          ->capture_default_str();
      sub.add_option("--max-prompt-tokens", a->options.limits.max_prompt_tokens,
                     "longest prompt a client may run (what a run keeps grows with T per layer, T^2 per head)")
          ->check(CLI::Range(1, 4096))
          ->capture_default_str();
      sub.add_option("--precision", a->options.precision, "digits the pictures print after the decimal point")
          ->check(CLI::Range(0, 17))
          ->capture_default_str();
      return [a] { return run_serve(*a); };
    }}};

}  // namespace
}  // namespace dsr1::cli
