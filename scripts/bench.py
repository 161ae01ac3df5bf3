#!/usr/bin/env python3
"""vswitch benchmark engine: vswitchd (io_uring and epoll datapaths) against the kernel's
bridge / flannel-style VXLAN, on throw-away network namespace testbeds, in the same run.
Per testbed: TCP 1/4 streams, ping RTT, CPU/Gbit; UDP packets per second (64 and 1400-byte
frames) and one-way latency with vswitch-pktgen; a Service VIP against the pod IP (TCP
throughput and new connections per second; the kernel's VIP is an iptables DNAT rule, as
kube-proxy's iptables mode would write it). Per round, on its own testbed: CNI ADD/DEL latency
over BENCH_CNI_PODS pods against one vswitchd per datapath.

Started by scripts/bench.sh (which owns the per-run prefix and a last-resort cleanup trap);
see docs/bench/README.md for the method. Writes docs/bench/results.json and the table in
docs/bench/README.md, then calls scripts/bench_plot.py for docs/bench/results.png.

Environment: BENCH_RUNS (3), BENCH_QUICK=1 (smoke: 1 run, 2 s), BENCH_SECONDS (5),
BENCH_PING_COUNT (200), BENCH_SCENARIOS (same-node,cross-node), BENCH_DATAPATHS
(kernel,uring,epoll), BENCH_OUT (docs/bench), VSWITCH_BIN_DIR (target/release),
BENCH_PREFIX (set by bench.sh); BENCH_PPS_SECONDS (4), BENCH_PPS_COUNT (3000000),
BENCH_LAT_RATE (20000), BENCH_LAT_SECONDS (3), BENCH_CONNS (3000), BENCH_CNI_PODS (100),
BENCH_POLL_US (20000; 0 skips the RTT-with-polling cells), BENCH_VSWITCHD_ARGS (extra
arguments for every vswitchd, e.g. "--workers 2").
"""
import datetime, json, math, os, random, re, shutil, signal, statistics
import select, subprocess, sys, tempfile, time

sys.dont_write_bytecode = True  # no __pycache__ in scripts/
from bench_report import fmt, machine, table, write_readme

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("VSWITCH_BIN_DIR", os.path.join(ROOT, "target", "release"))
OUT = os.environ.get("BENCH_OUT", os.path.join(ROOT, "docs", "bench"))
QUICK = os.environ.get("BENCH_QUICK", "0") not in ("", "0")
RUNS = int(os.environ.get("BENCH_RUNS", "1" if QUICK else "3"))
SECS = int(os.environ.get("BENCH_SECONDS", "2" if QUICK else "5"))
PING_COUNT = int(os.environ.get("BENCH_PING_COUNT", "50" if QUICK else "200"))
PING_INTERVAL = 0.01
SCENARIOS = os.environ.get("BENCH_SCENARIOS", "same-node,cross-node").split(",")
DATAPATHS = os.environ.get("BENCH_DATAPATHS", "kernel,uring,epoll").split(",")
PREFIX = os.environ.get("BENCH_PREFIX") or "vq%04x" % random.randrange(0x10000)
REACH_TIMEOUT = 5.0  # seconds for a testbed's first ping to get through
# vswitch-pktgen: unpaced runs for packets per second, a paced one for one-way latency.
PPS_SECS = float(os.environ.get("BENCH_PPS_SECONDS", "2" if QUICK else "4"))
PPS_COUNT = int(os.environ.get("BENCH_PPS_COUNT", "3000000"))
PPS_SIZES = (64, 1400)
PKTGEN_IDLE = 0.5  # the receiver stops this long after the last datagram
LAT_RATE = int(os.environ.get("BENCH_LAT_RATE", "20000"))
LAT_SECS = float(os.environ.get("BENCH_LAT_SECONDS", "1" if QUICK else "3"))
# Services: the VIP, its ports (iperf3, connection loop) and the connection loop's bounds.
VIP = "198.19.96.20"
IPERF_PORT, CONN_PORT_POD, CONN_PORT_VIP = 5201, 7000, 7001
CONNS = int(os.environ.get("BENCH_CONNS", "1000" if QUICK else "3000"))
CONN_SECS = 10.0 if QUICK else 20.0
CNI_PODS = int(os.environ.get("BENCH_CNI_PODS", "100"))
# Extra arguments for every vswitchd of the run (A/B runs of engine options).
VSWITCHD_ARGS = os.environ.get("BENCH_VSWITCHD_ARGS", "").split()
# The poll window of the RTT-with-polling cells (`vswitchd --poll-us`; 0 skips them).
POLL_US = int(os.environ.get("BENCH_POLL_US", "20000"))
METRICS = ["tcp1_gbps", "tcp4_gbps", "rtt_p50_us", "rtt_p99_us", "vswitchd_cpu_s_per_gbit",
           "vswitchd_cpu_s_per_gbit_tcp4", "host_busy_cpu_s_per_gbit",
           "pps64_delivered", "pps64_offered", "pps64_loss", "pps64_loss_frac",
           "pps1400_delivered", "pps1400_offered", "pps1400_loss", "pps1400_loss_frac",
           "owl_p50_us", "owl_p99_us", "owl_p999_us", "owl_loss",
           "conn_podip_per_s", "conn_podip_p50_us", "conn_podip_p99_us",
           "vip_tcp1_gbps", "conn_vip_per_s", "conn_vip_p50_us", "conn_vip_p99_us"]
RATIO_METRICS = ["tcp1_gbps", "tcp4_gbps", "rtt_p50_us", "rtt_p99_us",
                 "pps64_delivered", "pps1400_delivered", "owl_p50_us", "owl_p99_us",
                 "conn_podip_per_s", "vip_tcp1_gbps", "conn_vip_per_s"]
