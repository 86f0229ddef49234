// Input text: the checks that turn bad input into clear errors, the overstrike and control
// character normalisation, and document splitting, on made-up and on real (fortunes) text.
#include <gtest/gtest.h>

#include <algorithm>

#include "data/error.hpp"
#include "data/text.hpp"
#include "tests/unit/data_testing.hpp"

namespace glam {
namespace {

TEST(Utf8, AcceptsValidAndLocatesTheFirstInvalidByte) {
  EXPECT_EQ(first_invalid_utf8("plain ascii\n"), std::string::npos);
  EXPECT_EQ(first_invalid_utf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"), std::string::npos);
  EXPECT_EQ(first_invalid_utf8("ab\xE9z"), 2u);             // Latin-1 e-acute
  EXPECT_EQ(first_invalid_utf8("ok\xC0\xAF"), 2u);          // overlong '/'
  EXPECT_EQ(first_invalid_utf8("x\xED\xA0\x80"), 1u);       // surrogate U+D800
  EXPECT_EQ(first_invalid_utf8("xy\xF4\x90\x80\x80"), 2u);  // above U+10FFFF
  EXPECT_EQ(first_invalid_utf8("abc\xE2\x82"), 3u);         // truncated at the end
  EXPECT_EQ(first_invalid_utf8("\x80"), 0u);                // lone continuation byte
}

TEST(Normalise, ResolvesOverstrikeLikeAPrinter) {
  EXPECT_EQ(normalise_text("B\bBo\bol\bld\bd"), "Bold");                 // X\bX bold
  EXPECT_EQ(normalise_text("_\bu_\bn_\bd_\be_\br"), "under");            // _\bX underline
  EXPECT_EQ(normalise_text("X\b_"), "X");                                // X\b_ underline too
  EXPECT_EQ(normalise_text("say *___\b\b\band* now"), "say *and* now");  // underline run
  EXPECT_EQ(normalise_text("\bstart"), "start");                         // nothing to go back to
  EXPECT_EQ(normalise_text("\xC3\xA9\b\xC3\xA9!"), "\xC3\xA9!");         // whole code points
  EXPECT_EQ(normalise_text("a\bb\nc\bd"), "b\nd");                       // per line
}

TEST(Normalise, DropsControlCharactersButKeepsNewlinesAndTabs) {
  EXPECT_EQ(normalise_text("bell\a here\r\n\ttab\x1b[0m\x7f"), "bell here\n\ttab[0m");
  EXPECT_EQ(normalise_text("\xEF\xBB\xBFtext"), "text");              // byte-order mark
  EXPECT_EQ(normalise_text("c1\xC2\x85x\xC2\xA0y"), "c1x\xC2\xA0y");  // C1 control; NBSP stays
}

TEST(Documents, SplitAtPercentLinesOnlyWhenTheFileHasThem) {
  EXPECT_EQ(split_documents("one\n%\ntwo\nlines\n%\n\n%\nthree\n%\n"),
            (std::vector<std::string>{"one", "two\nlines", "three"}));
  // Without "%" lines, blank lines and a "%" inside a line are ordinary text.
  EXPECT_EQ(split_documents("para one\n\npara 100%\n"),
            (std::vector<std::string>{"para one\n\npara 100%"}));
  EXPECT_EQ(split_documents("  \n\t\n"), std::vector<std::string>{});
  EXPECT_EQ(split_documents("%\nonly\n%"), std::vector<std::string>{"only"});
  EXPECT_EQ(split_documents("before\n%\nafter"), (std::vector<std::string>{"before", "after"}));
}

TEST(ReadTextFile, RefusesMissingEmptyBinaryAndNonUtf8WithTheirDetails) {
  testing::scratch_dir dir;
  testing::expect_error_mentions([&] { read_text_file(dir / "nope.txt"); },
                                 {dir / "nope.txt", "does not exist"});
  testing::expect_error_mentions([&] { read_text_file(dir.path()); }, {"is a directory"});
  testing::write_file(dir / "empty.txt", "");
  testing::expect_error_mentions([&] { read_text_file(dir / "empty.txt"); },
                                 {dir / "empty.txt", "is empty"});
  testing::write_file(dir / "blob.bin", std::string("abc\0def", 7));
  testing::expect_error_mentions([&] { read_text_file(dir / "blob.bin"); },
                                 {dir / "blob.bin", "binary", "offset 3"});
  testing::write_file(dir / "latin1.txt", "good line\nna\xEFve\n");
  testing::expect_error_mentions(
      [&] { read_text_file(dir / "latin1.txt"); },
      {dir / "latin1.txt", "not valid UTF-8", "0xef", "offset 12", "iconv"});
  testing::write_file(dir / "fine.txt", "caf\xC3\xA9\n");
  EXPECT_EQ(read_text_file(dir / "fine.txt"), "caf\xC3\xA9\n");
}

TEST(ReadTextFile, TheFortuneIndexFilesAreRefusedAsBinary) {
  GLAM_REQUIRE_FORTUNES();
  testing::expect_error_mentions([&] { read_text_file(testing::fortunes_dir + "/fortunes.dat"); },
                                 {"fortunes.dat", "binary", ".dat"});
}

TEST(ExpandInputs, DirectoriesBecomeTheirSortedRegularFiles) {
  GLAM_REQUIRE_FORTUNES();
  auto files = expand_inputs({testing::fortunes_dir}, {".dat"});
  EXPECT_EQ(files, testing::fortune_files());  // the .u8 names are symbolic links: skipped
  testing::scratch_dir dir;
  testing::expect_error_mentions([&] { expand_inputs({dir.path()}, {}); }, {"no regular files"});
  testing::expect_error_mentions([&] { expand_inputs({dir / "x"}, {}); },
                                 {dir / "x", "does not exist"});
}

TEST(Fortunes, EveryFileReadsAndNormalisesToCleanDocuments) {
  GLAM_REQUIRE_FORTUNES();
  std::size_t documents = 0, bytes = 0;
  bool saw_overstrike = false;
  for (const auto& path : testing::fortune_files()) {
    std::string raw = read_text_file(path);
    saw_overstrike |= raw.find('\b') != std::string::npos;
    std::string clean = normalise_text(raw);
    EXPECT_EQ(first_invalid_utf8(clean), std::string::npos) << path;
    for (unsigned char c : clean)
      ASSERT_TRUE(c >= 0x20 || c == '\n' || c == '\t') << path << " keeps control " << int(c);
    auto docs = split_documents(clean);
    EXPECT_GT(docs.size(), 0u) << path;
    for (const auto& d : docs) {
      EXPECT_FALSE(d.empty());
      EXPECT_NE(d.front(), '\n');
      EXPECT_NE(d.back(), '\n');
    }
    documents += docs.size();
    bytes += raw.size();
  }
  EXPECT_TRUE(saw_overstrike);
  EXPECT_GT(documents, 5000u);
  EXPECT_GT(bytes, 2'000'000u);
}

}  // namespace
}  // namespace glam
