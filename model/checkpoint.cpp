#include "model/checkpoint.hpp"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <kj/exception.h>
#include <set>

#include "schema/checkpoint.capnp.h"
#include "configs/config.hpp"
#include "data/checksum.hpp"
#include "data/manifest.hpp"
#include "model/train_step.hpp"

namespace glam {

// The tensors are stored as the host's floats; the format says little-endian.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "checkpoint files are little-endian");

namespace fs = std::filesystem;

namespace {

constexpr char unit_magic[8] = {'G', 'L', 'A', 'M', 'U', 'N', 'I', 'T'};
constexpr std::size_t fixed_header_bytes = 16;  // magic, version (u32), header length (u32)
constexpr std::uint64_t tensor_alignment = 64;
constexpr const char* manifest_name = "manifest.capnp";
// Bounds on what a reader accepts before it parses anything, so that a corrupt length
// cannot make it allocate or traverse without limit.
constexpr std::uint64_t max_header_bytes = 256ull << 20;
constexpr std::uint64_t max_manifest_bytes = 64ull << 20;

std::uint64_t align_up(std::uint64_t n) { return (n + tensor_alignment - 1) / tensor_alignment * tensor_alignment; }

std::string errno_text() { return std::strerror(errno); }

std::string hex(std::uint64_t v) { return checksum_to_hex(v); }

capnp::ReaderOptions bounded_options(std::size_t words) {
  capnp::ReaderOptions o;
  // A well-formed message traverses each word at most once; a little slack for the root.
  o.traversalLimitInWords = std::max<std::size_t>(words * 2, 1024);
  o.nestingLimit = 16;
  return o;
}

// A file written durably: everything goes to "<path>.tmp", which is fsynced, then renamed
// over path, and the directory is fsynced so that the rename itself survives a crash.
class durable_writer {
 public:
  explicit durable_writer(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0)
      throw checkpoint_error("cannot create checkpoint file '" + tmp_ + "': " + errno_text() +
                             "; check that the checkpoint directory is writable and has space");
  }
  ~durable_writer() {
    if (fd_ >= 0) {
      ::close(fd_);
      ::unlink(tmp_.c_str());
    }
  }
  durable_writer(const durable_writer&) = delete;
  durable_writer& operator=(const durable_writer&) = delete;

  void write(const void* data, std::size_t size) {
    sum_.update(data, size);
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
      const ssize_t n = ::write(fd_, p, size);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0)
        throw checkpoint_error("cannot write checkpoint file '" + tmp_ + "': " + errno_text() +
                               "; check the free space of the checkpoint directory");
      p += n;
      size -= std::size_t(n);
      written_ += std::uint64_t(n);
    }
  }
  void pad_to(std::uint64_t offset) {
    static const char zeros[tensor_alignment] = {};
    while (written_ < offset) write(zeros, std::size_t(std::min<std::uint64_t>(offset - written_, tensor_alignment)));
  }
  std::uint64_t written() const { return written_; }
  std::uint64_t checksum() const { return sum_.digest(); }
  void reserve(std::uint64_t) {}

  void commit() {
    if (::fsync(fd_) != 0) throw checkpoint_error("cannot fsync checkpoint file '" + tmp_ + "': " + errno_text());
    const int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) throw checkpoint_error("cannot close checkpoint file '" + tmp_ + "': " + errno_text());
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0)
      throw checkpoint_error("cannot rename '" + tmp_ + "' to '" + path_ + "': " + errno_text());
  }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  std::uint64_t written_ = 0;
  checksum64_stream sum_;
};

// The same interface as durable_writer, into memory (snapshots).
class memory_writer {
 public:
  void write(const void* data, std::size_t size) {
    sum_.update(data, size);
    bytes_.append(static_cast<const char*>(data), size);
  }
  void pad_to(std::uint64_t offset) {
    if (bytes_.size() < offset) {
      const std::string zeros(offset - bytes_.size(), '\0');
      write(zeros.data(), zeros.size());
    }
  }
  std::uint64_t written() const { return bytes_.size(); }
  std::uint64_t checksum() const { return sum_.digest(); }
  // The whole size at once: growing a snapshot of hundreds of MiB by doubling would copy it
  // and fault its pages in again at every doubling.
  void reserve(std::uint64_t total) { bytes_.reserve(std::size_t(total)); }
  std::string take() { return std::move(bytes_); }

