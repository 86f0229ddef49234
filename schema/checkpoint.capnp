# Checkpoint formats (docs/checkpoints.md). A checkpoint of step k is a directory
# ROOT/step-<k, 8 digits>/ with one file per logical unit and a manifest written last.
# Tensors never live in these messages: they are raw, 64-byte-aligned blobs inside the unit
# files, referenced by offset (a Cap'n Proto list holds at most 2^29 elements).
@0xbd232139ec538176;

$import "/capnp/c++.capnp".namespace("glam::schema");

# One tensor of a unit file: a [rows, cols] f32 matrix, little-endian, at `offset` bytes
# from the start of the file (a multiple of 64), `length` = rows·cols·4 bytes.
struct TensorEntry {
  name @0 :Text;      # "param/<parameter>" or "opt/<parameter>.<buffer>"
  rows @1 :UInt64;
  cols @2 :UInt64;
  offset @3 :UInt64;
  length @4 :UInt64;
}

# The header message of a unit file. The file starts with 16 fixed bytes: the magic
# "GLAMUNIT", the format version (u32 LE) and the byte length of this message (u32 LE,
# a multiple of 8), then the message as a flat array.
struct UnitHeader {
  unit @0 :Text;            # "dense" or "expert-<e>"
  step @1 :Int64;           # steps completed (the data position)
  epoch @2 :Int64;          # the epoch of the writer (also in the file name)
  appliedSteps @3 :Int64;   # Adafactor's count of applied (not skipped) steps
  tensors @4 :List(TensorEntry);
}

struct UnitFile {
  unit @0 :Text;
  file @1 :Text;            # a bare file name inside the step directory
  size @2 :UInt64;          # bytes
  checksum @3 :UInt64;      # checksum64 of the whole file (data/checksum.hpp)
}

# manifest.capnp of a step directory, written last: without it the checkpoint does not exist.
struct Manifest {
  formatVersion @0 :UInt32;
  configHash @1 :UInt64;    # model_config_hash of the model the checkpoint belongs to
  step @2 :Int64;           # steps completed: the next step to run
  epoch @3 :Int64;
  units @4 :List(UnitFile);
  jobConfig @5 :Text;           # the job's config as TOML (data.dir absolute); empty if not recorded
  tokenizerChecksum @6 :UInt64; # checksum64 of the job's tokenizer model; 0 if not recorded
}
