// The thread pool of the fast path (see thread_pool.hpp).
#include "reference/fast/thread_pool.hpp"

#include <fmt/format.h>

#include <map>
#include <memory>
#include <stdexcept>

namespace dsr1::fast {

namespace {

// How many times an idle thread looks at the pool's state before it goes to sleep (a few tens of
// microseconds). Decode issues one small product after another, each taking tens of
// microseconds; putting the worker to sleep after each and waking it for the next (a futex and a
// reschedule each way) showed up as 9% of FP8 decode's cycles. Spinning briefly catches the next
// job awake. Which thread runs a task still changes nothing in the results.
constexpr int kSpins = 4000;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();  // tells the core this is a spin loop
#endif
}

}  // namespace

ThreadPool::ThreadPool(int threads) {
  if (threads < 1 || threads > 1024)
    throw std::invalid_argument(fmt::format("ThreadPool: threads = {}, expected 1 .. 1024", threads));
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::work_on_current_job() {
  for (;;) {
    const std::int64_t i = next_.fetch_add(1, std::memory_order_relaxed);
    if (i >= n_tasks_) return;
    try {
      (*job_)(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
  }
}

void ThreadPool::worker_loop() {
  std::uint64_t seen = 0;
  for (;;) {
    for (int spin = 0; spin < kSpins && generation_.load(std::memory_order_acquire) == seen &&
                       !stop_.load(std::memory_order_acquire);
         ++spin)
      cpu_relax();
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
    }
    work_on_current_job();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (--busy_ == 0) done_.notify_one();
    }
  }
}

void ThreadPool::run(std::int64_t n_tasks, const std::function<void(std::int64_t)>& f) {
  if (n_tasks <= 0) return;
  std::lock_guard<std::mutex> run_lock(run_mutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &f;
    n_tasks_ = n_tasks;
    next_.store(0, std::memory_order_relaxed);
    busy_ = static_cast<int>(workers_.size());
    error_ = nullptr;
    ++generation_;
  }
  wake_.notify_all();
  work_on_current_job();
  for (int spin = 0; spin < kSpins && busy_.load(std::memory_order_acquire) != 0; ++spin) cpu_relax();
  std::exception_ptr error;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return busy_ == 0; });
    job_ = nullptr;
    error = error_;
  }
  if (error) std::rethrow_exception(error);
}

ThreadPool& pool(int threads) {
  static std::mutex m;
  static std::map<int, std::unique_ptr<ThreadPool>> pools;
  std::lock_guard<std::mutex> lock(m);
  auto& p = pools[threads];
  if (!p) p = std::make_unique<ThreadPool>(threads);
  return *p;
}

void parallel_for(int threads, std::int64_t n_tasks, const std::function<void(std::int64_t)>& f) {
  if (threads < 1)
    throw std::invalid_argument(fmt::format("fast: Options::threads = {}, expected >= 1", threads));
  if (n_tasks <= 1 || threads == 1) {
    for (std::int64_t i = 0; i < n_tasks; ++i) f(i);
    return;
  }
  pool(threads).run(n_tasks, f);
}

}  // namespace dsr1::fast
