// The sample order: a seeded permutation per epoch, every window drawn exactly once per
// epoch, and train batches that are pure functions of (seed, step, shard) whatever the
// dataset object, call order or thread; the same global positions give the same windows
// whether they are split as S shards x B rows or otherwise.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <thread>

#include "data/dataset.hpp"
#include "data/error.hpp"
#include "data/prepare.hpp"
#include "data/sample_order.hpp"
#include "tests/unit/data_testing.hpp"

namespace glam {
namespace {

TEST(SampleOrder, PermutationIsAPermutationAndSeeded) {
  for (std::int64_t n : {1, 2, 3, 10, 1000, 65537}) {
    auto p = epoch_permutation(42, 0, n);
    std::vector<std::int64_t> sorted = p;
    std::sort(sorted.begin(), sorted.end());
    std::vector<std::int64_t> iota(static_cast<std::size_t>(n));
    std::iota(iota.begin(), iota.end(), 0);
    EXPECT_EQ(sorted, iota) << n;
    EXPECT_EQ(epoch_permutation(42, 0, n), p);
  }
  auto a = epoch_permutation(42, 0, 1000);
  EXPECT_NE(epoch_permutation(43, 0, 1000), a);
  EXPECT_NE(epoch_permutation(42, 1, 1000), a);
  EXPECT_THROW(epoch_permutation(1, 0, 0), data_error);
}

TEST(SampleOrder, PermutationIsPinned) {
  // The order is part of the data contract (a resumed run must see the same samples): it
  // must not change between builds. Pinned values from this implementation.
  auto p = epoch_permutation(1234, 5, 10);
  EXPECT_EQ(p, (std::vector<std::int64_t>{7, 6, 4, 9, 8, 1, 0, 5, 3, 2}));
  splitmix64 g(0);
  EXPECT_EQ(g.next(), 0xE220A8397B1DCDAFull);  // splitmix64's published first output for 0
}

TEST(SampleOrder, PermutationLooksUniform) {
  // Position of element 0 over many seeds: each of the n places about equally often.
  const std::int64_t n = 8;
  std::vector<int> hits(n, 0);
  const int trials = 16000;
  for (int s = 0; s < trials; ++s) {
    auto p = epoch_permutation(static_cast<std::uint64_t>(s), 0, n);
    hits[static_cast<std::size_t>(std::find(p.begin(), p.end(), 0) - p.begin())]++;
  }
  for (int h : hits) EXPECT_NEAR(h, trials / n, 5 * std::sqrt(trials / n)) << h;
  splitmix64 g(3);
  for (int i = 0; i < 1000; ++i) EXPECT_LT(g.below(7), 7u);
}

TEST(SampleOrder, PositionsAndTheirChecks) {
  EXPECT_EQ(sample_position(0, 0, 1, 1, 0), 0);
  EXPECT_EQ(sample_position(3, 1, 4, 8, 5), (3 * 4 + 1) * 8 + 5);
  EXPECT_THROW(sample_position(-1, 0, 1, 1, 0), data_error);
  EXPECT_THROW(sample_position(0, 2, 2, 1, 0), data_error);
  EXPECT_THROW(sample_position(0, 0, 1, 4, 4), data_error);
  EXPECT_THROW(sample_position(std::int64_t{1} << 62, 0, 4, 4, 0), data_error);
}

class DatasetSamples : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!testing::have_fortunes()) return;
    dir_ = new testing::scratch_dir;
    prepare_options opt;
    opt.inputs = testing::small_corpus();
    opt.out_dir = *dir_ / "data";
    opt.vocab_size = 600;
    opt.val_fraction = 0.1;
    opt.progress = [](const std::string&) {};
    prepare_data(opt);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override { GLAM_REQUIRE_FORTUNES(); }
  static dataset open() { return dataset::open(*dir_ / "data"); }
  static testing::scratch_dir* dir_;
};
testing::scratch_dir* DatasetSamples::dir_ = nullptr;