 private:
  std::string bytes_;
  checksum64_stream sum_;
};

// Reads a byte buffer as a stream, without copying it.
class buffer_stream : private std::streambuf, public std::istream {
 public:
  explicit buffer_stream(const std::string& bytes) : std::istream(static_cast<std::streambuf*>(this)) {
    char* p = const_cast<char*>(bytes.data());
    setg(p, p, p + bytes.size());
  }
};

void fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw checkpoint_error("cannot open checkpoint directory '" + dir + "': " + errno_text());
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) throw checkpoint_error("cannot fsync checkpoint directory '" + dir + "': " + errno_text());
}

void make_step_dir(const std::string& root, const std::string& dir) {
  std::error_code ec;
  const bool created = fs::create_directories(dir, ec);
  if (ec)
    throw checkpoint_error("cannot create checkpoint directory '" + dir + "': " + ec.message() +
                           "; check --checkpoint-dir and its permissions");
  if (created) fsync_dir(root);
}

// A bare file name: no directory parts, so a manifest cannot point outside its directory.
bool is_bare_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

// The names a unit file gives its tensors: "param/<parameter>" for the parameters, then
// "opt/<parameter>.<buffer>" for the optimizer state, in optimizer_state::to_tensors order
// (whose names are "<parameter index>.<buffer>").
std::vector<std::string> tensor_names(const param_set& params, const param_set& state) {
  std::vector<std::string> names;
  for (const auto& p : params.items) names.push_back("param/" + p.name);
  for (const auto& s : state.items) {
    const auto dot = s.name.find('.');
    const std::size_t i = dot == std::string::npos ? params.items.size() : std::stoul(s.name.substr(0, dot));
    if (i >= params.items.size()) throw std::logic_error("optimizer state buffer '" + s.name + "' has no parameter");
    names.push_back("opt/" + params.items[i].name + s.name.substr(dot));
  }
  return names;
}

// The step of a directory name "step-<digits>", or -1.
std::int64_t parse_step_dir(const std::string& name) {
  if (name.size() < 6 || name.compare(0, 5, "step-") != 0) return -1;
  std::int64_t step = 0;
  for (std::size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9' || step > (INT64_MAX - 9) / 10) return -1;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

// Step directories under root, newest first.
std::vector<std::int64_t> step_dirs(const std::string& root) {
  std::vector<std::int64_t> steps;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return steps;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_directory(ec)) continue;
    const std::int64_t s = parse_step_dir(it->path().filename().string());
    if (s >= 0) steps.push_back(s);
  }
  if (ec) throw checkpoint_error("cannot list checkpoint directory '" + root + "': " + ec.message());
  std::sort(steps.rbegin(), steps.rend());
  return steps;
}

// The epoch in a unit file name "<unit>.e<epoch>.bin[.tmp]", or -1.
std::int64_t file_epoch(const std::string& name) {
  std::string n = name;
  if (n.size() > 4 && n.compare(n.size() - 4, 4, ".tmp") == 0) n.resize(n.size() - 4);
  if (n.size() < 4 || n.compare(n.size() - 4, 4, ".bin") != 0) return -1;
  n.resize(n.size() - 4);
  const auto e = n.rfind(".e");
  if (e == std::string::npos || e + 2 >= n.size()) return -1;
  std::int64_t epoch = 0;
  for (std::size_t i = e + 2; i < n.size(); ++i) {
    if (n[i] < '0' || n[i] > '9' || epoch > (INT64_MAX - 9) / 10) return -1;
    epoch = epoch * 10 + (n[i] - '0');
  }
  return epoch;
}

