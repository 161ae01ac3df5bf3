#!/usr/bin/env python3
"""Cluster convergence on the datastore (issue 11): from `vswitchctl apply -f service.yaml` on
one node to the first successful connection through the Service's VIP from a pod on every
node, for clusters of several sizes (nodes as lightweight vswitchd processes, each in its own
network namespace, all on one etcd); and, with the largest cluster at rest, the daemons' CPU
and etcd's client traffic.

    scripts/bench_cluster.py            (as root; `make bench` runs it; BENCH_CLUSTER_NODES=0
                                         skips it)

Knobs (environment): BENCH_CLUSTER_NODES=2,10,50  BENCH_CLUSTER_RUNS=3  BENCH_CLUSTER_REST=10
(seconds at rest)  BENCH_OUT=docs/bench  VSWITCH_BIN_DIR=target/release  BENCH_PREFIX (vqXXXX).
Output: $BENCH_OUT/cluster.json, $BENCH_OUT/cluster.md (and cluster.png with matplotlib).

Method: one nginx pod (app=nginx) on node 1 and a client pod on every node; per run the
Service is applied on node 1 and every client fetches http://VIP/ with busybox wget (1 s
timeout) in a loop, all clients at once; a node's convergence is when its first fetch
succeeded, the run's is the slowest node's. The Service is deleted between runs (and its
absence waited for on every node). The median of the runs is reported. Every client polls
at once on a 2-core machine: the 50-node figure includes that load.

Addresses: 198.18.0.0/15 only (design.md section 6); etcd at 198.19.0.254 in the hub.
Every namespace and process carries the prefix and is removed on exit.
"""

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("VSWITCH_BIN_DIR", os.path.join(ROOT, "target", "release"))
OUT = os.environ.get("BENCH_OUT", os.path.join(ROOT, "docs", "bench"))
SIZES = [int(n) for n in os.environ.get("BENCH_CLUSTER_NODES", "2,10,50").split(",") if n]
RUNS = int(os.environ.get("BENCH_CLUSTER_RUNS", "3"))
REST = float(os.environ.get("BENCH_CLUSTER_REST", "10"))
PREFIX = os.environ.get("BENCH_PREFIX") or "vq%04x" % random.randrange(0x10000)
ETCD = "198.19.0.254"
SERVICE_YAML = os.path.join(ROOT, "examples", "service.yaml")
CONVERGE_TIMEOUT = 60.0


def sh(*args, check=True, timeout=30, **kw):
    return subprocess.run(args, check=check, timeout=timeout, capture_output=True, text=True, **kw)


