#pragma once
// CPU parallelism for the kernels, built so that no result depends on the thread count.
//
// - parallel_for(n, fn) runs fn(i) for every item i in [0, n) on the compute threads.
//   Items must write disjoint outputs; which thread runs which item is not fixed.
// - Reductions never sum across items inside parallel_for. They split the reduced
//   dimension into chunks whose size depends on the shape only (reduction_chunk), reduce
//   each chunk into its own partial, then add the partials in chunk order on one thread.
//   The bits are then a function of the shape, never of the thread count or timing.
// - compute_guard serialises heavy compute in one process: when several units (actors)
//   share a process, one kernel at a time uses all compute threads, instead of every
//   unit starting its own team and oversubscribing the cores.
#include <functional>
#include <mutex>

#include "kernels/tensor.hpp"

namespace glam {

// Number of compute threads (default: hardware threads, or GLAM_THREADS from the
// environment). Set before the first kernel runs or between kernels.
int compute_threads();
void set_compute_threads(int n);

// Nested calls (from inside an item) run their items serially on the calling thread.
void parallel_for(index n, const std::function<void(index)>& fn);
bool inside_parallel_for();

// Rows per reduction chunk for a reduction over `rows` rows: fixed by the shape.
constexpr index reduction_chunk_rows = 64;
inline index reduction_chunks(index rows) {
  return (rows + reduction_chunk_rows - 1) / reduction_chunk_rows;
}

// Held while a unit runs heavy kernels; see the file comment.
std::mutex& compute_mutex();
using compute_guard = std::lock_guard<std::mutex>;

}  // namespace glam
