#include "kernels/adafactor.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <stdexcept>
#include <string>

#include "kernels/check.hpp"
#include "kernels/elementwise.hpp"
#include "kernels/parallel.hpp"

namespace glam {
namespace {

constexpr index rows_per_item = 16;
// Below this many elements the update runs on the calling thread: waking the pool costs
// more than the work (vectors, norms). Which thread runs an item never changes its bits.
constexpr index serial_elements = 1 << 15;

// parallel_for, or the same items in order on this thread for small parameters.
void for_items(bool serial, index n, const std::function<void(index)>& fn) {
  if (serial) {
    for (index i = 0; i < n; ++i) fn(i);
  } else {
    parallel_for(n, fn);
  }
}

// Per-row work over blocks of rows_per_item rows.
void for_row_blocks(bool serial, index rows, const std::function<void(index, index)>& fn) {
  const index blocks = (rows + rows_per_item - 1) / rows_per_item;
  for_items(serial, blocks, [&](index b) { fn(b * rows_per_item, std::min(rows, (b + 1) * rows_per_item)); });
}

std::size_t at(index i) { return static_cast<std::size_t>(i); }

std::string shape_of(index r, index c) { return "[" + std::to_string(r) + ", " + std::to_string(c) + "]"; }

// Σ over rows of f(i) (a per-row double) in fixed chunks of rows, combined in chunk order.
template <class F>
void chunked_row_sums(bool serial, index rows, index width, std::vector<double>& total, const F& row_fn) {
  const index chunks = reduction_chunks(rows);
  std::vector<double> partial(at(chunks * width), 0.0);
  for_items(serial, chunks, [&](index c) {
    double* part = partial.data() + c * width;
    const index end = std::min(rows, (c + 1) * reduction_chunk_rows);
    for (index i = c * reduction_chunk_rows; i < end; ++i) row_fn(i, part);
  });
  total.assign(at(width), 0.0);
  for (index c = 0; c < chunks; ++c)
    for (index j = 0; j < width; ++j) total[at(j)] += partial[at(c * width + j)];
}

}  // namespace

adafactor_state::adafactor_state(index r, index c) : rows(r), cols(c) {
  GLAM_CHECK(r >= 1 && c >= 1, "adafactor_state: parameter shape " + shape_of(r, c) + " has an empty dim");
  if (factored()) {
    row.assign(at(r), 0.f);
    col.assign(at(c), 0.f);
  } else {
    full.assign(at(r * c), 0.f);
  }
}

std::vector<adafactor_buffer> adafactor_state::buffers() {
  std::vector<adafactor_buffer> out;
  if (!row.empty()) out.push_back({"row", row.data(), index(row.size())});
  if (!col.empty()) out.push_back({"col", col.data(), index(col.size())});
  if (!full.empty()) out.push_back({"full", full.data(), index(full.size())});
  return out;
}

index adafactor_state::elements() const { return index(row.size() + col.size() + full.size()); }

void adafactor_update(float* param, const float* grad, index rows, index cols, adafactor_state& state,
                      double lr) {
  if (state.rows == 0 && state.cols == 0) {
    const std::int64_t steps = state.steps;
    state = adafactor_state(rows, cols);
    state.steps = steps;
  }
  GLAM_CHECK(state.rows == rows && state.cols == cols,
             "adafactor_update: state is for a " + shape_of(state.rows, state.cols) +
                 " parameter but the parameter is " + shape_of(rows, cols));
  GLAM_CHECK(state.steps >= 0, "adafactor_update: negative step count " + std::to_string(state.steps));
  const bool fact = state.factored();
  GLAM_CHECK(fact ? (state.row.size() == at(rows) && state.col.size() == at(cols))
                  : state.full.size() == at(rows * cols),
             "adafactor_update: state buffers do not match the parameter " + shape_of(rows, cols) +
                 " (restore them from a state of the same shape)");

  // 1 − ρ = (t + 1)^(−0.8), computed directly rather than as 1 − ρ.
  const double fresh = std::pow(double(state.steps) + 1.0, -adafactor_decay_exponent);
  const double decay = 1.0 - fresh;
  const index cols_ = cols;
  const bool serial = rows * cols < serial_elements;

  // Second-moment update and the row/column normaliser for V̂.
  double row_total = 0.0;
  if (fact) {
    for_row_blocks(serial, rows, [&](index begin, index end) {
      for (index i = begin; i < end; ++i) {
        const float* g = grad + i * cols_;
        double s = 0.0;
        for (index j = 0; j < cols_; ++j) s += double(g[j]) * double(g[j]) + adafactor_eps1;
        state.row[at(i)] = static_cast<float>(decay * double(state.row[at(i)]) + fresh * s);
      }
    });
    std::vector<double> col_sums;
    chunked_row_sums(serial, rows, cols, col_sums, [&](index i, double* part) {
      const float* g = grad + i * cols_;
      for (index j = 0; j < cols_; ++j) part[j] += double(g[j]) * double(g[j]) + adafactor_eps1;
    });
    for (index j = 0; j < cols; ++j)
      state.col[at(j)] = static_cast<float>(decay * double(state.col[at(j)]) + fresh * col_sums[at(j)]);
    for (index i = 0; i < rows; ++i) row_total += double(state.row[at(i)]);
  } else {
    for_row_blocks(serial, rows, [&](index begin, index end) {
      for (index i = begin; i < end; ++i) {
        const float* g = grad + i * cols_;
        float* v = state.full.data() + i * cols_;
        for (index j = 0; j < cols_; ++j)
          v[j] = static_cast<float>(decay * double(v[j]) + fresh * (double(g[j]) * double(g[j]) + adafactor_eps1));
      }
    });
  }

  // U_ij = G_ij / sqrt(V̂_ij), recomputed in the second pass (same bits) instead of stored.
  // Factored: 1/sqrt(V̂_ij) = sqrt(Σrow / row_i) · 1/sqrt(col_j), so the inner loop has no
  // division or square root.
  std::vector<double> row_scale, col_scale;
  if (fact) {
    row_scale.resize(at(rows));
    col_scale.resize(at(cols));
    for (index i = 0; i < rows; ++i) row_scale[at(i)] = std::sqrt(row_total / double(state.row[at(i)]));
    for (index j = 0; j < cols; ++j) col_scale[at(j)] = 1.0 / std::sqrt(double(state.col[at(j)]));
  }
  // u[0..K) = U of row i.
  auto update_row = [&](index i, double* u) {
    const float* g = grad + i * cols_;
    if (fact) {
      const double rs = row_scale[at(i)];
      for (index j = 0; j < cols_; ++j) u[j] = double(g[j]) * rs * col_scale[at(j)];
    } else {
      const float* v = state.full.data() + i * cols_;
      for (index j = 0; j < cols_; ++j) u[j] = double(g[j]) / std::sqrt(double(v[j]));
    }
  };

  // Σ U² and Σ X² (X before the update), for the clipping and the parameter scale.
  std::vector<double> squares;
  chunked_row_sums(serial, rows, 2, squares, [&](index i, double* part) {
    thread_local std::vector<double> u;
    u.resize(at(cols_));
    update_row(i, u.data());
    part[0] += dot_fixed(u.data(), u.data(), cols_);
    const float* x = param + i * cols_;
    double sx = 0.0;
    for (index j = 0; j < cols_; ++j) sx += double(x[j]) * double(x[j]);
    part[1] += sx;
  });
  const double count = double(rows) * double(cols);
  const double rms_u = std::sqrt(squares[0] / count);
  const double rms_x = std::sqrt(squares[1] / count);
  const double clip = std::max(1.0, rms_u / adafactor_clip_threshold);
  const double step = lr * std::max(adafactor_eps2, rms_x) / clip;

  for_row_blocks(serial, rows, [&](index begin, index end) {
    std::vector<double> u(at(cols_));
    for (index i = begin; i < end; ++i) {
      update_row(i, u.data());
      float* x = param + i * cols_;
      for (index j = 0; j < cols_; ++j) x[j] = static_cast<float>(double(x[j]) - step * u[at(j)]);
    }
  });
  ++state.steps;
}

double rsqrt_schedule(std::int64_t t, std::int64_t warmup, double lr_scale) {
  if (t < 0) throw std::invalid_argument("rsqrt_schedule: step t must be ≥ 0, got " + std::to_string(t));
  if (warmup < 1)
    throw std::invalid_argument("rsqrt_schedule: warmup must be ≥ 1, got " + std::to_string(warmup) +
                                " (train.warmup in the config)");
  return lr_scale / std::sqrt(double(std::max<std::int64_t>(t + 1, warmup)));
}

}  // namespace glam
