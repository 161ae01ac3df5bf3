//! Rendering of daemon answers: pure functions from proto values to the text printed on stdout.
//!
//! - `table` (default): kubectl-style columns, UPPERCASE headers, values left-aligned, two spaces
//!   between columns, the last column not padded. An empty listing prints the header alone.
//! - `wide`: the same with more columns (`port list`) or every counter (`stats`).
//! - `json`: the response data as pretty JSON with the proto field names; listings are arrays.
//!
//! Every rendered string ends with a newline.

use std::fmt::Write as _;
use vswitch_proto::{
    ClusterNode, NodeInfo, PeerInfo, PortInfo, PortKey, ServiceInfo, ServiceKey, ServicePortInfo,
    StatsReport,
};

/// The `-o` formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// Aligned columns with more detail.
    Wide,
    /// Pretty JSON with the protocol's field names.
    Json,
}

/// Aligns `rows` under `headers`: two spaces between columns, no trailing spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < row.len() {
                let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub(crate) fn pretty(v: serde_json::Result<String>) -> String {
    let mut s = v.expect("proto types always serialize");
    s.push('\n');
    s
}

pub(crate) fn labels(l: &std::collections::BTreeMap<String, String>) -> String {
    if l.is_empty() {
        return "<none>".to_string();
    }
    let parts: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join(",")
}

const PORT_HEADERS: [&str; 6] = ["NAME", "NAMESPACE", "IP", "MAC", "NODE", "STATUS"];
const PORT_WIDE_HEADERS: [&str; 12] = [
    "NAME",
    "NAMESPACE",
    "IP",
    "MAC",
    "NODE",
    "STATUS",
    "NETNS",
    "IFNAME",
    "GATEWAY",
    "MTU",
    "RUNTIME-NAME",
    "LABELS",
];

/// The name the container runtime gave a port when it is not the port's own (`Web_1` for
/// port `web-1-24b9b594`), as `NAMESPACE/NAME` when the namespace was mapped too;
/// `<none>` for the kubelet's pods and `port add`.
fn runtime_name(p: &PortInfo) -> String {
    match (&p.runtime_namespace, &p.runtime_name) {
        (None, None) => "<none>".to_string(),
        (None, Some(n)) => n.clone(),
        (Some(ns), n) => format!("{ns}/{}", n.as_ref().unwrap_or(&p.name)),
    }
}

fn port_row(p: &PortInfo, wide: bool) -> Vec<String> {
    let mut row = vec![
        p.name.clone(),
        p.namespace.clone(),
        p.ip.clone(),
        p.mac.clone(),
        p.node.clone(),
        p.status.to_string(),
    ];
    if wide {
        row.extend([
            p.netns.clone(),
            p.ifname.clone(),
            p.gateway.clone(),
            p.mtu.to_string(),
            runtime_name(p),
            labels(&p.labels),
        ]);
    }
    row
}

/// `port list`.
pub fn ports(ports: &[PortInfo], f: Format) -> String {
    match f {
        Format::Json => pretty(serde_json::to_string_pretty(ports)),
        Format::Table => table(
            &PORT_HEADERS,
            &ports.iter().map(|p| port_row(p, false)).collect::<Vec<_>>(),
        ),
        Format::Wide => table(
            &PORT_WIDE_HEADERS,
            &ports.iter().map(|p| port_row(p, true)).collect::<Vec<_>>(),
        ),
    }
}

/// `port add`: a one-line confirmation, or the new port as a one-row wide listing / JSON object.
pub fn port_added(p: &PortInfo, f: Format) -> String {
    match f {
        Format::Json => pretty(serde_json::to_string_pretty(p)),
        Format::Wide => ports(std::slice::from_ref(p), Format::Wide),
        Format::Table => format!(
            "port {}/{} added: {}/{} {}\n",
            p.namespace, p.name, p.ip, p.prefix_len, p.mac
        ),
    }
}

/// `port del`.
pub fn port_deleted(k: &PortKey, f: Format) -> String {
    match f {
        Format::Json => pretty(serde_json::to_string_pretty(&serde_json::json!({
            "name": k.name, "namespace": k.namespace, "deleted": true
        }))),
        _ => format!("port {}/{} deleted\n", k.namespace, k.name),
    }
}

