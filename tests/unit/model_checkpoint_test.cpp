// Checkpoints: a run resumed from a checkpoint is bitwise the run that never stopped; a torn
// or corrupt checkpoint is passed over for the one before it; a checkpoint of another model
// or layout is refused with a message naming the file and what differs; the last K are kept.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "data/checksum.hpp"
#include "model/checkpoint.hpp"
#include "model/train_step.hpp"
#include "model_testing.hpp"

namespace glam {
namespace {

namespace fs = std::filesystem;

class ModelCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string(info->test_suite_name()) + "-" + info->name();
    for (char& ch : name)
      if (ch == '/') ch = '-';
    root_ = (fs::temp_directory_path() / ("glam-ckpt-" + std::to_string(::getpid()) + "-" + name)).string();
    fs::remove_all(root_);
  }
  void TearDown() override { fs::remove_all(root_); }
  std::string root_;
};

std::uint32_t bits(float v) {
  std::uint32_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}

// Every shard's and expert's parameters and optimizer state, bitwise.
void expect_same_state(reference_trainer& a, reference_trainer& b) {
  ASSERT_EQ(a.shards().size(), b.shards().size());
  ASSERT_EQ(a.experts().size(), b.experts().size());
  for (std::size_t s = 0; s < a.shards().size(); ++s) {
    EXPECT_TRUE(bitwise_equal(a.shards()[s].params(), b.shards()[s].params())) << "shard " << s;
    EXPECT_TRUE(bitwise_equal(a.shards()[s].optimizer().to_tensors(), b.shards()[s].optimizer().to_tensors()))
        << "shard " << s;
    EXPECT_EQ(a.shards()[s].optimizer().applied_steps, b.shards()[s].optimizer().applied_steps) << "shard " << s;
  }
  for (std::size_t e = 0; e < a.experts().size(); ++e) {
    EXPECT_TRUE(bitwise_equal(a.experts()[e].params(), b.experts()[e].params())) << "expert " << e;
    EXPECT_TRUE(bitwise_equal(a.experts()[e].optimizer().to_tensors(), b.experts()[e].optimizer().to_tensors()))
        << "expert " << e;
    EXPECT_EQ(a.experts()[e].optimizer().applied_steps, b.experts()[e].optimizer().applied_steps) << "expert " << e;
  }
}

struct resume_case {
  const char* name;
  std::int64_t poison_step;  // a skipped step before the checkpoint (-1: none)
  std::int64_t shards;
};

void PrintTo(const resume_case& c, std::ostream* os) { *os << c.name; }

class ModelCheckpointResume : public ModelCheckpoint, public ::testing::WithParamInterface<resume_case> {};

TEST_P(ModelCheckpointResume, SixStepsEqualThreeSavedRestoredAndThreeMore) {
  config c = testing::tiny_model_config();
  c.cluster.shards = GetParam().shards;
  synthetic_source data(c);

  reference_trainer straight(c, data);
  if (GetParam().poison_step >= 0) straight.inject_nonfinite_gradient_at(GetParam().poison_step);
  std::vector<step_metrics> expected;
  for (std::int64_t k = 0; k < 6; ++k) expected.push_back(straight.train_step(k));

  {
    reference_trainer first(c, data);
    if (GetParam().poison_step >= 0) first.inject_nonfinite_gradient_at(GetParam().poison_step);
    for (std::int64_t k = 0; k < 3; ++k) first.train_step(k);
    save_checkpoint(first, root_, 3, 0);
  }

  reference_trainer resumed(c, data);
  auto m = latest_valid_checkpoint(root_, c);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->step, 3);
  EXPECT_EQ(m->units.size(), std::size_t(1 + c.model.experts));
  // A fresh trainer is not already in the state of step 3: restoring must do the work.
  EXPECT_FALSE(bitwise_equal(resumed.experts()[0].params(), straight.experts()[0].params()));
  restore_checkpoint(resumed, root_, *m);
  for (std::int64_t k = m->step; k < 6; ++k) {
    const step_metrics got = resumed.train_step(k);
    const step_metrics& want = expected[std::size_t(k)];
    EXPECT_EQ(bits(got.loss.loss), bits(want.loss.loss)) << "step " << k << ": " << got.loss.loss << " vs " << want.loss.loss;
    EXPECT_EQ(bits(got.loss.aux), bits(want.loss.aux)) << "step " << k;
    EXPECT_EQ(got.skipped, want.skipped) << "step " << k;
  }
  expect_same_state(straight, resumed);
}

