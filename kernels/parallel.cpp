#include "kernels/parallel.hpp"

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <thread>
#include <vector>

namespace glam {
namespace {

thread_local bool in_parallel_region = false;

// Marks the running thread as inside a parallel_for item for its lifetime.
struct region_flag {
  bool saved = in_parallel_region;
  region_flag() { in_parallel_region = true; }
  ~region_flag() { in_parallel_region = saved; }
};

// A fixed pool: parallel_for hands out items through one atomic counter; the calling
// thread works too, so one worker thread fewer than compute_threads() is started.
class thread_pool {
 public:
  static thread_pool& instance() {
    static thread_pool pool;
    return pool;
  }

  int threads() const { return threads_; }

  void resize(int n) {
    std::lock_guard<std::mutex> run_lock(run_mutex_);
    stop_workers();
    threads_ = n < 1 ? 1 : n;
    start_workers();
  }

  void run(index n, const std::function<void(index)>& fn) {
    if (n <= 0) return;
    if (n == 1 && !in_parallel_region) {
      fn(0);
      return;
    }
    if (threads_ == 1 || in_parallel_region) {
      region_flag flag;
      for (index i = 0; i < n; ++i) fn(i);
      return;
    }
    std::lock_guard<std::mutex> run_lock(run_mutex_);
    {
      std::lock_guard<std::mutex> lk(m_);
      job_ = &fn;
      items_ = n;
      next_.store(0);
      active_ = static_cast<int>(workers_.size());
      ++generation_;
    }
    cv_.notify_all();
    work(fn, n);
    std::unique_lock<std::mutex> lk(m_);
    done_cv_.wait(lk, [&] { return active_ == 0; });
    job_ = nullptr;
  }

  ~thread_pool() { stop_workers(); }

 private:
  thread_pool() {
    int n = static_cast<int>(std::thread::hardware_concurrency());
    if (const char* env = std::getenv("GLAM_THREADS")) n = std::atoi(env);
    threads_ = n < 1 ? 1 : n;
    start_workers();
  }

  void work(const std::function<void(index)>& fn, index n) {
    region_flag flag;
    for (index i = next_.fetch_add(1); i < n; i = next_.fetch_add(1)) fn(i);
  }

  void start_workers() {
    stopping_ = false;
    for (int t = 1; t < threads_; ++t) {
      workers_.emplace_back([this] {
        std::uint64_t seen = 0;
        for (;;) {
          const std::function<void(index)>* job;
          index n;
          {
            std::unique_lock<std::mutex> lk(m_);
            cv_.wait(lk, [&] { return stopping_ || generation_ != seen; });
            if (stopping_) return;
            seen = generation_;
            job = job_;
            n = items_;
          }
          work(*job, n);
          std::lock_guard<std::mutex> lk(m_);
          if (--active_ == 0) done_cv_.notify_one();
        }
      });
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  int threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex run_mutex_;  // one parallel_for at a time
  std::mutex m_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(index)>* job_ = nullptr;
  index items_ = 0;
  std::atomic<index> next_{0};
  int active_ = 0;
  std::uint64_t generation_ = 0;
  bool stopping_ = false;
};

}  // namespace

int compute_threads() { return thread_pool::instance().threads(); }
void set_compute_threads(int n) { thread_pool::instance().resize(n); }
void parallel_for(index n, const std::function<void(index)>& fn) { thread_pool::instance().run(n, fn); }
bool inside_parallel_for() { return in_parallel_region; }

std::mutex& compute_mutex() {
  static std::mutex m;
  return m;
}

}  // namespace glam
