#pragma once
// Turning input files into documents: validation (missing, empty, binary, non-UTF-8),
// normalisation (terminal overstrike and control characters) and document splitting.
#include <string>
#include <string_view>
#include <vector>

namespace glam {

// Reads a whole input file and checks that it is non-empty UTF-8 text. Throws data_error
// naming the path and the problem: missing or unreadable, a directory, empty, binary (NUL
// byte, with its offset) or not UTF-8 (with the byte offset of the first bad sequence).
std::string read_text_file(const std::string& path);

// Byte offset of the first byte that does not start a valid UTF-8 sequence (strict:
// no overlong forms, no surrogates, nothing above U+10FFFF), or npos when all is valid.
std::size_t first_invalid_utf8(std::string_view bytes);

// Resolves terminal overstrike the way a printer would: a backspace moves back one
// character, and a character struck over another keeps the one that is not '_' (so both
// "X\bX" (bold) and "_\bX" (underline) become "X", and "___\b\b\band" becomes "and"). Then
// drops every other control character except '\n' and '\t' (including '\r' and a leading
// byte-order mark). Input must be valid UTF-8; characters are whole code points.
std::string normalise_text(std::string_view text);

// Documents of one (normalised) file: if some line is exactly "%", the text between such
// lines (the fortune-file convention); otherwise the whole file. Leading and trailing
// newlines are trimmed; documents holding only whitespace are dropped.
std::vector<std::string> split_documents(std::string_view text);

// Expands the input list: a file stays itself, a directory becomes its regular files
// (symbolic links and hidden files skipped) sorted by name; names ending in one of
// `exclude_suffixes` are skipped in directories. Throws data_error for a path that does not
// exist or a directory with no usable files.
std::vector<std::string> expand_inputs(const std::vector<std::string>& paths,
                                       const std::vector<std::string>& exclude_suffixes);

}  // namespace glam