// After a manifest is in place: unit files of its step directory that it does not name and
// that older epochs wrote (a fenced writer's, or those of a checkpoint that a rollback
// replaced) are garbage.
void remove_stale_unit_files(const std::string& dir, const checkpoint_manifest& m) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const std::int64_t epoch = file_epoch(name);
    if (epoch < 0 || epoch >= m.epoch) continue;
    const bool named = std::any_of(m.units.begin(), m.units.end(), [&](const unit_file_info& u) { return u.file == name; });
    if (!named) fs::remove(it->path(), ec);
  }
}

void prune(const std::string& root, std::int64_t newest, std::int64_t keep) {
  if (keep <= 0) return;
  std::vector<std::int64_t> complete;
  const std::vector<std::int64_t> all = step_dirs(root);
  for (std::int64_t s : all) {
    std::error_code ec;
    if (s <= newest && fs::exists(fs::path(checkpoint_dir_for(root, s)) / manifest_name, ec)) complete.push_back(s);
  }
  if (std::int64_t(complete.size()) <= keep) return;
  const std::int64_t oldest_kept = complete[std::size_t(keep - 1)];
  for (std::int64_t s : all) {
    if (s >= oldest_kept) continue;
    std::error_code ec;
    fs::remove_all(checkpoint_dir_for(root, s), ec);
    if (ec) spdlog::warn("checkpoint: cannot delete old checkpoint '{}': {}", checkpoint_dir_for(root, s), ec.message());
  }
}

// Reads exactly size bytes or throws naming the file.
void read_exact(std::istream& in, void* out, std::size_t size, const std::string& path, checksum64_stream& sum) {
  in.read(static_cast<char*>(out), std::streamsize(size));
  if (!in || std::size_t(in.gcount()) != size)
    throw checkpoint_error("checkpoint unit file '" + path + "' is truncated; use an older checkpoint");
  sum.update(out, size);
}

struct tensor_entry {
  std::string name;
  std::uint64_t rows = 0, cols = 0, offset = 0, length = 0;
};

}  // namespace

const unit_file_info* checkpoint_manifest::find(const std::string& unit) const {
  for (const auto& u : units)
    if (u.unit == unit) return &u;
  return nullptr;
}


std::string checkpoint_dir_for(const std::string& root, std::int64_t step) {
  if (step < 0) throw checkpoint_error("checkpoint step " + std::to_string(step) + " is negative");
  char name[32];
  std::snprintf(name, sizeof name, "step-%08lld", (long long)step);
  return (fs::path(root) / name).string();
}

namespace {

// A unit's state in the unit file format, into any writer (a file, memory).
template <class Writer>
void encode_unit_into(Writer& w, std::int64_t step, std::int64_t epoch, const std::string& unit, const param_set& params,
                      const optimizer_state& opt) {
  if (!is_bare_name(unit)) throw checkpoint_error("checkpoint unit name '" + unit + "' is not a plain name");
  if (epoch < 0) throw checkpoint_error("checkpoint epoch " + std::to_string(epoch) + " is negative");
  if (opt.slots.size() != params.items.size())
    throw std::logic_error("encode_unit: the optimizer state of '" + unit + "' does not match its parameters");
  const param_set state = opt.to_tensors();
  const std::vector<std::string> names = tensor_names(params, state);
  std::vector<const tensor*> values;
  for (const auto& p : params.items) values.push_back(&p.value);
  for (const auto& s : state.items) values.push_back(&s.value);

  capnp::MallocMessageBuilder message;
  auto header = message.initRoot<schema::UnitHeader>();
  header.setUnit(unit);
  header.setStep(step);
  header.setEpoch(epoch);
  header.setAppliedSteps(opt.applied_steps);
  auto list = header.initTensors(static_cast<unsigned>(values.size()));
  for (std::size_t i = 0; i < values.size(); ++i) {
    const tensor& t = *values[i];
    if (t.rank() != 2) throw std::logic_error("encode_unit: tensor '" + names[i] + "' is not a matrix");
    auto e = list[static_cast<unsigned>(i)];
    e.setName(names[i]);
    e.setRows(std::uint64_t(t.dim(0)));
    e.setCols(std::uint64_t(t.dim(1)));
    e.setLength(std::uint64_t(t.size()) * sizeof(float));
  }
  // Offsets are fixed-width fields: setting them does not change the message's size, so the
  // data can start right after the header measured now.
  const std::uint64_t header_bytes = capnp::computeSerializedSizeInWords(message) * sizeof(capnp::word);
  if (header_bytes > max_header_bytes) throw checkpoint_error("checkpoint unit '" + unit + "' has too many tensors");
  std::uint64_t offset = align_up(fixed_header_bytes + header_bytes);
  for (std::size_t i = 0; i < values.size(); ++i) {
    list[static_cast<unsigned>(i)].setOffset(offset);
    offset = align_up(offset + list[static_cast<unsigned>(i)].getLength());
  }
  const kj::Array<capnp::word> flat = capnp::messageToFlatArray(message);
  if (flat.asBytes().size() != header_bytes) throw std::logic_error("encode_unit: header size changed");
  w.reserve(offset);

  const std::uint32_t version = checkpoint_format_version, length = std::uint32_t(header_bytes);
  w.write(unit_magic, sizeof unit_magic);
  w.write(&version, sizeof version);
  w.write(&length, sizeof length);
  w.write(flat.asBytes().begin(), flat.asBytes().size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    w.pad_to(list[static_cast<unsigned>(i)].getOffset());
    w.write(values[i]->ptr(), std::size_t(values[i]->size()) * sizeof(float));
  }
}

}  // namespace

