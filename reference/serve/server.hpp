// dsr1 serve: the classroom explorer's HTTP server. One self-contained page (explorer.html: no
// external URL, works offline) and a small JSON API over the run queue and the views.
// Leaves out: the command line (reference/cli/cmd_serve.cpp) and where the weights come from
// (the caller's ModelOpener: a preset's generator, a checkpoint).
//
//   GET  /                  the page
//   GET  /api/model         the model's map, dimensions, limits and config pictures  (views.hpp)
//   POST /api/run           {"text": "..."} | {"messages": [...]} | {"tokens": "3,17,5"}, "attn", "mtp"
//                           -> 202 {"run": id};
//                           409 while a run computes, 400 for a bad request, 413 for a large body
//   GET  /api/status        {"state": "idle|running|done|failed", "layer", "layers", "seconds", "error"}
//   GET  /api/run           the finished run: tokens, next tokens, residual norms, logits
//   GET  /api/layer/<l>     ?head=H&token=T: one block of the finished run (l = 0..L-1 or "mtp")
//   GET  /docs/<page>.md    the docs page a formula links to, from a fixed list (never a path)
// Every error is JSON {"error": "..."} with a 4xx/5xx status. docs/serve.md describes it all.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "reference/deepseek/config.hpp"
#include "reference/deepseek/weight_store.hpp"
#include "reference/io/tensor_source.hpp"
#include "reference/serve/request.hpp"

namespace dsr1::serve {

// The docs/ folder of the source tree this program was built from.
std::string default_docs_dir();

struct ServeOptions {
  std::string host = "127.0.0.1";  // loopback unless the user says otherwise
  int port = 8080;                 // 0: any free port (printed on stdout)
  Limits limits;
  int precision = 4;               // digits the pictures print
  std::size_t top_k = 10;          // next-token candidates kept per position
  std::string docs_dir = default_docs_dir();  // where /docs/<page>.md is read from ("" = not served)
};

// The weights of one run, opened when the run starts and closed when it ends: a run holds the
// memory of `dsr1 run` while it computes and none of it afterwards.
struct OpenedModel {
  std::unique_ptr<TensorSource> source;
  std::unique_ptr<WeightStore> weights;
};
using ModelOpener = std::function<OpenedModel(std::int64_t T, bool mtp)>;

// Is this host name a loopback address (127.0.0.0/8, ::1, localhost)?
bool is_loopback(const std::string& host);

// Binds, prints "dsr1 serve: http://HOST:PORT/" on stdout, and serves until SIGINT or SIGTERM.
// `text` (may be null: token ids only) must outlive the call. Returns the exit code. Throws if
// the address cannot be bound.
int serve(const ServeOptions& options, const Config& c, const std::string& source, ModelOpener open,
          const TextSupport* text);

}  // namespace dsr1::serve