TEST_F(DatasetSamples, RowsAreTheWindowsOfTheTrainStream) {
  dataset d = open();
  const std::int64_t T = 32, B = 4, S = 3;
  std::vector<std::int32_t> stream(static_cast<std::size_t>(d.train_tokens()));
  d.read_train_tokens(0, d.train_tokens(), stream.data());
  std::vector<std::int32_t> batch(static_cast<std::size_t>(B * (T + 1)));
  for (std::int64_t step : {0, 1, 17}) {
    for (std::int64_t s = 0; s < S; ++s) {
      d.train_batch(7, step, s, S, B, T, batch.data());
      for (std::int64_t b = 0; b < B; ++b) {
        std::int64_t w = d.train_window(7, (step * S + s) * B + b, T);
        ASSERT_TRUE(std::equal(batch.begin() + b * (T + 1), batch.begin() + (b + 1) * (T + 1),
                               stream.begin() + w * T))
            << step << "," << s << "," << b;
      }
    }
  }
}

TEST_F(DatasetSamples, NoWindowIsDrawnTwiceWithinAnEpoch) {
  dataset d = open();
  for (std::int64_t T : {16, 64, 100}) {
    const std::int64_t W = d.train_windows(T);
    ASSERT_GT(W, 100);
    for (std::int64_t epoch : {0, 1, 2}) {
      std::vector<int> drawn(static_cast<std::size_t>(W), 0);
      for (std::int64_t p = epoch * W; p < (epoch + 1) * W; ++p) drawn[d.train_window(5, p, T)]++;
      EXPECT_TRUE(std::all_of(drawn.begin(), drawn.end(), [](int c) { return c == 1; }))
          << "T=" << T << " epoch " << epoch;
    }
    // Different epochs use different orders.
    EXPECT_NE(d.train_window(5, 0, T) * W + d.train_window(5, 1, T),
              d.train_window(5, W, T) * W + d.train_window(5, W + 1, T));
  }
}

TEST_F(DatasetSamples, EveryWindowOnceThroughTrainBatchesAcrossShardsAndSteps) {
  // Drive a whole epoch through train_batch with S shards and B rows, the way training does,
  // and recover each row's window from its tokens' offset in the stream.
  dataset d = open();
  const std::int64_t T = 50, S = 2, B = 3;
  const std::int64_t W = d.train_windows(T);
  std::vector<std::int32_t> stream(static_cast<std::size_t>(d.train_tokens()));
  d.read_train_tokens(0, d.train_tokens(), stream.data());
  std::multiset<std::int64_t> seen;
  std::vector<std::int32_t> batch(static_cast<std::size_t>(B * (T + 1)));
  const std::int64_t steps = W / (S * B);
  for (std::int64_t k = 0; k < steps; ++k)
    for (std::int64_t s = 0; s < S; ++s) {
      d.train_batch(11, k, s, S, B, T, batch.data());
      for (std::int64_t b = 0; b < B; ++b) {
        std::int64_t w = d.train_window(11, (k * S + s) * B + b, T);
        ASSERT_TRUE(std::equal(batch.begin() + b * (T + 1), batch.begin() + (b + 1) * (T + 1),
                               stream.begin() + w * T));
        seen.insert(w);
      }
    }
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(steps * S * B));
  EXPECT_EQ(std::set<std::int64_t>(seen.begin(), seen.end()).size(), seen.size());
}

