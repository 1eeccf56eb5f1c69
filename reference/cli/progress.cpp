#include "reference/cli/progress.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace dsr1::cli {

std::string format_duration(double seconds) {
  const auto s = static_cast<std::int64_t>(seconds + 0.5);
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
}

ProgressLine::ProgressLine(bool enabled, std::int64_t passes, std::int64_t layers,
                           const TensorSource& source, const WeightStore& weights)
    : enabled_(enabled), passes_(passes), layers_(layers), source_(source), weights_(weights),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

bool ProgressLine::stderr_is_terminal() { return ::isatty(STDERR_FILENO) == 1; }

void ProgressLine::layer_done(std::int64_t l, std::int64_t L) {
  if (!enabled_) return;
  ++layers_done_;
  if (l + 1 == L) ++pass_;
  // At most a few redraws a second: a tiny model runs thousands of layers a second.
  const auto now = std::chrono::steady_clock::now();
  if (l + 1 != L && now - last_draw_ < std::chrono::milliseconds(200)) return;
  last_draw_ = now;
  draw(l, L);
}

void ProgressLine::draw(std::int64_t l, std::int64_t L) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const std::int64_t total = passes_ * layers_;
  const std::int64_t left = std::max<std::int64_t>(0, total - layers_done_);
  const double eta = layers_done_ > 0 ? elapsed / static_cast<double>(layers_done_) * static_cast<double>(left) : 0;
  const SourceCounters& s = source_.counters();
  const StoreCounters& w = weights_.counters();
  std::uint64_t experts = w.experts_fetched.load(), bytes = s.bytes_read.load();
  if (fast_) {
    experts += fast_->experts_fetched.load();
    bytes += fast_->mapped_bytes_used.load();
  }
  const std::string read = bytes < 1000000000 ? fmt::format("{:.1f} MB", static_cast<double>(bytes) / 1e6)
                                               : fmt::format("{:.2f} GB", static_cast<double>(bytes) / 1e9);
  fmt::print(stderr, "\r[dsr1] pass {}/{}  layer {}/{}  experts {}  generated {:.3g} values  read {}  {}  ETA {}   ",
             std::min(pass_ + (l + 1 == L ? 0 : 1), passes_), passes_, l + 1, L, experts,
             static_cast<double>(s.values_generated.load()), read, format_duration(elapsed),
             format_duration(eta));
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressLine::finish() {
  if (!enabled_ || !drawn_) return;
  fmt::print(stderr, "\n");
  drawn_ = false;
}

}  // namespace dsr1::cli
