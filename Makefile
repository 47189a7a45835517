# Thin wrapper over CMake. See README.md.
BUILD_DIR ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: bootstrap build serve test bench sanitize-build sanitize fuzz stress stress-short clean

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

# One clang tree with ASan + UBSan (and libFuzzer coverage) serves both targets below.
SANITIZE_DIR ?= build-sanitize
sanitize-build:
	@.ci/bootstrap --fuzz
	@cmake -S . -B $(SANITIZE_DIR) -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=clang++ -DKILN_SANITIZE=ON -DKILN_FUZZ=ON >/dev/null
	@cmake --build $(SANITIZE_DIR) -j $(JOBS) $(SANITIZE_TARGET)

# The whole test suite under ASan + UBSan.
sanitize: sanitize-build
	@cd $(SANITIZE_DIR) && ctest --output-on-failure -j $(JOBS)

# libFuzzer targets (fuzz/README.md), FUZZ_SECONDS each.
FUZZ_SECONDS ?= 60
fuzz:
	@$(MAKE) sanitize-build SANITIZE_TARGET="--target fuzzers"
	@fuzz/run $(SANITIZE_DIR) $(FUZZ_SECONDS)

# README "Guarantees": SIGKILL during saves (KILN_CRASH_TRIALS trials), then the soak test
# (SOAK_CLIENTS clients for SOAK_MINUTES minutes, faults injected). stress-short is CI's version.
SOAK_CLIENTS ?= 32
SOAK_MINUTES ?= 10
KILN_CRASH_TRIALS ?= 100
stress: build
	@cd $(BUILD_DIR) && KILN_CRASH_TRIALS=$(KILN_CRASH_TRIALS) ./emulator/cli/serve_process_test --gtest_filter='*Sigkill*'
	@$(BUILD_DIR)/stress/soak --clients $(SOAK_CLIENTS) --minutes $(SOAK_MINUTES)

stress-short:
	@$(MAKE) stress KILN_CRASH_TRIALS=10 SOAK_MINUTES=2

clean:
	rm -rf build build-sanitize
