#pragma once
// The tensor type: f32 (or f64 for gradient checks), a shape, contiguous row-major
// storage that the tensor owns. Kernels take raw pointers and sizes; the tensor is
// for ownership and for carrying a shape around.
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

namespace glam {

using index = std::int64_t;

template <class T>
struct basic_tensor {
  std::vector<index> shape;
  std::vector<T> data;

  basic_tensor() = default;
  explicit basic_tensor(std::vector<index> s, T fill = T(0)) : shape(std::move(s)) {
    data.assign(static_cast<std::size_t>(count(shape)), fill);
  }

  static index count(const std::vector<index>& s) {
    index n = 1;
    for (index d : s) {
      if (d < 0) throw std::invalid_argument("tensor: negative dimension");
      n *= d;
    }
    return n;
  }

  index size() const { return static_cast<index>(data.size()); }
  index rank() const { return static_cast<index>(shape.size()); }
  index dim(index i) const { return shape.at(static_cast<std::size_t>(i < 0 ? i + rank() : i)); }
  // Rows and columns of the tensor viewed as a matrix: all leading dims times the last.
  index cols() const { return shape.empty() ? 1 : shape.back(); }
  index rows() const { return cols() == 0 ? 0 : size() / cols(); }

  T* ptr() { return data.data(); }
  const T* ptr() const { return data.data(); }
  T& operator[](index i) { return data[static_cast<std::size_t>(i)]; }
  const T& operator[](index i) const { return data[static_cast<std::size_t>(i)]; }

  void zero() { std::fill(data.begin(), data.end(), T(0)); }
  void reshape(std::vector<index> s) {
    if (count(s) != size()) throw std::invalid_argument("tensor: reshape changes the element count");
    shape = std::move(s);
  }
  bool same_shape(const basic_tensor& o) const { return shape == o.shape; }
};

using tensor = basic_tensor<float>;

std::string shape_string(const std::vector<index>& shape);

// Bitwise equality of two float buffers (NaNs with the same bits compare equal).
inline bool bitwise_equal(const tensor& a, const tensor& b) {
  return a.shape == b.shape &&
         (a.data.empty() || std::memcmp(a.ptr(), b.ptr(), a.data.size() * sizeof(float)) == 0);
}

}  // namespace glam
