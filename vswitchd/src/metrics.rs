//! Prometheus metrics (`--metrics-addr`): the counters the node already keeps, exported at
//! scrape time in the Prometheus text exposition format (0.0.4), encoded by the official
//! client crate `prometheus-client`.
//!
//! Contract:
//! - No work per packet: a scrape reads the datapath's counters (relaxed atomic loads of the
//!   per-port and per-peer `LinkCounters`, the drop counters per reason and direction, the
//!   conntrack size) and the node's state under its lock, the same numbers `vswitchctl
//!   stats`, `service list` and `node show` print. The one metric updated as things happen
//!   is the control requests' latency histogram, once per control request.
//! - Drop reasons are named as `vswitchctl stats` names them ([`DropReason::name`]), and
//!   every reason and direction is exported, zero or not, so a query never misses a series.
//! - The endpoint is off unless the flag is given and, unless `--metrics-allow-remote`, only
//!   on a loopback address (checked in `main.rs`). It answers `GET /metrics` and nothing
//!   else (`metrics/http.rs`), never changes the node's state, and a slow or broken client
//!   cannot stop the daemon (a scrape that fails is logged at debug and dropped).
//!
//! [`DropReason::name`]: vswitch_datapath::DropReason::name

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt;
use std::time::Duration;

pub mod http;

/// Traffic of one port or peer ("rx" is from the pod or peer into the switch, as in
/// `vswitchctl stats`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Received frames that were dropped.
    pub rx_dropped: u64,
}

/// A port's identity and traffic.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PortMetrics {
    pub name: String,
    pub namespace: String,
    pub link: LinkStats,
}

/// A peer node's identity and traffic (inner frames, without the VXLAN header).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerMetrics {
    pub node: String,
    pub link: LinkStats,
}

/// A Service and its ready endpoints.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceMetrics {
    pub name: String,
    pub namespace: String,
    pub endpoints: u64,
}

/// The datastore's state, for a node that has one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DatastoreMetrics {
    pub connected: bool,
    pub revision: i64,
    pub skipped: u64,
}

/// Everything one scrape exports but the control latency: plain values, gathered by the
/// node (`node/metrics.rs`) and encoded here.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub node: String,
    pub version: String,
    pub datapath: String,
    pub ports: Vec<PortMetrics>,
    pub peers: Vec<PeerMetrics>,
    /// `(reason, direction, count)`, every pair.
    pub drops: Vec<(&'static str, &'static str, u64)>,
    pub conntrack_entries: u64,
    pub conntrack_max: u64,
    pub conntrack_evicted: u64,
    pub services: Vec<ServiceMetrics>,
    pub ports_lost: u64,
    pub datastore: Option<DatastoreMetrics>,
}

/// The control requests' latency (`vswitch_control_request_duration_seconds{op}`), observed
/// by the control socket once per request. Cloning shares the histograms.
#[derive(Clone, Debug)]
pub struct ControlLatency(Family<OpLabel, Histogram, fn() -> Histogram>);

/// The label of a control request's latency: its `op`.
type OpLabel = [(&'static str, String); 1];

impl Default for ControlLatency {
    fn default() -> Self {
        ControlLatency(Family::new_with_constructor(latency_histogram))
    }
}

/// 100 us to about 26 s, by factors of 4.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 4.0, 10))
}

impl ControlLatency {
    /// Records that a request `op` (the protocol's `op` tag) took `took`.
    pub fn observe(&self, op: &str, took: Duration) {
        self.0
            .get_or_create(&[("op", op.to_string())])
            .observe(took.as_secs_f64());
    }
}

/// The engines' batch sizes (`vswitch_engine_batch_frames{worker}`): frames handed to the
/// datapath per engine loop that had work, observed once per such loop by each worker (one
/// uncontended lock per batch, never per frame). Cloning shares the histograms.
#[derive(Clone, Debug)]
pub struct EngineBatches(Family<WorkerLabel, Histogram, fn() -> Histogram>);

/// The label of an engine's histogram: its worker number.
type WorkerLabel = [(&'static str, String); 1];

impl Default for EngineBatches {
    fn default() -> Self {
        EngineBatches(Family::new_with_constructor(batch_histogram))
    }
}

/// 1 to 512 frames, by factors of 2.
fn batch_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 10))
}

