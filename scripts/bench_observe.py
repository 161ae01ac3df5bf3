#!/usr/bin/env python3
"""The cost of observability (issue 14, acceptance 6): TCP throughput (iperf3, 1 stream) and
64-byte UDP packets per second (vswitch-pktgen) through vswitchd with Prometheus metrics
scraped every second and the flow log on, against both off.

    scripts/bench_observe.py            (as root; `make bench` runs it through bench.sh;
                                         BENCH_OBSERVE=0 skips it)

Knobs (environment): BENCH_OBSERVE_RUNS (5; 1 with BENCH_QUICK)  BENCH_OBSERVE_SCENARIOS
(same-node,cross-node)  BENCH_OBSERVE_DATAPATH (uring)  BENCH_SECONDS, BENCH_PPS_SECONDS,
BENCH_PPS_COUNT (as bench.py)  BENCH_OUT=docs/bench  VSWITCH_BIN_DIR=target/release.
Output: $BENCH_OUT/observe.json: per scenario and mode the runs and their medians, and the
cost in percent of the medians ((off - on) / off), with the acceptance bound (3 %).

Modes: `off` is vswitchd --flow-log-size 0 without --metrics-addr; `on` is the default flow
log (4096 events) and --metrics-addr 127.0.0.1:9419 in each node's namespace, scraped every
second by a loop in that namespace (the number of scrapes is recorded: a run whose scraper
did not scrape is an error). The modes alternate within each run (off first in even runs),
each on a fresh testbed built by bench.py's builders.
"""

import json
import os
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in scripts/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the testbeds and measurements of bench.py)

RUNS = int(os.environ.get("BENCH_OBSERVE_RUNS", "1" if bench.QUICK else "5"))
SCENARIOS = os.environ.get("BENCH_OBSERVE_SCENARIOS", "same-node,cross-node").split(",")
DATAPATH = os.environ.get("BENCH_OBSERVE_DATAPATH", "uring")
METRICS_ADDR = "127.0.0.1:9419"
BOUND_PCT = 3.0
MODES = {
    "off": ("--flow-log-size", "0"),
    "on": ("--metrics-addr", METRICS_ADDR),  # the flow log is on by default
}
SCRAPER = """
import sys, time, urllib.request
n = 0
while True:
    t = time.time()
    try:
        urllib.request.urlopen("http://%s/metrics", timeout=2).read()
        n += 1
        print(n, flush=True)
    except Exception as e:
        print("error", e, flush=True)
    time.sleep(max(0.0, 1.0 - (time.time() - t)))
""" % METRICS_ADDR


def node_namespaces(tb):
    """The namespaces of the testbed's vswitchd nodes (n1, n2)."""
    return [ns for ns in tb.netns if ns.endswith(("n1", "n2"))]


def one(scenario, mode, tag):
    tb = bench.Testbed(tag)
    try:
        client, server, ip, daemons = bench.build(tb, scenario, DATAPATH, MODES[mode])
        if not bench.reachable(client, ip):
            raise bench.Unavailable("no ping reply from %s after setup" % ip)
        scrapers = []
        if mode == "on":
            for i, ns in enumerate(node_namespaces(tb)):
                tb.spawn(["ip", "netns", "exec", ns, sys.executable, "-c", SCRAPER],
                         logname="scrape%d.log" % i)
                scrapers.append(os.path.join(tb.tmp, "scrape%d.log" % i))
        t = bench.iperf(tb, client, server, ip, 1, daemons)
        p = bench.pktgen(tb, client, server, ip, 9000, 64, bench.PPS_COUNT, bench.PPS_SECS)
        r = {"tcp1_gbps": t["gbps"], "vswitchd_cpu_s_per_gbit": t["vswitchd_cpu_s_per_gbit"],
             "pps64_delivered": p["delivered_pps"], "pps64_offered": p["offered_pps"]}
        if scrapers:
            counts = []
            for path in scrapers:
                with open(path) as f:
                    lines = f.read().split()
                counts.append(sum(1 for w in lines if w.isdigit()))
            r["scrapes"] = counts
            if not all(counts):
                raise RuntimeError("a metrics scraper got nothing: %s" % counts)
        if mode == "on" and tb.socks:
            j = json.loads(bench.ctl(tb.socks[-1], "-o", "json", "observe", "--last", "100000"))
            r["flow_log_events"] = len(j)
        for d in daemons:
            if d.poll() is not None:
                raise RuntimeError("vswitchd exited (%s) during the run" % d.returncode)
        return r
    finally:
        tb.close()


def main():
    if os.geteuid() != 0:
        sys.exit("bench_observe: must run as root (it creates network namespaces)")
    snap = bench.snapshot_binaries()
    res = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": bench.machine(bench.BIN, bench.ROOT),
           "config": {"runs": RUNS, "datapath": DATAPATH, "iperf_seconds": bench.SECS,
                      "pktgen_seconds": bench.PPS_SECS, "pktgen_count": bench.PPS_COUNT,
                      "modes": {m: list(a) for m, a in MODES.items()},
                      "scrape_interval_s": 1, "bound_pct": BOUND_PCT},
           "scenarios": {}}
    t0 = time.time()
    try:
        for sc in SCENARIOS:
            cell = {m: {"runs": []} for m in MODES}
            for rnd in range(RUNS):
                order = ["off", "on"] if rnd % 2 == 0 else ["on", "off"]
                for mode in order:
                    try:
                        r = one(sc, mode, "o%d%s" % (rnd, mode[:2]))
                        bench.log("observe %-10s %-3s run %d: tcp1 %.2f Gbit/s, pps64 %d%s" % (
                            sc, mode, rnd + 1, r["tcp1_gbps"], r["pps64_delivered"],
                            ", scrapes %s" % r["scrapes"] if "scrapes" in r else ""))
                    except (bench.Unavailable, RuntimeError, subprocess.TimeoutExpired,
                            OSError, ValueError, KeyError) as e:
                        r = {"error": str(e).strip()[:300] or type(e).__name__}
                        bench.log("observe %-10s %-3s run %d FAILED: %s" % (
                            sc, mode, rnd + 1, r["error"]))
                    cell[mode]["runs"].append(r)
            for m in MODES:
                ok = [r for r in cell[m]["runs"] if "error" not in r]
                cell[m]["median"] = {k: statistics.median([r[k] for r in ok]) if ok else None
                                     for k in ("tcp1_gbps", "pps64_delivered")}
            off, on = cell["off"]["median"], cell["on"]["median"]
            cell["cost_pct"] = {k: (round((off[k] - on[k]) / off[k] * 100, 2)
                                    if off[k] and on[k] is not None else None)
                                for k in ("tcp1_gbps", "pps64_delivered")}
            cell["within_bound"] = all(v is not None and v <= BOUND_PCT
                                       for v in cell["cost_pct"].values())
            res["scenarios"][sc] = cell
            bench.log("observe %-10s cost: %s (bound %.0f %%)" % (sc, cell["cost_pct"],
                                                                  BOUND_PCT))
    finally:
        import shutil
        shutil.rmtree(snap, ignore_errors=True)
    res["elapsed_s"] = round(time.time() - t0, 1)
    os.makedirs(bench.OUT, exist_ok=True)
    path = os.path.join(bench.OUT, "observe.json")
    with open(path, "w") as f:
        json.dump(res, f, indent=2)
        f.write("\n")
    bench.log("wrote %s (%.0f s)" % (path, res["elapsed_s"]))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as e:
        bench.log("observe interrupted (%s): testbed removed, no results written" % (e or "SIGINT"))
        sys.exit(130)
