# roam: top-level driver. CMake does the building; this file installs what is
# missing, builds, and runs the suites. Every target that needs packages calls
# `deps` first, so on a fresh Debian 12 machine `make demo` and `make check`
# alone do all the set-up.

BUILD      ?= build
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)
# Warnings are errors in CI (CI=true) and whenever ROAM_WERROR=ON is given.
ROAM_WERROR ?= $(if $(CI),ON,OFF)

DEB_PACKAGES := g++ make cmake pkg-config \
	liburing-dev libsodium-dev libssl-dev libseccomp-dev libcli11-dev nlohmann-json3-dev \
	libfmt-dev libncurses-dev libgtest-dev libgmock-dev libbenchmark-dev \
	clang libclang-rt-14-dev \
	kyua atf-sh iproute2 tmux procps util-linux coreutils python3

.PHONY: all deps build fuzz-build check demo fuzz bench bench-balance gossip-sim clean

all: build

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "roam: installing Debian packages:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	fi

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DROAM_WERROR=$(ROAM_WERROR) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

$(FUZZ_BUILD)/tests/fuzz/wire_fuzz: deps
	@CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DROAM_FUZZ=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS) --target wire_fuzz

fuzz-build: $(FUZZ_BUILD)/tests/fuzz/wire_fuzz

# make check: every suite, through Kyua. Short fuzz run included.
check: build fuzz-build
	@tests/run-tests $(BUILD) $(FUZZ_BUILD)

# make fuzz: a long libFuzzer run of the wire decoder (FUZZ_SECONDS, default 600).
fuzz: fuzz-build
	@mkdir -p tests/fuzz/corpus-run
	$(FUZZ_BUILD)/tests/fuzz/wire_fuzz -max_total_time=$${FUZZ_SECONDS:-600} tests/fuzz/corpus-run tests/fuzz/corpus

demo: build
	@userland/demo.sh $(BUILD)

gossip-sim: build
	$(BUILD)/bench/gossip_sim

# make bench: the baselines (loopback TCP, seccomp notification, memcpy),
# measured now, that every roam benchmark is compared against.
bench: build
	$(BUILD)/bench/baselines
	$(BUILD)/bench/migration_bench

# make bench-balance: the automatic policies on real local clusters (root):
# makespan of 8 CPU-bound jobs with balancing, without, and the ideal, on 2
# and 4 nodes; memory ushering on nodes with a memory limit. Clusters in
# /run/roam-bench-balance. BENCH_BALANCE_FLAGS passes flags, e.g.
# --no-policy-settings for a mosd without the policies.
bench-balance: build
	$(BUILD)/bench/balance_bench $(BENCH_BALANCE_FLAGS)

clean:
	rm -rf $(BUILD) $(FUZZ_BUILD)