impl EngineBatches {
    /// The histogram of worker `worker` (taken once by the engine thread).
    pub fn worker(&self, worker: usize) -> Histogram {
        self.0
            .get_or_create(&[("worker", worker.to_string())])
            .clone()
    }
}

/// Where a scrape gets its [`Snapshot`].
type Source = Box<dyn Fn() -> Snapshot + Send + Sync>;

/// The collector that reads a [`Snapshot`] at each scrape.
struct SnapshotCollector(Source);

impl fmt::Debug for SnapshotCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SnapshotCollector")
    }
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        (self.0)().encode(&mut enc)
    }
}

/// The registry a scrape encodes: the snapshot from `source`, and `latency`.
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// Metrics that call `source` at each scrape.
    pub fn new(
        source: impl Fn() -> Snapshot + Send + Sync + 'static,
        latency: &ControlLatency,
        batches: &EngineBatches,
    ) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(SnapshotCollector(Box::new(source))));
        registry.register(
            "vswitch_engine_batch_frames",
            "Frames an I/O engine handed to the datapath per loop that had work, by worker",
            batches.0.clone(),
        );
        registry.register(
            "vswitch_control_request_duration_seconds",
            "Time the daemon took to answer a control request (vswitchctl, CNI), by request op",
            latency.0.clone(),
        );
        Metrics { registry }
    }

    /// One scrape, in the Prometheus text format (0.0.4).
    pub fn render(&self) -> Result<String, fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The label value of a direction of a port's or peer's traffic.
const RX: &str = "rx";
const TX: &str = "tx";

