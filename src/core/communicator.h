// Collectives between the ranks of a tensor-parallel group, in a fixed rank order (R7).
//
// The interface is the seam between the model and whatever moves the data: ThreadGroup below
// connects ranks that are threads of one process (the CPU backend, and CI's simulation of
// multi-GPU tensor parallelism); an NCCL implementation for GPUs plugs in behind the same calls
// (not written yet). Every reduction is the pairwise tree of tree_sum.h over the ranks in rank
// order, so a sum's bits depend on the rank count and the data only, never on timing.
//   R = ranks (a power of two), N = elements
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace invar {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // data[i] (every rank's [N]) := the pairwise tree over ranks 0..R-1 of each rank's data[i]:
  // ((r0 + r1) + (r2 + r3)) + ... Every rank gets the same bits. Collective: every rank calls it
  // with the same n.
  virtual void all_reduce_tree(float* data, int64_t n) = 0;
  // out[R * n] := rank 0's data[n], then rank 1's, ... on every rank.
  virtual void all_gather(const float* data, int64_t n, float* out) = 0;
  virtual void barrier() = 0;
};

// The shared state of R ranks that are threads of one process. make_communicator(r) is rank r's
// end; each rank's collectives must be called from one thread at a time, in the same order on
// every rank.
class ThreadGroup {
 public:
  explicit ThreadGroup(int size);
  int size() const { return size_; }
  std::unique_ptr<Communicator> make_communicator(int rank);

 private:
  friend class ThreadCommunicator;
  // Blocks until every rank has arrived (a reusable generation barrier).
  void arrive_and_wait();

  int size_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
  std::vector<const float*> inputs_;  // [R] each rank's buffer of the collective in flight
  std::vector<float> result_;         // [N] the all-reduce's sums, each rank fills its share
};

}  // namespace invar
