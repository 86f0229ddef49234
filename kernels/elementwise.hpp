#pragma once
// Shared elementwise helpers for the dense kernels: a deterministic, vectorisable exp and
// tanh for float, fixed-order sums, and row-block parallelism.
//
// Why not std::exp / std::tanh for float: GCC does not vectorise them without -ffast-math
// (forbidden, docs/architecture.md, "Determinism"), and then the exp of gelu (gelu_ffn.cpp evaluates its
// tanh as a logistic function) and of softmax would cost more than the GEMMs around them.
// fast_exp / fast_tanh are range reduction plus a polynomial (Cephes' coefficients),
// written branch-free with plain IEEE operations, so GCC -O3 vectorises the loops that
// call them with SSE2 (measured: ~2 ns per exp on one core against ~3 ns for glibc's
// scalar expf, and 21 ns per element for a gelu through std::tanh) and every x86-64 build
// with the same flags computes the same bits, whether an element lands in a vector lane
// or in the scalar tail. Accuracy: below 3e-7 relative (tested over the whole range).
//
// The double versions (exp_of, tanh_of) call std:: functions: the double instantiation
// only serves finite-difference checks of the derivative formulas.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>

#include "kernels/parallel.hpp"
#include "kernels/tensor.hpp"

namespace glam {

inline float bits_as_float(std::int32_t i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}
inline std::int32_t float_as_bits(float f) {
  std::int32_t i;
  std::memcpy(&i, &f, sizeof i);
  return i;
}

// GCC keeps -ftrapping-math on (its default; the build does not change it), and then it
// will not turn a floating-point comparison inside a loop into a vector select, so a loop
// holding `x < y ? a : b` on floats stays scalar. The helpers below compare bit patterns as
// integers instead (no traps), which vectorises with SSE2.
constexpr std::int32_t float_abs_mask = 0x7fffffff;
constexpr std::int32_t float_inf_bits = 0x7f800000;

// All ones where the condition holds, else zero.
inline std::int32_t mask_of(bool c) { return c ? -1 : 0; }
inline std::int32_t nan_mask(std::int32_t bits) { return mask_of((bits & float_abs_mask) > float_inf_bits); }
inline float select_float(std::int32_t mask, float a, float b) {
  return bits_as_float((mask & float_as_bits(a)) | (~mask & float_as_bits(b)));
}

// exp(x) for float. Inputs below -87 (where the result would leave the normal range) give
// 0; inputs above 88 saturate at exp(88) ≈ 1.65e38 (finite, so that 1/(1+e) stays 0
// rather than NaN); NaN stays NaN.
inline float fast_exp(float x) {
  const float lo = -87.0f, hi = 88.0f;
  const std::int32_t xb = float_as_bits(x);
  const std::int32_t mag = xb & float_abs_mask;
  const std::int32_t neg = xb >> 31;  // all ones for negative x (and -NaN)
  const std::int32_t nan = nan_mask(xb);
  const std::int32_t below = neg & mask_of(mag > float_as_bits(-lo)) & ~nan;
  const std::int32_t above = ~neg & mask_of(mag > float_as_bits(hi)) & ~nan;
  const float c = select_float(below, lo, select_float(above, hi, x));
  // k = round(c / ln 2) by the 1.5·2^23 trick (round to nearest, no SSE4.1 needed);
  // the integer k is read back from the bits of the shifted sum.
  const float shifter = 12582912.0f;
  const float t = c * 1.44269504088896341f + shifter;
  const std::int32_t k = float_as_bits(t) - float_as_bits(shifter);
  const float kf = t - shifter;
  // r = c - k·ln2 in two steps (ln2 split in a high part exact in float and a low part).
  const float r = (c - kf * 0.693359375f) + kf * 2.12194440e-4f;
  const float r2 = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = p * r2 + r + 1.0f;
  const float scale = bits_as_float((k + 127) << 23);  // 2^k, k in [-126, 127]
  const float y = er * scale;
  return select_float(below, 0.0f, y);
}

// tanh(x) for float: an odd polynomial near 0 (where 1 - 2/(e^2x + 1) would cancel), the
// exp form elsewhere; both are computed and one is selected, so the loop stays branch-free.
inline float fast_tanh(float x) {
  const std::int32_t xb = float_as_bits(x);
  const std::int32_t mag = xb & float_abs_mask;
  const std::int32_t nan = nan_mask(xb);
  // |x| clipped at 20, where tanh is 1 in float; clipping keeps exp(2|x|) finite.
  const float ax = select_float(mask_of(mag > float_as_bits(20.0f)), 20.0f, bits_as_float(mag));
  const float e = fast_exp(2.0f * ax);
  const float large = 1.0f - 2.0f / (e + 1.0f);
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * x + x;
  const float signed_large = bits_as_float(float_as_bits(large) | (xb & ~float_abs_mask));
  const float r = select_float(mask_of(mag < float_as_bits(0.625f)), small, signed_large);
  return select_float(nan, x, r);
}

// max(x, 0) that keeps NaN (a NaN must reach the step's finiteness check).
inline float relu_of(float x) {
  const std::int32_t xb = float_as_bits(x);
  return select_float((xb >> 31) & ~nan_mask(xb), 0.0f, x);
}
inline double relu_of(double x) { return x > 0.0 || x != x ? x : 0.0; }

// 1 where x > 0 (the ReLU's slope), else 0.
inline float relu_slope(float x) { return select_float(mask_of(float_as_bits(x) > 0), 1.0f, 0.0f); }
inline double relu_slope(double x) { return x > 0.0 ? 1.0 : 0.0; }

inline float exp_of(float x) { return fast_exp(x); }
inline double exp_of(double x) { return std::exp(x); }
inline float tanh_of(float x) { return fast_tanh(x); }
inline double tanh_of(double x) { return std::tanh(x); }

// Sum and dot product in a fixed order that depends on n only: eight interleaved partial
// sums (which GCC keeps in vector registers), combined pairwise, then the tail in order.
template <class T>
inline T sum_fixed(const T* x, index n) {
  T acc[8] = {T(0), T(0), T(0), T(0), T(0), T(0), T(0), T(0)};
  index i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += x[i + j];
  T s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) s += x[i];
  return s;
}

