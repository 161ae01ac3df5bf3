# vswitch: build, test, demo and benchmark on a Debian 12 machine, as root.
#
#   make deps        install the Debian packages the tests and the demo use (only what is missing)
#   make build       cargo build --release --workspace
#   make test        deps, build, fmt check, clippy, all tests (end-to-end ones in network
#                    namespaces), the end-to-end matrix, fuzz smoke; fails if a network
#                    namespace is left behind
#   make e2e-matrix  the end-to-end tests again for each datapath/offload pair of E2E_MATRIX
#                    (but those E2E_MATRIX_SKIP names: the soak test)
#   make demo        the tutorial's story on a throw-away testbed (scripts/demo.sh)
#   make bench       benchmarks (scripts/bench.sh)
#   make fuzz-build  build the fuzz targets;  make fuzz-smoke: run each for FUZZ_SECONDS
#   make fuzz        run each target FUZZ_LONG_SECONDS (one process), keep what it finds in
#                    FUZZ_SCRATCH/<target>, print executions, corpus size and crashes
#   make install     vswitchd, vswitchctl to $(PREFIX)/bin; vswitch-cni to /opt/cni/bin;
#                    an example /etc/cni/net.d/10-vswitch.conflist unless one exists
#   make clean

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

CARGO ?= cargo
# cargo-fuzz passes nightly-only flags; RUSTC_BOOTSTRAP lets the stable toolchain take them.
FUZZ ?= RUSTC_BOOTSTRAP=1 $(CARGO) fuzz
FUZZ_DIR ?= fuzz
# 20 s each: ten targets keep `make test` within its 40-minute budget; `make fuzz` runs long.
FUZZ_SECONDS ?= 20
# `make fuzz`: seconds per target, and where the inputs it finds are kept between runs.
FUZZ_LONG_SECONDS ?= 600
FUZZ_SCRATCH ?= $(FUZZ_DIR)/scratch
PREFIX ?= /usr/local
DESTDIR ?=
TEST_THREADS ?= 2
# The datapath/offload combinations (DATAPATH:OFFLOAD) `make e2e-matrix` runs the end-to-end
# tests in, on top of the default one of the workspace tests (auto = io_uring, offloads on).
# Each sets VSWITCH_E2E_DATAPATH and VSWITCH_E2E_OFFLOAD for the nodes whose test pins neither.
E2E_MATRIX ?= epoll:on uring:off epoll:off
# Tests the matrix leaves out (cargo test --skip filters), each run once in the workspace
# run: the soak test (a 2-minute duration test of the control plane's churn), and the
# datastore (one etcd; three members), apply -f and metrics tests (control plane only: the
# engine under them does not matter), the capture test (the tap is in the engine core
# both engines share), the `top` test (a client of `stats`), trace, conntrack and flow-log
# tests (the sans-IO datapath and the control socket), the control socket's limits, and the
# 250-port test (which runs each engine and io_uring read mode itself).
E2E_MATRIX_SKIP ?= soak_ nodes_find_each_other_through_etcd apply_the_tutorial_service \
	prometheus_scrapes_drops_and_port_bytes the_cluster_outlives_its_datastore \
	capture_the_tunnel_and_a_port_as_pcap top_shows_the_rates_of_a_transfer_and_quits_on_q \
	trace_conntrack_and_log_level observe_shows_service_connections_drops_and_follows \
	connections_over_max_clients_are_refused_with_an_answer \
	out_of_file_descriptors_the_accept_loop_backs_off netns_references_are_checked_before_use \
	two_hundred_fifty_ports_carry_traffic_in_every_engine

# What the tests and the demo run: ip and bridge, nginx (nginx-light), busybox (wget, ping),
# iperf3, ps, ping -M (iputils), python3 (transfer checks), ethtool (the interop node);
# etcd (the datastore test's etcd and etcdctl); prometheus (the metrics test's Prometheus and
# promtool); protoc and the well-known .proto files (building the etcd-client crate); tshark
# (reading the capture test's pcap files); tmux (the terminal `vswitchctl top` is tested in).
DEB_PACKAGES := iproute2 nginx-light busybox iperf3 procps iputils-ping python3 ethtool \
	etcd-server etcd-client prometheus protobuf-compiler libprotobuf-dev tshark tmux