unit_file_info write_unit_file(const std::string& root, std::int64_t step, std::int64_t epoch, const std::string& unit,
                               const param_set& params, const optimizer_state& opt) {
  if (!is_bare_name(unit)) throw checkpoint_error("checkpoint unit name '" + unit + "' is not a plain name");
  const std::string dir = checkpoint_dir_for(root, step);
  make_step_dir(root, dir);
  const std::string file = unit + ".e" + std::to_string(epoch) + ".bin";
  durable_writer w((fs::path(dir) / file).string());
  encode_unit_into(w, step, epoch, unit, params, opt);
  unit_file_info info{unit, file, w.written(), w.checksum()};
  w.commit();
  fsync_dir(dir);
  return info;
}

unit_snapshot encode_unit(std::int64_t step, std::int64_t epoch, const std::string& unit, const param_set& params,
                       const optimizer_state& opt) {
  memory_writer w;
  encode_unit_into(w, step, epoch, unit, params, opt);
  unit_snapshot out;
  out.unit = unit;
  out.step = step;
  out.checksum = w.checksum();
  out.bytes = w.take();
  return out;
}

namespace {

// Loads one unit's state of `size` bytes from `in` (a unit file, or a snapshot in memory):
// checks the magic, the format version, the unit name, the step, every tensor's name and
// shape, and the checksum; throws checkpoint_error naming `path` and what differs, leaving
// params/opt untouched.
void load_unit(std::istream& in, std::uint64_t size, const std::string& path, const unit_file_info& f,
               std::int64_t step, param_set& params, optimizer_state& opt) {
  const auto fail = [&](const std::string& what) -> checkpoint_error {
    return checkpoint_error("checkpoint unit file '" + path + "' " + what);
  };
  if (size != f.size)
    throw fail("is " + std::to_string(size) + " bytes, the manifest records " + std::to_string(f.size) +
               " (torn or truncated); use an older checkpoint");
  checksum64_stream sum;

  char fixed[fixed_header_bytes];
  read_exact(in, fixed, sizeof fixed, path, sum);
  if (std::memcmp(fixed, unit_magic, sizeof unit_magic) != 0)
    throw fail("does not start with GLAMUNIT: it is not a glam checkpoint unit file");
  std::uint32_t version = 0, header_bytes = 0;
  std::memcpy(&version, fixed + 8, 4);
  std::memcpy(&header_bytes, fixed + 12, 4);
  if (version != checkpoint_format_version)
    throw fail("has format version " + std::to_string(version) + "; this build reads version " +
               std::to_string(checkpoint_format_version) + " (use the glam that wrote it)");
  if (header_bytes == 0 || header_bytes % sizeof(capnp::word) != 0 || header_bytes > max_header_bytes ||
      fixed_header_bytes + header_bytes > size)
    throw fail("has a corrupt header length (" + std::to_string(header_bytes) + "); use an older checkpoint");
  std::vector<capnp::word> words(header_bytes / sizeof(capnp::word));
  read_exact(in, words.data(), header_bytes, path, sum);

  std::string unit;
  std::int64_t header_step = 0, applied = 0;
  std::vector<tensor_entry> entries;
  try {
    capnp::FlatArrayMessageReader reader(kj::arrayPtr(words.data(), words.size()), bounded_options(words.size()));
    auto h = reader.getRoot<schema::UnitHeader>();
    unit = h.getUnit();
    header_step = h.getStep();
    applied = h.getAppliedSteps();
    for (auto e : h.getTensors())
      entries.push_back({e.getName(), e.getRows(), e.getCols(), e.getOffset(), e.getLength()});
  } catch (const kj::Exception& e) {
    throw fail("has a header that does not parse (" + std::string(e.getDescription().cStr()) +
               "); use an older checkpoint");
  }
  if (unit != f.unit) throw fail("holds unit '" + unit + "', the manifest says '" + f.unit + "'");
  if (header_step != step)
    throw fail("was written at step " + std::to_string(header_step) + ", not " + std::to_string(step));
  if (applied < 0) throw fail("records a negative optimizer step count");

  // What the unit's layout expects: the caller's parameter names and shapes, and the
  // optimizer buffers a fresh state of those parameters has.
  optimizer_state fresh;
  fresh.init(params);
  param_set new_params = params.zeros_like();
  param_set new_state = fresh.to_tensors();
  const std::vector<std::string> names = tensor_names(params, new_state);
  std::vector<tensor*> targets;
  for (auto& p : new_params.items) targets.push_back(&p.value);
  for (auto& s : new_state.items) targets.push_back(&s.value);
  if (entries.size() != targets.size())
    throw fail("holds " + std::to_string(entries.size()) + " tensors, the layout of unit '" + f.unit + "' has " +
               std::to_string(targets.size()) + "; it was written for another model or layout");

  std::uint64_t pos = fixed_header_bytes + header_bytes;
  std::vector<char> skip(tensor_alignment);
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const tensor_entry& e = entries[i];
    tensor& t = *targets[i];
    if (e.name != names[i])
      throw fail("holds tensor '" + e.name + "' where the layout expects '" + names[i] +
                 "'; it was written for another model or layout");
    if (e.rows != std::uint64_t(t.dim(0)) || e.cols != std::uint64_t(t.dim(1)))
      throw fail("holds tensor '" + e.name + "' as [" + std::to_string(e.rows) + ", " + std::to_string(e.cols) +
                 "], the layout expects " + shape_string(t.shape) + "; it was written for another model");
    if (e.length != std::uint64_t(t.size()) * sizeof(float) || e.offset % tensor_alignment != 0 || e.offset < pos ||
        e.offset - pos >= tensor_alignment || e.offset + e.length > size)
      throw fail("has a corrupt entry for tensor '" + e.name + "' (offset " + std::to_string(e.offset) + ", length " +
                 std::to_string(e.length) + "); use an older checkpoint");
    read_exact(in, skip.data(), std::size_t(e.offset - pos), path, sum);
    read_exact(in, t.ptr(), std::size_t(e.length), path, sum);
    pos = e.offset + e.length;
  }
  if (pos != size)
    throw fail("has " + std::to_string(size - pos) + " bytes after its last tensor; use an older checkpoint");
  if (sum.digest() != f.checksum)
    throw fail("has checksum " + hex(sum.digest()) + ", the manifest records " + hex(f.checksum) +
               " (corrupt); use an older checkpoint");

