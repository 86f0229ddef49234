// embedding: lookup, finite differences for the table, a scatter-add with the same bits as
// a plain scan in token order for 1 and 2 threads, and tokens outside the vocabulary refused.
#include <gtest/gtest.h>

#include <ostream>

#include <stdexcept>

#include "kernels/embedding.hpp"
#include "tests/unit/kernels_dense_testing.hpp"

namespace glam {
namespace {

using namespace glam::testing;

struct embedding_case {
  index n, vocab, m;
};

inline std::ostream& operator<<(std::ostream& os, const embedding_case& c) { return os << "N" << c.n << "_V" << c.vocab << "_M" << c.m; }

std::vector<std::int32_t> make_tokens(const embedding_case& c, std::uint32_t seed) {
  std::mt19937 rng(seed);
  // Skewed so that tokens repeat (the scatter-add's interesting case) and some never occur.
  std::vector<std::int32_t> t(c.n);
  for (auto& v : t) v = static_cast<std::int32_t>(rng() % ((rng() % 2) ? std::min<index>(3, c.vocab) : c.vocab));
  return t;
}

class EmbeddingTest : public ::testing::TestWithParam<embedding_case> {};

TEST_P(EmbeddingTest, LookupCopiesRows) {
  const auto c = GetParam();
  const auto tokens = make_tokens(c, 1);
  const fvec table = to_float(random_vector(c.vocab * c.m, 2));
  fvec out(c.n * c.m);
  embedding_forward(tokens.data(), table.data(), out.data(), c.n, c.vocab, c.m);
  for (index r = 0; r < c.n; ++r)
    for (index j = 0; j < c.m; ++j) ASSERT_EQ(out[r * c.m + j], table[tokens[r] * c.m + j]);
}

TEST_P(EmbeddingTest, BackwardMatchesFiniteDifferences) {
  const auto c = GetParam();
  if (c.n * c.m > 4000) GTEST_SKIP() << "finite differences run on the small shapes only";
  const auto tokens = make_tokens(c, 3);
  dvec table = random_vector(c.vocab * c.m, 4);
  const dvec r = random_vector(c.n * c.m, 5);
  auto loss = [&] {
    dvec out(c.n * c.m);
    embedding_forward(tokens.data(), table.data(), out.data(), c.n, c.vocab, c.m);
    return weighted_sum(out, r);
  };
  dvec dtable(table.size(), 0.0);
  embedding_backward(tokens.data(), r.data(), dtable.data(), c.n, c.vocab, c.m);
  expect_gradients_near(dtable, numeric_gradient(table, loss), "dE");
}

TEST_P(EmbeddingTest, ScatterAddIsAScanInTokenOrderForAnyThreadCount) {
  const auto c = GetParam();
  const auto tokens = make_tokens(c, 6);
  const fvec dout = to_float(random_vector(c.n * c.m, 7));
  const fvec start = to_float(random_vector(c.vocab * c.m, 8));
  fvec scan = start;
  for (index r = 0; r < c.n; ++r)
    for (index j = 0; j < c.m; ++j) scan[tokens[r] * c.m + j] += dout[r * c.m + j];
  for (int t = 1; t <= 2; ++t)
    with_threads(t, [&] {
      fvec d = start;
      embedding_backward(tokens.data(), dout.data(), d.data(), c.n, c.vocab, c.m);
      EXPECT_TRUE(same_bits(d, scan)) << t << " threads";
    });
}

INSTANTIATE_TEST_SUITE_P(Shapes, EmbeddingTest,
                         ::testing::Values(embedding_case{10, 7, 4}, embedding_case{1, 1, 3},
                                           embedding_case{40, 9, 5}, embedding_case{2000, 700, 24}));

TEST(Embedding, RefusesTokensOutsideTheVocabulary) {
  const fvec table(7 * 4, 1.f);
  fvec out(2 * 4), d(7 * 4);
  for (std::int32_t bad : {7, -1}) {
    const std::vector<std::int32_t> tokens = {0, bad};
    try {
      embedding_forward(tokens.data(), table.data(), out.data(), 2, 7, 4);
      ADD_FAILURE() << "token " << bad << " accepted";
    } catch (const std::out_of_range& e) {
      EXPECT_NE(std::string(e.what()).find("row 1"), std::string::npos) << e.what();
    }
    EXPECT_THROW(embedding_backward(tokens.data(), out.data(), d.data(), 2, 7, 4), std::out_of_range);
  }
}

}  // namespace
}  // namespace glam