const PEER_HEADERS: [&str; 9] = [
    "NODE", "UNDERLAY", "POD-CIDR", "VTEP-MAC", "TX-PKTS", "TX-BYTES", "RX-PKTS", "RX-BYTES",
    "SOURCE",
];

fn peer_row(p: &PeerInfo) -> Vec<String> {
    vec![
        p.node.clone(),
        p.underlay.clone(),
        p.pod_cidr.clone(),
        p.vtep_mac.clone(),
        p.tx_packets.to_string(),
        p.tx_bytes.to_string(),
        p.rx_packets.to_string(),
        p.rx_bytes.to_string(),
        p.source.as_str().to_string(),
    ]
}

/// `peer list` (`wide` is the same as `table`).
pub fn peers(peers: &[PeerInfo], f: Format) -> String {
    match f {
        Format::Json => pretty(serde_json::to_string_pretty(peers)),
        _ => table(
            &PEER_HEADERS,
            &peers.iter().map(peer_row).collect::<Vec<_>>(),
        ),
    }
}

/// `peer add`.
pub fn peer_added(p: &PeerInfo, f: Format) -> String {
    match f {
        Format::Json => pretty(serde_json::to_string_pretty(p)),
        Format::Wide => peers(std::slice::from_ref(p), Format::Wide),
        Format::Table => format!(
            "peer {} added: underlay {} pod-cidr {} vtep-mac {}\n",
            p.node, p.underlay, p.pod_cidr, p.vtep_mac
        ),
    }
}

/// `peer del`.
pub fn peer_deleted(node: &str, f: Format) -> String {
    match f {
        Format::Json => pretty(serde_json::to_string_pretty(&serde_json::json!({
            "node": node, "deleted": true
        }))),
        _ => format!("peer {node} deleted\n"),
    }
}

const SERVICE_HEADERS: [&str; 5] = ["NAME", "NAMESPACE", "VIP", "PORTS", "ENDPOINTS"];
const SERVICE_WIDE_HEADERS: [&str; 8] = [
    "NAME",
    "NAMESPACE",
    "VIP",
    "PORTS",
    "ENDPOINTS",
    "SELECTOR",
    "AFFINITY",
    "DNS",
];

/// One service port as `[NAME:]PORT[->TARGETPORT]/PROTO`, e.g. `80/TCP`, `http:80->8080/TCP`.
pub fn service_port(p: &ServicePortInfo) -> String {
    let mut s = String::new();
    if !p.name.is_empty() {
        let _ = write!(s, "{}:", p.name);
    }
    let _ = write!(s, "{}", p.port);
    if p.target_port != p.port {
        let _ = write!(s, "->{}", p.target_port);
    }
    let _ = write!(s, "/{}", p.protocol.to_ascii_uppercase());
    s
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "<none>".to_string()
    } else {
        items.join(",")
    }
}

fn service_row(s: &ServiceInfo, wide: bool) -> Vec<String> {
    let ports: Vec<String> = s.ports.iter().map(service_port).collect();
    let mut row = vec![
        s.name.clone(),
        s.namespace.clone(),
        s.vip.clone(),
        list_or_none(&ports),
        list_or_none(&s.endpoints),
    ];
    if wide {
        row.extend([
            labels(&s.selector),
            match s.affinity_seconds {
                Some(t) => format!("ClientIP:{t}s"),
                None => "None".to_string(),
            },
            list_or_none(&s.dns_names),
        ]);
    }
    row
}

/// `service list`.
pub fn services(services: &[ServiceInfo], f: Format) -> String {
    match f {
        Format::Json => pretty(serde_json::to_string_pretty(services)),
        Format::Table => table(
            &SERVICE_HEADERS,
            &services
                .iter()
                .map(|s| service_row(s, false))
                .collect::<Vec<_>>(),
        ),
        Format::Wide => table(
            &SERVICE_WIDE_HEADERS,
            &services
                .iter()
                .map(|s| service_row(s, true))
                .collect::<Vec<_>>(),
        ),
    }
}

