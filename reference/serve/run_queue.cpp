// One run at a time (run_queue.hpp).
#include "reference/serve/run_queue.hpp"

#include <fmt/format.h>

#include <exception>

#include "reference/io/memory_reuse.hpp"

namespace dsr1::serve {

const char* RunQueue::state_name(State s) {
  switch (s) {
    case State::Idle: return "idle";
    case State::Running: return "running";
    case State::Done: return "done";
    case State::Failed: return "failed";
  }
  return "?";
}

RunQueue::~RunQueue() {
  wait_idle();
  if (worker_.joinable()) worker_.join();
}

std::uint64_t RunQueue::start(Job job, const std::string& summary) {
  std::unique_lock lock(mutex_);
  if (status_.state == State::Running) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    const std::string where = status_.layers == 0 ? std::string("opening the weights")
                                                  : fmt::format("{} pass, {} of {} layers done", status_.pass,
                                                                status_.layer, status_.layers);
    throw Busy(fmt::format(
        "run {} ({}) is still computing ({}, started {:.0f} s ago). This server runs one prompt at a time; "
        "wait for it to finish, then press Run again.",
        status_.run, status_.summary, where, seconds));
  }
  // The previous worker has finished its job (state is not Running); reap its thread.
  if (worker_.joinable()) worker_.join();
  const std::uint64_t id = next_id_++;
  status_ = Status{};
  status_.state = State::Running;
  status_.run = id;
  status_.pass = "main";
  status_.summary = summary;
  latest_.reset();  // the server holds one run's traces at most: the last one's go now
  started_ = std::chrono::steady_clock::now();
  worker_ = std::thread(&RunQueue::work, this, id, std::move(job));
  return id;
}

void RunQueue::work(std::uint64_t id, Job job) {
  const LayerProgress progress = [this](const std::string& pass, std::int64_t done, std::int64_t L) {
    std::lock_guard lock(mutex_);
    status_.pass = pass;
    status_.layer = done;
    status_.layers = L;
  };
  std::unique_ptr<Exploration> result;
  std::string error;
  try {
    result = job(progress);
    if (!result) error = "the run returned nothing";
  } catch (const std::exception& e) {
    error = e.what();
  } catch (...) {
    error = "the run failed with an exception that is not a std::exception";
  }
  // A failed run leaves its partial traces behind in the heap; hand the free pages back.
  release_freed_memory();
  std::lock_guard lock(mutex_);
  status_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  if (error.empty()) {
    result->id = id;
    latest_ = std::shared_ptr<const Exploration>(std::move(result));
    status_.state = State::Done;
  } else {
    status_.state = State::Failed;
    status_.error = error;
  }
  idle_.notify_all();
}

RunQueue::Status RunQueue::status() const {
  std::lock_guard lock(mutex_);
  Status s = status_;
  if (s.state == State::Running)
    s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  return s;
}

std::shared_ptr<const Exploration> RunQueue::latest() const {
  std::lock_guard lock(mutex_);
  return latest_;
}

void RunQueue::wait_idle() {
  std::unique_lock lock(mutex_);
  idle_.wait(lock, [this] { return status_.state != State::Running; });
}

}  // namespace dsr1::serve
