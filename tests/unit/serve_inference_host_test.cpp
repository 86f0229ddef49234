// A worker's inference_host (worker/inference_host.hpp) without actors, on the glam-tiny
// checkpoint of the serving tests: a pass driven call by call gives the reference's logits
// bit for bit, also when the exchange and the logits travel in small parts; calls out of the
// pass's phase, unknown units and sequences, parts outside the tensor and a checkpoint of
// another step are refused with inference_error; a dropped pass leaves the sequences as
// they were.
#include <gtest/gtest.h>

#include "model/unit_id.hpp"
#include "serve_testing.hpp"
#include "worker/inference_host.hpp"

namespace {

using namespace glam;
using glam::index;

infer_assignment assignment(const inference_checkpoint& ck) {
  infer_assignment a;
  a.session = "s";
  a.checkpoint = checkpoint_dir_for(ck.root, ck.manifest.step);
  a.step = ck.manifest.step;
  a.config_hash = ck.manifest.config_hash;
  a.experts = ck.cfg.model.experts;
  a.units = {"shard0"};
  for (index e = 0; e < a.experts; ++e) a.units.push_back(unit_id::expert(e).name());
  return a;
}

infer_request call(const std::string& unit, infer_op op) {
  infer_request r;
  r.session = "s";
  r.unit = unit;
  r.op = static_cast<std::int32_t>(op);
  return r;
}

// The whole of a stage's tensor, read in parts of `part` floats after the first.
tensor read_all(inference_host& h, const infer_reply& first, std::int64_t part) {
  tensor t(first.data.shape);
  std::copy(first.data.data.begin(), first.data.data.end(), t.data.begin());
  for (std::int64_t got = static_cast<std::int64_t>(first.data.data.size()); got < t.size();) {
    auto r = call("shard0", infer_op::read);
    r.offset = got;
    r.count = part;
    const auto p = h.call(r);
    std::copy(p.data.data.begin(), p.data.data.end(), t.data.begin() + got);
    got += static_cast<std::int64_t>(p.data.data.size());
  }
  return t;
}

TEST(InferenceHost, DrivenCallByCallGivesTheReferenceLogits) {
  const auto ck = find_checkpoint(serve_testing::trained_glam_tiny().checkpoint);
  auto reference = reference_inference::from_checkpoint(ck);
  inference_host h;
  h.load(assignment(ck));
  const index M = ck.cfg.model.d_model;
  const std::vector<pass_item> items{{7, {5, 17, 300, 41}}, {8, {1200}}};
  reference.shard().open_sequence(7);
  reference.shard().open_sequence(8);
  const tensor expected = reference.run_pass(items);

  // Out of phase: resume and read between passes.
  EXPECT_THROW(h.call(call("shard0", infer_op::resume)), inference_error);
  EXPECT_THROW(h.call(call("shard0", infer_op::read)), inference_error);
  auto prepare = call("shard0", infer_op::prepare);
  prepare.open = {7, 8};
  EXPECT_EQ(h.call(prepare).open_sequences, 2);
  auto unknown = call("shard0", infer_op::begin);
  unknown.items = {{9, {1}}};
  EXPECT_THROW(h.call(unknown), inference_error);  // sequence 9 is not open

  auto begin = call("shard0", infer_op::begin);
  begin.items = items;
  infer_reply stage = h.call(begin);
  EXPECT_THROW(h.call(prepare), inference_error);  // not between passes
  while (stage.stage == 1) {
    const tensor rows = read_all(h, stage, 7);  // small parts: the same bits
    tensor out(rows.shape);
    for (index e = 0; e < ck.cfg.model.experts; ++e) {
      const index at = stage.offset[static_cast<std::size_t>(e)], n = stage.counts[static_cast<std::size_t>(e)];
      if (n == 0) continue;
      auto x = call(unit_id::expert(e).name(), infer_op::expert);
      x.moe = stage.moe;
      x.data.shape = {n, M};
      x.data.data.assign(rows.ptr() + at * M, rows.ptr() + (at + n) * M);
      const auto y = h.call(x);
      std::copy(y.data.data.begin(), y.data.data.end(), out.data.begin() + at * M);
    }
    // A part outside the outputs, and a resume before every part is written.
    auto bad = call("shard0", infer_op::write);
    bad.data = block_of(out, 0);
    bad.data.offset = out.size();
    EXPECT_THROW(h.call(bad), inference_error);
    auto early = call("shard0", infer_op::resume);
    early.data = block_of(out, 0, 3);
    EXPECT_THROW(h.call(early), inference_error);  // the failed resume drops the pass
    EXPECT_THROW(h.call(call("shard0", infer_op::write)), inference_error);
    stage = h.call(begin);  // the sequences kept their tokens: the pass runs again
    ASSERT_EQ(stage.stage, 1);
    auto write = call("shard0", infer_op::write);
    write.data = block_of(out, 0, out.size() / 2);
    h.call(write);
    auto resume = call("shard0", infer_op::resume);
    resume.data = block_of(out, out.size() / 2);
    stage = h.call(resume);
  }
  ASSERT_EQ(stage.stage, 2);
  EXPECT_TRUE(bitwise_equal(read_all(h, stage, 1000), expected));

  EXPECT_THROW(h.call(call("shard1", infer_op::prepare)), inference_error);
  EXPECT_THROW(h.call(call("expert9", infer_op::expert)), inference_error);
  EXPECT_THROW(h.call(call("expert0", infer_op::begin)), inference_error);
}

TEST(InferenceHost, RefusesACheckpointOfAnotherStep) {
  const auto ck = find_checkpoint(serve_testing::trained_glam_tiny().checkpoint);
  auto a = assignment(ck);
  a.step += 1;
  inference_host h;
  EXPECT_THROW(h.load(a), inference_error);
}

}  // namespace