INSTANTIATE_TEST_SUITE_P(Cases, ModelCheckpointResume,
                         ::testing::Values(resume_case{"two_shards", -1, 2},
                                           resume_case{"skipped_step_before_the_checkpoint", 1, 2},
                                           resume_case{"three_shards", -1, 3}),
                         [](const auto& info) { return std::string(info.param.name); });

// Damage done to the newest checkpoint, and what latest_valid_checkpoint must say about it.
struct damage_case {
  const char* name;
  std::function<void(const std::string& step_dir, const checkpoint_manifest& m)> damage;
  const char* reason;
};

std::string unit_path(const std::string& dir, const checkpoint_manifest& m, const std::string& unit) {
  return (fs::path(dir) / m.find(unit)->file).string();
}

void flip_last_byte(const std::string& path) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(-1, std::ios::end);
  char ch = 0;
  f.get(ch);
  f.seekp(-1, std::ios::end);
  f.put(char(ch ^ 0x10));
}

void overwrite(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

const damage_case damage_cases[] = {
    {"truncated_unit_file",
     [](const std::string& dir, const checkpoint_manifest& m) {
       const std::string p = unit_path(dir, m, "expert1");
       fs::resize_file(p, fs::file_size(p) - 100);
     },
     "torn or truncated"},
    {"flipped_byte_in_unit_file",
     [](const std::string& dir, const checkpoint_manifest& m) { flip_last_byte(unit_path(dir, m, "dense")); },
     "checksum"},
    {"missing_unit_file",
     [](const std::string& dir, const checkpoint_manifest& m) { fs::remove(unit_path(dir, m, "expert3")); },
     "missing"},
    {"garbage_manifest",
     [](const std::string& dir, const checkpoint_manifest&) {
       overwrite((fs::path(dir) / "manifest.capnp").string(), "this is not a manifest, just some words of text.");
     },
     "manifest"},
    {"zeroed_manifest",
     [](const std::string& dir, const checkpoint_manifest&) {
       overwrite((fs::path(dir) / "manifest.capnp").string(), std::string(64, '\0'));
     },
     "manifest"},
    {"truncated_manifest",
     [](const std::string& dir, const checkpoint_manifest&) {
       const std::string p = (fs::path(dir) / "manifest.capnp").string();
       fs::resize_file(p, fs::file_size(p) / 2 / 8 * 8);
     },
     "manifest"},
    {"manifest_without_a_unit",
     [](const std::string& dir, const checkpoint_manifest& m) {
       checkpoint_manifest partial = m;
       partial.units.erase(partial.units.begin() + 2);
       write_manifest(fs::path(dir).parent_path().string(), partial, 0);
     },
     "does not list unit 'expert1'"},
    {"no_manifest",
     [](const std::string& dir, const checkpoint_manifest&) { fs::remove(fs::path(dir) / "manifest.capnp"); },
     "interrupted"},
};

void PrintTo(const damage_case& c, std::ostream* os) { *os << c.name; }

class ModelCheckpointDamage : public ModelCheckpoint, public ::testing::WithParamInterface<damage_case> {};

TEST_P(ModelCheckpointDamage, NewestIsSkippedWithAReasonAndThePreviousOneIsUsed) {
  const config c = testing::tiny_model_config();
  synthetic_source data(c);
  reference_trainer t(c, data);
  t.train_step(0);
  save_checkpoint(t, root_, 1, 0);
  t.train_step(1);
  const checkpoint_manifest newest = save_checkpoint(t, root_, 2, 0);
  ASSERT_EQ(latest_valid_checkpoint(root_, c)->step, 2);

  GetParam().damage(checkpoint_dir_for(root_, 2), newest);

  std::vector<std::string> skipped;
  auto m = latest_valid_checkpoint(root_, c, &skipped);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->step, 1);
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_NE(skipped[0].find("step-00000002"), std::string::npos) << skipped[0];
  EXPECT_NE(skipped[0].find(GetParam().reason), std::string::npos) << skipped[0];

  // The previous checkpoint restores, and the damaged one cannot be loaded by mistake.
  reference_trainer fresh(c, data);
  restore_checkpoint(fresh, root_, *m);
  EXPECT_EQ(fresh.shards()[0].optimizer().applied_steps, 1);
}

