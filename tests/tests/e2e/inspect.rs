//! What the operator sees inside the switch (issue 14), on the services testbed's shape:
//! `observe` (the flow log: a wget's connection through a Service VIP with its Service and
//! endpoint, a forged frame's drop with its reason, `--follow`), `trace` (the endpoint and DNAT
//! of a VIP, the peer and outer header of a pod on another node, the spoof guard's drop, and
//! nothing live moved), `conntrack list|flush` and `log-level` / `--log-format json`.

use crate::services::{add_service_everywhere, fetch, sorted_ips};
use std::thread;
use std::time::Duration;
use vswitch_e2e::{Node, NodeOpts, OutputExt, Pod, Testbed};

/// The flow records of `observe -o json ARGS` on `node`.
fn observed(node: &Node, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["observe", "--last", "1000"];
    all.extend(args);
    match node.ctl_json(&all) {
        serde_json::Value::Array(v) => v,
        other => panic!("observe -o json printed no array: {other}"),
    }
}

/// Issue 14, acceptance 4: `observe` shows a wget's connection through a Service VIP with its
/// Service and endpoint, a forged frame's drop with its reason, and `--follow` streams an
/// event that happens after it started.
#[test]
fn observe_shows_service_connections_drops_and_follows() {
    let Some(tb) = Testbed::new("observe_flows") else {
        return;
    };
    let node = tb.add_node(1, NodeOpts::default());
    let nginx = tb.add_pod(&node, "nginx-server", &[("app", "nginx")]);
    let _server = tb.start_nginx(&nginx);
    let client = tb.add_pod(&node, "busybox-client", &[]);
    node.ctl_ok(&[
        "service",
        "add",
        "web",
        "--vip",
        "198.19.96.20",
        "--port",
        "80",
        "--selector",
        "app=nginx",
    ]);
    fetch(&client, "http://198.19.96.20/");
    // Frames with forged sources from the client (a random MAC, a random address, ARP).
    let pktgen = tb.bin("vswitch-pktgen").display().to_string();
    let dst = format!("{}:0", nginx.ip);
    let args = [
        "attack",
        "forged",
        "--dst",
        &dst,
        "--count",
        "30",
        "--duration",
        "2",
    ];
    let out = client.exec_timeout(Duration::from_secs(10), &pktgen, &args);
    assert!(out.status.success(), "pktgen: {}", out.describe());

    let is_conn = |r: &serde_json::Value, since_ms: u64| {
        r["verdict"] == "forwarded"
            && r["service"]["name"] == "default/web"
            && r["service"]["vip"] == "198.19.96.20:80"
            && r["service"]["endpoint"] == format!("{}:80", nginx.ip).as_str()
            && r["service"]["endpoint_pod"]["name"] == "nginx-server"
            && r["source"]["pod"]["name"] == "busybox-client"
            && r["source"]["ip"] == client.ip.to_string().as_str()
            && r["protocol"] == "tcp"
            && r["tcp_flags"] == "SYN"
            && r["time_ms"].as_u64().is_some_and(|t| t >= since_ms)
    };
    let recs = vswitch_e2e::wait_for(
        "the connection and the drop in observe",
        Duration::from_secs(5),
        || {
            let recs = observed(&node, &[]);
            let conn = recs.iter().any(|r| is_conn(r, 0));
            let drop = recs.iter().any(|r| {
                r["verdict"] == "dropped"
                    && r["drop_reason"] == "spoofed_ip"
                    && r["source"]["ip"]
                        .as_str()
                        .is_some_and(|ip| ip != client.ip.to_string())
                    && r["destination"]["ip"] == nginx.ip.to_string().as_str()
                    && r["direction"] == "pod"
            });
            if conn && drop {
                Ok(recs)
            } else {
                Err(serde_json::to_string_pretty(&recs).unwrap_or_default())
            }
        },
    );
    println!("observe: {} events", recs.len());
    // The filters: by verdict, by pod, by address.
    let drops = observed(&node, &["--verdict", "dropped"]);
    assert!(!drops.is_empty() && drops.iter().all(|r| r["verdict"] == "dropped"));
    let nginx_flows = observed(&node, &["--pod", "default/nginx-server"]);
    assert!(
        nginx_flows.iter().any(|r| is_conn(r, 0)),
        "the endpoint's pod finds it"
    );
    let by_vip = observed(&node, &["--ip", "198.19.96.20", "--verdict", "forwarded"]);
    assert!(
        !by_vip.is_empty()
            && by_vip
                .iter()
                .all(|r| r["service"]["vip"] == "198.19.96.20:80")
    );
    // For people: one line per event.
    let text = node.ctl_ok(&["observe", "--verdict", "forwarded"]);
    println!("{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("FORWARDED") && l.contains("service default/web")),
        "{text}"
    );
    let text = node.ctl_ok(&["observe", "--verdict", "dropped"]);
    assert!(text.contains("DROPPED (spoofed_ip)"), "{text}");

    // --follow: only what happens after it started.
    let ctl = tb.bin("vswitchctl").display().to_string();
    let socket = node.socket.display().to_string();
    let follow = tb.spawn_in(
        &node.netns,
        "observe-follow",
        &ctl,
        &["--socket", &socket, "-o", "json", "observe", "--follow"],
    );
    thread::sleep(Duration::from_millis(500));
    assert!(
        follow.is_running(),
        "observe --follow ended: {}",
        follow.output()
    );
    assert_eq!(follow.output().trim(), "", "nothing before a new event");
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    fetch(&client, "http://198.19.96.20/");
    vswitch_e2e::wait_for(
        "the new connection streamed by --follow",
        Duration::from_secs(5),
        || {
            let text = follow.output();
            let streamed = text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .any(|r| is_conn(&r, since.saturating_sub(1000)));
            if streamed {
                Ok(())
            } else {
                Err(text)
            }
        },
    );
}

