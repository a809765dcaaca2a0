#pragma once
// Process memory as the OS sees it, for the mem_gib metric and benchmarks.
namespace agpt {

double current_rss_gib();  // resident set size now
double peak_rss_gib();     // high-water mark of the resident set since process start

}  // namespace agpt
