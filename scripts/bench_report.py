#!/usr/bin/env python3
"""Report half of the vswitch bench: machine facts, and the Markdown tables that go between
the `<!-- bench:begin -->` / `<!-- bench:end -->` markers of docs/bench/README.md (TCP and RTT;
packets per second and one-way latency; Service VIP against pod IP; CNI ADD/DEL latency).

    bench_report.py [results.json] [out dir]     re-generates the table from a results file
"""
import json, os, platform, subprocess, sys, time


def sh(*args):
    p = subprocess.run([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                       text=True, timeout=20)
    return p.stdout


def machine(bin_dir, root):
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ver, built = None, None
    if os.access(os.path.join(bin_dir, "vswitchd"), os.X_OK):
        ver = (sh(os.path.join(bin_dir, "vswitchd"), "-V").split() or [None])[-1]
        built = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                              time.gmtime(os.stat(os.path.join(bin_dir, "vswitchd")).st_mtime))
    commit = sh("git", "-C", root, "rev-parse", "--short", "HEAD").strip()
    dirty = bool(sh("git", "-C", root, "status", "--porcelain", "--untracked-files=no").strip())
    return {"kernel": platform.release(), "cpu_model": model, "cores": os.cpu_count(),
            "os": sh("sh", "-c", ". /etc/os-release; echo $PRETTY_NAME").strip(),
            "vswitchd_version": ver, "vswitchd_built": built, "git_commit": commit + ("-dirty" if dirty else ""),
            "iperf3": sh("iperf3", "--version").splitlines()[0]}


def fmt(v, nd=2):
    return "n/a" if v is None else ("%.*f" % (nd, v))


def span(cell, key, nd=2):
    """median (min–max) over the successful runs, or just the median for one run."""
    vals = [r[key] for r in cell["runs"] if r.get(key) is not None]
    med = fmt(cell["median"][key], nd)
    if len(vals) < 2:
        return med
    return "%s (%s–%s)" % (med, fmt(min(vals), nd), fmt(max(vals), nd))


def busy_note(res):
    """A warning when other work kept the machine busy while the testbeds idled."""
    vals = sorted(r["idle_host_busy_cores"] for per in res["scenarios"].values()
                  for c in per.values() for r in c["runs"] if r.get("idle_host_busy_cores")
                  is not None)
    if not vals:
        return ""
    med = vals[len(vals) // 2]
    if med < 0.3:
        return " The machine was otherwise idle (median %.2f busy cores between runs)." % med
    return (" **Warning: other work kept %.2f of %d cores busy (median, measured while each "
            "testbed idled just before its run): the numbers are noisy; compare ratios, and "
            "re-run on an idle machine for absolute figures.**" % (med, res["machine"]["cores"]))


def table(res):
    m = res["machine"]
    lines = ["Run on %s: %s, %d cores, Linux %s (%s), vswitchd %s at %s; %s%d run(s) per cell, "
             "iperf3 -t %d, ping -c %d -i %g; medians." % (
                 res["date"], m["cpu_model"], m["cores"], m["kernel"], m["os"],
                 m["vswitchd_version"] or "(missing)", m["git_commit"],
                 "**QUICK smoke run (BENCH_QUICK=1), not a benchmark result**; " if res["quick"]
                 else "", res["config"]["runs"], res["config"]["iperf_seconds"],
                 res["config"]["ping_count"], res["config"]["ping_interval_s"])
             + (" Throughput: median (min–max)." if res["config"]["runs"] > 1 else "")
             + busy_note(res), "",
             "| scenario | datapath | TCP 1 stream Gbit/s | TCP 4 streams Gbit/s | RTT p50 µs "
             "| RTT p99 µs | vswitchd CPU s/Gbit (1 stream) | vs kernel: TCP 1 / TCP 4 / p50 |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for sc, per in res["scenarios"].items():
        for dp, cell in per.items():
            name = "kernel (%s)" % ("bridge" if sc == "same-node" else "bridge + vxlan") \
                if dp == "kernel" else "vswitchd %s" % dp
            if not cell["available"]:
                lines.append("| %s | %s | not available: %s ||||||" % (
                    sc, name, cell["reason"].replace("|", "/")[:160]))
                continue
            md, ra = cell["median"], cell.get("ratio_to_kernel") or {}
            rs = " / ".join("%.2f×" % ra[k] if ra.get(k) is not None else "n/a"
                            for k in ("tcp1_gbps", "tcp4_gbps", "rtt_p50_us"))
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                sc, name, span(cell, "tcp1_gbps"), span(cell, "tcp4_gbps"),
                fmt(md["rtt_p50_us"], 0),
                fmt(md["rtt_p99_us"], 0), fmt(md["vswitchd_cpu_s_per_gbit"], 3),
                "—" if dp == "kernel" else rs))
    if any("pps64_delivered" in (c.get("median") or {}) for per in res["scenarios"].values()
           for c in per.values()):
        lines += [""] + pps_table(res) + [""] + services_table(res)
    if any(c.get("poll_median") for per in res["scenarios"].values() for c in per.values()):
        lines += [""] + poll_table(res)
    if res.get("cni"):
        lines += [""] + cni_table(res)
    return "\n".join(lines)


