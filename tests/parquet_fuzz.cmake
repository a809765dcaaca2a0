# The parquet fuzzer (tests/parquet_fuzz.cpp): built with clang's libFuzzer + ASan + UBSan when the
# tests run (not in every build: it takes a minute of one core), then
#   parquet_fuzz_run     fuzzes for 30 s from the seed files (tests/data/parquet/seeds, with_nulls);
#   parquet_fuzz_replay  runs every kept input once: the pyarrow files, seeds and regressions/.
# A crash leaves its input in <build>/tests/parquet_fuzz_artifacts/; copy it to
# tests/data/parquet/regressions/ after fixing the bug. Without clang the tests fail, never skip.
set(AGPT_PARQUET_FUZZ_SECONDS 30 CACHE STRING "How long the parquet_fuzz_run test fuzzes")
find_program(AGPT_FUZZ_CXX NAMES clang++-14 clang++)
set(_pq_fuzz ${CMAKE_CURRENT_BINARY_DIR}/parquet_fuzz)
set(_pq_data ${CMAKE_CURRENT_SOURCE_DIR}/data/parquet)
set(_pq_work ${CMAKE_CURRENT_BINARY_DIR}/parquet_fuzz_work)

if(AGPT_FUZZ_CXX)
  file(GLOB _pq_sources CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/data/parquet/*.cpp)
  file(GLOB _pq_headers CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/data/parquet/*.h)
  add_custom_command(OUTPUT ${_pq_fuzz}
    COMMAND ${AGPT_FUZZ_CXX} -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined
            -fno-sanitize-recover=undefined -DFMT_HEADER_ONLY -I${CMAKE_SOURCE_DIR}/src
            ${CMAKE_CURRENT_SOURCE_DIR}/parquet_fuzz.cpp ${_pq_sources}
            -lsnappy -lz -lzstd -o ${_pq_fuzz}
    DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/parquet_fuzz.cpp ${_pq_sources} ${_pq_headers}
            ${CMAKE_SOURCE_DIR}/src/core/error.h
    COMMENT "Building the parquet fuzzer with ${AGPT_FUZZ_CXX}"
    VERBATIM)
  add_custom_target(build_parquet_fuzz DEPENDS ${_pq_fuzz})
  add_test(NAME parquet_fuzz_build
    COMMAND ${CMAKE_COMMAND} --build ${CMAKE_BINARY_DIR} --target build_parquet_fuzz)
else()
  add_test(NAME parquet_fuzz_build COMMAND ${CMAKE_COMMAND} -E echo
    "parquet_fuzz: no clang++-14 / clang++ found; install clang-14 and libclang-rt-14-dev")
  set_tests_properties(parquet_fuzz_build PROPERTIES WILL_FAIL TRUE)
endif()
set_tests_properties(parquet_fuzz_build PROPERTIES FIXTURES_SETUP parquet_fuzz TIMEOUT 900)

# -malloc_limit_mb sits well above the reader limits the target uses, so only an unbounded
# allocation trips it.
set(_pq_flags -malloc_limit_mb=256 -rss_limit_mb=2048 -timeout=10)
add_test(NAME parquet_fuzz_run COMMAND bash -c [[
set -e
rm -rf "$1/corpus" "$1/artifacts" && mkdir -p "$1/corpus" "$1/artifacts"
cp "$2"/seeds/* "$2"/with_nulls.parquet "$1/corpus/"
"$3" -max_total_time="$4" -artifact_prefix="$1/artifacts/" ${@:5} "$1/corpus"
]] _ ${_pq_work} ${_pq_data} ${_pq_fuzz} ${AGPT_PARQUET_FUZZ_SECONDS} ${_pq_flags})
add_test(NAME parquet_fuzz_replay COMMAND bash -c [[
set -e
rm -rf "$1/replay_new" && mkdir -p "$1/replay_new"
"$3" -runs=0 ${@:4} "$1/replay_new" "$2"
]] _ ${_pq_work} ${_pq_data} ${_pq_fuzz} ${_pq_flags})
set_tests_properties(parquet_fuzz_run parquet_fuzz_replay PROPERTIES
  FIXTURES_REQUIRED parquet_fuzz TIMEOUT 300)
