#!/usr/bin/env python3
"""Plot docs/bench/results.json (written by scripts/bench.py) as grouped bars.

    bench_plot.py [results.json] [results.png]

Top: TCP throughput per scenario (1 and 4 streams), kernel vs vswitchd uring / epoll, each
vswitchd bar annotated with its ratio to the kernel's median. Bottom: ping RTT p50 / p99.
Cells that did not run are drawn as an "n/a" label, never as a bar.
"""
import json, os, sys

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit("bench_plot: matplotlib is missing (apt-get install python3-matplotlib): no plot")

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT = os.path.join(os.path.dirname(HERE), "docs", "bench")
COLORS = {"kernel": "#8c8c8c", "uring": "#1f77b4", "epoll": "#ff7f0e"}
LABELS = {"kernel": "kernel (bridge / bridge+vxlan)", "uring": "vswitchd io_uring",
          "epoll": "vswitchd epoll"}


def groups(res, metrics):
    """[(group label, metric, {datapath: cell})] in scenario order."""
    out = []
    for sc, per in res["scenarios"].items():
        for m, mlabel in metrics:
            out.append(("%s\n%s" % (sc, mlabel), m, per))
    return out


def bars(ax, res, metrics, unit, ratio_key=True, log=False, legend=True):
    dps = []
    for per in res["scenarios"].values():
        dps += [d for d in per if d not in dps]
    width = 0.8 / max(1, len(dps))
    gs = groups(res, metrics)
    top = max([c["median"][m] or 0 for _, m, per in gs for c in per.values()
               if c["available"]] + [1e-9])
    for i, dp in enumerate(dps):
        xs, ys, seen = [], [], False
        for g, (_, m, per) in enumerate(gs):
            c = per.get(dp)
            x = g - 0.4 + width * (i + 0.5)
            v = c["median"][m] if c and c["available"] else None
            if v is None:
                reason = "n/a" if not c else ("n/a" if c["available"] else "not\navailable")
                ax.text(x, 1 if log else top * 0.02, reason, ha="center", va="bottom", fontsize=6,
                        rotation=90, color=COLORS.get(dp, "k"))
                continue
            xs.append(x)
            ys.append(v)
            seen = True
            ratio = (c.get("ratio_to_kernel") or {}).get(m)
            label = ("%.2f×" % ratio) if (ratio_key and ratio is not None) else (
                ("%.0f" % v) if log else ("%.3g" % v))
            ax.text(x, v * 1.03 if log else v + top * 0.01, label, ha="center", va="bottom",
                    fontsize=7)
        ax.bar(xs, ys, width, color=COLORS.get(dp, None),
               label=LABELS.get(dp, dp) if seen else None)
    ax.set_xticks(range(len(gs)))
    ax.set_xticklabels([g for g, _, _ in gs], fontsize=8)
    ax.set_ylabel(unit)
    if log:
        ax.set_yscale("log")
        ax.set_ylim(1, top * 6)
    else:
        ax.set_ylim(0, top * 1.25)
    ax.grid(axis="y", alpha=0.3)
    if legend:
        ax.legend(fontsize=7, loc="upper left", ncol=3)


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(DEFAULT, "results.json")
    dst = sys.argv[2] if len(sys.argv) > 2 else os.path.join(DEFAULT, "results.png")
    with open(src) as f:
        res = json.load(f)
    m = res["machine"]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(10, 8.5), gridspec_kw={"height_ratios": [3, 2]})
    bars(a1, res, [("tcp1_gbps", "TCP 1 stream"), ("tcp4_gbps", "TCP 4 streams")], "Gbit/s")
    a1.set_title("Throughput, median of %d run(s), iperf3 -t %d; label = vswitchd / kernel"
                 % (res["config"]["runs"], res["config"]["iperf_seconds"]), fontsize=9)
    bars(a2, res, [("rtt_p50_us", "RTT p50"), ("rtt_p99_us", "RTT p99")], "µs (log scale)",
         ratio_key=False, log=True, legend=False)
    a2.set_title("ping RTT (-c %d -i %g), medians of runs, lower is better" % (
        res["config"]["ping_count"], res["config"]["ping_interval_s"]), fontsize=9)
    busy = sorted(r["idle_host_busy_cores"] for per in res["scenarios"].values()
                  for c in per.values() for r in c["runs"]
                  if r.get("idle_host_busy_cores") is not None)
    note = ("; other work kept %.1f of %d cores busy: noisy" % (busy[len(busy) // 2], m["cores"])
            if busy and busy[len(busy) // 2] >= 0.3 else "")
    fig.suptitle("vswitch bench %s%s\n%s, %d cores, Linux %s, %s%s" % (
        res["date"], " (QUICK smoke run)" if res.get("quick") else "", m["cpu_model"],
        m["cores"], m["kernel"], m["git_commit"], note), fontsize=10)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)
    print("bench_plot: wrote %s" % dst)


if __name__ == "__main__":
    main()