def poll_table(res):
    us = res["config"].get("poll_us")
    lines = ["**RTT with busy polling** (`vswitchd --poll-us %s`: the engine keeps polling for "
             "%s µs after each packet, longer than the ping interval, so it never sleeps "
             "during the ping; same ping as above on a fresh testbed; busy cores = vswitchd's "
             "CPU time over the ping's wall time). The kernel's RTT is the first table's. "
             "Medians." % (us, us), "",
             "| scenario | datapath | RTT p50 µs (default poll) | RTT p50 µs (--poll-us) "
             "| RTT p99 µs (--poll-us) | kernel RTT p50 µs | --poll-us p50 − kernel p50 µs "
             "| vswitchd busy cores while pinging |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for sc, per in res["scenarios"].items():
        k = per.get("kernel") or {}
        kp50 = (k.get("median") or {}).get("rtt_p50_us") if k.get("available") else None
        for dp, c in per.items():
            pm = c.get("poll_median")
            if dp == "kernel" or not pm:
                continue
            diff = (pm["rtt_p50_us"] - kp50) if pm["rtt_p50_us"] is not None and kp50 else None
            lines.append("| %s | vswitchd %s | %s | %s | %s | %s | %s | %s |" % (
                sc, dp, fmt((c.get("median") or {}).get("rtt_p50_us"), 0),
                fmt(pm["rtt_p50_us"], 0), fmt(pm["rtt_p99_us"], 0), fmt(kp50, 0),
                "n/a" if diff is None else "%+.0f" % diff, fmt(pm["vswitchd_busy_cores"], 2)))
    return lines


def dp_name(sc, dp):
    if dp == "kernel":
        return "kernel (%s)" % ("bridge" if sc == "same-node" else "bridge + vxlan")
    return "vswitchd %s" % dp


def ratio(v):
    return "n/a" if v is None else "%.2f×" % v


def kilo(v):
    return "n/a" if v is None else "%.1f" % (v / 1000.0)


def pct(v):
    return "n/a" if v is None else ("%.1f %%" % (100 * v) if v >= 0.001 or v == 0 else
                                    "%.2f %%" % (100 * v))


def pps_table(res):
    pg = res["config"].get("pktgen", {})
    lines = ["**Packets per second** (vswitch-pktgen UDP, pod b → pod a, unpaced, `--count %s "
             "--duration %g`; delivered = the receiver's rate between its first and last "
             "datagram; loss = sent − received, of sent) and **pktgen one-way latency** (64 B at "
             "`--rate %s` for %g s; send timestamp to the receiver's read, same clock). Medians."
             % (pg.get("count"), pg.get("seconds", 0), pg.get("latency_rate_pps"),
                pg.get("latency_seconds", 0)), "",
             "| scenario | datapath | 64 B kpps delivered | 64 B kpps offered | 64 B loss "
             "| 1400 B kpps delivered | 1400 B kpps offered | 1400 B loss "
             "| vs kernel: 64 B / 1400 B | pktgen one-way latency p50 / p99 µs |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    bound = False
    for sc, per in res["scenarios"].items():
        k = per.get("kernel")
        kmd = k["median"] if k and k["available"] else {}
        for dp, c in per.items():
            name = dp_name(sc, dp)
            why = c.get("reason") if not c["available"] else c.get("pktgen_reason")
            if why:
                lines.append("| %s | %s | not available: %s ||||||||" % (
                    sc, name, why.replace("|", "/")[:160]))
                continue
            md, ra = c["median"], c.get("ratio_to_kernel") or {}

            def dl(m, size):
                # Under 1 % loss the sender, not the path, set the rate: a lower bound (†).
                v = kilo(m.get("pps%d_delivered" % size))
                lf = m.get("pps%d_loss_frac" % size)
                return v + " †" if lf is not None and lf < 0.01 else v

            def rk(size):
                r = ratio(ra.get("pps%d_delivered" % size))
                lf = kmd.get("pps%d_loss_frac" % size)
                return ("≤ " + r) if lf is not None and lf < 0.01 and r != "n/a" else r
            for size in (64, 1400):
                lf = md.get("pps%d_loss_frac" % size)
                bound = bound or (lf is not None and lf < 0.01)
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s |" % (
                sc, name, dl(md, 64), kilo(md.get("pps64_offered")),
                pct(md.get("pps64_loss_frac")), dl(md, 1400),
                kilo(md.get("pps1400_offered")), pct(md.get("pps1400_loss_frac")),
                "—" if dp == "kernel" else "%s / %s" % (rk(64), rk(1400)),
                fmt(md.get("owl_p50_us"), 0), fmt(md.get("owl_p99_us"), 0)))
    if bound:
        lines += ["", "† under 1 % loss: the single sender thread, not the datapath, set the "
                  "rate, so the datapath's capacity is at least that; a ratio to such a kernel "
                  "figure is an upper bound (≤)."]
    return lines