// ----- (f) UDP, and failover when the endpoint goes -------------------------------------------

/// `stats -o json` without the fields a trace could not have moved anyway; what must stay.
fn counters(node: &Node) -> serde_json::Value {
    let s = node.stats();
    serde_json::json!({ "drops": s["drops"], "ports": s["ports"], "peers": s["peers"],
                        "conntrack": s["conntrack"] })
}

/// The steps of a `trace -o json` of `stage`.
fn trace_steps<'a>(t: &'a serde_json::Value, stage: &str) -> Vec<&'a serde_json::Value> {
    t["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps: {t}"))
        .iter()
        .filter(|s| s["stage"] == stage)
        .collect()
}

#[test]
fn trace_conntrack_and_log_level() {
    let Some(tb) = Testbed::new("trace_conntrack_and_log_level") else {
        return;
    };
    // Node 2 (the client's) logs JSON lines.
    let n1 = tb.add_node(1, NodeOpts::default());
    let n2 = tb.add_node(2, NodeOpts::default().arg("--log-format").arg("json"));
    tb.mesh(&[&n1, &n2]);
    let web = [("app", "web")];
    let pods = [
        tb.add_pod(&n1, "web-a", &web),
        tb.add_pod(&n1, "web-b", &web),
    ];
    let _servers: Vec<_> = pods.iter().map(|p| tb.start_nginx(p)).collect();
    let client = tb.add_pod(&n2, "busybox-client", &[]);
    let refs: Vec<&Pod> = pods.iter().collect();
    let vip = "198.19.96.40";
    add_service_everywhere(&[&n1, &n2], &refs, "web", vip, &["80"], "app=web", &[]);
    let eps = sorted_ips(&refs);

    // One connection through the VIP: listed with its Service, then flushed.
    fetch(&client, &format!("http://{vip}/"));
    let list = n2.ctl_json(&["conntrack", "list"]);
    let conns = list.as_array().unwrap();
    assert_eq!(conns.len(), 1, "{list}");
    let c = &conns[0];
    assert_eq!(c["service"], "default/web", "{c}");
    assert_eq!(c["proto"], "tcp", "{c}");
    assert_eq!(c["vip"], format!("{vip}:80"), "{c}");
    assert!(
        c["client"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}:", client.ip)),
        "{c}"
    );
    let ep = c["endpoint"]
        .as_str()
        .unwrap()
        .trim_end_matches(":80")
        .to_string();
    assert!(eps.contains(&ep), "{c}");
    let table = n2.ctl_ok(&["conntrack", "list", "--service", "default/web"]);
    for col in [
        "PROTO",
        "ORIGINAL",
        "REPLY/ENDPOINT",
        "STATE",
        "TTL",
        "SERVICE",
        "default/web",
    ] {
        assert!(table.contains(col), "conntrack list lacks {col}:\n{table}");
    }
    let by_pod = n2.ctl_json(&["conntrack", "list", "--pod", "default/busybox-client"]);
    assert_eq!(by_pod.as_array().unwrap().len(), 1, "{by_pod}");
    let out = n2.ctl(&["conntrack", "list", "--service", "nope"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert_eq!(
        n2.ctl_ok(&["conntrack", "flush", "--service", "default/web"]),
        "1 connection removed\n"
    );
    assert_eq!(n2.ctl_json(&["conntrack", "list"]), serde_json::json!([]));

    // Traces change nothing: the counters and the conntrack table before and after.
    let before = counters(&n2);
    assert_eq!(before["conntrack"]["entries"], 0, "{before}");

    // To the VIP: the endpoint it would pick and the DNAT.
    let t = n2.ctl_json(&["trace", "busybox-client", "--dst", &format!("{vip}:80")]);
    let svc = trace_steps(&t, "services");
    let chosen = svc
        .iter()
        .find(|s| s["data"]["decision"] == "service")
        .unwrap_or_else(|| panic!("no endpoint chosen: {t}"));
    let endpoint = chosen["data"]["endpoint"].as_str().unwrap();
    assert!(
        eps.contains(&endpoint.trim_end_matches(":80").to_string()),
        "{t}"
    );
    assert_eq!(chosen["data"]["vip"], format!("{vip}:80"), "{t}");
    assert!(
        svc.iter().any(|s| s["data"]["decision"] == "dnat"
            && s["data"]["from"] == format!("{vip}:80")
            && s["data"]["to"] == endpoint),
        "no DNAT to {endpoint}: {t}"
    );
    assert_eq!(t["verdict"], "tunnel", "{t}");
    let text = n2.ctl_ok(&["trace", "busybox-client", "--dst", &format!("{vip}:80")]);
    assert!(text.contains(&format!("dnat: {vip}:80 -> ")), "{text}");
    assert!(
        text.lines().last().unwrap().starts_with("verdict: tunnel"),
        "{text}"
    );

    // To a pod on node 1: the peer and the outer header.
    let t = n2.ctl_json(&[
        "trace",
        "busybox-client",
        "--dst",
        &format!("{}:80", pods[0].ip),
    ]);
    let encap = trace_steps(&t, "tunnel_egress");
    let e = &encap
        .iter()
        .find(|s| s["data"]["decision"] == "encap")
        .unwrap_or_else(|| panic!("no encapsulation: {t}"))["data"];
    let n1_underlay = n1.show()["underlay"].as_str().unwrap().to_string();
    let n2_underlay = n2.show()["underlay"].as_str().unwrap().to_string();
    assert_eq!(e["outer_dst"], n1_underlay.as_str(), "{t}");
    assert_eq!(e["outer_src"], n2_underlay.as_str(), "{t}");
    assert_eq!(
        (e["udp_src"].as_u64(), e["udp_dst"].as_u64()),
        (Some(4789), Some(4789)),
        "{t}"
    );
    assert_eq!(e["vni"], 1, "{t}");
    assert_eq!(e["peer_node"], n1.name.as_str(), "{t}");
    assert_eq!(t["verdict"], "tunnel", "{t}");

    // A forged source: the spoof guard's drop.
    let t = n2.ctl_json(&[
        "trace",
        "busybox-client",
        "--dst",
        &pods[0].ip.to_string(),
        "--src",
        "198.18.2.250",
    ]);
    assert_eq!(
        (&t["verdict"], &t["drop_reason"]),
        (&"drop".into(), &"spoofed_ip".into()),
        "{t}"
    );
    assert_eq!(t["steps"][0]["stage"], "port_ingress", "{t}");
    let t = n2.ctl_json(&[
        "trace",
        "busybox-client",
        "--dst",
        &pods[0].ip.to_string(),
        "--src-mac",
        "0a:58:de:ad:be:ef",
    ]);
    assert_eq!(t["drop_reason"], "spoofed_mac", "{t}");
    let text = n2.ctl_ok(&[
        "trace",
        "busybox-client",
        "--dst",
        &pods[0].ip.to_string(),
        "--src",
        "198.18.2.250",
    ]);
    assert!(
        text.contains("verdict: drop: dropped: spoofed_ip"),
        "{text}"
    );

    let after = counters(&n2);
    assert_eq!(
        before, after,
        "a trace changed the counters or the conntrack table"
    );
    assert_eq!(n2.ctl_json(&["conntrack", "list"]), serde_json::json!([]));

    // The log level, at run time: debug, then back to info.
    let out = n2.ctl_ok(&["log-level", "debug"]);
    assert_eq!(out, "log level: debug (was info)\n");
    let out = n2.ctl_ok(&["log-level", "info"]);
    assert_eq!(out, "log level: info (was debug)\n");
    let out = n2.ctl(&["log-level", "loud"]);
    assert_eq!(out.status.code(), Some(2), "{}", out.describe());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`loud`"),
        "{}",
        out.describe()
    );
    // The daemon's own check, past the CLI's: a raw request.
    let sock = n2.socket.clone();
    let resp = vswitch_proto::client::call(
        &sock,
        &vswitch_proto::Request::LogLevel {
            level: "info,x=loud".into(),
        },
        Duration::from_secs(5),
    )
    .unwrap();
    let vswitch_proto::Response::Error(e) = resp else {
        panic!("accepted a bad level: {resp:?}")
    };
    assert_eq!(e.field.as_deref(), Some("level"), "{e:?}");
    assert!(e.message.contains("`info,x=loud`"), "{e:?}");

    // --log-format json: every line the daemon wrote is a JSON object, the level change too.
    let log = n2.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "log filter changed"
                && l["fields"]["level"] == "debug"),
        "{log}"
    );
}
