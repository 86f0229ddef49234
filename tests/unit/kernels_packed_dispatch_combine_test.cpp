// Packed dispatch and combine (inference): the packed rows are, in order, the non-padding
// rows of the [E, C, M] layout of dispatch_forward for the same routing, and the packed
// combine gives the bits of combine_forward, with and without dropped choices, with 1 and
// 2 compute threads.
#include <gtest/gtest.h>

#include <cstring>
#include <ostream>
#include <vector>

#include "kernels/dispatch_combine.hpp"
#include "kernels/gating.hpp"
#include "kernels/packed_dispatch_combine.hpp"
#include "tests/unit/kernels_dense_testing.hpp"

namespace glam {
namespace {

using namespace glam::testing;

struct packed_case {
  index tokens, d_model, experts, capacity;  // capacity 0: the number of tokens (nothing dropped)
};

inline std::ostream& operator<<(std::ostream& os, const packed_case& c) {
  return os << "N" << c.tokens << "_M" << c.d_model << "_E" << c.experts << "_C" << c.capacity;
}

class PackedDispatchTest : public ::testing::TestWithParam<packed_case> {};

TEST_P(PackedDispatchTest, EqualsThePaddedLayoutWithoutItsPadding) {
  const auto c = GetParam();
  const index N = c.tokens, M = c.d_model, E = c.experts;
  const fvec x = to_float(random_vector(N * M, 1)), wg = to_float(random_vector(M * E, 2));
  gating_options opt;
  opt.capacity = c.capacity > 0 ? c.capacity : std::max<index>(N, 1);
  routing route;
  fvec probs(N * E);
  gating_forward(x.data(), wg.data(), N, M, E, opt, route, probs.data());
  if (c.capacity == 0) {
    EXPECT_EQ(route.dropped_choices, 0) << "capacity = tokens keeps every choice";
  }
  const index C = route.capacity;

  const std::vector<index> offset = packed_offsets(route.counts);
  ASSERT_EQ(offset.size(), std::size_t(E + 1));
  const index R = offset.back();
  EXPECT_EQ(R, 2 * N - route.dropped_choices);

  fvec padded(E * C * M);
  dispatch_forward(x.data(), route, padded.data(), M);
  for (int threads = 1; threads <= 2; ++threads)
    with_threads(threads, [&] {
      fvec packed(R * M, -1.f);
      dispatch_packed_forward(x.data(), route, packed.data(), M);
      for (index e = 0; e < E; ++e)
        for (index slot = 0; slot < route.counts[e]; ++slot)
          ASSERT_EQ(std::memcmp(packed.data() + (offset[e] + slot) * M, padded.data() + (e * C + slot) * M,
                                M * sizeof(float)),
                    0)
              << "expert " << e << " slot " << slot;

      // Expert outputs: random rows in the padded layout (padding zero), the same rows packed.
      fvec out_padded(E * C * M, 0.f), out_packed(R * M);
      const fvec noise = to_float(random_vector(E * C * M, 3));
      for (index e = 0; e < E; ++e)
        for (index slot = 0; slot < route.counts[e]; ++slot)
          for (index j = 0; j < M; ++j) {
            out_padded[(e * C + slot) * M + j] = noise[(e * C + slot) * M + j];
            out_packed[(offset[e] + slot) * M + j] = noise[(e * C + slot) * M + j];
          }
      fvec y_padded(N * M), y_packed(N * M, -1.f);
      combine_forward(out_padded.data(), route, y_padded.data(), M);
      combine_packed_forward(out_packed.data(), route, y_packed.data(), M);
      EXPECT_TRUE(same_bits(y_padded, y_packed)) << threads << " threads";
    });
}

INSTANTIATE_TEST_SUITE_P(Shapes, PackedDispatchTest,
                         ::testing::Values(packed_case{1, 4, 2, 0},     // decode, one token
                                           packed_case{1, 8, 8, 0},     // six experts get nothing
                                           packed_case{37, 16, 4, 0},   // a prefill
                                           packed_case{200, 8, 8, 0},   // a batch of many sequences
                                           packed_case{64, 8, 4, 8}));  // with drops (training capacity)

TEST(PackedDispatch, OffsetsRefuseNegativeCounts) {
  EXPECT_EQ(packed_offsets({2, 0, 3}), (std::vector<index>{0, 2, 2, 5}));
  EXPECT_THROW(packed_offsets({1, -1}), std::logic_error);
}

}  // namespace
}  // namespace glam