template <class T>
inline T dot_fixed(const T* x, const T* y, index n) {
  T acc[8] = {T(0), T(0), T(0), T(0), T(0), T(0), T(0), T(0)};
  index i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += x[i + j] * y[i + j];
  T s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) s += x[i] * y[i];
  return s;
}

// Maximum of x[0..n) (n ≥ 1); NaN when any element is NaN. Max is exact, so the order
// does not matter for the value. The float version compares order-preserving integer
// images of the bits, so that it vectorises (see above).
inline double max_fixed(const double* x, index n) {
  double m = x[0];
  bool nan = false;
  for (index i = 0; i < n; ++i) {
    m = x[i] > m ? x[i] : m;
    nan |= x[i] != x[i];
  }
  return nan ? double(NAN) : m;
}

inline float max_fixed(const float* x, index n) {
  // b ^ ((b >> 31) & 0x7fffffff) orders like the float for all non-NaN values.
  std::int32_t acc[8];
  std::int32_t nan[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  const std::int32_t b0 = float_as_bits(x[0]);
  for (int j = 0; j < 8; ++j) acc[j] = b0 ^ ((b0 >> 31) & float_abs_mask);
  index i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) {
      const std::int32_t b = float_as_bits(x[i + j]);
      const std::int32_t o = b ^ ((b >> 31) & float_abs_mask);
      acc[j] = o > acc[j] ? o : acc[j];
      nan[j] |= nan_mask(b);
    }
  std::int32_t m = acc[0], any_nan = nan[0];
  for (int j = 1; j < 8; ++j) {
    m = acc[j] > m ? acc[j] : m;
    any_nan |= nan[j];
  }
  for (; i < n; ++i) {
    const std::int32_t b = float_as_bits(x[i]);
    const std::int32_t o = b ^ ((b >> 31) & float_abs_mask);
    m = o > m ? o : m;
    any_nan |= nan_mask(b);
  }
  return any_nan ? float(NAN) : bits_as_float(m ^ ((m >> 31) & float_abs_mask));
}

// Runs fn(begin, end) over [0, rows) in blocks of `block` rows on the compute threads.
// For per-row work only: no result may depend on how rows are grouped.
inline void parallel_rows(index rows, index block, const std::function<void(index, index)>& fn) {
  const index blocks = (rows + block - 1) / block;
  parallel_for(blocks, [&](index b) {
    const index begin = b * block;
    fn(begin, begin + block < rows ? begin + block : rows);
  });
}

}  // namespace glam
