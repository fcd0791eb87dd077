# Front door: `make demo`, `make test`, `make bench`. Each installs what is missing first.
BUILD ?= build/release
FUZZ_BUILD ?= build/fuzz
ASAN_BUILD ?= build/asan
TSAN_BUILD ?= build/tsan
JOBS ?= $(shell nproc)
# -Werror on the project's own sources (SLUICE_WERROR): ON in CI (.ci/run), off by default so that
# a newer compiler's new warnings do not stop a user's build. Read when a build dir is configured.
WERROR ?= OFF

.PHONY: all deps build fuzz test unit sanitize tsan demo bench drill format clean

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_WERROR=$(WERROR)

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)
	@mkdir -p build && ln -sf release/sluice build/sluice

$(FUZZ_BUILD)/build.ninja:
	CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -G Ninja -DSLUICE_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo

fuzz: deps $(FUZZ_BUILD)/build.ninja
	cmake --build $(FUZZ_BUILD) -j $(JOBS)

test: build fuzz
	cd $(BUILD) && ctest --output-on-failure -j 2 --timeout 600

unit: build
	cd $(BUILD) && ctest --output-on-failure -L unit -j 2

# Sanitizer runs (docs/architecture.md "Checks"), each in its own build dir (gcc): ASan+UBSan over the unit
# tests and the request-path integration files; TSan over the governance and event-loop tests.
sanitize: deps
	JOBS=$(JOBS) WERROR=$(WERROR) scripts/sanitize.sh asan $(ASAN_BUILD)

tsan: deps
	JOBS=$(JOBS) WERROR=$(WERROR) scripts/sanitize.sh tsan $(TSAN_BUILD)

# The demo needs only the `sluice` binary: not the unit tests or benchmarks of `make build`.
# Options of scripts/demo.sh go in DEMO_ARGS, e.g. make demo DEMO_ARGS='--port-offset 1000'
demo: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS) --target sluice
	scripts/demo.sh --sluice $(BUILD)/sluice $(DEMO_ARGS)

bench: build
	$(BUILD)/micro_bench --benchmark_min_time=0.2
	bench/ratelimit_accuracy.sh --sluice $(BUILD)/sluice
	bench/control_bench.py --sluice $(BUILD)/sluice
	bench/instance_loss.py --sluice $(BUILD)/sluice
	bench/proxy_bench.sh
	@if command -v perf >/dev/null; then bench/syscall_count.sh --sluice $(BUILD)/sluice; \
	 else echo "bench: no perf (Debian: linux-perf): syscall counts not measured"; fi

# Dual-city drill (docs/operations.md): e.g. make drill DRILL_ARGS='--kill-gateway --json'
drill: build
	bench/drill.py --sluice $(BUILD)/sluice $(DRILL_ARGS)

format:
	find src tests bench -name '*.cc' -o -name '*.h' | xargs clang-format -i

clean:
	rm -rf build