class Cluster:
    """A hub with etcd and `n` vswitchd nodes, each with a client pod; node 1 has nginx."""

    def __init__(self, n):
        self.n = n
        self.tmp = tempfile.mkdtemp(prefix="vswitch-bench-cluster.")
        self.netns = []
        self.procs = []
        self.hub = f"{PREFIX}hub"
        self.daemons = {}

    def add_netns(self, name):
        sh("ip", "netns", "add", name)
        self.netns.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")

    def spawn(self, netns, args, log):
        f = open(os.path.join(self.tmp, log), "w")
        p = subprocess.Popen(["ip", "netns", "exec", netns] + args, stdout=f, stderr=f)
        self.procs.append(p)
        return p

    def ctl(self, i, *args, check=True):
        env = dict(os.environ, VSWITCH_SOCKET=os.path.join(self.tmp, f"node{i}.sock"))
        return subprocess.run([os.path.join(BIN, "vswitchctl"), *args], env=env, check=check,
                              capture_output=True, text=True, timeout=30)

    def start(self):
        self.add_netns(self.hub)
        sh("ip", "-n", self.hub, "link", "add", f"{PREFIX}br", "type", "bridge")
        sh("ip", "-n", self.hub, "link", "set", f"{PREFIX}br", "up")
        sh("ip", "-n", self.hub, "addr", "add", f"{ETCD}/24", "dev", f"{PREFIX}br")
        c, p = f"http://{ETCD}:2379", f"http://{ETCD}:2380"
        self.spawn(self.hub, ["etcd", "--name", f"{PREFIX}-etcd", "--data-dir",
                              os.path.join(self.tmp, "etcd"), "--listen-client-urls", c,
                              "--advertise-client-urls", c, "--listen-peer-urls", p,
                              "--initial-advertise-peer-urls", p, "--initial-cluster",
                              f"{PREFIX}-etcd={p}", "--initial-cluster-state", "new",
                              "--logger", "zap", "--log-level", "warn"], "etcd.log")
        self.wait(lambda: sh("ip", "netns", "exec", self.hub, "etcdctl", "--endpoints", c,
                             "endpoint", "health", check=False).returncode == 0, "etcd")
        for i in range(1, self.n + 1):
            self.add_node(i)
        for i in range(1, self.n + 1):
            self.wait(lambda i=i: self.ctl(i, "--timeout", "1", "node", "show",
                                           check=False).returncode == 0, f"node{i}")
        # Every node sees every other as a peer.
        for i in range(1, self.n + 1):
            self.wait(lambda i=i: len(json.loads(self.ctl(i, "-o", "json", "peer", "list")
                                                 .stdout)) == self.n - 1, f"node{i}'s peers")
        self.nginx_ns = f"{PREFIX}-nginx"
        self.add_netns(self.nginx_ns)
        self.ctl(1, "port", "add", "nginx", "--netns", self.nginx_ns, "--label", "app=nginx")
        self.start_nginx()
        for i in range(1, self.n + 1):
            ns = f"{PREFIX}-c{i}"
            self.add_netns(ns)
            self.ctl(i, "port", "add", f"client{i}", "--netns", ns)

    def add_node(self, i):
        ns = f"{PREFIX}n{i}"
        self.add_netns(ns)
        sh("ip", "link", "add", f"{PREFIX}u{i}", "netns", ns, "type", "veth", "peer", "name",
           f"{PREFIX}h{i}", "netns", self.hub)
        sh("ip", "-n", self.hub, "link", "set", f"{PREFIX}h{i}", "master", f"{PREFIX}br", "up")
        sh("ip", "-n", ns, "addr", "add", f"198.19.0.{i}/24", "dev", f"{PREFIX}u{i}")
        sh("ip", "-n", ns, "link", "set", f"{PREFIX}u{i}", "up")
        self.daemons[i] = self.spawn(ns, [
            os.path.join(BIN, "vswitchd"), "--node", f"node{i}", "--datastore",
            f"etcd://{ETCD}:2379", "--cluster-cidr", "198.18.0.0/16", "--underlay",
            f"198.19.0.{i}", "--socket", os.path.join(self.tmp, f"node{i}.sock"), "--state-dir",
            os.path.join(self.tmp, f"node{i}")], f"node{i}.log")

    def start_nginx(self):
        d = os.path.join(self.tmp, "nginx")
        os.makedirs(os.path.join(d, "html"))
        with open(os.path.join(d, "html", "index.html"), "w") as f:
            f.write("<h1>Welcome to nginx!</h1>\n")
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(f"user root; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log;"
                    f" events {{ worker_connections 1024; }} http {{ access_log off;"
                    f" client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;"
                    f" server {{ listen 80; root {d}/html; }} }}\n")
        self.spawn(self.nginx_ns, ["nginx", "-p", d + "/", "-e", os.path.join(d, "error.log"),
                                   "-c", os.path.join(d, "nginx.conf"), "-g", "daemon off;"],
                   "nginx.log")
        self.wait(lambda: self.fetch(self.nginx_ns, "127.0.0.1"), "nginx")

    def fetch(self, ns, host):
        # `timeout 1`, not wget's -T: Debian's busybox wget crashes on -T.
        r = subprocess.run(["ip", "netns", "exec", ns, "timeout", "1", "busybox", "wget", "-q",
                            "-O", "-", f"http://{host}/"], capture_output=True, text=True,
                           timeout=5)
        return r.returncode == 0 and "Welcome to nginx" in r.stdout

    @staticmethod
    def wait(cond, what, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if cond():
                    return
            except (subprocess.SubprocessError, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{what}: not ready within {timeout} s")

    def converge(self):
        """One run: apply on node 1, every client fetches the VIP until it answers; the
        seconds from the apply to each node's first success."""
        t0 = time.monotonic()
        self.ctl(1, "apply", "-f", SERVICE_YAML)
        vip = json.loads(self.ctl(1, "-o", "json", "service", "list").stdout)[0]["vip"]
        done = {}

        def client(i):
            while time.monotonic() - t0 < CONVERGE_TIMEOUT:
                if self.fetch(f"{PREFIX}-c{i}", vip):
                    done[i] = time.monotonic() - t0
                    return
                time.sleep(0.02)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(1, self.n + 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        missing = [i for i in range(1, self.n + 1) if i not in done]
        if missing:
            raise RuntimeError(f"nodes {missing} never reached the Service")
        self.ctl(1, "delete", "-f", SERVICE_YAML)
        for i in range(1, self.n + 1):
            self.wait(lambda i=i: json.loads(self.ctl(i, "-o", "json", "service", "list")
                                             .stdout) == [], f"node{i}: Service gone")
        return [done[i] for i in sorted(done)]

    def at_rest(self, seconds):
        """The daemons' CPU (sum, % of one core) and etcd's client traffic (bytes/s, both
        ways, from its own metrics) over `seconds` with nothing happening."""

        def cpu():
            tick = os.sysconf("SC_CLK_TCK")
            total = 0
            for p in self.daemons.values():
                with open(f"/proc/{p.pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            return total / tick

        def etcd_bytes():
            r = sh("ip", "netns", "exec", self.hub, "busybox", "wget", "-q", "-O", "-",
                   f"http://{ETCD}:2379/metrics")
            total = 0.0
            for line in r.stdout.splitlines():
                if line.startswith(("etcd_network_client_grpc_received_bytes_total",
                                    "etcd_network_client_grpc_sent_bytes_total")):
                    total += float(line.split()[-1])
            return total

        c0, b0, t0 = cpu(), etcd_bytes(), time.monotonic()
        time.sleep(seconds)
        c1, b1, t1 = cpu(), etcd_bytes(), time.monotonic()
        return {"daemon_cpu_percent": 100.0 * (c1 - c0) / (t1 - t0),
                "etcd_client_bytes_per_s": (b1 - b0) / (t1 - t0), "seconds": t1 - t0}

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(self.procs):
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        for ns in reversed(self.netns):
            pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                subprocess.run(["kill", "-KILL", pid], capture_output=True)
            sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)


def main():
    if os.geteuid() != 0:
        sys.exit("bench_cluster.py: must run as root (it creates network namespaces)")
    for tool in ("etcd", "etcdctl", "nginx", "busybox"):
        if shutil.which(tool) is None:
            sys.exit(f"bench_cluster.py: {tool} is missing: run `make deps`")
    results = {"runs": RUNS, "sizes": []}
    for n in SIZES:
        c = Cluster(n)
        try:
            t = time.monotonic()
            c.start()
            started = time.monotonic() - t
            runs = [c.converge() for _ in range(RUNS)]
            slowest = [max(r) for r in runs]
            median_node = [statistics.median(r) for r in runs]
            cell = {"nodes": n, "startup_seconds": started,
                    "converge_slowest_s": statistics.median(slowest),
                    "converge_median_node_s": statistics.median(median_node),
                    "runs_slowest_s": slowest}
            if n == max(SIZES):
                cell["at_rest"] = c.at_rest(REST)
            results["sizes"].append(cell)
            print(f"bench_cluster: {n} nodes: slowest node {cell['converge_slowest_s']:.3f} s, "
                  f"median node {cell['converge_median_node_s']:.3f} s (median of {RUNS})"
                  + (f"; at rest: daemons {cell['at_rest']['daemon_cpu_percent']:.1f} % CPU, "
                     f"etcd {cell['at_rest']['etcd_client_bytes_per_s']:.0f} B/s"
                     if "at_rest" in cell else ""), flush=True)
        finally:
            c.stop()
    results["machine"] = {"cpus": os.cpu_count(), "kernel": os.uname().release}
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "cluster.json"), "w") as f:
        json.dump(results, f, indent=2)
    lines = ["# Cluster convergence on the datastore", "",
             "Written by `scripts/bench_cluster.py` (`make bench`). From `apply -f service.yaml`",
             "on node 1 to the first successful fetch through the VIP from a pod on each node,",
             f"median of {RUNS} runs; every node's client polls at once (the load of 50",
             "pollers on 2 cores is part of the 50-node figure).", "",
             "| nodes | slowest node (s) | median node (s) | runs, slowest node (s) |",
             "|---|---|---|---|"]
    for c in results["sizes"]:
        lines.append(f"| {c['nodes']} | {c['converge_slowest_s']:.3f} | "
                     f"{c['converge_median_node_s']:.3f} | "
                     + ", ".join(f"{s:.3f}" for s in c["runs_slowest_s"]) + " |")
    for c in results["sizes"]:
        if "at_rest" in c:
            r = c["at_rest"]
            lines += ["", f"At rest with {c['nodes']} nodes over {r['seconds']:.0f} s: the "
                      f"daemons together {r['daemon_cpu_percent']:.2f} % of one core; etcd's "
                      f"client traffic {r['etcd_client_bytes_per_s']:.0f} bytes/s both ways."]
    with open(os.path.join(OUT, "cluster.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 3.5))
        xs = [c["nodes"] for c in results["sizes"]]
        ax.plot(xs, [c["converge_slowest_s"] for c in results["sizes"]], "o-", label="slowest node")
        ax.plot(xs, [c["converge_median_node_s"] for c in results["sizes"]], "s--",
                label="median node")
        ax.set_xlabel("nodes")
        ax.set_ylabel("apply -> first connection (s)")
        ax.set_title("Service convergence on the datastore")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(OUT, "cluster.png"), dpi=100)
    except ImportError:
        print("bench_cluster: no matplotlib, no plot", file=sys.stderr)


if __name__ == "__main__":
    main()