# What the benchmark plots need on top.
DEB_PACKAGES_BENCH := $(DEB_PACKAGES) python3-matplotlib

.PHONY: all deps deps-bench build test e2e-matrix demo bench fuzz-tools fuzz-build fuzz-smoke fuzz \
	install clean check-netns

all: build

# Installs only missing packages; apt-get update runs only when something is missing.
define apt_install_missing
	@missing=""; \
	for p in $(1); do dpkg -s "$$p" >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "deps: installing$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq >/dev/null; \
		apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
endef

deps:
	$(call apt_install_missing,$(DEB_PACKAGES))

deps-bench:
	$(call apt_install_missing,$(DEB_PACKAGES_BENCH))

build:
	$(CARGO) build --release --workspace

# Release tests: the end-to-end tests drive the release binaries built just before. The
# workspace run is the default combination (VSWITCH_E2E_* unset: vswitchd's defaults, auto =
# io_uring and offloads on); e2e-matrix then covers the others.
test: deps build
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	env -u VSWITCH_E2E_DATAPATH -u VSWITCH_E2E_OFFLOAD \
		$(CARGO) test --workspace --release -- --test-threads=$(TEST_THREADS)
	$(MAKE) --no-print-directory e2e-matrix
	$(MAKE) --no-print-directory fuzz-smoke
	@$(MAKE) --no-print-directory check-netns

# Only the vswitch-e2e tests, once per E2E_MATRIX pair; every pair runs even when one fails,
# and the summary names the ones that failed.
e2e-matrix: deps build
	@if [ -z "$(strip $(E2E_MATRIX))" ]; then echo "e2e-matrix: E2E_MATRIX is empty"; exit 0; fi; \
	failed=""; \
	for combo in $(E2E_MATRIX); do \
		dp="$${combo%%:*}"; off="$${combo#*:}"; \
		echo "e2e-matrix: datapath $$dp, offload $$off"; \
		start=$$(date +%s); \
		if VSWITCH_E2E_DATAPATH="$$dp" VSWITCH_E2E_OFFLOAD="$$off" \
			$(CARGO) test --release -p vswitch-e2e -- --test-threads=$(TEST_THREADS) \
			$(foreach t,$(E2E_MATRIX_SKIP),--skip $(t)); then \
			echo "e2e-matrix: datapath $$dp, offload $$off passed in $$(( $$(date +%s) - start )) s"; \
		else \
			echo "e2e-matrix: datapath $$dp, offload $$off FAILED"; failed="$$failed $$combo"; \
		fi; \
	done; \
	if [ -n "$$failed" ]; then echo "e2e-matrix: failed:$$failed"; exit 1; fi; \
	echo "e2e-matrix: all of $(E2E_MATRIX) passed"

# Fails when any network namespace exists (every test must remove its own).
check-netns:
	@left="$$(ip netns list)"; \
	if [ -n "$$left" ]; then echo "network namespaces left behind:"; echo "$$left"; exit 1; fi; \
	echo "check-netns: no network namespace left behind"

demo: deps build
	scripts/demo.sh

bench: deps-bench build
	@test -x scripts/bench.sh || { echo "scripts/bench.sh is missing"; exit 1; }
	scripts/bench.sh

fuzz-tools:
	@if [ -d $(FUZZ_DIR) ]; then \
		$(CARGO) fuzz --help >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked; \
	fi

fuzz-build: fuzz-tools
	@if [ ! -d $(FUZZ_DIR) ]; then echo "fuzz-build: no $(FUZZ_DIR)/, nothing to build"; exit 0; fi; \
	$(FUZZ) build --fuzz-dir $(FUZZ_DIR)

