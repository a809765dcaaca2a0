#pragma once
// Config overrides written in a TOML file (competition and sweep files): a table of
// "section.key" = value pairs, quoted dotted keys or nested tables alike, read in file order as
// the ("section.key", "text") pairs `agpt train --section.key text` takes.
#include <set>
#include <string>

#include <toml++/toml.h>

#include "train/config.h"

namespace agpt {

// The file, parsed; throws Error "PATH: cannot open file" or "PATH: line N: problem".
toml::table parse_toml_file(const std::string& path);

// A string, integer, float or boolean as override text; throws Error naming `where` otherwise.
std::string toml_scalar_text(const toml::node& n, const std::string& where);

// The table's pairs in file order, leaving out the top-level keys in `skip`. Errors name `where`.
ConfigOverrides overrides_from_table(const toml::table& t, const std::string& where,
                                     const std::set<std::string>& skip = {});

}  // namespace agpt
