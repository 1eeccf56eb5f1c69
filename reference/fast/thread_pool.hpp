// A fixed-size thread pool that runs numbered tasks: run(n, f) calls f(0) .. f(n-1) once each.
// Leaves out: work stealing, nested parallelism (a task must not call run() itself) and futures.
//
// Determinism: which thread runs a task is decided at run time (an atomic counter hands out the
// next index), but a task's result may depend only on its index, so the output is the same for
// any number of threads (see options.hpp).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace dsr1::fast {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);  // threads >= 1; threads - 1 workers are started
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs f(i) for i = 0 .. n_tasks-1 on the workers and the calling thread; returns when all
  // are done. The first exception thrown by a task is rethrown here.
  void run(std::int64_t n_tasks, const std::function<void(std::int64_t)>& f);

 private:
  void worker_loop();
  void work_on_current_job();

  std::vector<std::thread> workers_;
  std::mutex run_mutex_;  // one job at a time when several threads share the pool
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  // Atomic so that an idle thread can spin on them for a few microseconds before it sleeps
  // (thread_pool.cpp); they are still changed under mutex_, which orders the job's fields.
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
  const std::function<void(std::int64_t)>* job_ = nullptr;
  std::int64_t n_tasks_ = 0;
  std::atomic<std::int64_t> next_{0};
  std::atomic<int> busy_{0};  // workers still inside the current job
  std::exception_ptr error_;
};

// The process-wide pool with `threads` threads (created on first use and kept).
ThreadPool& pool(int threads);

// Runs f(0..n-1) on pool(threads); with one task or one thread it runs inline.
void parallel_for(int threads, std::int64_t n_tasks, const std::function<void(std::int64_t)>& f);

}  // namespace dsr1::fast
