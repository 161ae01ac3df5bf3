#!/usr/bin/env python3
"""New TCP connections per second for the vswitch bench (scripts/bench.py runs it in pods).

    bench_conn.py server IP PORT COUNT SECONDS   accept loop: read 1 byte, answer 1 byte, wait
                                                 for the client's FIN, close; stops after COUNT
                                                 connections or SECONDS; prints {"served": N}
    bench_conn.py client IP PORT COUNT SECONDS   COUNT sequential connections (at most SECONDS):
                                                 connect, send 1 byte, read the 1-byte answer,
                                                 close; prints one JSON object (conn/s, latency)

Both ends are bounded in connections and seconds; every socket call has a 1 s timeout, so a
connection that gets no answer costs at most about 1 s and is counted as failed.
"""
import json, math, socket, sys, time

TIMEOUT = 1.0


def server(ip, port, count, secs):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    s.listen(1024)
    s.settimeout(0.2)
    print("listening", file=sys.stderr, flush=True)
    served, end = 0, time.monotonic() + secs
    while served < count and time.monotonic() < end:
        try:
            c, _ = s.accept()
        except socket.timeout:
            continue
        c.settimeout(TIMEOUT)
        try:
            if c.recv(1):
                c.sendall(b"y")
                c.recv(1)  # the client's FIN: the client, not the server, keeps TIME_WAIT
        except OSError:
            pass
        c.close()
        served += 1
    s.close()
    print(json.dumps({"served": served}))


def pct(xs, p):
    return xs[max(0, math.ceil(p / 100.0 * len(xs)) - 1)] if xs else None


def client(ip, port, count, secs):
    ok, failed, errors, lat = 0, 0, {}, []
    t0 = time.perf_counter()
    end = t0 + secs
    while ok + failed < count and time.perf_counter() < end:
        a = time.perf_counter()
        c = socket.socket()
        c.settimeout(TIMEOUT)
        try:
            c.connect((ip, port))
            c.sendall(b"x")
            if c.recv(1) != b"y":
                raise OSError("no answer")
            ok += 1
            lat.append((time.perf_counter() - a) * 1e6)
        except OSError as e:
            failed += 1
            k = type(e).__name__ if not str(e) else str(e)[:60]
            errors[k] = errors.get(k, 0) + 1
        finally:
            c.close()
    el = time.perf_counter() - t0
    lat.sort()
    print(json.dumps({
        "ok": ok, "failed": failed, "errors": errors, "elapsed_s": round(el, 3),
        "conn_per_s": round(ok / el, 1) if el > 0 else None,
        "latency_us": {"p50": round(pct(lat, 50), 1), "p90": round(pct(lat, 90), 1),
                       "p99": round(pct(lat, 99), 1), "max": round(lat[-1], 1)} if lat
        else None}))


if __name__ == "__main__":
    if len(sys.argv) != 6 or sys.argv[1] not in ("server", "client"):
        sys.exit(__doc__)
    (server if sys.argv[1] == "server" else client)(
        sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