  params = std::move(new_params);
  opt.from_tensors(params, new_state);
  opt.applied_steps = applied;
  for (auto& slot : opt.slots) slot.steps = applied;
}

}  // namespace

void read_unit_file(const std::string& root, std::int64_t step, const unit_file_info& f, param_set& params,
                    optimizer_state& opt) {
  if (!is_bare_name(f.file))
    throw checkpoint_error("checkpoint unit '" + f.unit + "' names the file '" + f.file +
                           "', which is not a plain file name; the manifest is corrupt, use an older checkpoint");
  const std::string path = (fs::path(checkpoint_dir_for(root, step)) / f.file).string();
  std::error_code ec;
  const std::uint64_t size = fs::file_size(path, ec);
  if (ec)
    throw checkpoint_error("checkpoint unit file '" + path + "' cannot be read (" + ec.message() +
                           "); restore it or use an older checkpoint");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw checkpoint_error("checkpoint unit file '" + path + "' cannot be opened; check its permissions");
  load_unit(in, size, path, f, step, params, opt);
}

void decode_unit(const unit_snapshot& state, param_set& params, optimizer_state& opt) {
  buffer_stream in(state.bytes);
  load_unit(in, state.bytes.size(), "snapshot of " + state.unit + " at step " + std::to_string(state.step),
            {state.unit, state.unit, state.bytes.size(), state.checksum}, state.step, params, opt);
}

