#pragma once
// The dashboard's page and chart library, compiled into the binary at build time from
// web/dashboard/ and web/node_modules/ (cmake/embed_files.cmake writes the definition).
#include <cstddef>
#include <span>

namespace agpt {

struct EmbeddedFile {
    const char* path;  // URL path, e.g. "/index.html"
    const char* content_type;
    const unsigned char* data;
    std::size_t size;
};

std::span<const EmbeddedFile> dashboard_assets();

}  // namespace agpt