TEST_F(DatasetSamples, BatchesArePureFunctionsOfTheirArguments) {
  const std::int64_t T = 40, B = 5, S = 4;
  auto batch_of = [&](const dataset& d, std::uint64_t seed, std::int64_t k, std::int64_t s) {
    std::vector<std::int32_t> out(static_cast<std::size_t>(B * (T + 1)));
    d.train_batch(seed, k, s, S, B, T, out.data());
    return out;
  };
  dataset a = open();
  auto reference = batch_of(a, 3, 123, 2);
  // Another object, other calls first (other epochs and seq_lens fill the cache), threads.
  dataset b = open();
  for (std::int64_t k = 0; k < 40; ++k) batch_of(b, 99, k * 1000, k % S);
  EXPECT_EQ(batch_of(b, 3, 123, 2), reference);
  std::vector<std::vector<std::int32_t>> from_threads(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int r = 0; r < 10; ++r) batch_of(a, 1000 + t, r * 77, t % S);
      from_threads[static_cast<std::size_t>(t)] = batch_of(a, 3, 123, 2);
    });
  for (auto& th : threads) th.join();
  for (const auto& r : from_threads) EXPECT_EQ(r, reference);
  EXPECT_NE(batch_of(a, 4, 123, 2), reference);  // the seed matters
  EXPECT_NE(batch_of(a, 3, 124, 2), reference);  // the step matters
  EXPECT_NE(batch_of(a, 3, 123, 1), reference);  // the shard matters
}

TEST_F(DatasetSamples, SameGlobalPositionsSameSamplesWhateverTheSplit) {
  // 2 shards x 6 rows and 4 shards x 3 rows cover positions [12k, 12k + 12) alike.
  dataset d = open();
  const std::int64_t T = 30;
  auto global = [&](std::int64_t S, std::int64_t B, std::int64_t k) {
    std::vector<std::int32_t> all;
    std::vector<std::int32_t> out(static_cast<std::size_t>(B * (T + 1)));
    for (std::int64_t s = 0; s < S; ++s) {
      d.train_batch(8, k, s, S, B, T, out.data());
      all.insert(all.end(), out.begin(), out.end());
    }
    return all;
  };
  for (std::int64_t k : {0, 5, 1000}) EXPECT_EQ(global(2, 6, k), global(4, 3, k));
}

TEST_F(DatasetSamples, ValidationBatchesWalkTheWindowsInOrderAndWrap) {
  dataset d = open();
  const std::int64_t T = 64, B = 2, S = 2;
  const std::int64_t W = d.validation_windows(T);
  ASSERT_GT(W, 4);
  std::vector<std::int32_t> stream(static_cast<std::size_t>(d.validation_tokens()));
  d.read_validation_tokens(0, d.validation_tokens(), stream.data());
  std::vector<std::int32_t> out(static_cast<std::size_t>(B * (T + 1)));
  for (std::int64_t i : {std::int64_t{0}, std::int64_t{1}, W}) {
    for (std::int64_t s = 0; s < S; ++s) {
      d.validation_batch(i, s, S, B, T, out.data());
      for (std::int64_t b = 0; b < B; ++b) {
        std::int64_t w = ((i * S + s) * B + b) % W;
        EXPECT_TRUE(std::equal(out.begin() + b * (T + 1), out.begin() + (b + 1) * (T + 1),
                               stream.begin() + w * T));
      }
    }
  }
}

TEST_F(DatasetSamples, SequenceLengthsAreChecked) {
  dataset d = open();
  std::int64_t longest = d.longest_trainable_sequence();
  EXPECT_EQ(longest, std::min(d.train_tokens(), d.validation_tokens()) - 1);
  std::vector<std::int32_t> out(static_cast<std::size_t>(longest + 1));
  d.train_batch(0, 0, 0, 1, 1, longest, out.data());
  d.validation_batch(0, 0, 1, 1, longest, out.data());
  std::vector<std::int32_t> big(static_cast<std::size_t>(longest + 2));
  testing::expect_error_mentions([&] { d.validation_batch(0, 0, 1, 1, longest + 1, big.data()); },
                                 {"seq_len " + std::to_string(longest + 1), "validation"});
  testing::expect_error_mentions([&] { d.train_batch(0, 0, 0, 1, 1, 0, out.data()); },
                                 {"seq_len 0"});
  testing::expect_error_mentions([&] { d.train_batch(0, 0, 2, 2, 1, 8, out.data()); },
                                 {"shard 2", "shards 2"});
  testing::expect_error_mentions([&] { d.train_batch(0, 0, 0, 1, 0, 8, out.data()); },
                                 {"batch is 0"});
}

}  // namespace
}  // namespace glam
