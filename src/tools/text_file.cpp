#include "tools/text_file.h"

#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace agpt {

void write_text_atomically(const std::string& path, const std::string& text) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream f(tmp, std::ios::binary);
        f << text;
        if (!f.flush()) fail("{}: cannot write file", tmp);
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) fail("{}: cannot write file: {}", path, ec.message());
}

}  // namespace agpt