impl Snapshot {
    fn encode(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let info = [
            ("node", self.node.as_str()),
            ("version", self.version.as_str()),
            ("datapath", self.datapath.as_str()),
        ];
        family(
            enc,
            "vswitch_node_info",
            "The node's name, version and I/O engine (value 1)",
            MetricType::Gauge,
            [(info, 1)],
        )?;
        let port_labels = |p: &PortMetrics, dir: &str| {
            [
                ("namespace", p.namespace.clone()),
                ("port", p.name.clone()),
                ("direction", dir.to_string()),
            ]
        };
        let ports = &self.ports;
        family(
            enc,
            "vswitch_port_packets",
            "Frames of a pod's port; rx: from the pod into the switch, tx: to the pod",
            MetricType::Counter,
            ports.iter().flat_map(|p| {
                [
                    (port_labels(p, RX), p.link.rx_packets),
                    (port_labels(p, TX), p.link.tx_packets),
                ]
            }),
        )?;
        family(
            enc,
            "vswitch_port_bytes",
            "Bytes of a pod's port (Ethernet frames); rx: from the pod into the switch, tx: to the pod",
            MetricType::Counter,
            ports.iter().flat_map(|p| {
                [(port_labels(p, RX), p.link.rx_bytes), (port_labels(p, TX), p.link.tx_bytes)]
            }),
        )?;
        family(
            enc,
            "vswitch_port_rx_dropped",
            "Frames a pod sent that the switch dropped (the reasons: vswitch_drop_count)",
            MetricType::Counter,
            ports.iter().map(|p| {
                (
                    [("namespace", p.namespace.clone()), ("port", p.name.clone())],
                    p.link.rx_dropped,
                )
            }),
        )?;
        let peer_labels =
            |p: &PeerMetrics, dir: &str| [("peer", p.node.clone()), ("direction", dir.to_string())];
        let peers = &self.peers;
        family(
            enc,
            "vswitch_peer_packets",
            "Inner frames through the tunnel with a peer node; rx: from the peer, tx: to it",
            MetricType::Counter,
            peers.iter().flat_map(|p| {
                [
                    (peer_labels(p, RX), p.link.rx_packets),
                    (peer_labels(p, TX), p.link.tx_packets),
                ]
            }),
        )?;
        family(
            enc,
            "vswitch_peer_bytes",
            "Bytes of inner frames (without the VXLAN header) through the tunnel with a peer node",
            MetricType::Counter,
            peers.iter().flat_map(|p| {
                [
                    (peer_labels(p, RX), p.link.rx_bytes),
                    (peer_labels(p, TX), p.link.tx_bytes),
                ]
            }),
        )?;
        family(
            enc,
            "vswitch_peer_rx_dropped",
            "Datagrams from a peer node that the switch dropped",
            MetricType::Counter,
            peers
                .iter()
                .map(|p| ([("peer", p.node.clone())], p.link.rx_dropped)),
        )?;
        family(
            enc,
            "vswitch_drop_count",
            "Frames dropped, by reason (as vswitchctl stats names them) and direction \
             (from_pod, from_tunnel, egress: lost on the way out)",
            MetricType::Counter,
            self.drops
                .iter()
                .map(|(r, d, n)| ([("reason", *r), ("direction", *d)], *n)),
        )?;
        single(
            enc,
            "vswitch_conntrack_entries",
            "Connections tracked now (Service NAT)",
            MetricType::Gauge,
            self.conntrack_entries,
        )?;
        single(
            enc,
            "vswitch_conntrack_limit",
            "Most connections tracked at once (--conntrack-max)",
            MetricType::Gauge,
            self.conntrack_max,
        )?;
        single(
            enc,
            "vswitch_conntrack_evictions",
            "Unestablished connections evicted from a full conntrack table",
            MetricType::Counter,
            self.conntrack_evicted,
        )?;
        single(
            enc,
            "vswitch_ports",
            "Ports (pods) of this node",
            MetricType::Gauge,
            self.ports.len() as u64,
        )?;
        single(
            enc,
            "vswitch_peers",
            "Peer nodes",
            MetricType::Gauge,
            self.peers.len() as u64,
        )?;
        single(
            enc,
            "vswitch_ports_lost",
            "Ports removed because their pod went away without port del",
            MetricType::Counter,
            self.ports_lost,
        )?;
        single(
            enc,
            "vswitch_services",
            "Services",
            MetricType::Gauge,
            self.services.len() as u64,
        )?;
        family(
            enc,
            "vswitch_service_endpoints",
            "Ready endpoints of a Service",
            MetricType::Gauge,
            self.services.iter().map(|s| {
                (
                    [
                        ("namespace", s.namespace.as_str()),
                        ("service", s.name.as_str()),
                    ],
                    s.endpoints,
                )
            }),
        )?;
        if let Some(ds) = &self.datastore {
            single(
                enc,
                "vswitch_datastore_connected",
                "1 while the daemon is connected to the datastore and watching, else 0",
                MetricType::Gauge,
                u64::from(ds.connected),
            )?;
            let rev = u64::try_from(ds.revision).unwrap_or(0);
            single(
                enc,
                "vswitch_datastore_revision",
                "The last etcd revision seen",
                MetricType::Gauge,
                rev,
            )?;
            single(
                enc,
                "vswitch_datastore_skipped_leases",
                "Subnet leases skipped (unparsable, another backend or VNI, conflicting)",
                MetricType::Counter,
                ds.skipped,
            )?;
        }
        Ok(())
    }
}

/// Encodes one family of `kind` (a counter or a gauge) with a sample per label set.
fn family<S: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (S, u64)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in samples {
        value(m.encode_family(&labels)?, kind, v)?;
    }
    Ok(())
}

/// Encodes a family of one sample without labels.
fn single(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    v: u64,
) -> fmt::Result {
    value(enc.encode_descriptor(name, help, None, kind)?, kind, v)
}

/// Encodes one sample of a counter or a gauge (whose values are i64: saturated).
fn value(m: MetricEncoder, kind: MetricType, v: u64) -> fmt::Result {
    match kind {
        MetricType::Counter => ConstCounter::new(v).encode(m),
        _ => ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(m),
    }
}

#[cfg(test)]
mod tests;