INSTANTIATE_TEST_SUITE_P(Cases, ModelCheckpointDamage, ::testing::ValuesIn(damage_cases),
                         [](const auto& info) { return std::string(info.param.name); });

TEST_F(ModelCheckpoint, CorruptUnitFileIsRefusedByTheReaderNamingTheFile) {
  const config c = testing::tiny_model_config();
  synthetic_source data(c);
  reference_trainer t(c, data);
  t.train_step(0);
  const checkpoint_manifest m = save_checkpoint(t, root_, 1, 0);
  const std::string path = unit_path(checkpoint_dir_for(root_, 1), m, "expert2");
  flip_last_byte(path);

  reference_trainer fresh(c, data);
  const param_set before = fresh.experts()[2].params();
  try {
    read_unit_file(root_, 1, *m.find("expert2"), fresh.experts()[2].params(), fresh.experts()[2].optimizer());
    FAIL() << "a corrupt unit file was loaded";
  } catch (const checkpoint_error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("checksum"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(bitwise_equal(before, fresh.experts()[2].params())) << "a failed load must leave the unit untouched";
}

TEST_F(ModelCheckpoint, ConfigHashMismatchIsAnErrorNamingBothHashes) {
  const config c = testing::tiny_model_config();
  synthetic_source data(c);
  reference_trainer t(c, data);
  save_checkpoint(t, root_, 0, 0);
  config other = c;
  other.model.d_ff = 16;
  try {
    latest_valid_checkpoint(root_, other);
    FAIL() << "a checkpoint of another model was accepted";
  } catch (const checkpoint_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(checksum_to_hex(model_config_hash(c))), std::string::npos) << what;
    EXPECT_NE(what.find(checksum_to_hex(model_config_hash(other))), std::string::npos) << what;
  }
}

TEST_F(ModelCheckpoint, KeepsTheLastKCheckpoints) {
  config c = testing::tiny_model_config();
  c.fault.keep_checkpoints = 2;
  synthetic_source data(c);
  reference_trainer t(c, data);
  for (std::int64_t step = 1; step <= 4; ++step) save_checkpoint(t, root_, step, 0);
  std::vector<std::string> dirs;
  for (const auto& d : fs::directory_iterator(root_)) dirs.push_back(d.path().filename().string());
  std::sort(dirs.begin(), dirs.end());
  EXPECT_EQ(dirs, (std::vector<std::string>{"step-00000003", "step-00000004"}));
}

TEST_F(ModelCheckpoint, ResumingDiscardsTheNewerStepDirectories) {
  const config c = testing::tiny_model_config();
  synthetic_source data(c);
  reference_trainer t(c, data);
  for (std::int64_t step : {2, 4, 6}) save_checkpoint(t, root_, step, 0);
  EXPECT_EQ(remove_checkpoints_after(root_, 4), 1);
  EXPECT_TRUE(fs::exists(checkpoint_dir_for(root_, 4)));
  EXPECT_FALSE(fs::exists(checkpoint_dir_for(root_, 6)));
  EXPECT_EQ(latest_valid_checkpoint(root_, c)->step, 4);
}

TEST_F(ModelCheckpoint, EpochNamesTheFileAndReplacedFilesOfOlderEpochsAreRemoved) {
  const config c = testing::tiny_model_config();
  synthetic_source data(c);
  reference_trainer t(c, data);
  save_checkpoint(t, root_, 1, 0);
  const checkpoint_manifest m = save_checkpoint(t, root_, 1, 2);
  EXPECT_EQ(m.find("dense")->file, "dense.e2.bin");
  EXPECT_TRUE(fs::exists(fs::path(checkpoint_dir_for(root_, 1)) / "dense.e2.bin"));
  EXPECT_FALSE(fs::exists(fs::path(checkpoint_dir_for(root_, 1)) / "dense.e0.bin"));
  EXPECT_EQ(latest_valid_checkpoint(root_, c)->epoch, 2);
}

// A unit file written for another layout, read into this one: a clear error naming the file.
struct layout_case {
  const char* name;
  std::function<void(config&)> change;
  const char* says;
};

const layout_case layout_cases[] = {
    {"wider_expert", [](config& c) { c.model.d_ff = 16; }, "expects [8, 12]"},
    {"gated_expert", [](config& c) { c.model.activation = expert_activation::gated_gelu; }, "tensors"},
};

void PrintTo(const layout_case& c, std::ostream* os) { *os << c.name; }

class ModelCheckpointLayout : public ModelCheckpoint, public ::testing::WithParamInterface<layout_case> {};

TEST_P(ModelCheckpointLayout, UnitFileOfAnotherLayoutIsAClearError) {
  const config c = testing::tiny_model_config();
  config other = c;
  GetParam().change(other);
  param_set wrong = init_expert_params(other.model, 0, 1);
  optimizer_state wrong_opt;
  wrong_opt.init(wrong);
  const unit_file_info f = write_unit_file(root_, 5, 0, "expert0", wrong, wrong_opt);

  param_set params = init_expert_params(c.model, 0, 1);
  optimizer_state opt;
  opt.init(params);
  try {
    read_unit_file(root_, 5, f, params, opt);
    FAIL() << "a unit file of another layout was loaded";
  } catch (const checkpoint_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("expert0.e0.bin"), std::string::npos) << what;
    EXPECT_NE(what.find(GetParam().says), std::string::npos) << what;
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, ModelCheckpointLayout, ::testing::ValuesIn(layout_cases),
                         [](const auto& info) { return std::string(info.param.name); });

TEST_F(ModelCheckpoint, UnitFileHasTheDocumentedLayout) {
  const config c = testing::tiny_model_config();
  param_set params = init_expert_params(c.model, 1, 3);
  optimizer_state opt;
  opt.init(params);
  opt.applied_steps = 4;
  const unit_file_info f = write_unit_file(root_, 7, 1, "expert1", params, opt);
  EXPECT_EQ(f.file, "expert1.e1.bin");
  const std::string path = (fs::path(checkpoint_dir_for(root_, 7)) / f.file).string();
  EXPECT_EQ(fs::file_size(path), f.size);
  EXPECT_EQ(file_checksum64(path), f.checksum);
  std::ifstream in(path, std::ios::binary);
  char magic[8];
  in.read(magic, 8);
  EXPECT_EQ(std::string(magic, 8), "GLAMUNIT");
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  param_set back = params.zeros_like();
  optimizer_state back_opt;
  back_opt.init(back);
  read_unit_file(root_, 7, f, back, back_opt);
  EXPECT_TRUE(bitwise_equal(back, params));
  EXPECT_EQ(back_opt.applied_steps, 4);
  EXPECT_TRUE(bitwise_equal(back_opt.to_tensors(), opt.to_tensors()));
}

}  // namespace
}  // namespace glam

