#pragma once
// Errors: one exception type whose message is the single line a user sees.
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace agpt {

struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
    throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace agpt
