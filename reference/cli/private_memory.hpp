// The private (anonymous, not file-backed) memory of this process, and its peak over a run.
// The resident set (peak_rss_bytes) also counts the pages of mapped files that were touched:
// a run that reads a mapped checkpoint in place has them resident without owning them (they
// are the page cache's, and the kernel can drop them), so what the run itself holds is this.
// Linux only: read from /proc/self/status (RssAnon); 0 where it is not available.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

namespace dsr1::cli {

// RssAnon of /proc/self/status in bytes (0 if unavailable).
inline double private_bytes_now() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  double bytes = 0;
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, "RssAnon:", 8) == 0) {
      long long kb = 0;
      if (std::sscanf(line + 8, "%lld", &kb) == 1) bytes = static_cast<double>(kb) * 1024.0;
      break;
    }
  }
  std::fclose(f);
  return bytes;
}

// Samples private_bytes_now() every `period` on a thread of its own from construction to
// destruction (or stop()), keeping the highest value. A peak shorter than the period can be
// missed; the value is a lower bound of the true peak.
class PrivatePeakSampler {
 public:
  explicit PrivatePeakSampler(bool enabled = true,
                              std::chrono::milliseconds period = std::chrono::milliseconds(2))
      : period_(period) {
    if (!enabled) return;
    sample();
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        sample();
        std::this_thread::sleep_for(period_);
      }
    });
  }
  ~PrivatePeakSampler() { stop(); }
  PrivatePeakSampler(const PrivatePeakSampler&) = delete;
  PrivatePeakSampler& operator=(const PrivatePeakSampler&) = delete;
  void stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
    sample();
  }
  double peak() const { return peak_.load(); }

 private:
  void sample() {
    const double b = private_bytes_now();
    double p = peak_.load();
    while (b > p && !peak_.compare_exchange_weak(p, b)) {
    }
  }
  std::chrono::milliseconds period_;
  std::atomic<bool> stop_{false};
  std::atomic<double> peak_{0};
  std::thread thread_;
};

}  // namespace dsr1::cli
