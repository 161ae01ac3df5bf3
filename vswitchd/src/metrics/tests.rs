//! A node's numbers in, the Prometheus text out: the families, labels and values a
//! dashboard queries (no root, no sockets).

use super::*;
use vswitch_datapath::{Counters, Direction, DropReason};

fn link(rx: u64, tx: u64) -> LinkStats {
    LinkStats {
        rx_packets: rx,
        rx_bytes: rx * 100,
        tx_packets: tx,
        tx_bytes: tx * 100,
        rx_dropped: 1,
    }
}

fn snapshot() -> Snapshot {
    let drops = Counters::default();
    for _ in 0..3 {
        drops.count_drop(DropReason::SpoofedIp, Direction::FromPod);
    }
    drops.count_drop(DropReason::TxError, Direction::Egress);
    Snapshot {
        node: "node1".into(),
        version: "0.1.0".into(),
        datapath: "epoll".into(),
        ports: vec![PortMetrics {
            name: "web".into(),
            namespace: "default".into(),
            link: link(10, 20),
        }],
        peers: vec![PeerMetrics {
            node: "node2".into(),
            link: link(5, 6),
        }],
        drops: drops.snapshot_by_direction(),
        conntrack_entries: 7,
        conntrack_max: 65536,
        conntrack_evicted: 2,
        services: vec![ServiceMetrics {
            name: "nginx-service".into(),
            namespace: "default".into(),
            endpoints: 2,
        }],
        ports_lost: 0,
        datastore: None,
    }
}

fn render(s: Snapshot, latency: &ControlLatency) -> String {
    Metrics::new(move || s.clone(), latency, &EngineBatches::default())
        .render()
        .unwrap()
}

fn assert_has(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "missing line `{line}` in:\n{text}"
    );
}

#[test]
fn a_node_state_encodes_to_the_expected_families() {
    let text = render(snapshot(), &ControlLatency::default());
    for line in [
        "# TYPE vswitch_drop_count_total counter",
        r#"vswitch_drop_count_total{reason="spoofed_ip",direction="from_pod"} 3"#,
        r#"vswitch_drop_count_total{reason="spoofed_ip",direction="from_tunnel"} 0"#,
        r#"vswitch_drop_count_total{reason="tx_error",direction="egress"} 1"#,
        "# TYPE vswitch_port_bytes_total counter",
        r#"vswitch_port_bytes_total{namespace="default",port="web",direction="rx"} 1000"#,
        r#"vswitch_port_bytes_total{namespace="default",port="web",direction="tx"} 2000"#,
        r#"vswitch_port_packets_total{namespace="default",port="web",direction="tx"} 20"#,
        r#"vswitch_port_rx_dropped_total{namespace="default",port="web"} 1"#,
        r#"vswitch_peer_packets_total{peer="node2",direction="rx"} 5"#,
        r#"vswitch_peer_bytes_total{peer="node2",direction="tx"} 600"#,
        "# TYPE vswitch_conntrack_entries gauge",
        "vswitch_conntrack_entries 7",
        "vswitch_conntrack_limit 65536",
        "vswitch_conntrack_evictions_total 2",
        "vswitch_ports 1",
        "vswitch_peers 1",
        "vswitch_services 1",
        r#"vswitch_service_endpoints{namespace="default",service="nginx-service"} 2"#,
        r#"vswitch_node_info{node="node1",version="0.1.0",datapath="epoll"} 1"#,
    ] {
        assert_has(&text, line);
    }
    // Every reason and direction, zero or not, named as `vswitchctl stats` names them.
    let drop_lines = text
        .lines()
        .filter(|l| l.starts_with("vswitch_drop_count_total{"))
        .count();
    assert_eq!(drop_lines, DropReason::ALL.len() * Direction::ALL.len());
    for r in DropReason::ALL {
        assert!(
            text.contains(&format!(r#"{{reason="{}","#, r.name())),
            "{}",
            r.name()
        );
    }
    // No datastore: no datastore families.
    assert!(!text.contains("vswitch_datastore"), "{text}");
    // Every sample is ours and every family has help and type.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(l.starts_with("vswitch_"), "{l}");
    }
    assert_eq!(
        text.lines().filter(|l| l.starts_with("# HELP ")).count(),
        text.lines().filter(|l| l.starts_with("# TYPE ")).count()
    );
}

#[test]
fn the_datastore_state_and_control_latency_are_exported() {
    let mut s = snapshot();
    s.datastore = Some(DatastoreMetrics {
        connected: true,
        revision: 42,
        skipped: 1,
    });
    let latency = ControlLatency::default();
    latency.observe("port_add", Duration::from_millis(3));
    latency.observe("port_add", Duration::from_millis(30));
    let text = render(s.clone(), &latency);
    for line in [
        "vswitch_datastore_connected 1",
        "vswitch_datastore_revision 42",
        "vswitch_datastore_skipped_leases_total 1",
        "# TYPE vswitch_control_request_duration_seconds histogram",
        r#"vswitch_control_request_duration_seconds_count{op="port_add"} 2"#,
        r#"vswitch_control_request_duration_seconds_bucket{op="port_add",le="0.0064"} 1"#,
        r#"vswitch_control_request_duration_seconds_bucket{op="port_add",le="+Inf"} 2"#,
    ] {
        assert_has(&text, line);
    }
    s.datastore.as_mut().unwrap().connected = false;
    assert_has(&render(s, &latency), "vswitch_datastore_connected 0");
}

#[test]
fn scrapes_read_the_source_each_time() {
    let n = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let m = {
        let n = n.clone();
        Metrics::new(
            move || Snapshot {
                conntrack_entries: n.load(std::sync::atomic::Ordering::Relaxed),
                ..Snapshot::default()
            },
            &ControlLatency::default(),
            &EngineBatches::default(),
        )
    };
    assert_has(&m.render().unwrap(), "vswitch_conntrack_entries 0");
    n.store(5, std::sync::atomic::Ordering::Relaxed);
    assert_has(&m.render().unwrap(), "vswitch_conntrack_entries 5");
}

#[test]
fn engine_batch_sizes_are_a_histogram_per_worker() {
    let batches = EngineBatches::default();
    let w0 = batches.worker(0);
    for n in [1.0, 3.0, 64.0] {
        w0.observe(n);
    }
    batches.worker(1).observe(200.0);
    let text = Metrics::new(Snapshot::default, &ControlLatency::default(), &batches)
        .render()
        .unwrap();
    assert_has(&text, "# TYPE vswitch_engine_batch_frames histogram");
    assert_has(&text, r#"vswitch_engine_batch_frames_count{worker="0"} 3"#);
    assert_has(&text, r#"vswitch_engine_batch_frames_sum{worker="0"} 68.0"#);
    assert_has(
        &text,
        r#"vswitch_engine_batch_frames_bucket{worker="0",le="4"} 2"#,
    );
    assert_has(&text, r#"vswitch_engine_batch_frames_count{worker="1"} 1"#);
}
