#!/usr/bin/env python3
"""Plot docs/bench/results.json (written by scripts/bench.py) as grouped bars.

    bench_plot.py [results.json] [results.png] [results-pps-svc-cni.png]

results.png: top, TCP throughput per scenario (1 and 4 streams), kernel vs vswitchd uring /
epoll, each vswitchd bar annotated with its ratio to the kernel's median; bottom, ping RTT
p50 / p99.
results-pps-svc-cni.png (from schema 2 results): packets per second (64 and 1400-byte frames)
with ratios to the kernel; pktgen one-way latency; TCP single stream and new connections per
second by pod IP and through a Service VIP (VIP bars labelled VIP ÷ pod IP); CNI ADD/DEL latency.
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


def bars(ax, res, metrics, unit, ratio_key=True, log=False, legend=True, scale=1.0,
         label=None):
    """label(cell, metric, value) -> the text over a bar (default: ratio to the kernel)."""
    dps = []
    for per in res["scenarios"].values():
        dps += [d for d in per if d not in dps]
    width = 0.8 / max(1, len(dps))
    gs = groups(res, metrics)

    def val(c, m):
        v = c["median"].get(m) if c and c["available"] and c.get("median") else None
        return None if v is None else v * scale
    top = max([val(c, m) or 0 for _, m, per in gs for c in per.values()] + [1e-9])
    for i, dp in enumerate(dps):
        xs, ys, seen = [], [], False
        for g, (_, m, per) in enumerate(gs):
            c = per.get(dp)
            x = g - 0.4 + width * (i + 0.5)
            v = val(c, m)
            if v is None:
                reason = "n/a" if not c else ("n/a" if c["available"] else "not\navailable")
                ax.text(x, 1 if log else top * 0.02, reason, ha="center", va="bottom", fontsize=6,
                        rotation=90, color=COLORS.get(dp, "k"))
                continue
            xs.append(x)
            ys.append(v)
            seen = True
            ratio = (c.get("ratio_to_kernel") or {}).get(m)
            text = label(c, m, v) if label else None
            if text is None:
                text = ("%.2f×" % ratio) if (ratio_key and ratio is not None) else (
                    ("%.0f" % v) if log else ("%.3g" % v))
            ax.text(x, v * 1.03 if log else v + top * 0.01, text, ha="center", va="bottom",
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


def has(res, m):
    return any((c.get("median") or {}).get(m) is not None for per in res["scenarios"].values()
               for c in per.values())


def vip_label(c, m, v):
    """Over a VIP bar: VIP ÷ pod IP of the same datapath ("1.05×"); over a pod-IP bar: the
    value."""
    vo = c.get("vip_over_podip") or {}
    r = vo.get("tcp1_gbps" if m == "vip_tcp1_gbps" else "conn_per_s")
    if m.startswith("vip_") or m.startswith("conn_vip"):
        return "%.2f×" % r if r is not None else num(v)
    return num(v)


def num(v):
    return "%.0f" % v if v >= 100 else "%.3g" % v


def pps_label(res):
    """Over a pps bar: the ratio to the kernel (≤ when the kernel lost under 1 %: its rate was
    the sender's), and "no loss" when this bar lost under 1 %."""
    def f(c, m, v):
        size = m[3:].split("_")[0]
        lf = c["median"].get("pps%s_loss_frac" % size)
        r = (c.get("ratio_to_kernel") or {}).get(m)
        k = None
        for per in res["scenarios"].values():
            if any(x is c for x in per.values()) and per.get("kernel", {}).get("median"):
                k = per["kernel"]["median"].get("pps%s_loss_frac" % size)
        text = ("%s%.2f×" % ("≤" if k is not None and k < 0.01 else "", r)) if r is not None \
            else num(v)
        return text + ("\nno loss" if lf is not None and lf < 0.01 else "")
    return f


def cni_bars(ax, res):
    cni = res.get("cni") or {}
    ms = [("add_p50_ms", "ADD p50"), ("add_p99_ms", "ADD p99"), ("del_p50_ms", "DEL p50"),
          ("del_p99_ms", "DEL p99")]
    width = 0.8 / max(1, len(cni))
    top = max([(c.get("median") or {}).get(m) or 0 for c in cni.values() for m, _ in ms]
              + [1e-9])
    for i, (dp, c) in enumerate(cni.items()):
        for g, (m, _) in enumerate(ms):
            x = g - 0.4 + width * (i + 0.5)
            v = (c.get("median") or {}).get(m) if c["available"] else None
            if v is None:
                ax.text(x, top * 0.02, "not\navailable", ha="center", va="bottom", fontsize=6,
                        rotation=90, color=COLORS.get(dp, "k"))
                continue
            ax.bar([x], [v], width, color=COLORS.get(dp), label=LABELS.get(dp, dp) if g == 0
                   else None)
            ax.text(x, v + top * 0.01, "%.1f" % v, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(ms)))
    ax.set_xticklabels([lbl for _, lbl in ms], fontsize=8)
    ax.set_ylabel("ms per plugin call")
    ax.set_ylim(0, top * 1.25)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("CNI ADD / DEL latency, %s pods in sequence against one vswitchd (plugin "
                 "process spawn to exit)" % res["config"].get("cni", {}).get("pods"), fontsize=9)