void write_manifest(const std::string& root, const checkpoint_manifest& m, std::int64_t keep) {
  capnp::MallocMessageBuilder message;
  auto b = message.initRoot<schema::Manifest>();
  b.setFormatVersion(m.format_version);
  b.setConfigHash(m.config_hash);
  b.setStep(m.step);
  b.setEpoch(m.epoch);
  b.setJobConfig(m.job_config);
  b.setTokenizerChecksum(m.tokenizer_checksum);
  auto units = b.initUnits(static_cast<unsigned>(m.units.size()));
  for (std::size_t i = 0; i < m.units.size(); ++i) {
    const unit_file_info& u = m.units[i];
    if (!is_bare_name(u.file)) throw checkpoint_error("checkpoint unit file name '" + u.file + "' is not a plain name");
    auto e = units[static_cast<unsigned>(i)];
    e.setUnit(u.unit);
    e.setFile(u.file);
    e.setSize(u.size);
    e.setChecksum(u.checksum);
  }
  const kj::Array<capnp::word> flat = capnp::messageToFlatArray(message);

  const std::string dir = checkpoint_dir_for(root, m.step);
  make_step_dir(root, dir);
  durable_writer w((fs::path(dir) / manifest_name).string());
  w.write(flat.asBytes().begin(), flat.asBytes().size());
  w.commit();
  fsync_dir(dir);
  remove_stale_unit_files(dir, m);
  prune(root, m.step, keep);
}

checkpoint_manifest read_manifest(const std::string& root, std::int64_t step) {
  const std::string path = (fs::path(checkpoint_dir_for(root, step)) / manifest_name).string();
  std::error_code ec;
  if (!fs::exists(path, ec)) throw checkpoint_error("manifest '" + path + "' is missing (an interrupted checkpoint)");
  const std::uint64_t size = fs::file_size(path, ec);
  if (ec) throw checkpoint_error("manifest '" + path + "' cannot be read: " + ec.message());
  if (size == 0 || size % sizeof(capnp::word) != 0 || size > max_manifest_bytes)
    throw checkpoint_error("manifest '" + path + "' is torn or corrupt (" + std::to_string(size) + " bytes)");
  std::vector<capnp::word> words(size / sizeof(capnp::word));
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(words.data()), std::streamsize(size));
  if (!in) throw checkpoint_error("manifest '" + path + "' cannot be read");

  checkpoint_manifest m;
  try {
    kj::ArrayPtr<const capnp::word> array(words.data(), words.size());
    capnp::FlatArrayMessageReader reader(array, bounded_options(words.size()));
    if (reader.getEnd() != array.end()) throw checkpoint_error("manifest '" + path + "' has trailing bytes (corrupt)");
    auto r = reader.getRoot<schema::Manifest>();
    m.format_version = r.getFormatVersion();
    m.config_hash = r.getConfigHash();
    m.step = r.getStep();
    m.epoch = r.getEpoch();
    m.job_config = r.getJobConfig();
    m.tokenizer_checksum = r.getTokenizerChecksum();
    for (auto u : r.getUnits()) m.units.push_back({u.getUnit(), u.getFile(), u.getSize(), u.getChecksum()});
  } catch (const kj::Exception& e) {
    throw checkpoint_error("manifest '" + path + "' does not parse (" + std::string(e.getDescription().cStr()) + ")");
  }
  if (m.format_version != checkpoint_format_version)
    throw checkpoint_error("manifest '" + path + "' has format version " + std::to_string(m.format_version) +
                           "; this build reads version " + std::to_string(checkpoint_format_version));
  if (m.step != step)
    throw checkpoint_error("manifest '" + path + "' records step " + std::to_string(m.step) + " (corrupt)");
  if (m.units.empty()) throw checkpoint_error("manifest '" + path + "' lists no units (corrupt)");
  for (std::size_t i = 0; i < m.units.size(); ++i) {
    if (!is_bare_name(m.units[i].file) || m.units[i].unit.empty())
      throw checkpoint_error("manifest '" + path + "' has a corrupt unit entry " + std::to_string(i));
    for (std::size_t j = 0; j < i; ++j)
      if (m.units[j].unit == m.units[i].unit)
        throw checkpoint_error("manifest '" + path + "' lists unit '" + m.units[i].unit + "' twice (corrupt)");
  }
  return m;
}

