// dsr1 serve's HTTP server (server.hpp), on cpp-httplib.
#include "reference/serve/server.hpp"

#include <fmt/format.h>
#include <httplib.h>
#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "reference/serve/explorer_page.hpp"
#include "reference/serve/run_queue.hpp"
#include "reference/serve/views.hpp"

namespace dsr1::serve {
namespace {

using json = nlohmann::json;

// The docs pages a formula on the page links to: names, never paths.
constexpr std::array<const char*, 8> kDocPages = {"mla", "rope-yarn", "routing-moe", "kv-cache",
                                                  "model", "trace-names", "html", "serve"};

// The page may run its own inline script and style, draw inline SVG, and talk to this server;
// nothing else (no external script, image, font or connection).
const char* kContentSecurityPolicy =
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

void send_json(httplib::Response& res, int status, const json& j) {
  res.status = status;
  res.set_content(j.dump(), "application/json; charset=utf-8");
}

void send_error(httplib::Response& res, int status, const std::string& message) {
  send_json(res, status, json{{"error", message}});
}

// "host:port" or "[::1]:port" -> the host part.
std::string host_of(const std::string& header) {
  if (!header.empty() && header.front() == '[') return header.substr(0, header.find(']') + 1);
  return header.substr(0, header.find(':'));
}

class Explorer {
 public:
  Explorer(const ServeOptions& options, const Config& c, std::string source, ModelOpener open,
           const TextSupport* text)
      : options_(options), config_(c), source_(std::move(source)), open_(std::move(open)), text_(text),
        model_(model_view(c, source_, options.limits, options.precision, text)) {}

