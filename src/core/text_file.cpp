#include "core/text_file.h"

#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace agpt {

void write_text_atomically(const std::filesystem::path& path, const std::string& text) {
    const std::filesystem::path tmp = path.string() + ".tmp";
    {
        std::ofstream f(tmp, std::ios::binary);
        f << text;
        if (!f.flush()) fail("{}: cannot write file", tmp.string());
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) fail("{}: cannot write file: {}", path.string(), ec.message());
}

}  // namespace agpt