/// `service add`: a one-line confirmation, or the new service as a one-row wide listing /
/// JSON object.
pub fn service_added(s: &ServiceInfo, f: Format) -> String {
    match f {
        Format::Json => pretty(serde_json::to_string_pretty(s)),
        Format::Wide => services(std::slice::from_ref(s), Format::Wide),
        Format::Table => {
            let ports: Vec<String> = s.ports.iter().map(service_port).collect();
            format!(
                "service {}/{} added: vip {} ports {} endpoints {}\n",
                s.namespace,
                s.name,
                s.vip,
                list_or_none(&ports),
                list_or_none(&s.endpoints)
            )
        }
    }
}

/// `service del`.
pub fn service_deleted(k: &ServiceKey, f: Format) -> String {
    match f {
        Format::Json => pretty(serde_json::to_string_pretty(&serde_json::json!({
            "name": k.name, "namespace": k.namespace, "deleted": true
        }))),
        _ => format!("service {}/{} deleted\n", k.namespace, k.name),
    }
}

/// The wall clock in Unix seconds (for ages).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An age like kubectl prints it: `45s`, `12m`, `5h`, `3d`; `<unknown>` without a start.
pub fn age(started_at: Option<u64>, now: u64) -> String {
    let Some(t) = started_at else {
        return "<unknown>".to_string();
    };
    let s = now.saturating_sub(t);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

const NODE_HEADERS: [&str; 6] = ["NAME", "SUBNET", "UNDERLAY", "VTEP-MAC", "STATUS", "AGE"];

/// `node list`, like `kubectl get nodes` (`wide` is the same as `table`); `now` is the wall
/// clock in Unix seconds.
pub fn nodes(nodes: &[ClusterNode], now: u64, f: Format) -> String {
    match f {
        Format::Json => pretty(serde_json::to_string_pretty(nodes)),
        _ => table(
            &NODE_HEADERS,
            &nodes
                .iter()
                .map(|n| {
                    vec![
                        n.name.clone(),
                        n.subnet.clone(),
                        n.underlay.clone(),
                        n.vtep_mac.clone(),
                        n.status.clone(),
                        age(n.started_at, now),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    }
}

/// `node show`: aligned `key: value` lines, or JSON.
pub fn node(n: &NodeInfo, f: Format) -> String {
    if f == Format::Json {
        return pretty(serde_json::to_string_pretty(n));
    }
    let or_none = |s: &str| {
        if s.is_empty() {
            "<none>".to_string()
        } else {
            s.to_string()
        }
    };
    let fields: [(&str, String); 17] = [
        ("node", n.node.clone()),
        ("pod_cidr", n.pod_cidr.clone()),
        ("gateway", n.gateway.clone()),
        ("router_mac", n.router_mac.clone()),
        ("vtep_ip", n.vtep_ip.clone()),
        ("vtep_mac", n.vtep_mac.clone()),
        (
            "underlay",
            n.underlay.clone().unwrap_or_else(|| "<none>".into()),
        ),
        ("vxlan_port", n.vxlan_port.to_string()),
        ("vni", n.vni.to_string()),
        ("pod_mtu", n.pod_mtu.to_string()),
        ("datapath", n.datapath.clone()),
        ("ports", n.ports.to_string()),
        ("peers", n.peers.to_string()),
        ("service_cidr", or_none(&n.service_cidr)),
        ("dns_ip", or_none(&n.dns_ip)),
        ("cluster_domain", or_none(&n.cluster_domain)),
        ("version", n.version.clone()),
    ];
    let mut fields = fields.to_vec();
    if let Some(d) = &n.datastore {
        fields.extend([
            ("datastore", d.endpoints.join(",")),
            ("datastore_prefix", d.prefix.clone()),
            (
                "datastore_state",
                if d.connected {
                    "connected"
                } else {
                    "disconnected"
                }
                .to_string(),
            ),
            ("datastore_revision", d.revision.to_string()),
            (
                "datastore_last_sync",
                d.last_sync.map_or("<never>".to_string(), |t| {
                    format!("{} ago", age(Some(t), unix_now()))
                }),
            ),
            ("datastore_skipped", d.skipped.to_string()),
        ]);
    }
    let width = fields.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in fields {
        let _ = writeln!(out, "{:<width$}  {v}", format!("{k}:"));
    }
    out
}

/// `stats`: drop counters (nonzero only, unless `wide`), the count of lost ports (nonzero
/// only, unless `wide`), a blank line, per-port counters, a blank line and the conntrack
/// table's size and evictions.
pub fn stats(s: &StatsReport, f: Format) -> String {
    if f == Format::Json {
        return pretty(serde_json::to_string_pretty(s));
    }
    let drops: Vec<Vec<String>> = s
        .drops
        .iter()
        .filter(|(_, &n)| n != 0 || f == Format::Wide)
        .map(|(reason, n)| vec![reason.clone(), n.to_string()])
        .collect();
    let ports: Vec<Vec<String>> = s
        .ports
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.namespace.clone(),
                p.rx_packets.to_string(),
                p.rx_bytes.to_string(),
                p.tx_packets.to_string(),
                p.tx_bytes.to_string(),
                p.rx_dropped.to_string(),
            ]
        })
        .collect();
    let mut out = table(&["REASON", "COUNT"], &drops);
    if s.ports_lost != 0 || f == Format::Wide {
        let _ = writeln!(
            out,
            "\nports lost (TAP gone without port del): {}",
            s.ports_lost
        );
    }
    out.push('\n');
    out.push_str(&table(
        &[
            "NAME",
            "NAMESPACE",
            "RX-PKTS",
            "RX-BYTES",
            "TX-PKTS",
            "TX-BYTES",
            "RX-DROPPED",
        ],
        &ports,
    ));
    let ct = &s.conntrack;
    let _ = write!(
        out,
        "\nconntrack: {} of {} entries, {} evicted\n",
        ct.entries, ct.max, ct.evicted
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vswitch_proto::{PortStats, PortStatus};

    fn sample_ports() -> Vec<PortInfo> {
        vec![
            PortInfo {
                name: "nginx-server".into(),
                namespace: "default".into(),
                ip: "198.18.1.2".into(),
                prefix_len: 24,
                mac: "0a:58:c6:12:01:02".into(),
                node: "node1".into(),
                status: PortStatus::Running,
                netns: "/var/run/netns/nginx".into(),
                ifname: "eth0".into(),
                gateway: "198.18.1.1".into(),
                mtu: 1450,
                labels: [("app".to_string(), "nginx".to_string())].into(),
                container_id: None,
                runtime_name: None,
                runtime_namespace: None,
                dns: None,
            },
            PortInfo {
                name: "bb".into(),
                namespace: "kube-system".into(),
                ip: "198.18.1.10".into(),
                prefix_len: 24,
                mac: "0a:58:c6:12:01:0a".into(),
                node: "node1".into(),
                status: PortStatus::Detached,
                netns: "bb".into(),
                ifname: "eth0".into(),
                gateway: "198.18.1.1".into(),
                mtu: 1450,
                labels: Default::default(),
                container_id: None,
                runtime_name: None,
                runtime_namespace: None,
                dns: None,
            },
        ]
    }

    #[test]
    fn table_aligns_with_two_spaces_and_no_trailing_blanks() {
        let got = table(
            &["A", "LONGER", "C"],
            &[
                vec!["xxxx".into(), "y".into(), "z".into()],
                vec!["".into(), "yy".into(), "".into()],
            ],
        );
        assert_eq!(got, "A     LONGER  C\nxxxx  y       z\n      yy\n");
        assert_eq!(table(&["ONLY"], &[]), "ONLY\n");
    }

    #[test]
    fn port_list_table() {
        let want = "\
NAME          NAMESPACE    IP           MAC                NODE   STATUS
nginx-server  default      198.18.1.2   0a:58:c6:12:01:02  node1  Running
bb            kube-system  198.18.1.10  0a:58:c6:12:01:0a  node1  Detached
";
        assert_eq!(ports(&sample_ports(), Format::Table), want);
    }

    #[test]
    fn port_list_wide() {
        let want = "\
NAME          NAMESPACE    IP           MAC                NODE   STATUS    NETNS                 IFNAME  GATEWAY     MTU   RUNTIME-NAME  LABELS
nginx-server  default      198.18.1.2   0a:58:c6:12:01:02  node1  Running   /var/run/netns/nginx  eth0    198.18.1.1  1450  <none>        app=nginx
bb            kube-system  198.18.1.10  0a:58:c6:12:01:0a  node1  Detached  bb                    eth0    198.18.1.1  1450  <none>        <none>
";
        assert_eq!(ports(&sample_ports(), Format::Wide), want);
    }

    /// A podman container's port: the table shows the port name, the wide listing and JSON
    /// the name the runtime gave too.
    #[test]
    fn port_list_shows_the_runtime_name() {
        let mut p = sample_ports()[0].clone();
        p.name = "web-1-24b9b594".into();
        p.container_id = Some("4f1bf1b0f7ad".into());
        p.runtime_name = Some("Web_1".into());
        let wide = ports(std::slice::from_ref(&p), Format::Wide);
        assert!(wide.lines().nth(1).unwrap().contains("  Web_1  "), "{wide}");
        assert!(wide.starts_with("NAME            "), "{wide}");
        let table = ports(std::slice::from_ref(&p), Format::Table);
        assert!(
            table.contains("web-1-24b9b594") && !table.contains("Web_1"),
            "{table}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&ports(std::slice::from_ref(&p), Format::Json)).unwrap();
        assert_eq!(json[0]["runtime_name"], "Web_1");
        assert_eq!(json[0]["name"], "web-1-24b9b594");
        assert!(json[0].get("runtime_namespace").is_none(), "{json}");
        p.runtime_namespace = Some("Team_A".into());
        assert_eq!(runtime_name(&p), "Team_A/Web_1");
        p.runtime_name = None;
        assert_eq!(runtime_name(&p), "Team_A/web-1-24b9b594");
    }

    #[test]
    fn port_list_json() {
        let p = &sample_ports()[..1];
        let want = r#"[
  {
    "name": "nginx-server",
    "namespace": "default",
    "ip": "198.18.1.2",
    "prefix_len": 24,
    "mac": "0a:58:c6:12:01:02",
    "node": "node1",
    "status": "Running",
    "netns": "/var/run/netns/nginx",
    "ifname": "eth0",
    "gateway": "198.18.1.1",
    "mtu": 1450,
    "labels": {
      "app": "nginx"
    }
  }
]
"#;
        assert_eq!(ports(p, Format::Json), want);
        assert_eq!(ports(&[], Format::Json), "[]\n");
        let back: Vec<PortInfo> =
            serde_json::from_str(&ports(&sample_ports(), Format::Json)).unwrap();
        assert_eq!(back, sample_ports());
    }

    #[test]
    fn empty_port_list_is_a_header() {
        assert_eq!(
            ports(&[], Format::Table),
            "NAME  NAMESPACE  IP  MAC  NODE  STATUS\n"
        );
    }

    #[test]
    fn port_add_and_del_messages() {
        let p = &sample_ports()[0];
        assert_eq!(
            port_added(p, Format::Table),
            "port default/nginx-server added: 198.18.1.2/24 0a:58:c6:12:01:02\n"
        );
        assert_eq!(port_added(p, Format::Wide).lines().count(), 2);
        let v: serde_json::Value = serde_json::from_str(&port_added(p, Format::Json)).unwrap();
        assert_eq!(v["ip"], "198.18.1.2");
        let k = PortKey {
            name: "x".into(),
            namespace: "default".into(),
        };
        assert_eq!(port_deleted(&k, Format::Table), "port default/x deleted\n");
        let v: serde_json::Value = serde_json::from_str(&port_deleted(&k, Format::Json)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"name":"x","namespace":"default","deleted":true})
        );
    }

    fn sample_peer() -> PeerInfo {
        PeerInfo {
            node: "node2".into(),
            underlay: "192.168.56.12".into(),
            pod_cidr: "198.18.2.0/24".into(),
            vtep_mac: "0a:58:c6:12:02:00".into(),
            tx_packets: 12,
            tx_bytes: 3456,
            rx_packets: 7,
            rx_bytes: 890,
            source: vswitch_proto::PeerSource::Manual,
        }
    }

    #[test]
    fn peer_list_table_and_json() {
        let want = "\
NODE   UNDERLAY       POD-CIDR       VTEP-MAC           TX-PKTS  TX-BYTES  RX-PKTS  RX-BYTES  SOURCE
node2  192.168.56.12  198.18.2.0/24  0a:58:c6:12:02:00  12       3456      7        890       manual
";
        assert_eq!(peers(&[sample_peer()], Format::Table), want);
        let v: serde_json::Value =
            serde_json::from_str(&peers(&[sample_peer()], Format::Json)).unwrap();
        assert_eq!(v[0]["pod_cidr"], "198.18.2.0/24");
        assert_eq!(v[0]["tx_bytes"], 3456);
        assert_eq!(v[0]["source"], "manual");
        assert_eq!(peer_deleted("node2", Format::Table), "peer node2 deleted\n");
        assert_eq!(
            peer_added(&sample_peer(), Format::Table),
            "peer node2 added: underlay 192.168.56.12 pod-cidr 198.18.2.0/24 vtep-mac 0a:58:c6:12:02:00\n"
        );
    }

    #[test]
    fn node_show_is_aligned_key_value_lines() {
        let n = NodeInfo {
            node: "node1".into(),
            pod_cidr: "198.18.1.0/24".into(),
            gateway: "198.18.1.1".into(),
            router_mac: "0a:58:c6:12:01:01".into(),
            vtep_ip: "198.18.1.0".into(),
            vtep_mac: "0a:58:c6:12:01:00".into(),
            underlay: None,
            vxlan_port: 4789,
            vni: 1,
            pod_mtu: 1450,
            datapath: "epoll".into(),
            ports: 2,
            peers: 1,
            version: "0.1.0".into(),
            service_cidr: "198.19.96.0/20".into(),
            dns_ip: "198.19.96.10".into(),
            cluster_domain: "cluster.local".into(),
            datastore: None,
        };
        let got = node(&n, Format::Table);
        assert!(got.starts_with("node:            node1\npod_cidr:        198.18.1.0/24\n"));
        assert!(got.contains("\nunderlay:        <none>\n"));
        assert!(got.contains("\nvxlan_port:      4789\n"));
        assert!(got.contains("\ndns_ip:          198.19.96.10\n"));
        assert_eq!(got.lines().count(), 17);
        let v: serde_json::Value = serde_json::from_str(&node(&n, Format::Json)).unwrap();
        assert_eq!(v["underlay"], serde_json::Value::Null);
        assert_eq!(v["vni"], 1);
    }

    #[test]
    fn node_show_reports_the_datastore_and_old_answers_still_parse() {
        let mut n: NodeInfo = serde_json::from_str(
            r#"{"node":"n1","pod_cidr":"198.18.1.0/24","gateway":"198.18.1.1",
            "router_mac":"0a:58:c6:12:01:01","vtep_ip":"198.18.1.0","vtep_mac":"0a:58:c6:12:01:00",
            "underlay":null,"vxlan_port":4789,"vni":1,"pod_mtu":1450,"datapath":"epoll",
            "ports":0,"peers":0,"version":"0.1.0"}"#,
        )
        .unwrap();
        assert_eq!(n.datastore, None);
        assert!(!node(&n, Format::Table).contains("datastore"));
        n.datastore = Some(vswitch_proto::DatastoreStatus {
            endpoints: vec!["http://198.19.0.254:2379".into()],
            prefix: "/coreos.com/network".into(),
            connected: true,
            revision: 42,
            last_sync: None,
            skipped: 3,
        });
        let got = node(&n, Format::Table);
        assert!(
            got.contains("\ndatastore:            http://198.19.0.254:2379\n"),
            "{got}"
        );
        assert!(got.contains("\ndatastore_state:      connected\n"), "{got}");
        assert!(got.contains("\ndatastore_revision:   42\n"), "{got}");
        assert!(got.contains("\ndatastore_last_sync:  <never>\n"), "{got}");
        assert!(got.contains("\ndatastore_skipped:    3\n"), "{got}");
        // A peer from an older daemon has no source: manual.
        let p: PeerInfo = serde_json::from_str(
            r#"{"node":"n2","underlay":"198.19.0.2","pod_cidr":"198.18.2.0/24",
            "vtep_mac":"0a:58:c6:12:02:00","tx_packets":0,"tx_bytes":0,"rx_packets":0,"rx_bytes":0}"#,
        )
        .unwrap();
        assert_eq!(p.source, vswitch_proto::PeerSource::Manual);
    }

    #[test]
    fn node_list_is_like_kubectl_get_nodes() {
        let ns = vec![
            ClusterNode {
                name: "node1".into(),
                subnet: "198.18.1.0/24".into(),
                underlay: "198.19.0.1".into(),
                vtep_mac: "0a:58:c6:12:01:00".into(),
                status: "Ready".into(),
                started_at: Some(1_000),
            },
            ClusterNode {
                name: "198.18.2.0-24".into(),
                subnet: "198.18.2.0/24".into(),
                underlay: "198.19.0.2".into(),
                vtep_mac: "0a:58:c6:12:02:00".into(),
                status: "NotReady".into(),
                started_at: None,
            },
        ];
        let want = "\
NAME           SUBNET         UNDERLAY    VTEP-MAC           STATUS    AGE
node1          198.18.1.0/24  198.19.0.1  0a:58:c6:12:01:00  Ready     3m
198.18.2.0-24  198.18.2.0/24  198.19.0.2  0a:58:c6:12:02:00  NotReady  <unknown>
";
        assert_eq!(nodes(&ns, 1_000 + 200, Format::Table), want);
        let v: serde_json::Value = serde_json::from_str(&nodes(&ns, 0, Format::Json)).unwrap();
        assert_eq!(v[0]["status"], "Ready");
        assert_eq!(v[0]["started_at"], 1_000);
        assert_eq!(v[1].get("started_at"), None);
        assert_eq!(age(Some(0), 59), "59s");
        assert_eq!(age(Some(0), 7200), "2h");
        assert_eq!(age(Some(0), 3 * 86400), "3d");
    }

    fn sample_services() -> Vec<ServiceInfo> {
        vec![
            ServiceInfo {
                name: "nginx-service".into(),
                namespace: "default".into(),
                vip: "198.19.96.20".into(),
                ports: vec![ServicePortInfo {
                    name: String::new(),
                    port: 80,
                    target_port: 80,
                    protocol: "tcp".into(),
                }],
                selector: [("app".to_string(), "nginx".to_string())].into(),
                endpoints: vec!["198.18.1.2".into(), "198.18.2.7:8080".into()],
                affinity_seconds: None,
                dns_names: vec![
                    "nginx-service.default.svc.cluster.local".into(),
                    "nginx-service.default".into(),
                    "nginx-service".into(),
                ],
            },
            ServiceInfo {
                name: "dns".into(),
                namespace: "kube-system".into(),
                vip: "198.19.96.53".into(),
                ports: vec![
                    ServicePortInfo {
                        name: "dns".into(),
                        port: 53,
                        target_port: 5353,
                        protocol: "udp".into(),
                    },
                    ServicePortInfo {
                        name: "dns-tcp".into(),
                        port: 53,
                        target_port: 53,
                        protocol: "tcp".into(),
                    },
                ],
                selector: Default::default(),
                endpoints: vec![],
                affinity_seconds: Some(10800),
                dns_names: vec![
                    "dns.kube-system.svc.cluster.local".into(),
                    "dns.kube-system".into(),
                ],
            },
        ]
    }

    #[test]
    fn service_ports_render() {
        let p = |name: &str, port, target_port, protocol: &str| ServicePortInfo {
            name: name.into(),
            port,
            target_port,
            protocol: protocol.into(),
        };
        assert_eq!(service_port(&p("", 80, 80, "tcp")), "80/TCP");
        assert_eq!(
            service_port(&p("http", 80, 8080, "tcp")),
            "http:80->8080/TCP"
        );
        assert_eq!(service_port(&p("", 53, 5353, "udp")), "53->5353/UDP");
        assert_eq!(service_port(&p("dns", 53, 53, "udp")), "dns:53/UDP");
    }

    #[test]
    fn service_list_table() {
        let want = "\
NAME           NAMESPACE    VIP           PORTS                            ENDPOINTS
nginx-service  default      198.19.96.20  80/TCP                           198.18.1.2,198.18.2.7:8080
dns            kube-system  198.19.96.53  dns:53->5353/UDP,dns-tcp:53/TCP  <none>
";
        assert_eq!(services(&sample_services(), Format::Table), want);
        assert_eq!(
            services(&[], Format::Table),
            "NAME  NAMESPACE  VIP  PORTS  ENDPOINTS\n"
        );
    }

    #[test]
    fn service_list_wide() {
        let want = "\
NAME           NAMESPACE    VIP           PORTS                            ENDPOINTS                   SELECTOR   AFFINITY         DNS
nginx-service  default      198.19.96.20  80/TCP                           198.18.1.2,198.18.2.7:8080  app=nginx  None             nginx-service.default.svc.cluster.local,nginx-service.default,nginx-service
dns            kube-system  198.19.96.53  dns:53->5353/UDP,dns-tcp:53/TCP  <none>                      <none>     ClientIP:10800s  dns.kube-system.svc.cluster.local,dns.kube-system
";
        assert_eq!(services(&sample_services(), Format::Wide), want);
    }

    #[test]
    fn service_list_json_round_trips() {
        let text = services(&sample_services(), Format::Json);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v[0]["vip"], "198.19.96.20");
        assert_eq!(v[0]["ports"][0]["target_port"], 80);
        assert_eq!(v[0]["ports"][0]["protocol"], "tcp");
        assert!(v[0].get("affinity_seconds").is_none());
        assert_eq!(v[1]["affinity_seconds"], 10800);
        assert_eq!(v[1]["endpoints"], serde_json::json!([]));
        let back: Vec<ServiceInfo> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, sample_services());
        assert_eq!(services(&[], Format::Json), "[]\n");
    }

    #[test]
    fn service_add_and_del_messages() {
        let s = &sample_services()[0];
        assert_eq!(
            service_added(s, Format::Table),
            "service default/nginx-service added: vip 198.19.96.20 ports 80/TCP \
             endpoints 198.18.1.2,198.18.2.7:8080\n"
        );
        assert_eq!(service_added(s, Format::Wide).lines().count(), 2);
        let v: serde_json::Value = serde_json::from_str(&service_added(s, Format::Json)).unwrap();
        assert_eq!(v["name"], "nginx-service");
        let k = ServiceKey {
            name: "x".into(),
            namespace: "web".into(),
        };
        assert_eq!(
            service_deleted(&k, Format::Table),
            "service web/x deleted\n"
        );
        let v: serde_json::Value =
            serde_json::from_str(&service_deleted(&k, Format::Json)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"name":"x","namespace":"web","deleted":true})
        );
    }

    #[test]
    fn stats_hides_zero_drops_unless_wide() {
        let s = StatsReport {
            drops: [("no_route".to_string(), 3), ("spoofed_ip".to_string(), 0)].into(),
            ports: vec![PortStats {
                name: "bb".into(),
                namespace: "default".into(),
                rx_packets: 5,
                rx_bytes: 500,
                tx_packets: 4,
                tx_bytes: 400,
                rx_dropped: 3,
            }],
            ports_lost: 0,
            conntrack: vswitch_proto::ConntrackStats {
                entries: 2,
                max: 512,
                evicted: 7,
            },
        };
        let want = "\
REASON    COUNT
no_route  3

NAME  NAMESPACE  RX-PKTS  RX-BYTES  TX-PKTS  TX-BYTES  RX-DROPPED
bb    default    5        500       4        400       3

conntrack: 2 of 512 entries, 7 evicted
";
        assert_eq!(stats(&s, Format::Table), want);
        assert!(stats(&s, Format::Wide).contains("\nspoofed_ip  0\n"));
        assert!(stats(&s, Format::Wide).contains("\nports lost (TAP gone without port del): 0\n"));
        let lost = StatsReport {
            ports_lost: 2,
            ..s.clone()
        };
        assert!(
            stats(&lost, Format::Table).contains("\nports lost (TAP gone without port del): 2\n")
        );
        let v: serde_json::Value = serde_json::from_str(&stats(&s, Format::Json)).unwrap();
        assert_eq!(v["drops"]["spoofed_ip"], 0);
        assert_eq!(v["ports"][0]["rx_dropped"], 3);
        assert_eq!(v["conntrack"]["evicted"], 7);
    }
}