  void install(httplib::Server& server) {
    server.set_payload_max_length(options_.limits.max_body_bytes);
    server.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      return check_host(req, res) ? httplib::Server::HandlerResponse::Unhandled
                                  : httplib::Server::HandlerResponse::Handled;
    });
    // Errors httplib itself answers (no route, a body over the limit, a URI too long) as JSON too.
    server.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      if (res.status == 404)
        send_error(res, 404, fmt::format("no such page or API endpoint: {} {}", req.method, req.path));
      else if (res.status == 413)
        send_error(res, 413, fmt::format("the request body is larger than this server's limit of {} bytes",
                                         options_.limits.max_body_bytes));
      else
        send_error(res, res.status, fmt::format("HTTP error {}", res.status));
    });
    server.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        send_error(res, 500, fmt::format("internal error: {}", e.what()));
      } catch (...) {
        send_error(res, 500, "internal error");
      }
    });
    server.set_post_routing_handler([](const httplib::Request&, httplib::Response& res) {
      res.set_header("X-Content-Type-Options", "nosniff");
      res.set_header("Cache-Control", "no-store");
    });

    server.Get("/", [](const httplib::Request&, httplib::Response& res) {
      res.set_header("Content-Security-Policy", kContentSecurityPolicy);
      res.set_content(std::string(explorer_page_html()), "text/html; charset=utf-8");
    });
    server.Get("/api/model", [this](const httplib::Request&, httplib::Response& res) { send_json(res, 200, model_); });
    server.Get("/api/status", [this](const httplib::Request&, httplib::Response& res) {
      send_json(res, 200, status_json());
    });
    server.Post("/api/run", [this](const httplib::Request& req, httplib::Response& res) { guarded(res, [&] { start_run(req, res); }); });
    server.Get("/api/run", [this](const httplib::Request&, httplib::Response& res) {
      guarded(res, [&] { send_json(res, 200, run_view(*finished(), options_.precision)); });
    });
    server.Get(R"(/api/layer/([^/]*))", [this](const httplib::Request& req, httplib::Response& res) {
      guarded(res, [&] { layer(req, res); });
    });
    server.Get(R"(/docs/([a-z-]+)\.md)", [this](const httplib::Request& req, httplib::Response& res) {
      guarded(res, [&] { doc_page(req.matches[1].str(), res); });
    });
  }

  RunQueue& queue() { return queue_; }

 private:
  // A request error becomes its status and message; anything else a 500 naming it.
  template <class F>
  static void guarded(httplib::Response& res, F&& f) {
    try {
      f();
    } catch (const RequestError& e) {
      send_error(res, e.status(), e.what());
    } catch (const Busy& e) {
      send_error(res, 409, e.what());
    }
  }

  // A server on loopback answers only requests addressed to a loopback name: a web page elsewhere
  // that makes the browser resolve its own domain to 127.0.0.1 (DNS rebinding) is refused.
  bool check_host(const httplib::Request& req, httplib::Response& res) const {
    if (!is_loopback(options_.host)) return true;
    const std::string host = host_of(req.get_header_value("Host"));
    if (is_loopback(host)) return true;
    send_error(res, 403, fmt::format("this server listens on {} and answers only requests addressed to it "
                                     "(Host '{}' is not a loopback name)", options_.host, host));
    return false;
  }

  json status_json() const {
    const RunQueue::Status s = queue_.status();
    return {{"state", RunQueue::state_name(s.state)}, {"run", s.run},       {"pass", s.pass},
            {"layer", s.layer},                       {"layers", s.layers}, {"seconds", s.seconds},
            {"error", s.error},                       {"summary", s.summary}};
  }

  std::shared_ptr<const Exploration> finished() const {
    const RunQueue::Status s = queue_.status();
    if (s.state == RunQueue::State::Running)
      throw RequestError(409, fmt::format("run {} is still computing; GET /api/status follows its progress", s.run));
    auto run = queue_.latest();
    if (!run)
      throw RequestError(404, s.state == RunQueue::State::Failed ? fmt::format("run {} failed: {}", s.run, s.error)
                                                                 : std::string("no run yet: POST /api/run first"));
    return run;
  }

  void start_run(const httplib::Request& req, httplib::Response& res) {
    // A JSON content type makes a cross-site form or script post need the browser's preflight,
    // which this server never grants.
    if (req.get_header_value("Content-Type").rfind("application/json", 0) != 0)
      throw RequestError(415, "POST /api/run takes a JSON body with Content-Type: application/json");
    const RunRequest r = parse_run_request(req.body, config_, options_.limits, text_);
    const std::string summary = fmt::format("{} of {} token{}, {} attention{}", r.kind, r.tokens.size(),
                                            r.tokens.size() == 1 ? "" : "s", ref::attn_form_name(r.attn),
                                            r.mtp ? ", MTP" : "");
    const std::uint64_t id = queue_.start(
        [this, r](const LayerProgress& progress) {
          fmt::print(stderr, "dsr1 serve: run: {} tokens on {} ({})\n", r.tokens.size(), config_.name, source_);
          const OpenedModel m = open_(static_cast<std::int64_t>(r.tokens.size()), r.mtp);
          auto run = explore(*m.weights, config_, r, options_.top_k, progress);
          run->source = source_;
          if (text_) run->label_of = [text = text_](std::int64_t id) { return text->label(id); };
          fmt::print(stderr, "dsr1 serve: run done in {:.1f} s, peak resident memory {:.2f} GB\n", run->seconds,
                     run->peak_rss_bytes / 1e9);
          return run;
        },
        summary);
    send_json(res, 202, {{"run", id}, {"summary", summary}});
  }

  void layer(const httplib::Request& req, httplib::Response& res) {
    const auto run = finished();
    const std::int64_t l = parse_block(req.matches[1].str(), config_);
    const auto opt = [&](const char* name) {
      return req.has_param(name) ? std::optional<std::string>(req.get_param_value(name)) : std::nullopt;
    };
    const std::int64_t n_h = config_.num_attention_heads;
    const std::int64_t T = static_cast<std::int64_t>(run->request.tokens.size());
    const std::int64_t head = parse_index(opt("head"), "head", n_h, 0);
    const std::int64_t token = parse_index(opt("token"), "token", T, T - 1);
    // The page of heads that holds `head`.
    const std::int64_t per = options_.limits.max_heads_per_view;
    send_json(res, 200, layer_view(*run, l, head / per * per, per, token, options_.precision));
  }

  void doc_page(const std::string& name, httplib::Response& res) const {
    bool known = false;
    for (const char* page : kDocPages) known = known || name == page;
    if (!known || options_.docs_dir.empty())
      throw RequestError(404, fmt::format("no docs page '{}' here", name));
    std::ifstream in(options_.docs_dir + "/" + name + ".md", std::ios::binary);
    if (!in) throw RequestError(404, fmt::format("docs/{}.md is not installed beside this program", name));
    std::ostringstream text;
    text << in.rdbuf();
    res.set_content(text.str(), "text/plain; charset=utf-8");
  }

  ServeOptions options_;
  Config config_;
  std::string source_;
  ModelOpener open_;
  const TextSupport* text_;  // null: token ids only
  json model_;
  RunQueue queue_;
};

