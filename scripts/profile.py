#!/usr/bin/env python3
"""Where vswitchd's time goes: `perf record` (cpu-clock sampling, call graphs) of the
vswitchd processes while a load runs through them on a bench testbed, then the top symbols
(self time) and a summary by area (kernel TAP/UDP/copy, io_uring, datapath, syscalls).

    scripts/profile.py [same-node|cross-node] [tcp|ping|pps64] [DATAPATH] [SECONDS]

Uses scripts/bench.py's testbeds (prefix vq..., every namespace removed on exit). Writes
docs/bench/profile-<scenario>-<load>-<datapath>.txt unless PROFILE_OUT says otherwise.
Loads are bounded: iperf3 -t SECONDS, ping -c, vswitch-pktgen --count/--duration.
"""
import os, subprocess, sys, time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

def main():
    scenario = sys.argv[1] if len(sys.argv) > 1 else "same-node"
    load = sys.argv[2] if len(sys.argv) > 2 else "tcp"
    datapath = sys.argv[3] if len(sys.argv) > 3 else "uring"
    secs = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    out_dir = os.environ.get("PROFILE_OUT", os.path.join(bench.ROOT, "docs", "bench"))
    if os.geteuid() != 0:
        sys.exit("profile: must run as root")
    tb = bench.Testbed("f")
    try:
        client, server, ip, daemons = bench.build(tb, scenario, datapath)
        if not bench.reachable(client, ip):
            sys.exit("profile: no ping through the testbed")
        data = os.path.join(tb.tmp, "perf.data")
        perf = subprocess.Popen(
            ["perf", "record", "-e", "cpu-clock", "-F", "4999", "-g", "-o", data, "-p",
             ",".join(str(d.pid) for d in daemons), "--", "sleep", str(secs + 1)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        if load == "tcp":
            srv = tb.spawn(["ip", "netns", "exec", server, "iperf3", "-s", "-1", "-B", ip])
            bench.wait_listening(server, 5201)
            what = bench.sh("ip", "netns", "exec", client, "iperf3", "-c", ip, "-t", secs,
                            "-f", "g", timeout=secs + 20).strip().splitlines()[-3]
            srv.wait(5)
        elif load == "ping":
            count = secs * 100
            what = bench.sh("ip", "netns", "exec", client, "ping", "-n", "-q", "-c", count,
                            "-i", "0.01", ip, timeout=secs + 20).strip().splitlines()[-1]
        else:
            r = bench.pktgen(tb, client, server, ip, 9001, 64, bench.PPS_COUNT, secs)
            what = "pktgen 64 B: delivered %s pps" % r.get("delivered_pps")
        perf.wait(secs + 30)
        report = bench.sh("perf", "report", "-i", data, "--stdio", "--no-children",
                          "--sort", "sym", "--percent-limit", "0.7", "-g", "none",
                          timeout=120, check=False)
        lines = [l for l in report.splitlines() if l.strip() and not l.startswith("#")]
        path = os.path.join(out_dir, "profile-%s-%s-%s.txt" % (scenario, load, datapath))
        with open(path, "w") as f:
            f.write("# perf record -e cpu-clock -g of vswitchd, %s, load %s (%d s), datapath %s\n"
                    "# %s\n# commit %s, %s\n# self time by symbol ([k] kernel, [.] user), "
                    "entries >= 0.7 %%\n" % (
                        scenario, load, secs, datapath, what,
                        bench.sh("git", "-C", bench.ROOT, "rev-parse", "--short", "HEAD",
                                 check=False).strip(),
                        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))
            f.write("\n".join(lines[:60]) + "\n")
        print("profile: %s\n%s" % (path, "\n".join(lines[:25])))
    finally:
        tb.close()

if __name__ == "__main__":
    main()
