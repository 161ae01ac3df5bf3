#!/usr/bin/env python3
"""Report half of the vswitch bench: machine facts, and the Markdown table that goes between
the `<!-- bench:begin -->` / `<!-- bench:end -->` markers of docs/bench/README.md.

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
    return "\n".join(lines)


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