// SIGINT and SIGTERM stop the server. They may arrive on any thread (OpenBLAS starts its own
// before main), so the handler only writes the signal's number to a pipe (async-signal-safe);
// a watcher thread reads it and stops the server.
int stop_pipe[2] = {-1, -1};

extern "C" void on_stop_signal(int signal) {
  const unsigned char n = static_cast<unsigned char>(signal);
  [[maybe_unused]] const ssize_t written = ::write(stop_pipe[1], &n, 1);
}

}  // namespace

std::string default_docs_dir() { return DSR1_DOCS_DIR; }

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

int serve(const ServeOptions& options, const Config& c, const std::string& source, ModelOpener open,
          const TextSupport* text) {
  // Runs compute on a worker thread. glibc gives other threads arenas of their own, which ignore
  // the main heap's reuse of freed layer memory (io/memory_reuse.hpp): a full-scale run then pays
  // a fresh mapping for every layer. One arena for all threads keeps a run's memory and time those
  // of `dsr1 run`.
  mallopt(M_ARENA_MAX, 1);
  if (::pipe(stop_pipe) != 0) throw std::runtime_error("dsr1 serve: cannot create the stop pipe");
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);

  httplib::Server server;
  Explorer explorer(options, c, source, std::move(open), text);
  explorer.install(server);
  const int port = options.port == 0 ? server.bind_to_any_port(options.host)
                                     : (server.bind_to_port(options.host, options.port) ? options.port : -1);
  if (port < 0)
    throw std::runtime_error(fmt::format("cannot listen on {}:{} (in use, or not an address of this machine)",
                                         options.host, options.port));
  const std::string shown_host = options.host.find(':') != std::string::npos ? "[" + options.host + "]" : options.host;
  fmt::print("dsr1 serve: http://{}:{}/ ({}, {})\n", shown_host, port, c.name, source);
  std::fflush(stdout);

  std::thread stopper([&] {
    unsigned char signal = 0;
    while (::read(stop_pipe[0], &signal, 1) < 0 && errno == EINTR) {
    }
    if (signal != 0)  // 0: the server ended on its own
      fmt::print(stderr, "dsr1 serve: {} received, stopping\n", signal == SIGINT ? "SIGINT" : "SIGTERM");
    server.stop();
  });
  server.listen_after_bind();
  const unsigned char none = 0;
  [[maybe_unused]] const ssize_t written = ::write(stop_pipe[1], &none, 1);  // release the watcher
  stopper.join();
  if (explorer.queue().status().state == RunQueue::State::Running) {
    fmt::print(stderr, "dsr1 serve: a run was still computing; leaving without waiting for it\n");
    std::fflush(stderr);
    std::_Exit(0);
  }
  return 0;
}

}  // namespace dsr1::serve