def subtitle(res):
    m = res["machine"]
    busy = sorted(r["idle_host_busy_cores"] for per in res["scenarios"].values()
                  for c in per.values() for r in c["runs"]
                  if r.get("idle_host_busy_cores") is not None)
    note = ("; other work kept %.1f of %d cores busy: noisy" % (busy[len(busy) // 2], m["cores"])
            if busy and busy[len(busy) // 2] >= 0.3 else "")
    return "vswitch bench %s%s\n%s, %d cores, Linux %s, %s%s" % (
        res["date"], " (QUICK smoke run)" if res.get("quick") else "", m["cpu_model"],
        m["cores"], m["kernel"], m["git_commit"], note)


def second_figure(res, dst):
    pg = res["config"].get("pktgen", {})
    fig = plt.figure(figsize=(12, 12))
    gs = fig.add_gridspec(3, 2, height_ratios=[1, 1, 0.8])
    a1, a2 = fig.add_subplot(gs[0, 0]), fig.add_subplot(gs[0, 1])
    a3, a4 = fig.add_subplot(gs[1, 0]), fig.add_subplot(gs[1, 1])
    a5 = fig.add_subplot(gs[2, :])
    bars(a1, res, [("pps64_delivered", "64 B"), ("pps1400_delivered", "1400 B")], "kpps",
         scale=1e-3, label=pps_label(res))
    a1.set_title("UDP packets/s delivered (vswitch-pktgen, unpaced, %g s); label = vs kernel;\n"
                 "\"no loss\": the one sender set the rate (≤: ratio to such a kernel rate)"
                 % pg.get("seconds", 0), fontsize=9)
    bars(a2, res, [("owl_p50_us", "p50"), ("owl_p99_us", "p99")], "µs (log scale)",
         ratio_key=False, log=True, legend=False)
    a2.set_title("pktgen one-way latency, 64 B at %s pps; lower is better"
                 % pg.get("latency_rate_pps"), fontsize=9)
    bars(a3, res, [("tcp1_gbps", "pod IP"), ("vip_tcp1_gbps", "Service VIP")], "Gbit/s",
         label=vip_label, legend=False)
    a3.set_title("TCP 1 stream by pod IP and through the VIP (kernel VIP: iptables DNAT);\n"
                 "label over a VIP bar: VIP ÷ pod IP of the same datapath", fontsize=9)
    bars(a4, res, [("conn_podip_per_s", "pod IP"), ("conn_vip_per_s", "Service VIP")],
         "connections/s", label=vip_label, legend=False)
    a4.set_title("new TCP connections/s, %s sequential (kernel VIP: iptables DNAT);\n"
                 "label over a VIP bar: VIP ÷ pod IP of the same datapath"
                 % res["config"].get("services", {}).get("conns"), fontsize=9)
    if res.get("cni"):
        cni_bars(a5, res)
    else:
        a5.set_axis_off()
    fig.suptitle(subtitle(res), fontsize=10)
    fig.tight_layout()
    fig.savefig(dst, dpi=100)
    plt.close(fig)
    print("bench_plot: wrote %s" % dst)


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(DEFAULT, "results.json")
    dst = sys.argv[2] if len(sys.argv) > 2 else os.path.join(DEFAULT, "results.png")
    dst2 = sys.argv[3] if len(sys.argv) > 3 else os.path.join(os.path.dirname(dst),
                                                              "results-pps-svc-cni.png")
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
    plt.close(fig)
    print("bench_plot: wrote %s" % dst)
    if has(res, "pps64_delivered") or has(res, "vip_tcp1_gbps") or res.get("cni"):
        second_figure(res, dst2)


if __name__ == "__main__":
    main()
