# Thin wrapper over CMake. See README.md.
BUILD_DIR ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: bootstrap build serve test bench sanitize clean

bootstrap:
	@.ci/bootstrap

build: bootstrap
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD_DIR) -j $(JOBS)

# Extra options go in KILN_ARGS, e.g. make serve KILN_ARGS="--port 8080 --threads 2".
serve: build
	@$(BUILD_DIR)/kiln serve --data-dir kiln-data $(KILN_ARGS)

test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

bench: build
	@.ci/bootstrap --bench
	@bench/run $(BUILD_DIR)

# ASan + UBSan build of everything, tests included, in its own build folder.
sanitize:
	@$(MAKE) test BUILD_DIR=build-sanitize BUILD_TYPE=RelWithDebInfo CMAKE_FLAGS=-DKILN_SANITIZE=ON

clean:
	rm -rf build build-sanitize