def services_table(res):
    sv = res["config"].get("services", {})
    lines = ["**Service VIP against pod IP** (VIP %s on the client's node; vswitchd: `vswitchctl "
             "service add --endpoint <pod a>`; kernel: one iptables DNAT rule in the client's "
             "node netns, as kube-proxy's iptables mode writes it). TCP 1 stream as above (the "
             "pod-IP figure is the first table's); new connections: %s sequential short TCP "
             "connections (connect, 1-byte request, 1-byte answer, close). Medians."
             % (sv.get("vip"), sv.get("conns")), "",
             "| scenario | datapath | VIP by | TCP 1 stream Gbit/s pod IP / VIP | VIP ÷ pod IP "
             "| new conn/s pod IP / VIP | VIP ÷ pod IP | conn latency p50 / p99 µs pod IP "
             "| conn latency p50 / p99 µs VIP |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for sc, per in res["scenarios"].items():
        for dp, c in per.items():
            name = dp_name(sc, dp)
            if not c["available"]:
                lines.append("| %s | %s | not available: %s |||||||" % (
                    sc, name, c["reason"].replace("|", "/")[:160]))
                continue
            md, vo = c["median"], c.get("vip_over_podip") or {}
            via = "iptables DNAT" if dp == "kernel" else "vswitchd"
            vip_why = c.get("vip_reason")
            pod = (fmt(md.get("conn_podip_per_s"), 0), fmt(md.get("conn_podip_p50_us"), 0),
                   fmt(md.get("conn_podip_p99_us"), 0))
            if vip_why:
                lines.append("| %s | %s | %s | %s / n/a | — | %s / n/a | — | %s / %s | VIP not "
                             "available: %s |" % (sc, name, via, fmt(md["tcp1_gbps"]), pod[0],
                                                  pod[1], pod[2],
                                                  vip_why.replace("|", "/")[:160]))
                continue
            lines.append("| %s | %s | %s | %s / %s | %s | %s / %s | %s | %s / %s | %s / %s |" % (
                sc, name, via, fmt(md["tcp1_gbps"]), fmt(md.get("vip_tcp1_gbps")),
                ratio(vo.get("tcp1_gbps")), pod[0], fmt(md.get("conn_vip_per_s"), 0),
                ratio(vo.get("conn_per_s")), pod[1], pod[2], fmt(md.get("conn_vip_p50_us"), 0),
                fmt(md.get("conn_vip_p99_us"), 0)))
    return lines


def cni_table(res):
    n = res["config"].get("cni", {}).get("pods")
    lines = ["**CNI ADD / DEL latency**: %s pods one after the other against one vswitchd "
             "(`vswitch-cni` run as a runtime runs it: environment, configuration on stdin, one "
             "netns per pod created beforehand; wall time of each plugin process, spawn to exit). "
             "All ADDs, then all DELs. Per run p50/p99 (nearest rank of %s calls), medians of "
             "the runs." % (n, n), "",
             "| datapath | ADD p50 ms | ADD p99 ms | ADD max ms | DEL p50 ms | DEL p99 ms "
             "| DEL max ms | ADD p50, first 10 / last 10 pods |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for dp, c in res["cni"].items():
        if not c["available"]:
            lines.append("| vswitchd %s | not available: %s |||||||" % (
                dp, c["reason"].replace("|", "/")[:160]))
            continue
        md = c["median"]
        lines.append("| vswitchd %s | %s | %s | %s | %s | %s | %s | %s / %s |" % (
            dp, fmt(md["add_p50_ms"], 1), fmt(md["add_p99_ms"], 1), fmt(md["add_max_ms"], 1),
            fmt(md["del_p50_ms"], 1), fmt(md["del_p99_ms"], 1), fmt(md["del_max_ms"], 1),
            fmt(md["add_first10_p50_ms"], 1), fmt(md["add_last10_p50_ms"], 1)))
    return lines


def write_readme(res, out):
    path = os.path.join(out, "README.md")
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    text = open(path).read() if os.path.exists(path) else \
        "# Benchmarks\n\nGenerated by `make bench` (scripts/bench.sh).\n\n%s\n%s\n" % (begin, end)
    if begin not in text or end not in text:
        text += "\n%s\n%s\n" % (begin, end)
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    with open(path, "w") as f:
        f.write(head + begin + "\n" + table(res) + "\n" + end + tail)


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    default = os.path.join(os.path.dirname(here), "docs", "bench")
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(default, "results.json")
    with open(src) as f:
        write_readme(json.load(f), sys.argv[2] if len(sys.argv) > 2 else os.path.dirname(src))
