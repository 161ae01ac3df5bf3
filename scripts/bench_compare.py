#!/usr/bin/env python3
"""Compare two `results.json` files of scripts/bench.sh (a "before" and an "after" run).

    scripts/bench_compare.py BEFORE.json AFTER.json [LABEL_BEFORE LABEL_AFTER]

Prints a Markdown table: for each scenario and vswitchd datapath, the median of each metric in
both runs, after / before, and the ratio to the kernel measured in the same run (the number
that is comparable across runs on a shared machine). Reads only the two files.
"""

import json
import sys

METRICS = [
    ("tcp1_gbps", "TCP 1 stream, Gbit/s"),
    ("tcp4_gbps", "TCP 4 streams, Gbit/s"),
    ("rtt_p50_us", "RTT p50, us"),
    ("pps64_delivered", "64 B pps delivered"),
    ("pps1400_delivered", "1400 B pps delivered"),
    ("vswitchd_cpu_s_per_gbit", "vswitchd CPU s/Gbit"),
    ("vip_tcp1_gbps", "VIP TCP 1 stream, Gbit/s"),
    ("conn_vip_per_s", "VIP new conn/s"),
]


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float) and abs(v) < 1000:
        return f"{v:.4g}"
    return f"{v:,.0f}" if isinstance(v, (int, float)) else str(v)


def main():
    if len(sys.argv) not in (3, 5):
        sys.exit(__doc__)
    before, after = (json.load(open(p)) for p in sys.argv[1:3])
    lb, la = sys.argv[3:5] if len(sys.argv) == 5 else ("before", "after")
    print(f"| scenario | datapath | metric | {lb} | {la} | {la}/{lb} | "
          f"÷ kernel {lb} | ÷ kernel {la} |")
    print("|---|---|---|---|---|---|---|---|")
    for scen, dps in after["scenarios"].items():
        for dp, cell in dps.items():
            if dp == "kernel" or not cell.get("available"):
                continue
            bcell = before["scenarios"].get(scen, {}).get(dp, {})
            for key, name in METRICS:
                a = cell.get("median", {}).get(key)
                b = bcell.get("median", {}).get(key)
                if a is None and b is None:
                    continue
                rel = f"{a / b:.2f}" if a is not None and b else "-"
                kb = bcell.get("ratio_to_kernel", {}).get(key)
                ka = cell.get("ratio_to_kernel", {}).get(key)
                print(f"| {scen} | {dp} | {name} | {fmt(b)} | {fmt(a)} | {rel} | "
                      f"{fmt(kb)} | {fmt(ka)} |")


if __name__ == "__main__":
    main()