namespace glam {
namespace {

// An in-memory snapshot (what a worker keeps and sends to its buddy) restores the unit
// bitwise, and a damaged one is refused without touching the unit.
TEST(ModelSnapshot, RestoresTheUnitBitwise) {
  const config c = testing::tiny_model_config();
  synthetic_source data(c);
  reference_trainer t(c, data);
  t.train_step(0);
  auto& expert = t.experts()[1];
  const unit_snapshot s = encode_unit(1, 0, "expert1", expert.params(), expert.optimizer());
  EXPECT_EQ(s.unit, "expert1");
  EXPECT_EQ(s.step, 1);

  reference_trainer fresh(c, data);
  decode_unit(s, fresh.experts()[1].params(), fresh.experts()[1].optimizer());
  EXPECT_TRUE(bitwise_equal(expert.params(), fresh.experts()[1].params()));
  EXPECT_EQ(fresh.experts()[1].optimizer().applied_steps, expert.optimizer().applied_steps);
}

TEST(ModelSnapshot, ADamagedSnapshotIsRefusedAndTheUnitUntouched) {
  const config c = testing::tiny_model_config();
  synthetic_source data(c);
  reference_trainer t(c, data);
  t.train_step(0);
  unit_snapshot s = encode_unit(1, 0, "expert1", t.experts()[1].params(), t.experts()[1].optimizer());
  s.bytes[s.bytes.size() / 2] ^= 0x10;

  reference_trainer fresh(c, data);
  const param_set before = fresh.experts()[1].params();
  EXPECT_THROW(decode_unit(s, fresh.experts()[1].params(), fresh.experts()[1].optimizer()), checkpoint_error);
  EXPECT_TRUE(bitwise_equal(before, fresh.experts()[1].params()));
}

}  // namespace
}  // namespace glam
