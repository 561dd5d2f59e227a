// Zero-filled memory straight from the OS (an anonymous mapping): a page takes physical memory
// only once it is written, so a large buffer that is mostly unused (a KV cache sized for the
// longest context) costs what is used, not what is reserved.
#pragma once

#include <cstddef>
#include <cstdint>

namespace invar {

class PageBuffer {
 public:
  PageBuffer() = default;
  explicit PageBuffer(size_t bytes);  // aborts when the address space is exhausted
  ~PageBuffer();
  PageBuffer(PageBuffer&& o) noexcept;
  PageBuffer& operator=(PageBuffer&& o) noexcept;
  PageBuffer(const PageBuffer&) = delete;
  PageBuffer& operator=(const PageBuffer&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace invar
