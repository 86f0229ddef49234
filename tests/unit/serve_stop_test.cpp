// The stop-string matcher on its own: pieces of text come in as tokens make them; what comes
// out must be the text up to the first stop string, never a byte of a stop string, and
// never held back longer than a stop string could still start there.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "serve/completions_api.hpp"

namespace glam {
namespace {

struct stop_case {
  const char* name;
  std::vector<std::string> stops;
  std::vector<std::string> pieces;
  std::string text;                  // all that comes out
  bool matched;
  std::vector<std::string> outputs;  // what each push gives (empty: not checked)
};

class StopMatcher : public ::testing::TestWithParam<stop_case> {};

TEST_P(StopMatcher, GivesTheTextUpToTheFirstStopString) {
  const stop_case& c = GetParam();
  stop_matcher m(c.stops);
  std::string out;
  std::vector<std::string> each;
  for (const auto& p : c.pieces) {
    each.push_back(m.push(p));
    out += each.back();
  }
  if (!c.outputs.empty()) {
    EXPECT_EQ(each, c.outputs);
  }
  EXPECT_EQ(m.matched(), c.matched);
  if (c.matched) {
    EXPECT_EQ(m.push("more"), "") << "nothing after a match";
  }
  out += m.finish();
  EXPECT_EQ(out, c.text);
}

const stop_case stop_cases[] = {
    {"NoStops", {}, {"a", "bc", "d"}, "abcd", false, {"a", "bc", "d"}},
    {"NoMatchGivesEverything", {"xyz"}, {"hello", " world"}, "hello world", false, {"hello", " world"}},
    {"MatchInsideAPiece", {"lo w"}, {"hello world"}, "hel", true, {"hel"}},
    {"MatchAcrossPieces", {"END"}, {"abc E", "N", "D tail"}, "abc ", true, {"abc ", "", ""}},
    {"PrefixHeldBackThenReleased", {"END"}, {"abc EN", "x"}, "abc ENx", false, {"abc ", "ENx"}},
    {"EarliestOfSeveral", {"cd", "b"}, {"abcd"}, "a", true, {"a"}},
    {"OverlappingPrefixes", {"aab"}, {"a", "a", "a", "b"}, "a", true, {"", "", "a", ""}},
    {"StopAtTheStart", {"Q:"}, {"Q", ": x"}, "", true, {"", ""}},
    {"HeldBackRestAtTheEnd", {"\n\n"}, {"line\n"}, "line\n", false, {"line"}},
    {"Utf8StopString", {"é!"}, {"caf", "é", "! ok"}, "caf", true, {"caf", "", ""}},
    {"Utf8TextNotAStop", {"é!"}, {"caf", "é", " ok"}, "café ok", false, {"caf", "", "é ok"}},
};

INSTANTIATE_TEST_SUITE_P(Table, StopMatcher, ::testing::ValuesIn(stop_cases),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace glam
