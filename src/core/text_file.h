#pragma once
// Files replaced only whole (run configs, metrics rewrites, reports, sweep state): written under
// a temporary name, then renamed over the old one, so a crash never leaves half a file behind.
#include <filesystem>
#include <string>

namespace agpt {

// Throws Error naming the file when it cannot be written.
void write_text_atomically(const std::filesystem::path& path, const std::string& text);

}  // namespace agpt
