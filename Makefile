# edgelite: the two commands of README.md, plus the developer conveniences.
#   make demo   install what is missing, build, run the demo
#   make test   install what is missing, build, run every test (unit, client, cluster,
#               fuzz; labels of ctest)
#   make test-cluster  the model-based cluster test alone, enabled (EDGE_CLUSTER=1)
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
FUZZ_SECONDS ?= 10

.PHONY: all build bootstrap test test-asan test-cluster demo bench fuzz clean format

all: build

bootstrap:
	@scripts/bootstrap.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEDGE_FUZZ_BIN_DIR=$(CURDIR)/build-fuzz/fuzz \
	      -DEDGE_FUZZ_SECONDS=$(FUZZ_SECONDS) $(CMAKE_FLAGS)

build: bootstrap $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

fuzz: bootstrap
	CC=clang cmake -S . -B build-fuzz -DEDGE_FUZZ=ON -DEDGE_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build build-fuzz -j $(JOBS)

test: build fuzz
	cd $(BUILD) && ctest --output-on-failure -j 2 --timeout 600

# EDGE_SEED, EDGE_CLUSTER_SECONDS and EDGE_LONG=1 pass through (docs/testing.md).
test-cluster: build
	cd $(BUILD) && EDGE_CLUSTER=1 ctest --output-on-failure -L cluster --timeout 3600

test-asan: bootstrap
	cmake -S . -B build-asan -DEDGE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    ctest --output-on-failure -j 2 --timeout 600 -LE fuzz

demo: build
	scripts/demo.sh $(DEMO_ARGS)

bench: build
	bench/run.sh

clean:
	rm -rf $(BUILD) build-asan build-fuzz
