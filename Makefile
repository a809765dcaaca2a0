# The two entry points a newcomer needs: `make run` and `make test`.
BUILD := build/release
AGPT := $(BUILD)/agpt
RUN_NAME ?= shakespeare-$(shell date +%Y%m%d-%H%M%S)

.PHONY: run test build setup setup-test format clean

run: setup build
	$(AGPT) train --job.name $(RUN_NAME)

test: setup-test build
	ctest --preset release -j2

build:
	cmake --preset release
	cmake --build --preset release -j2

setup:
	scripts/setup.sh

setup-test:
	scripts/setup.sh --test

format:
	clang-format -i $$(git ls-files 'src/*.cpp' 'src/*.h' 'tests/*.cpp' 'tests/*.h')

clean:
	rm -rf build