CNI_METRICS = ["add_p50_ms", "add_p99_ms", "add_max_ms", "add_mean_ms", "del_p50_ms",
               "del_p99_ms", "del_max_ms", "del_mean_ms", "add_first10_p50_ms",
               "add_last10_p50_ms"]
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Unavailable(Exception):
    """The combination cannot run (binary missing, daemon or tunnel not working)."""


def log(msg):
    print("bench: " + msg, flush=True)


def sh(*args, timeout=20, check=True):
    p = subprocess.run([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=timeout)
    if check and p.returncode != 0:
        err = RuntimeError("`%s` failed (%d): %s" % (" ".join(map(str, args)), p.returncode,
                                                     (p.stderr or p.stdout).strip()[-400:]))
        err.detail = (p.stderr or p.stdout).strip()[-300:]
        raise err
    return p.stdout


class Testbed:
    """Namespaces, processes and a scratch dir, all removed by close()."""

    def __init__(self, tag):
        self.tag = tag
        self.netns, self.procs, self.daemons, self.underlay_nodes = [], [], [], []
        self.socks = []
        # The client pod's node (netns) and its vswitchd socket: where a Service is added.
        self.client_node, self.client_sock = None, None
        self.tmp = tempfile.mkdtemp(prefix="%s-bench-" % PREFIX)

    def ns(self, name):
        full = "%s%s%s" % (PREFIX, self.tag, name)
        sh("ip", "netns", "add", full)
        self.netns.append(full)
        sh("ip", "-n", full, "link", "set", "lo", "up")
        return full

    def spawn(self, args, logname=None, daemon=False):
        out = open(os.path.join(self.tmp, logname), "w") if logname else subprocess.DEVNULL
        p = subprocess.Popen([str(a) for a in args], stdout=out, stderr=subprocess.STDOUT
                             if logname else subprocess.DEVNULL, start_new_session=True)
        (self.daemons if daemon else self.procs).append(p)
        return p

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.daemons:
            if p.poll() is None:
                p.terminate()
        deadline = time.time() + 3
        for p in self.procs + self.daemons:
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(2)
        for ns in reversed(self.netns):
            for pid in sh("ip", "netns", "pids", ns, check=False).split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            sh("ip", "netns", "del", ns, check=False)
            # vswitchd writes the pod's resolver there (`ip netns exec` mounts it).
            shutil.rmtree(os.path.join("/etc/netns", ns), ignore_errors=True)
        self.netns = []
        shutil.rmtree(self.tmp, ignore_errors=True)


# ---------------------------------------------------------------- testbeds
# Each builder returns (client_ns, server_ns, server_ip); pods are 198.18.N.10 / .11.

def pod_veth(tb, node, pod, idx, ip, gw_on_bridge):
    """Kernel baseline pod: a veth whose node end is on the node's bridge."""
    ln = "%sv%d" % (PREFIX, idx)
    sh("ip", "-n", node, "link", "add", ln, "mtu", 1450, "type", "veth",
       "peer", "name", "eth0", "netns", pod)
    sh("ip", "-n", node, "link", "set", ln, "master", "%sbr" % PREFIX, "up")
    sh("ip", "-n", pod, "link", "set", "eth0", "mtu", 1450, "up")
    sh("ip", "-n", pod, "addr", "add", ip + "/24", "dev", "eth0")
    sh("ip", "-n", pod, "route", "add", "default", "via", gw_on_bridge)


def bridge(tb, node, n):
    br = "%sbr" % PREFIX
    sh("ip", "-n", node, "link", "add", br, "type", "bridge")
    sh("ip", "-n", node, "addr", "add", "198.18.%d.1/24" % n, "dev", br)
    sh("ip", "-n", node, "link", "set", br, "up")


def underlay(tb, n1, n2):
    tb.underlay_nodes = [n1, n2]
    a, b = "%su1" % PREFIX, "%su2" % PREFIX
    sh("ip", "-n", n1, "link", "add", a, "mtu", 1500, "type", "veth", "peer", "name", b,
       "netns", n2)
    for ns, ln, ip in ((n1, a, "198.19.0.1/24"), (n2, b, "198.19.0.2/24")):
        sh("ip", "-n", ns, "addr", "add", ip, "dev", ln)
        sh("ip", "-n", ns, "link", "set", ln, "up")
    return a, b


def kernel_same(tb):
    node, pa, pb = tb.ns("n1"), tb.ns("pa"), tb.ns("pb")
    bridge(tb, node, 1)
    pod_veth(tb, node, pa, 1, "198.18.1.10", "198.18.1.1")
    pod_veth(tb, node, pb, 2, "198.18.1.11", "198.18.1.1")
    tb.client_node = node
    return pb, pa, "198.18.1.10", []


def kernel_cross(tb):
    """flannel's vxlan backend, by hand: bridge + pod veth + vxlan device per node."""
    nodes = {1: tb.ns("n1"), 2: tb.ns("n2")}
    pods = {1: tb.ns("pa"), 2: tb.ns("pb")}
    ul = dict(zip((1, 2), underlay(tb, nodes[1], nodes[2])))
    vx, mac = "%svx" % PREFIX, {}
    for n, node in nodes.items():
        sh("ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        bridge(tb, node, n)
        pod_veth(tb, node, pods[n], n, "198.18.%d.10" % n, "198.18.%d.1" % n)
        sh("ip", "-n", node, "link", "add", vx, "mtu", 1450, "type", "vxlan", "id", 1,
           "dstport", 4789, "local", "198.19.0.%d" % n, "dev", ul[n], "nolearning")
        sh("ip", "-n", node, "addr", "add", "198.18.%d.0/32" % n, "dev", vx)
        sh("ip", "-n", node, "link", "set", vx, "up")
        mac[n] = json.loads(sh("ip", "-n", node, "-j", "link", "show", vx))[0]["address"]
    for n, node in nodes.items():
        m = 3 - n
        sh("ip", "-n", node, "route", "add", "198.18.%d.0/24" % m, "via", "198.18.%d.0" % m,
           "dev", vx, "onlink")
        sh("ip", "-n", node, "neigh", "add", "198.18.%d.0" % m, "lladdr", mac[m], "dev", vx,
           "nud", "permanent")
        sh("bridge", "-n", node, "fdb", "append", mac[m], "dev", vx, "dst", "198.19.0.%d" % m)
    tb.client_node = nodes[2]
    return pods[2], pods[1], "198.18.1.10", []


def underlay_rx(nodes):
    """Bytes the receiving node (node 1) got on its underlay veth: proof of the tunnel path."""
    if not nodes:
        return 0
    ns = [n for n in nodes if n.endswith("n1")][0]
    j = json.loads(sh("ip", "-n", ns, "-j", "-s", "link", "show", "%su1" % PREFIX))
    return j[0]["stats64"]["rx"]["bytes"]


def ctl(sock, *args, timeout=15):
    return sh(os.path.join(BIN, "vswitchctl"), "--socket", sock, *args, timeout=timeout)


def start_daemon(tb, node, name, n, datapath, extra=()):
    sock = os.path.join(tb.tmp, name + ".sock")
    logname = name + ".log"
    p = tb.spawn(["ip", "netns", "exec", node, os.path.join(BIN, "vswitchd"), "--node", name,
                  "--pod-cidr", "198.18.%d.0/24" % n, "--mtu", 1500, "--socket", sock,
                  "--state-dir", os.path.join(tb.tmp, name + ".state"), "--datapath", datapath,
                  *extra, *VSWITCHD_ARGS], logname=logname, daemon=True)
    deadline = time.time() + 10
    while time.time() < deadline:
        if p.poll() is not None:
            break
        if subprocess.run([os.path.join(BIN, "vswitchctl"), "--socket", sock, "--timeout", "1",
                           "node", "show"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, timeout=5).returncode == 0:
            tb.socks.append(sock)
            return p, sock
        time.sleep(0.1)
    with open(os.path.join(tb.tmp, logname)) as f:
        tail = " | ".join(f.read().strip().splitlines()[-3:])
    raise Unavailable("vswitchd --datapath %s did not become ready (%s): %s" % (
        datapath, "exited %s" % p.returncode if p.poll() is not None else "timeout", tail))


def drops(socks):
    """Non-zero drop counters summed over the run's daemons (from `stats -o json`)."""
    total = {}
    for sock in socks:
        try:
            for k, v in json.loads(ctl(sock, "-o", "json", "stats")).get("drops", {}).items():
                if v:
                    total[k] = total.get(k, 0) + v
        except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
            total["stats_error"] = str(e)[:200]
    return total


def vsw_same(tb, datapath, extra=()):
    node, pa, pb = tb.ns("n1"), tb.ns("pa"), tb.ns("pb")
    d, sock = start_daemon(tb, node, "n1", 1, datapath, tuple(extra))
    ctl(sock, "port", "add", "pa", "--netns", pa, "--ip", "198.18.1.10/24")
    ctl(sock, "port", "add", "pb", "--netns", pb, "--ip", "198.18.1.11/24")
    tb.client_node, tb.client_sock = node, sock
    return pb, pa, "198.18.1.10", [d]


def vsw_cross(tb, datapath, extra=()):
    nodes = {1: tb.ns("n1"), 2: tb.ns("n2")}
    pods = {1: tb.ns("pa"), 2: tb.ns("pb")}
    underlay(tb, nodes[1], nodes[2])
    d, socks, vtep = [], {}, {}
    for n, node in nodes.items():
        p, socks[n] = start_daemon(tb, node, "n%d" % n, n, datapath,
                                   ("--underlay", "198.19.0.%d" % n) + tuple(extra))
        d.append(p)
        ctl(socks[n], "port", "add", "p%d" % n, "--netns", pods[n],
            "--ip", "198.18.%d.10/24" % n)
        vtep[n] = json.loads(ctl(socks[n], "-o", "json", "node", "show"))["vtep_mac"]
    for n in nodes:
        m = 3 - n
        try:
            ctl(socks[n], "peer", "add", "n%d" % m, "--underlay", "198.19.0.%d" % m,
                "--pod-cidr", "198.18.%d.0/24" % m, "--vtep-mac", vtep[m])
        except RuntimeError as e:
            raise Unavailable("`vswitchctl peer add` failed: %s" % getattr(e, "detail", e))
    tb.client_node, tb.client_sock = nodes[2], socks[2]
    return pods[2], pods[1], "198.18.1.10", d


def build(tb, scenario, datapath, extra=()):
    if datapath == "kernel":
        return (kernel_same if scenario == "same-node" else kernel_cross)(tb)
    return (vsw_same if scenario == "same-node" else vsw_cross)(tb, datapath, extra)


# ---------------------------------------------------------------- measurements

def reachable(client, ip):
    deadline = time.time() + REACH_TIMEOUT
    while time.time() < deadline:
        if subprocess.run(["ip", "netns", "exec", client, "ping", "-c", "1", "-W", "1", ip],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          timeout=5).returncode == 0:
            return True
    return False


def percentile(xs, p):
    xs = sorted(xs)
    return xs[max(0, math.ceil(p / 100.0 * len(xs)) - 1)]


def ping_rtt(client, ip):
    deadline = int(PING_COUNT * PING_INTERVAL + 5)
    out = sh("ip", "netns", "exec", client, "ping", "-n", "-c", PING_COUNT, "-i", PING_INTERVAL,
             "-W", 1, "-w", deadline, ip, timeout=deadline + 5, check=False)
    rtts = [float(t) * 1000 for t in re.findall(r"time=([0-9.]+) ms", out)]
    if not rtts:
        raise RuntimeError("ping got no reply")
    return {"rtt_p50_us": round(percentile(rtts, 50), 1),
            "rtt_p99_us": round(percentile(rtts, 99), 1),
            "ping_loss": round(1 - len(rtts) / PING_COUNT, 4)}


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


def host_busy_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4]  # all but idle and iowait


def wait_listening(server, port):
    deadline = time.time() + 5
    while time.time() < deadline:
        if sh("ip", "netns", "exec", server, "ss", "-Hltn", "sport = :%d" % port,
              check=False).strip():
            return
        time.sleep(0.05)
    raise RuntimeError("iperf3 server did not start")


def iperf(tb, client, server, ip, streams, daemons, dst=None):
    """iperf3 from client to dst (default: the server's address ip; a VIP for Services)."""
    port = IPERF_PORT
    srv = tb.spawn(["ip", "netns", "exec", server, "iperf3", "-s", "-1", "-B", ip, "-p", port])
    wait_listening(server, port)
    pids = [d.pid for d in daemons]
    u0 = underlay_rx(tb.underlay_nodes)
    c0, h0, t0 = cpu_ticks(pids), host_busy_ticks(), time.time()
    out = sh("ip", "netns", "exec", client, "iperf3", "-c", dst or ip, "-p", port, "-t", SECS,
             "-P", streams, "-J", "--connect-timeout", 3000, timeout=SECS + 20, check=False)
    c1, h1, t1 = cpu_ticks(pids), host_busy_ticks(), time.time()
    u1 = underlay_rx(tb.underlay_nodes)
    try:
        srv.wait(5)
    except subprocess.TimeoutExpired:
        srv.kill()
    try:
        j = json.loads(out)
    except ValueError:
        raise RuntimeError("iperf3 printed no JSON: %s" % out[-300:])
    if "error" in j:
        raise RuntimeError("iperf3: %s" % j["error"])
    recv = j["end"]["sum_received"]
    gbit = recv["bytes"] * 8 / 1e9
    r = {"gbps": round(recv["bits_per_second"] / 1e9, 3),
         "retransmits": j["end"].get("sum_sent", {}).get("retransmits"),
         "host_busy_cpu_s": round((h1 - h0) / CLK_TCK, 2), "wall_s": round(t1 - t0, 2),
         "vswitchd_cpu_s": round((c1 - c0) / CLK_TCK, 2) if pids else None,
         "underlay_rx_bytes_per_payload_byte": round((u1 - u0) / recv["bytes"], 3)
         if tb.underlay_nodes and recv["bytes"] else None}
    if tb.underlay_nodes and (u1 - u0) < recv["bytes"]:
        raise RuntimeError("underlay carried %d bytes < %d payload bytes: traffic bypassed the "
                           "tunnel" % (u1 - u0, recv["bytes"]))
    r["vswitchd_cpu_s_per_gbit"] = (round(r["vswitchd_cpu_s"] / gbit, 4)
                                    if pids and gbit > 0 else None)
    r["host_busy_cpu_s_per_gbit"] = round(r["host_busy_cpu_s"] / gbit, 4) if gbit > 0 else None
    return r


def link_drops(ns, dev="eth0"):
    """(tx_dropped, rx_dropped) of a pod's interface."""
    s = json.loads(sh("ip", "-n", ns, "-j", "-s", "link", "show", dev))[0]["stats64"]
    return s["tx"]["dropped"], s["rx"]["dropped"]


def wait_stderr(proc, needle, timeout):
    """Reads proc's stderr until a line holds needle; the lines read, or an error."""
    seen, deadline = [], time.time() + timeout
    while time.time() < deadline:
        r, _, _ = select.select([proc.stderr], [], [], max(0.0, deadline - time.time()))
        if not r:
            break
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line.strip())
        if needle in line:
            return seen
    raise RuntimeError("`%s` not seen within %.0f s (%s)" % (needle, timeout,
                                                            " | ".join(seen)[-300:]))


def pktgen(tb, client, server, ip, port, size, count, secs, rate=0):
    """One bounded vswitch-pktgen stream client -> server ip:port; the two reports, merged."""
    pg = os.path.join(BIN, "vswitch-pktgen")
    rx_secs = secs + 5
    recv = subprocess.Popen(["ip", "netns", "exec", server, pg, "recv", "--bind",
                             "%s:%d" % (ip, port), "--duration", str(rx_secs), "--idle",
                             str(PKTGEN_IDLE), "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    tb.procs.append(recv)
    wait_stderr(recv, "receiving on", 5)
    d0 = link_drops(client), link_drops(server)
    u0 = underlay_rx(tb.underlay_nodes)
    out = sh("ip", "netns", "exec", client, pg, "send", "--dst", "%s:%d" % (ip, port),
             "--size", size, "--count", count, "--duration", secs, "--rate", rate, "--json",
             timeout=secs + 15)
    try:
        rout, rerr = recv.communicate(timeout=rx_secs + 5)
    except subprocess.TimeoutExpired:
        recv.kill()
        raise RuntimeError("vswitch-pktgen recv did not stop")
    u1 = underlay_rx(tb.underlay_nodes)
    d1 = link_drops(client), link_drops(server)
    try:
        s, r = json.loads(out), json.loads(rout)
    except ValueError:
        raise RuntimeError("vswitch-pktgen printed no JSON: %s %s" % (out[-200:], rerr[-200:]))
    if r["received"] == 0:
        raise RuntimeError("vswitch-pktgen: nothing received of %d sent" % s["sent"])
    payload = r["received"] * (size - 42)
    if tb.underlay_nodes and (u1 - u0) < payload:
        raise RuntimeError("underlay carried %d bytes < %d payload bytes: traffic bypassed the "
                           "tunnel" % (u1 - u0, payload))
    lat = r.get("latency_us") or {}
    return {"size": size, "rate_pps": rate, "sent": s["sent"],
            "offered_pps": round(s["offered_pps"]), "send_errors": s["send_errors"],
            "kernel_sndbuf_errors": s.get("kernel_sndbuf_errors"),
            "received": r["received"], "delivered_pps": round(r["delivered_pps"]),
            "loss": s["sent"] - r["received"],
            "loss_frac": round((s["sent"] - r["received"]) / s["sent"], 4) if s["sent"] else None,
            "seq_lost": r["lost"], "reordered": r["reordered"],
            "kernel_rcvbuf_errors": r.get("kernel_rcvbuf_errors"),
            "client_eth0_tx_dropped": d1[0][0] - d0[0][0],
            "server_eth0_rx_dropped": d1[1][1] - d0[1][1],
            "latency_us": {k: round(lat[k], 1) for k in ("p50", "p99", "p999", "max")
                           if lat.get(k) is not None}}


def pktgen_all(tb, client, server, ip):
    """Packets per second at 64 and 1400-byte frames, then one-way latency at LAT_RATE."""
    r, det = {}, {}
    for i, size in enumerate(PPS_SIZES):
        p = pktgen(tb, client, server, ip, 9000 + i, size, PPS_COUNT, PPS_SECS)
        det[str(size)] = p
        r.update({"pps%d_delivered" % size: p["delivered_pps"],
                  "pps%d_offered" % size: p["offered_pps"],
                  "pps%d_loss" % size: p["loss"], "pps%d_loss_frac" % size: p["loss_frac"]})
    p = pktgen(tb, client, server, ip, 9009, 64, int(LAT_RATE * LAT_SECS), LAT_SECS, LAT_RATE)
    det["latency"] = p
    r.update({"owl_p50_us": p["latency_us"].get("p50"), "owl_p99_us": p["latency_us"].get("p99"),
              "owl_p999_us": p["latency_us"].get("p999"), "owl_loss": p["loss"]})
    r["pktgen"] = det
    return r


def connrate(tb, client, server, bind_ip, dst, port):
    """CONNS sequential short TCP connections client -> dst:port, served in the server pod."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_conn.py")
    py = sys.executable or "python3"
    srv = subprocess.Popen(["ip", "netns", "exec", server, py, script, "server", bind_ip,
                            str(port), str(CONNS), str(CONN_SECS + 5)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    tb.procs.append(srv)
    wait_stderr(srv, "listening", 5)
    out = sh("ip", "netns", "exec", client, py, script, "client", dst, port, CONNS, CONN_SECS,
             timeout=CONN_SECS + 15)
    try:
        sout, _ = srv.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        srv.kill()
        sout = ""
    c = json.loads(out)
    c["served"] = (json.loads(sout) if sout.strip() else {}).get("served")
    if not c["ok"]:
        raise RuntimeError("no connection to %s:%d succeeded (%s)" % (dst, port, c["errors"]))
    return c


def vip_setup(tb, ip):
    """The Service VIP -> ip on the client's node: `service add` (vswitchd) or iptables DNAT
    in the node netns (kernel, what kube-proxy's iptables mode does for one endpoint)."""
    if tb.client_sock:
        try:
            ctl(tb.client_sock, "service", "add", "%s-svc" % PREFIX, "--vip", VIP,
                "--port", "iperf:%d/tcp" % IPERF_PORT, "--port", "conn:%d/tcp" % CONN_PORT_VIP,
                "--endpoint", ip)
        except RuntimeError as e:
            raise Unavailable("`vswitchctl service add` failed: %s" % getattr(e, "detail", e))
        return "vswitchctl service add"
    if not shutil.which("iptables"):
        raise Unavailable("iptables is not installed (kube-proxy-like DNAT baseline)")
    node = tb.client_node
    # Same-node replies are bridged straight back to the client pod: like kube-proxy on a
    # bridge, this needs br_netfilter's iptables call for bridged frames (the default here).
    sh("ip", "netns", "exec", node, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1",
       check=False)
    # DNATed packets are routed by the node (a kube-proxy node forwards).
    sh("ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    try:
        for port in (IPERF_PORT, CONN_PORT_VIP):
            sh("ip", "netns", "exec", node, "iptables", "-w", "5", "-t", "nat", "-A",
               "PREROUTING", "-d", VIP + "/32", "-p", "tcp", "--dport", port, "-j", "DNAT",
               "--to-destination", ip)
    except RuntimeError as e:
        raise Unavailable("iptables DNAT failed: %s" % getattr(e, "detail", e))
    return "iptables DNAT"


def services(tb, client, server, ip, daemons):
    """VIP vs pod IP: TCP single stream and new connections per second."""
    how = vip_setup(tb, ip)
    t = iperf(tb, client, server, ip, 1, daemons, dst=VIP)
    c = connrate(tb, client, server, ip, VIP, CONN_PORT_VIP)
    return {"vip_via": how, "vip_tcp1_gbps": t["gbps"], "vip_tcp1_retransmits": t["retransmits"],
            "vip_vswitchd_cpu_s_per_gbit": t["vswitchd_cpu_s_per_gbit"],
            "conn_vip_per_s": c["conn_per_s"],
            "conn_vip_p50_us": (c["latency_us"] or {}).get("p50"),
            "conn_vip_p99_us": (c["latency_us"] or {}).get("p99"), "conn_vip": c}


def one_run(scenario, datapath, rnd):
    tb = Testbed(rnd)
    try:
        client, server, ip, daemons = build(tb, scenario, datapath)
        if not reachable(client, ip):
            raise Unavailable("no ping reply from %s within %.0f s after setup%s" % (
                ip, REACH_TIMEOUT, "; vswitchd drops: %s" % json.dumps(drops(tb.socks))
                if tb.socks else ""))
        with open("/proc/loadavg") as f:
            load = float(f.read().split()[0])
        h0 = host_busy_ticks()
        time.sleep(0.5)
        # Busy cores while this testbed idles: other work sharing the machine skews the numbers.
        r = {"loadavg_1m_before": load,
             "idle_host_busy_cores": round((host_busy_ticks() - h0) / CLK_TCK / 0.5, 2)}
        r.update(ping_rtt(client, ip))
        t1 = iperf(tb, client, server, ip, 1, daemons)
        t4 = iperf(tb, client, server, ip, 4, daemons)
        r.update({"tcp1_gbps": t1["gbps"], "tcp4_gbps": t4["gbps"],
                  "underlay_rx_bytes_per_payload_byte": t1["underlay_rx_bytes_per_payload_byte"],
                  "tcp1_retransmits": t1["retransmits"], "tcp4_retransmits": t4["retransmits"],
                  "vswitchd_cpu_s": t1["vswitchd_cpu_s"],
                  "vswitchd_cpu_s_per_gbit": t1["vswitchd_cpu_s_per_gbit"],
                  "vswitchd_cpu_s_per_gbit_tcp4": t4["vswitchd_cpu_s_per_gbit"],
                  "host_busy_cpu_s_per_gbit": t1["host_busy_cpu_s_per_gbit"]})
        # The additions below fail on their own: an error is recorded next to the numbers
        # that were measured, never instead of them.
        errs = (Unavailable, RuntimeError, subprocess.TimeoutExpired, OSError, ValueError,
                KeyError)
        try:
            r.update(pktgen_all(tb, client, server, ip))
        except errs as e:
            r["pktgen_error"] = str(e).strip()[:300] or type(e).__name__
        try:
            c = connrate(tb, client, server, ip, ip, CONN_PORT_POD)
            r.update({"conn_podip_per_s": c["conn_per_s"],
                      "conn_podip_p50_us": (c["latency_us"] or {}).get("p50"),
                      "conn_podip_p99_us": (c["latency_us"] or {}).get("p99"), "conn_podip": c})
        except errs as e:
            r["conn_podip_error"] = str(e).strip()[:300] or type(e).__name__
        try:
            r.update(services(tb, client, server, ip, daemons))
        except errs as e:
            r["vip_error"] = str(e).strip()[:300] or type(e).__name__
        for d in daemons:
            if d.poll() is not None:
                raise RuntimeError("vswitchd exited (%s) during the run" % d.returncode)
        if tb.socks:
            r["vswitchd_drops"] = drops(tb.socks)
        return r
    finally:
        tb.close()


def poll_run(scenario, datapath, rnd):
    """RTT only, on a testbed whose vswitchd keep polling POLL_US after each packet (longer
    than the ping interval, so the engine never sleeps during the ping): what the RTT is
    without the engine's wakeups, and the CPU that costs (vswitchd's busy cores while
    pinging)."""
    tb = Testbed("p" + rnd)
    try:
        client, _server, ip, daemons = build(tb, scenario, datapath, ("--poll-us", POLL_US))
        if not reachable(client, ip):
            raise Unavailable("no ping reply from %s within %.0f s after setup" % (
                ip, REACH_TIMEOUT))
        pids = [d.pid for d in daemons]
        c0, t0 = cpu_ticks(pids), time.time()
        r = ping_rtt(client, ip)
        r["vswitchd_busy_cores"] = round((cpu_ticks(pids) - c0) / CLK_TCK / (time.time() - t0), 2)
        return r
    finally:
        tb.close()


def cni_run(datapath, rnd):
    """CNI_PODS sequential ADDs, then as many DELs, of the plugin binary against one vswitchd,
    each pod in its own netns (created before the timed calls). Wall time of each plugin
    process, spawn to exit, as a container runtime sees it."""
    tb = Testbed("c%s%s" % (rnd, datapath[0]))
    try:
        node = tb.ns("n1")
        _, sock = start_daemon(tb, node, "n1", 1, datapath)
        pods = [tb.ns("p%03d" % i) for i in range(CNI_PODS)]
        plugin = os.path.join(BIN, "vswitch-cni")
        conf = json.dumps({"cniVersion": "1.1.0", "name": "%s-bench" % PREFIX,
                           "type": "vswitch-cni", "socket": sock, "timeoutSeconds": 10})

        def call(cmd, i):
            env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                   "CNI_COMMAND": cmd, "CNI_CONTAINERID": "%s-%s-%03d" % (PREFIX, rnd, i),
                   "CNI_NETNS": "/var/run/netns/" + pods[i], "CNI_IFNAME": "eth0",
                   "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=bench-%03d" % i}
            t0 = time.perf_counter()
            p = subprocess.run([plugin], input=conf, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, timeout=20)
            dt = (time.perf_counter() - t0) * 1000
            if p.returncode != 0:
                raise RuntimeError("CNI %s of pod %d failed (%d): %s" % (
                    cmd, i, p.returncode, (p.stdout or p.stderr).strip()[-300:]))
            return dt, p.stdout

        add, dele, addrs = [], [], set()
        for i in range(CNI_PODS):
            dt, out = call("ADD", i)
            add.append(dt)
            addrs.add(json.loads(out)["ips"][0]["address"].split("/")[0])
        if len(addrs) != CNI_PODS:
            raise RuntimeError("%d ADDs gave %d distinct addresses" % (CNI_PODS, len(addrs)))
        for i in sorted({0, CNI_PODS // 2, CNI_PODS - 1}):  # ADD really configured the pod
            got = json.loads(sh("ip", "-n", pods[i], "-j", "addr", "show", "eth0"))
            if not any(a.get("family") == "inet" and a["local"] in addrs
                       for a in got[0].get("addr_info", [])):
                raise RuntimeError("pod %d has no address from its ADD on eth0" % i)
        ports = len(json.loads(ctl(sock, "-o", "json", "port", "list")) or [])
        for i in range(CNI_PODS):
            dele.append(call("DEL", i)[0])
        left = len(json.loads(ctl(sock, "-o", "json", "port", "list")) or [])
        if left:
            raise RuntimeError("%d ports left after %d DELs" % (left, CNI_PODS))

        def q(xs, p):
            return round(percentile(xs, p), 2)
        return {"pods": CNI_PODS, "ports_after_add": ports,
                "add_p50_ms": q(add, 50), "add_p99_ms": q(add, 99),
                "add_max_ms": round(max(add), 2),
                "add_mean_ms": round(statistics.mean(add), 2),
                "del_p50_ms": q(dele, 50), "del_p99_ms": q(dele, 99),
                "del_max_ms": round(max(dele), 2), "del_mean_ms": round(statistics.mean(dele), 2),
                "add_first10_p50_ms": q(add[:10], 50), "add_last10_p50_ms": q(add[-10:], 50),
                "add_ms": [round(x, 2) for x in add], "del_ms": [round(x, 2) for x in dele]}
    finally:
        tb.close()


# ---------------------------------------------------------------- report

def medians(runs):
    ok = [r for r in runs if "error" not in r]
    med = {}
    for m in METRICS:
        vals = [r[m] for r in ok if r.get(m) is not None]
        med[m] = round(statistics.median(vals), 4) if vals else None
    return med


def cni_medians(runs):
    ok = [r for r in runs if "error" not in r]
    return {m: (round(statistics.median([r[m] for r in ok]), 2) if ok else None)
            for m in CNI_METRICS}


def snapshot_binaries():
    """Copies the binaries to a per-run directory: other work rebuilding target/release during
    the run cannot mix versions (bench.sh's trap removes /tmp/<prefix>-bench-*)."""
    global BIN
    snap = tempfile.mkdtemp(prefix="%s-bench-bin-" % PREFIX)
    for b in ("vswitchd", "vswitchctl", "vswitch-cni", "vswitch-pktgen"):
        if os.access(os.path.join(BIN, b), os.X_OK):
            shutil.copy2(os.path.join(BIN, b), snap)
    BIN = snap
    return snap


def sub_reason(runs, key):
    """The error of a per-run addition (pktgen, VIP, ...) when no run measured it."""
    errs = [r.get(key) for r in runs if "error" not in r]
    return errs[0] if errs and all(errs) else None


def main():
    if os.geteuid() != 0:
        sys.exit("bench: must run as root (it creates network namespaces)")

    def on_signal(sig, _frame):
        raise KeyboardInterrupt("signal %d" % sig)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    bin_src = BIN
    snap = snapshot_binaries()
    have_bin = all(os.access(os.path.join(BIN, b), os.X_OK) for b in ("vswitchd", "vswitchctl"))
    # schema 2 = schema 1 (every key kept) + pktgen, Service and CNI keys.
    res = {"schema": 2, "quick": QUICK,
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "machine": machine(BIN, ROOT),
           "config": {"runs": RUNS, "iperf_seconds": SECS, "ping_count": PING_COUNT,
                      "ping_interval_s": PING_INTERVAL, "nice": os.nice(0), "pod_mtu": 1450, "underlay_mtu": 1500,
                      "direction": "client pod b -> server pod a (node 2 -> node 1 cross-node)",
                      "bin_dir": bin_src,
                      "pktgen": {"sizes": list(PPS_SIZES), "count": PPS_COUNT,
                                 "seconds": PPS_SECS, "receiver_idle_s": PKTGEN_IDLE,
                                 "latency_rate_pps": LAT_RATE, "latency_seconds": LAT_SECS,
                                 "latency_size": 64},
                      "services": {"vip": VIP, "iperf_port": IPERF_PORT,
                                   "conn_port_podip": CONN_PORT_POD,
                                   "conn_port_vip": CONN_PORT_VIP, "conns": CONNS,
                                   "conn_seconds_max": CONN_SECS,
                                   "kernel_vip": "iptables -t nat PREROUTING DNAT in the client's "
                                                 "node netns (kube-proxy iptables mode, one endpoint)"},
                      "cni": {"pods": CNI_PODS, "cni_version": "1.1.0"},
                      "poll_us": POLL_US, "vswitchd_args": VSWITCHD_ARGS},
           "scenarios": {}}
    cells = {(sc, dp): {"available": True, "runs": []} for sc in SCENARIOS for dp in DATAPATHS}
    for (sc, dp), c in cells.items():
        if dp != "kernel" and not have_bin:
            c.update(available=False, reason="binary missing (%s/vswitchd)" % BIN)
    cni_dps = [dp for dp in DATAPATHS if dp != "kernel"] if CNI_PODS > 0 else []
    cni = {dp: {"available": have_bin, "runs": []} if have_bin else
           {"available": False, "reason": "binary missing (%s/vswitchd)" % BIN, "runs": []}
           for dp in cni_dps}
    # Per cell: ping, 3 iperf3 runs, 3 pktgen runs (+ idle), 2 connection loops, setup.
    per_cell = (3 * SECS + PING_COUNT * PING_INTERVAL + len(PPS_SIZES) * (PPS_SECS + 1.5)
                + LAT_SECS + 1.5 + 2 * CONNS / 2000.0 + 3)
    est = (sum(c["available"] for c in cells.values()) * RUNS * per_cell
           + (sum(c["available"] for (_, dp), c in cells.items() if dp != "kernel") * RUNS
              * (PING_COUNT * PING_INTERVAL + 4) if POLL_US > 0 else 0)
           + sum(c["available"] for c in cni.values()) * RUNS * (CNI_PODS * 0.06 + 2))
    log("prefix %s, %d run(s), iperf3 -t %d, ping -c %d, pktgen %g s, %d connections, %d CNI "
        "pods; about %.0f s" % (PREFIX, RUNS, SECS, PING_COUNT, PPS_SECS, CONNS, CNI_PODS, est))
    t_start = time.time()
    for rnd in range(RUNS):
        order = DATAPATHS[rnd % len(DATAPATHS):] + DATAPATHS[:rnd % len(DATAPATHS)]
        for sc in SCENARIOS:
            for dp in order:
                c = cells[(sc, dp)]
                if not c["available"]:
                    continue
                t0 = time.time()
                try:
                    r = one_run(sc, dp, "r%d" % rnd)
                    log("run %d %-10s %-6s tcp1 %.2f tcp4 %.2f Gbit/s, rtt p50 %.0f p99 %.0f µs,"
                        " vswitchd %s s/Gbit; pps 64 B %s 1400 B %s, one-way p50 %s p99 %s µs; "
                        "conn/s pod IP %s VIP %s, VIP tcp1 %s Gbit/s (%.0f s)" % (
                            rnd + 1, sc, dp, r["tcp1_gbps"], r["tcp4_gbps"], r["rtt_p50_us"],
                            r["rtt_p99_us"], fmt(r["vswitchd_cpu_s_per_gbit"], 3),
                            fmt(r.get("pps64_delivered"), 0), fmt(r.get("pps1400_delivered"), 0),
                            fmt(r.get("owl_p50_us"), 0), fmt(r.get("owl_p99_us"), 0),
                            fmt(r.get("conn_podip_per_s"), 0), fmt(r.get("conn_vip_per_s"), 0),
                            fmt(r.get("vip_tcp1_gbps")), time.time() - t0))
                    for k in ("pktgen_error", "conn_podip_error", "vip_error"):
                        if r.get(k):
                            log("run %d %-10s %-6s %s: %s" % (rnd + 1, sc, dp, k, r[k]))
                except (Unavailable, RuntimeError, subprocess.TimeoutExpired, OSError) as e:
                    msg = str(e).strip() or type(e).__name__
                    log("run %d %-10s %-6s FAILED: %s" % (rnd + 1, sc, dp, msg))
                    r = {"error": msg}
                    if not any("error" not in x for x in c["runs"]):
                        c.update(available=False, reason=msg)
                c["runs"].append(r)
        for sc in SCENARIOS:
            for dp in [d for d in order if d != "kernel" and POLL_US > 0]:
                c = cells[(sc, dp)]
                if not c["available"]:
                    continue
                t0 = time.time()
                try:
                    r = poll_run(sc, dp, "r%d" % rnd)
                    log("run %d %-10s %-6s --poll-us %d: rtt p50 %.0f p99 %.0f µs, vswitchd "
                        "%.2f cores busy (%.0f s)" % (rnd + 1, sc, dp, POLL_US, r["rtt_p50_us"],
                                                      r["rtt_p99_us"], r["vswitchd_busy_cores"],
                                                      time.time() - t0))
                except (Unavailable, RuntimeError, subprocess.TimeoutExpired, OSError) as e:
                    r = {"error": str(e).strip() or type(e).__name__}
                    log("run %d %-10s %-6s --poll-us %d FAILED: %s" % (
                        rnd + 1, sc, dp, POLL_US, r["error"]))
                c.setdefault("poll_runs", []).append(r)
        for dp in [d for d in order if d in cni]:
            c = cni[dp]
            if not c["available"]:
                continue
            t0 = time.time()
            try:
                r = cni_run(dp, "r%d" % rnd)
                log("run %d CNI %-6s %d pods: ADD p50 %.1f p99 %.1f ms, DEL p50 %.1f p99 %.1f ms "
                    "(%.0f s)" % (rnd + 1, dp, CNI_PODS, r["add_p50_ms"], r["add_p99_ms"],
                                  r["del_p50_ms"], r["del_p99_ms"], time.time() - t0))
            except (Unavailable, RuntimeError, subprocess.TimeoutExpired, OSError, ValueError,
                    KeyError, IndexError) as e:
                msg = str(e).strip() or type(e).__name__
                log("run %d CNI %-6s FAILED: %s" % (rnd + 1, dp, msg))
                r = {"error": msg}
                if not any("error" not in x for x in c["runs"]):
                    c.update(available=False, reason=msg)
            c["runs"].append(r)
    for (sc, dp), c in cells.items():
        c["median"] = medians(c["runs"]) if c["available"] else None
        if c["available"]:
            for key, sub in (("pktgen_error", "pktgen"), ("conn_podip_error", "conn_podip"),
                             ("vip_error", "vip")):
                why = sub_reason(c["runs"], key)
                if why:
                    c["%s_reason" % sub] = why
            md = c["median"]
            c["vip_over_podip"] = {
                "tcp1_gbps": round(md["vip_tcp1_gbps"] / md["tcp1_gbps"], 3)
                if md["vip_tcp1_gbps"] is not None and md["tcp1_gbps"] else None,
                "conn_per_s": round(md["conn_vip_per_s"] / md["conn_podip_per_s"], 3)
                if md["conn_vip_per_s"] is not None and md["conn_podip_per_s"] else None}
        if c.get("poll_runs"):
            ok = [r for r in c["poll_runs"] if "error" not in r]
            c["poll_median"] = {m: (round(statistics.median([r[m] for r in ok]), 2) if ok
                                    else None)
                                for m in ("rtt_p50_us", "rtt_p99_us", "vswitchd_busy_cores")}
        res["scenarios"].setdefault(sc, {})[dp] = c
    for sc, per in res["scenarios"].items():
        k = per.get("kernel")
        for dp, c in per.items():
            if dp == "kernel" or not c["available"]:
                continue
            c["ratio_to_kernel"] = {m: (round(c["median"][m] / k["median"][m], 3) if k and
                                        k["available"] and k["median"][m] and
                                        c["median"][m] is not None else None)
                                    for m in RATIO_METRICS}
    for dp, c in cni.items():
        c["median"] = cni_medians(c["runs"]) if c["available"] else None
    res["cni"] = cni
    res["elapsed_s"] = round(time.time() - t_start, 1)
    shutil.rmtree(snap, ignore_errors=True)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(res, f, indent=2)
        f.write("\n")
    write_readme(res, OUT)
    log("wrote %s/results.json and the table in %s/README.md (%.0f s)" % (
        OUT, OUT, res["elapsed_s"]))
    print(table(res))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as e:
        log("interrupted (%s): testbed removed, no results written" % (e or "SIGINT"))
        sys.exit(130)
