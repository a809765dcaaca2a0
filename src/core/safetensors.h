#pragma once
// Reading and writing the safetensors format (Hugging Face): an 8-byte little-endian header
// length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, then
// the raw little-endian tensor bytes. The format holds no code and no pointers, which is why
// checkpoints, reference dumps and Hugging Face exports all use it.
//
// Only the dtypes agpt produces are supported (F32, F64, I32, I64); a file with any other dtype
// is refused with a message naming it rather than misread.
//
// Intended use:
//   SafetensorsWriter w;
//   w.add("param.norm.weight", {256}, norm_ptr);         // copies the data
//   w.set_metadata("dim", "256");
//   w.write("dump.safetensors");                           // atomic: tmp + fsync + rename
//
//   SafetensorsFile f("dump.safetensors");                // validates the whole header
//   std::vector<float> w = f.get<float>("param.norm.weight");
//   f.tensor("param.norm.weight").shape                    // {256}
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

namespace agpt {

enum class SafetensorsDtype { F32, F64, I32, I64 };

std::size_t safetensors_dtype_size(SafetensorsDtype d);
const char* safetensors_dtype_name(SafetensorsDtype d);

// The dtype tag matching a C++ element type (float, double, int32_t, int64_t).
template <typename T>
constexpr SafetensorsDtype safetensors_dtype_of() {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double> ||
                      std::is_same_v<T, int32_t> || std::is_same_v<T, int64_t>,
                  "safetensors: unsupported element type");
    if constexpr (std::is_same_v<T, float>) return SafetensorsDtype::F32;
    if constexpr (std::is_same_v<T, double>) return SafetensorsDtype::F64;
    if constexpr (std::is_same_v<T, int32_t>) return SafetensorsDtype::I32;
    return SafetensorsDtype::I64;
}

struct SafetensorsTensor {
    std::string name;
    SafetensorsDtype dtype = SafetensorsDtype::F32;
    std::vector<int64_t> shape;
    std::size_t begin = 0;  // byte offsets into the data section
    std::size_t end = 0;
    int64_t numel() const;
    std::size_t nbytes() const { return end - begin; }
};

class SafetensorsWriter {
  public:
    // Copies nbytes = numel(shape) · dtype size bytes from data. A repeated name throws.
    void add_bytes(const std::string& name, SafetensorsDtype dtype,
                   const std::vector<int64_t>& shape, const void* data);
    template <typename T>
    void add(const std::string& name, const std::vector<int64_t>& shape, const T* data) {
        add_bytes(name, safetensors_dtype_of<T>(), shape, data);
    }
    void set_metadata(const std::string& key, const std::string& value);

    // Writes "<path>.tmp", fsyncs it, then renames it over path, so that a crash never leaves a
    // half-written file under the final name.
    void write(const std::string& path) const;

    std::size_t size() const { return tensors_.size(); }

  private:
    std::vector<SafetensorsTensor> tensors_;
    std::vector<unsigned char> data_;
    std::map<std::string, std::string> metadata_;
};

class SafetensorsFile {
  public:
    // Loads and validates the file; every problem throws Error naming the file.
    explicit SafetensorsFile(const std::string& path);

    const std::string& path() const { return path_; }
    bool contains(const std::string& name) const;
    const SafetensorsTensor& tensor(const std::string& name) const;  // throws when absent
    std::vector<std::string> names() const;                          // sorted
    const std::map<std::string, std::string>& metadata() const { return metadata_; }

    // The tensor's elements; throws when the stored dtype is not T's.
    template <typename T>
    std::vector<T> get(const std::string& name) const;
    // Copies into out, which must hold exactly numel elements (checked).
    template <typename T>
    void read_into(const std::string& name, T* out, std::size_t n) const;
    // The raw little-endian bytes of a tensor.
    const unsigned char* raw(const std::string& name) const;

  private:
    std::string path_;
    std::vector<unsigned char> bytes_;  // the whole file
    std::size_t data_start_ = 0;
    std::map<std::string, SafetensorsTensor> tensors_;
    std::map<std::string, std::string> metadata_;
    void parse();
    const SafetensorsTensor& checked(const std::string& name, SafetensorsDtype want) const;
};

}  // namespace agpt
