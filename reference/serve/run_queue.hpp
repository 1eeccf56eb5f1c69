// One run at a time: the explorer's runs execute on one worker thread, and a run asked for while
// another computes is refused with a message that says what is running and how far it got (a
// full-scale run holds the memory of one layer of R1; two at once would hold two).
// Leaves out: what a run computes (exploration.hpp) and HTTP (server.hpp).
//
// The finished run is kept (shared, read-only) until the next one starts, so that choosing a
// layer afterwards reads what is kept and never computes; the server holds one run's traces at
// most. A run that throws is reported with its
// message in status(); the queue goes on accepting runs.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include "reference/serve/exploration.hpp"

namespace dsr1::serve {

// Thrown by RunQueue::start while a run computes (the server answers 409 Conflict).
class Busy : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class RunQueue {
 public:
  enum class State { Idle, Running, Done, Failed };
  struct Status {
    State state = State::Idle;
    std::uint64_t run = 0;       // id of the current or last run (0: none yet)
    std::string pass;            // "main" or "mtp" while running
    std::int64_t layer = 0;      // layers done in the current pass
    std::int64_t layers = 0;     // layers of the pass (0: no layer has started yet)
    double seconds = 0;          // since the run started (its duration once finished)
    std::string error;           // State::Failed: what the run threw
    std::string summary;         // what the run computes ("4 tokens, naive attention")
  };
  // The work of one run: computes an Exploration, reporting each layer through `progress`.
  using Job = std::function<std::unique_ptr<Exploration>(const LayerProgress& progress)>;

  RunQueue() = default;
  ~RunQueue();  // waits for the running job, if any
  RunQueue(const RunQueue&) = delete;
  RunQueue& operator=(const RunQueue&) = delete;

  // Starts `job` on the worker thread and returns its run id; throws Busy (naming the running
  // run and its progress) if one is running.
  std::uint64_t start(Job job, const std::string& summary);
  Status status() const;
  // The last finished run, or null if none finished yet.
  std::shared_ptr<const Exploration> latest() const;
  // Blocks until no run computes (tests, shutdown).
  void wait_idle();

  static const char* state_name(State s);  // "idle", "running", "done", "failed"

 private:
  void work(std::uint64_t id, Job job);
  mutable std::mutex mutex_;
  std::condition_variable idle_;
  Status status_;
  std::chrono::steady_clock::time_point started_;
  std::shared_ptr<const Exploration> latest_;
  std::thread worker_;
  std::uint64_t next_id_ = 1;
};

}  // namespace dsr1::serve
