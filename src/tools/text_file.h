#pragma once
// Reports and leaderboards are replaced only by whole files: written under a temporary name, then
// renamed over the old one, so an interrupted command never leaves half a report behind.
#include <string>

namespace agpt {

// Throws Error naming the file when it cannot be written.
void write_text_atomically(const std::string& path, const std::string& text);

}  // namespace agpt