std::string manifest_unit_problem(const checkpoint_manifest& m, const config& c) {
  std::set<std::string> expected{dense_state_name()};
  const std::int64_t experts = c.model.moe_as_dense_relu ? 0 : c.model.experts;
  for (std::int64_t e = 0; e < experts; ++e) expected.insert(unit_id::expert(e).name());
  std::set<std::string> listed;
  for (const auto& u : m.units) {
    if (!expected.count(u.unit)) return "the manifest lists unit '" + u.unit + "', which this model does not have";
    if (!listed.insert(u.unit).second) return "the manifest lists unit '" + u.unit + "' twice";
  }
  for (const auto& name : expected)
    if (!listed.count(name)) return "the manifest does not list unit '" + name + "' (an incomplete checkpoint)";
  return {};
}

std::optional<checkpoint_manifest> latest_valid_checkpoint(const std::string& root, const config& c,
                                                           std::vector<std::string>* skipped) {
  const std::uint64_t config_hash = model_config_hash(c);
  for (std::int64_t step : step_dirs(root)) {
    const std::string dir = checkpoint_dir_for(root, step);
    const auto skip = [&](const std::string& why) {
      spdlog::warn("checkpoint {} skipped: {}", dir, why);
      if (skipped) skipped->push_back(dir + ": " + why);
    };
    checkpoint_manifest m;
    try {
      m = read_manifest(root, step);
    } catch (const checkpoint_error& e) {
      skip(e.what());
      continue;
    }
    if (m.config_hash != config_hash)
      throw checkpoint_error("checkpoint '" + dir + "' belongs to another model: its config hash is " +
                             hex(m.config_hash) + ", this config's is " + hex(config_hash) +
                             "; use the config it was written with, or another checkpoint directory");
    std::string problem = manifest_unit_problem(m, c);
    for (const auto& u : m.units) {
      if (!problem.empty()) break;
      const std::string path = (fs::path(dir) / u.file).string();
      std::error_code ec;
      const std::uint64_t size = fs::file_size(path, ec);
      if (ec) problem = "unit file '" + path + "' is missing";
      else if (size != u.size)
        problem = "unit file '" + path + "' is " + std::to_string(size) + " bytes, the manifest records " +
                  std::to_string(u.size) + " (torn or truncated)";
      else {
        std::uint64_t sum = 0;
        try {
          sum = file_checksum64(path);
        } catch (const std::exception& e) {
          problem = e.what();
        }
        if (problem.empty() && sum != u.checksum)
          problem = "unit file '" + path + "' has checksum " + hex(sum) + ", the manifest records " + hex(u.checksum) +
                    " (corrupt)";
      }
      if (!problem.empty()) break;
    }
    if (!problem.empty()) {
      skip(problem);
      continue;
    }
    return m;
  }
  return std::nullopt;
}

