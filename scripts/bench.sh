#!/usr/bin/env bash
# Benchmark vswitchd (io_uring and epoll datapaths) against the kernel (bridge; bridge + flannel-
# style VXLAN) on throw-away network-namespace testbeds: same-node and cross-node, TCP 1 and 4
# streams (iperf3), ping RTT p50/p99, vswitchd CPU seconds per Gbit; UDP packets per second at
# 64 and 1400-byte frames and one-way latency (vswitch-pktgen); a Service VIP against the pod IP
# (TCP 1 stream, new connections per second; the kernel's VIP is an iptables DNAT rule); CNI
# ADD/DEL latency over 100 pods. `make bench` builds the release binaries and runs this.
#
#   scripts/bench.sh                 full run: 3 runs per cell, iperf3 -t 5, pktgen 4 s
#                                    (about 11-12 minutes)
#   BENCH_QUICK=1 scripts/bench.sh   smoke: 1 run, iperf3 -t 2, ping -c 50, pktgen 2 s
#                                    (about 2 minutes)
#
# Knobs (environment): BENCH_RUNS, BENCH_SECONDS, BENCH_PING_COUNT,
#   BENCH_SCENARIOS=same-node,cross-node  BENCH_DATAPATHS=kernel,uring,epoll
#   BENCH_PPS_SECONDS, BENCH_PPS_COUNT, BENCH_LAT_RATE, BENCH_LAT_SECONDS, BENCH_CONNS,
#   BENCH_CNI_PODS (0: no CNI measurement)  BENCH_POLL_US (20000; 0: no RTT-with-polling cells)
#   BENCH_VSWITCHD_ARGS="--workers 2" (extra arguments for every vswitchd)
#   BENCH_OUT=docs/bench  VSWITCH_BIN_DIR=target/release  BENCH_NO_PLOT=1
#   BENCH_CLUSTER_NODES=2,10,50 (0: no datastore convergence; scripts/bench_cluster.py)
#   BENCH_OBSERVE=1 (0: no metrics + flow log cost; scripts/bench_observe.py, its own knobs)
#   BENCH_NICE=-10 (run everything at a higher priority on a machine shared with other work)
# Output: $BENCH_OUT/results.json, $BENCH_OUT/results.png, $BENCH_OUT/results-pps-svc-cni.png,
# the tables in $BENCH_OUT/README.md; $BENCH_OUT/cluster.{json,md,png} (the datastore);
# $BENCH_OUT/observe.json (metrics scraped and the flow log on, against both off).
# iptables (the kernel's VIP) is installed when missing.
#
# Addresses: 198.18.0.0/15 only (design.md section 6). Every namespace, link and process
# carries the per-run prefix vqXXXX ("q" is no hex digit, so no test's v+4-hex prefix matches)
# and is removed on exit; the trap below is the last resort behind bench.py's own cleanup.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${BENCH_OUT:-$ROOT/docs/bench}"
export BENCH_OUT="$OUT" PYTHONDONTWRITEBYTECODE=1
case "${1:-}" in -h|--help) sed -n '2,27p' "$0"; exit 0 ;; "") ;;
    *) echo "bench.sh: no arguments (use the environment, see --help)" >&2; exit 2 ;; esac
[[ $EUID -eq 0 ]] || { echo "bench.sh: must run as root (it creates network namespaces)" >&2; exit 1; }
for t in ip bridge iperf3 ping ss; do
    command -v "$t" >/dev/null || { echo "bench.sh: $t is missing: run \`make deps\`" >&2; exit 1; }
done
# The kernel baseline of the Service VIP is an iptables DNAT rule (kube-proxy's iptables mode).
if ! command -v iptables >/dev/null; then
    echo "bench.sh: installing iptables for the kernel's Service VIP baseline"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iptables \
        >/dev/null 2>&1 || echo "bench.sh: iptables is not available: no kernel VIP baseline" >&2
fi
# Debian's python3 (the one python3-matplotlib belongs to) when present.
PY=/usr/bin/python3; [[ -x $PY ]] || PY="$(command -v python3)"

while :; do
    P="vq$(printf '%04x' $(( (RANDOM << 1 ^ $$) & 0xffff )))"
    ip netns list | grep -q "^$P" || break
done
export BENCH_PREFIX="$P"
CHILD=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    set +e
    if [[ -n "$CHILD" ]] && kill -0 "$CHILD" 2>/dev/null; then
        kill -TERM "$CHILD" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$CHILD" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$CHILD" 2>/dev/null
    fi
    for ns in $(ip netns list | awk '{print $1}' | grep "^$P"); do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
    rm -rf /tmp/"$P"-bench-* /etc/netns/"$P"*
    [[ $rc -ne 0 ]] && echo "bench.sh: failed or interrupted (exit $rc); removed everything under prefix $P" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# The engine runs in the background so that the traps fire promptly on a signal.
nice -n "${BENCH_NICE:-0}" "$PY" "$ROOT/scripts/bench.py" &
CHILD=$!
wait "$CHILD"
CHILD=""

# The cost of observability (issue 14): throughput and 64-byte pps with metrics scraped every
# second and the flow log on, against both off: observe.json.
if [[ "${BENCH_OBSERVE:-1}" != 0 ]]; then
    nice -n "${BENCH_NICE:-0}" "$PY" "$ROOT/scripts/bench_observe.py" &
    CHILD=$!
    wait "$CHILD"
    CHILD=""
fi

# The datastore's convergence (apply -> first connection from every node, 2/10/50 nodes) and
# its cost at rest: cluster.json, cluster.md (cluster.png with matplotlib).
if [[ "${BENCH_CLUSTER_NODES:-2,10,50}" != 0 ]]; then
    nice -n "${BENCH_NICE:-0}" "$PY" "$ROOT/scripts/bench_cluster.py" &
    CHILD=$!
    wait "$CHILD"
    CHILD=""
fi

if [[ "${BENCH_NO_PLOT:-0}" != 0 ]]; then
    echo "bench.sh: BENCH_NO_PLOT set, no plot"
elif "$PY" -c 'import matplotlib' 2>/dev/null || {
        echo "bench.sh: installing python3-matplotlib for the plot"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            python3-matplotlib >/dev/null 2>&1 && "$PY" -c 'import matplotlib' 2>/dev/null; }; then
    "$PY" "$ROOT/scripts/bench_plot.py" "$OUT/results.json" "$OUT/results.png" \
        "$OUT/results-pps-svc-cni.png"
else
    echo "bench.sh: python3-matplotlib is not available: no plot (results.json and README.md are written)" >&2
fi
