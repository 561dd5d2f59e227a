// A fixed pool of worker threads with a static partition of an index range.
// Invariance (R1): callers split rows or columns across threads, never a reduction axis, so
// the thread count changes who computes an element, never how it is computed.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace invar {

class ThreadPool {
 public:
  // threads == 0 means one per hardware thread.
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }
  // The size a pool asked for `threads` gets (0: one per hardware thread).
  static int size_for(int threads);

  // Calls fn(begin, end) over [0, n) cut into at most size() contiguous chunks of at least
  // `grain` items; blocks until all are done. The calling thread takes the first chunk.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void worker_loop(int index);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable done_;
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0;
  int job_chunks_ = 0;
  int pending_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

}  // namespace invar