std::int64_t remove_checkpoints_after(const std::string& root, std::int64_t step) {
  std::int64_t removed = 0;
  for (std::int64_t s : step_dirs(root)) {
    if (s <= step) break;
    const std::string dir = checkpoint_dir_for(root, s);
    std::error_code ec;
    fs::remove_all(dir, ec);
    if (ec) throw checkpoint_error("cannot delete checkpoint directory '" + dir + "': " + ec.message());
    spdlog::info("checkpoint {} deleted: it is newer than step {}, which the job resumes from", dir, step);
    ++removed;
  }
  return removed;
}

checkpoint_manifest save_checkpoint(reference_trainer& t, const std::string& root, std::int64_t steps_done,
                                    std::int64_t epoch) {
  checkpoint_manifest m;
  m.config_hash = model_config_hash(t.cfg());
  m.step = steps_done;
  m.epoch = epoch;
  record_job(m, t.cfg());
  // Every shard holds the same dense replica (same init, same summed gradient): the owner of
  // shard 0 writes it for all.
  auto& shard0 = t.shards().front();
  m.units.push_back(write_unit_file(root, steps_done, epoch, dense_state_name(), shard0.params(), shard0.optimizer()));
  for (auto& e : t.experts())
    m.units.push_back(
        write_unit_file(root, steps_done, epoch, unit_id::expert(e.expert()).name(), e.params(), e.optimizer()));
  write_manifest(root, m, t.cfg().fault.keep_checkpoints);
  return m;
}

void restore_checkpoint(reference_trainer& t, const std::string& root, const checkpoint_manifest& m) {
  const std::string dir = checkpoint_dir_for(root, m.step);
  const std::uint64_t hash = model_config_hash(t.cfg());
  if (m.config_hash != hash)
    throw checkpoint_error("checkpoint '" + dir + "' belongs to another model: its config hash is " +
                           hex(m.config_hash) + ", this config's is " + hex(hash) +
                           "; use the config it was written with, or another checkpoint directory");
  const auto unit = [&](const std::string& name) -> const unit_file_info& {
    const unit_file_info* u = m.find(name);
    if (!u) throw checkpoint_error("checkpoint '" + dir + "' has no unit '" + name + "'; its manifest is incomplete");
    return *u;
  };
  for (auto& sh : t.shards()) read_unit_file(root, m.step, unit(dense_state_name()), sh.params(), sh.optimizer());
  for (auto& e : t.experts()) read_unit_file(root, m.step, unit(unit_id::expert(e.expert()).name()), e.params(), e.optimizer());
}

std::vector<std::int64_t> checkpoint_steps(const std::string& root) { return step_dirs(root); }

void record_job(checkpoint_manifest& m, const config& c) {
  config job = c;
  if (!job.data.synthetic && !job.data.dir.empty()) {
    // Relative to where the job runs: made absolute so that the record means the same
    // from any working directory.
    std::error_code ec;
    const fs::path dir = fs::absolute(job.data.dir, ec);
    if (!ec) job.data.dir = dir.lexically_normal().string();
  }
  m.job_config = to_toml(job);
  m.tokenizer_checksum = 0;
  if (job.data.synthetic) return;
  // A job always trains on an existing data directory; only tests that feed tokens from
  // elsewhere have none, and for them there is nothing to record.
  std::error_code ec;
  if (!fs::is_directory(job.data.dir, ec)) return;
  try {
    m.tokenizer_checksum = read_manifest(job.data.dir).tokenizer_checksum;
  } catch (const std::exception& e) {
    spdlog::warn("checkpoint: the tokenizer of data.dir = '{}' is not recorded: {}", job.data.dir, e.what());
  }
}

std::uint64_t checkpoint_bytes(const checkpoint_manifest& m) {
  std::uint64_t n = 0;
  for (const auto& u : m.units) n += u.size;
  return n;
}

}  // namespace glam