# Each target runs FUZZ_SECONDS; new inputs go to a scratch dir, the committed seeds in
# $(FUZZ_DIR)/corpus/<target> are only read.
fuzz-smoke: fuzz-build
	@if [ ! -d $(FUZZ_DIR) ]; then echo "fuzz-smoke: no $(FUZZ_DIR)/, nothing to run"; exit 0; fi; \
	targets="$$($(FUZZ) list --fuzz-dir $(FUZZ_DIR))"; \
	for t in $$targets; do \
		scratch="$$(mktemp -d)"; \
		seeds=""; [ -d "$(FUZZ_DIR)/corpus/$$t" ] && seeds="$(FUZZ_DIR)/corpus/$$t"; \
		echo "fuzz-smoke: $$t for $(FUZZ_SECONDS) s"; \
		if ! $(FUZZ) run --fuzz-dir $(FUZZ_DIR) "$$t" "$$scratch" $$seeds -- \
			-max_total_time=$(FUZZ_SECONDS) >"$$scratch.log" 2>&1; then \
			tail -n 60 "$$scratch.log"; rm -rf "$$scratch" "$$scratch.log"; \
			echo "fuzz-smoke: $$t FAILED"; exit 1; \
		fi; \
		tail -n 1 "$$scratch.log"; rm -rf "$$scratch" "$$scratch.log"; \
	done

# Each target runs FUZZ_LONG_SECONDS in one process; the inputs it finds go to (and are read
# back from) FUZZ_SCRATCH/<target>, the committed seeds are only read. The summary's corpus
# and edges are libFuzzer's counts at the end. A crash is saved under
# $(FUZZ_DIR)/artifacts/<target>/; every target still runs and the summary names those that
# crashed. docs/fuzzing.md records the last long run.
fuzz: fuzz-build
	@if [ ! -d $(FUZZ_DIR) ]; then echo "fuzz: no $(FUZZ_DIR)/, nothing to run"; exit 0; fi; \
	targets="$$($(FUZZ) list --fuzz-dir $(FUZZ_DIR))"; failed=""; \
	printf 'fuzz: %-16s %8s %12s %8s %8s %s\n' target seconds executions corpus edges result; \
	for t in $$targets; do \
		scratch="$(FUZZ_SCRATCH)/$$t"; mkdir -p "$$scratch"; log="$(FUZZ_SCRATCH)/$$t.log"; \
		seeds=""; [ -d "$(FUZZ_DIR)/corpus/$$t" ] && seeds="$(FUZZ_DIR)/corpus/$$t"; \
		start=$$(date +%s); result=ok; \
		$(FUZZ) run --fuzz-dir $(FUZZ_DIR) "$$t" "$$scratch" $$seeds -- \
			-max_total_time=$(FUZZ_LONG_SECONDS) -print_final_stats=1 >"$$log" 2>&1 \
			|| { result="CRASH (see $$log)"; failed="$$failed $$t"; }; \
		execs="$$(sed -n 's/^stat::number_of_executed_units: *//p' "$$log" | tail -n 1)"; \
		corpus="$$(grep -o 'corp: [0-9]*' "$$log" | tail -n 1 | cut -d' ' -f2)"; \
		edges="$$(grep -o 'cov: [0-9]*' "$$log" | tail -n 1 | cut -d' ' -f2)"; \
		printf 'fuzz: %-16s %8s %12s %8s %8s %s\n' "$$t" "$$(( $$(date +%s) - start ))" \
			"$${execs:-?}" "$${corpus:-?}" "$${edges:-?}" "$$result"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: crashed:$$failed"; exit 1; fi

# The binaries, the CNI plugin where runtimes look for it, and an example network config list
# (never overwriting one that exists).
install: build
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 target/release/vswitchd target/release/vswitchctl $(DESTDIR)$(PREFIX)/bin/
	install -D -m 0755 target/release/vswitch-cni $(DESTDIR)/opt/cni/bin/vswitch-cni
	@if [ -e $(DESTDIR)/etc/cni/net.d/10-vswitch.conflist ]; then \
		echo "install: keeping the existing $(DESTDIR)/etc/cni/net.d/10-vswitch.conflist"; \
	else \
		install -D -m 0644 cni/10-vswitch.conflist $(DESTDIR)/etc/cni/net.d/10-vswitch.conflist; \
	fi

clean:
	$(CARGO) clean
	@if [ -d $(FUZZ_DIR)/target ]; then rm -rf $(FUZZ_DIR)/target; fi
