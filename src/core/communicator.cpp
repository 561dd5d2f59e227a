#include "core/communicator.h"

#include <algorithm>
#include <cassert>

#include "core/tree_sum.h"

namespace invar {

class ThreadCommunicator final : public Communicator {
 public:
  ThreadCommunicator(ThreadGroup& group, int rank) : g_(group), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return g_.size_; }

  // Each rank sums its contiguous share of the elements over all ranks' buffers (which share
  // computes an element changes no bit: the tree is per element), then every rank copies them.
  void all_reduce_tree(float* data, int64_t n) override {
    const int r = g_.size_;
    if (r == 1) return;
    g_.inputs_[size_t(rank_)] = data;
    if (rank_ == 0 && int64_t(g_.result_.size()) < n) g_.result_.resize(size_t(n));
    g_.arrive_and_wait();  // every input published, result_ sized
    const int64_t begin = n * rank_ / r, end = n * (rank_ + 1) / r;
    tree_sum(g_.inputs_.data(), r, begin, end, g_.result_.data());
    g_.arrive_and_wait();  // every sum written; no one reads the inputs any more
    std::copy_n(g_.result_.data(), n, data);
    g_.arrive_and_wait();  // result_ free for the next collective
  }

  void all_gather(const float* data, int64_t n, float* out) override {
    g_.inputs_[size_t(rank_)] = data;
    g_.arrive_and_wait();
    for (int q = 0; q < g_.size_; ++q) std::copy_n(g_.inputs_[size_t(q)], n, out + q * n);
    g_.arrive_and_wait();  // the inputs may be reused once everyone has copied them
  }

  void barrier() override { g_.arrive_and_wait(); }

 private:
  ThreadGroup& g_;
  int rank_;
};

ThreadGroup::ThreadGroup(int size) : size_(size), inputs_(size_t(size), nullptr) {
  assert(is_power_of_two(size) && size <= kMaxTreeLeaves);
}

std::unique_ptr<Communicator> ThreadGroup::make_communicator(int rank) {
  assert(rank >= 0 && rank < size_);
  return std::make_unique<ThreadCommunicator>(*this, rank);
}

void ThreadGroup::arrive_and_wait() {
  std::unique_lock<std::mutex> lock(mu_);
  const uint64_t gen = generation_;
  if (++arrived_ == size_) {
    arrived_ = 0;
    ++generation_;
    cv_.notify_all();
    return;
  }
  cv_.wait(lock, [&] { return generation_ != gen; });
}

}  // namespace invar
