//! Request and response types. Field names are part of the contract (`-o json` prints them).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A request with its protocol version, as it travels on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestEnvelope {
    /// Must equal [`crate::PROTOCOL_VERSION`].
    pub version: u32,
    /// The request itself; its `op` tag is flattened into the envelope.
    #[serde(flatten)]
    pub request: Request,
}

/// Everything a client can ask the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Describe this node.
    NodeShow,
    /// The cluster's nodes as the datastore knows them (just this node without one).
    NodeList,
    /// Attach a pod: create its TAP in its network namespace and configure it.
    PortAdd(PortSpec),
    /// Detach a pod and free its address.
    PortDel(PortKey),
    /// List the pods attached to this node.
    PortList,
    /// List the pods of every node: this node's ports and, with a datastore, the pods the
    /// other nodes published (like `kubectl get pods -o wide`).
    PortListAll,
    /// Add (or replace) a peer node reached through the tunnel.
    PeerAdd(PeerSpec),
    /// Remove a peer node.
    PeerDel {
        /// The peer's node name.
        node: String,
    },
    /// List peer nodes with their traffic counters.
    PeerList,
    /// CNI ADD: attach a container's interface, or return the attachment it already has
    /// (same container id and interface name: same address).
    CniAdd(CniAttach),
    /// CNI DEL: detach a container's interface; success when there is none.
    CniDel(CniKey),
    /// CNI CHECK: verify that the interface, address and route are still in place.
    CniCheck(CniAttach),
    /// CNI GC: remove every CNI attachment not listed.
    CniGc {
        /// The attachments to keep.
        valid: Vec<CniKey>,
    },
    /// Add a Service: a virtual IP load-balanced to endpoints (an existing name is an
    /// `exists` error: delete it first to change it).
    ServiceAdd(ServiceSpec),
    /// Remove a Service.
    ServiceDel(ServiceKey),
    /// List Services with their endpoints.
    ServiceList,
    /// Create or update objects (`apply -f`), all or nothing: each object is created, or
    /// replaces the one of its name, or is left alone when it is the same; when one object
    /// is refused, none is applied (the error's field is `objects[I].FIELD`).
    Apply {
        /// The objects, applied in order.
        objects: Vec<Object>,
    },
    /// Remove objects (`delete -f`): each one that exists is removed; the others are
    /// reported `not_found` in the answer, and do not stop the rest.
    Delete {
        /// The objects' names.
        objects: Vec<ObjectKey>,
    },
    /// List the namespaces stored by `apply`.
    NamespaceList,
    /// Counters: drops by reason, and per port (or for one port).
    Stats {
        /// Limit per-port counters to this port name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<String>,
        /// The port's namespace (default `default`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
    },
    /// Capture a port's or the tunnel's frames: answered by [`Response::CaptureStarted`]
    /// and a stream of records (see [`crate::capture`]), or by an error.
    Capture(crate::capture::CaptureSpec),
    /// Trace a synthetic packet from a pod's port through the live tables: each stage's
    /// decision, nothing sent and nothing counted.
    Trace(crate::inspect::TraceSpec),
    /// The tracked (Service NAT) connections, optionally of one Service or pod.
    ConntrackList(crate::inspect::ConntrackQuery),
    /// Remove tracked connections, optionally of one Service or pod.
    ConntrackFlush(crate::inspect::ConntrackQuery),
    /// Change the daemon's log filter (a tracing `EnvFilter` directive, e.g. `debug` or
    /// `info,vswitchd::node=debug`).
    LogLevel {
        /// The directive.
        level: String,
    },
    /// The flow log: the last events, filtered; with `follow` a stream of new ones after
    /// the answer (see [`crate::observe`]).
    Observe(crate::observe::ObserveSpec),
}

fn default_namespace() -> String {
    "default".to_string()
}

fn default_ifname() -> String {
    "eth0".to_string()
}

/// Names a port: (namespace, name), like a Kubernetes pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortKey {
    /// The pod name.
    pub name: String,
    /// The pod's Kubernetes namespace.
    #[serde(default = "default_namespace")]
    pub namespace: String,
}

/// What `port add` asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortSpec {
    /// The pod name (unique within its namespace on this node).
    pub name: String,
    /// The pod's Kubernetes namespace.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Network namespace: a name under /var/run/netns, /var/run/netns/NAME, /run/netns/NAME
    /// or /proc/PID/ns/net (`validate::netns`).
    pub netns: String,
    /// `ADDR/PLEN` inside the node's pod subnet; allocated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The pod's MAC; derived from its address when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Interface name inside the pod.
    #[serde(default = "default_ifname")]
    pub ifname: String,
    /// Labels, matched by service selectors.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Names a CNI attachment: (container id, interface name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CniKey {
    /// CNI_CONTAINERID.
    pub container_id: String,
    /// CNI_IFNAME.
    pub ifname: String,
}

/// What the CNI plugin asks for on ADD and CHECK.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CniAttach {
    /// CNI_CONTAINERID.
    pub container_id: String,
    /// CNI_IFNAME.
    pub ifname: String,
    /// CNI_NETNS (a path).
    pub netns: String,
    /// K8S_POD_NAME from CNI_ARGS; the port is named after it when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// K8S_POD_NAMESPACE from CNI_ARGS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
}

/// A port as the daemon reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortInfo {
    /// The pod name.
    pub name: String,
    /// The pod's Kubernetes namespace.
    pub namespace: String,
    /// The pod's address (no prefix length).
    pub ip: String,
    /// Prefix length of the pod's address.
    pub prefix_len: u8,
    /// The pod's MAC.
    pub mac: String,
    /// The node this port lives on.
    pub node: String,
    /// `Running` while the TAP is attached, `Detached` otherwise.
    pub status: PortStatus,
    /// The network namespace it was attached in.
    pub netns: String,
    /// Interface name inside the pod.
    pub ifname: String,
    /// The pod's gateway.
    pub gateway: String,
    /// The pod's MTU.
    pub mtu: u32,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The CNI container id, for ports attached through the CNI plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// The name the container runtime gave (`K8S_POD_NAME`, or the container id when it
    /// passed none), when the port's name is not that name: a runtime name that is not a
    /// Kubernetes name (`Web_1`) is mapped to one (`validate::runtime_port_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_name: Option<String>,
    /// The namespace the runtime gave (`K8S_POD_NAMESPACE`), when the port's namespace is
    /// not that name (mapped the same way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_namespace: Option<String>,
    /// The pod's resolver settings (the cluster DNS and the Kubernetes search path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<PodDns>,
}

/// Whether a port's TAP is attached; on the wire (and in the CLI's tables) the strings
/// `Running` and `Detached`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PortStatus {
    /// The TAP is attached and served.
    Running,
    /// The TAP is not attached (it could not be re-attached after a restart).
    Detached,
}

impl PortStatus {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PortStatus::Running => "Running",
            PortStatus::Detached => "Detached",
        }
    }
}

impl std::fmt::Display for PortStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A pod's resolver settings, as a CNI result's `dns` carries them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodDns {
    /// Nameserver addresses (the cluster DNS IP).
    pub nameservers: Vec<String>,
    /// Search domains: `NS.svc.DOMAIN`, `svc.DOMAIN`, `DOMAIN`.
    pub search: Vec<String>,
    /// Resolver options (`ndots:5`, as kubelet writes).
    pub options: Vec<String>,
}

/// What `peer add` asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerSpec {
    /// The peer's node name.
    pub node: String,
    /// The peer's underlay IPv4 address.
    pub underlay: String,
    /// The peer's pod subnet.
    pub pod_cidr: String,
    /// The peer's VTEP MAC; derived as vswitchd derives its own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep_mac: Option<String>,
}

/// A peer as the daemon reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The peer's node name.
    pub node: String,
    /// The peer's underlay address.
    pub underlay: String,
    /// The peer's pod subnet.
    pub pod_cidr: String,
    /// The peer's VTEP MAC.
    pub vtep_mac: String,
    /// Frames sent to the peer.
    pub tx_packets: u64,
    /// Bytes sent to the peer (inner frames).
    pub tx_bytes: u64,
    /// Frames received from the peer.
    pub rx_packets: u64,
    /// Bytes received from the peer (inner frames).
    pub rx_bytes: u64,
    /// Where the peer comes from: `manual` (`peer add`) or `datastore` (a subnet lease);
    /// `manual` from older daemons.
    #[serde(default)]
    pub source: PeerSource,
}

/// Where a peer comes from; on the wire `manual` or `datastore`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerSource {
    /// Added by hand (`peer add`), persisted in the node's state.
    #[default]
    Manual,
    /// Another node's subnet lease in the datastore (not persisted: it comes back with the
    /// datastore's list).
    Datastore,
}

impl PeerSource {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerSource::Manual => "manual",
            PeerSource::Datastore => "datastore",
        }
    }
}

/// The datastore's state in `node show`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatastoreStatus {
    /// The etcd endpoints, `http(s)://HOST:PORT`.
    pub endpoints: Vec<String>,
    /// The key prefix (`--datastore-prefix`).
    pub prefix: String,
    /// Whether the daemon is connected and watching now.
    pub connected: bool,
    /// The last etcd revision seen (0: none yet).
    pub revision: i64,
    /// Unix time (seconds) of the last complete list of the cluster's keys, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<u64>,
    /// Subnet leases skipped since start: a value that does not parse, another backend type,
    /// another VNI, or a lease that conflicts with this node's peers.
    pub skipped: u64,
}

/// One node of the cluster in `node list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterNode {
    /// The node's name (its subnet's key, `A.B.C.D-LEN`, for a lease without a liveness
    /// record, e.g. a flanneld node or a node that is down).
    pub name: String,
    /// Its pod subnet.
    pub subnet: String,
    /// Its underlay address (the lease's PublicIP).
    pub underlay: String,
    /// Its VTEP MAC.
    pub vtep_mac: String,
    /// `Ready` while its liveness record exists, `NotReady` when only its lease does.
    pub status: String,
    /// Unix time (seconds) its daemon started, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
}

/// `node show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Node name.
    pub node: String,
    /// The node's pod subnet.
    pub pod_cidr: String,
    /// The pods' gateway (the subnet's `.1`).
    pub gateway: String,
    /// The MAC that answers for the gateway.
    pub router_mac: String,
    /// The node's VTEP address (the subnet's `.0`).
    pub vtep_ip: String,
    /// The node's VTEP MAC (give it to peers' `peer add --vtep-mac`).
    pub vtep_mac: String,
    /// Underlay address, if tunnels are enabled.
    pub underlay: Option<String>,
    /// VXLAN UDP port.
    pub vxlan_port: u16,
    /// VXLAN network identifier.
    pub vni: u32,
    /// MTU given to pods.
    pub pod_mtu: u32,
    /// Which datapath runs (`uring` or `epoll`).
    pub datapath: String,
    /// Number of ports attached.
    pub ports: usize,
    /// Number of peers.
    pub peers: usize,
    /// Daemon version.
    pub version: String,
    /// The cluster's service CIDR (Service VIPs lie inside it); empty from older daemons.
    #[serde(default)]
    pub service_cidr: String,
    /// The cluster DNS address pods' resolvers use; empty from older daemons.
    #[serde(default)]
    pub dns_ip: String,
    /// The cluster domain (`SVC.NS.svc.DOMAIN`); empty from older daemons.
    #[serde(default)]
    pub cluster_domain: String,
    /// The datastore's state, when the node runs with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore: Option<DatastoreStatus>,
}

/// Counters of one port.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PortStats {
    /// The pod name.
    pub name: String,
    /// The pod's namespace.
    pub namespace: String,
    /// Frames read from the pod.
    pub rx_packets: u64,
    /// Bytes read from the pod.
    pub rx_bytes: u64,
    /// Frames written to the pod.
    pub tx_packets: u64,
    /// Bytes written to the pod.
    pub tx_bytes: u64,
    /// Frames from the pod that were dropped.
    pub rx_dropped: u64,
}

/// `stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    /// Drops by reason (every reason is listed, zero or not).
    pub drops: BTreeMap<String, u64>,
    /// Per-port counters.
    pub ports: Vec<PortStats>,
    /// Ports the daemon removed because their TAP disappeared without `port del` (the pod's
    /// namespace or interface was deleted), since it started.
    #[serde(default)]
    pub ports_lost: u64,
    /// The connection tracking table (Service NAT); zeros from older daemons.
    #[serde(default)]
    pub conntrack: ConntrackStats,
}

/// The state of the connection tracking table in `stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConntrackStats {
    /// Connections tracked now.
    pub entries: u64,
    /// Most connections tracked at once (`vswitchd --conntrack-max`).
    pub max: u64,
    /// Connections not yet established (or UDP never answered) evicted so far to make room
    /// for new ones in a full table.
    pub evicted: u64,
}

/// What kind of failure an error is (clients map it, e.g. to CNI error codes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request was wrong (a field, a version, the framing).
    Invalid,
    /// What the request names does not exist.
    NotFound,
    /// What the request would create exists already.
    Exists,
    /// A pool (addresses) is used up.
    Exhausted,
    /// A temporary failure; trying again later may succeed.
    Unavailable,
    /// Anything else.
    #[default]
    Other,
}

/// Names a Service: (namespace, name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceKey {
    /// The Service name.
    pub name: String,
    /// The Service's namespace.
    #[serde(default = "default_namespace")]
    pub namespace: String,
}

/// What `service add` asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// The Service name (also its DNS name).
    pub name: String,
    /// The Service's namespace.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The virtual IP, inside the service CIDR; when absent the daemon allocates a free one
    /// (an `apply` of a Service that exists keeps the VIP it has).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip: Option<String>,
    /// Port specs: `[NAME:]PORT[:TARGETPORT][/tcp|/udp]`.
    pub ports: Vec<String>,
    /// Label selector matched against local pods' labels.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    /// Explicit endpoints `IP[:PORT]` (pods on any node).
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// `client-ip[:SECONDS]` session affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<String>,
}

/// A namespace as `apply` gives it: its name and labels (the daemon adds
/// `kubernetes.io/metadata.name: NAME`, as Kubernetes does).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamespaceSpec {
    /// The namespace's name.
    pub name: String,
    /// Its labels (what NetworkPolicy namespace selectors will match).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A namespace as the daemon reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamespaceInfo {
    /// The namespace's name.
    pub name: String,
    /// Its labels, `kubernetes.io/metadata.name` included.
    pub labels: BTreeMap<String, String>,
    /// When it was first applied, in seconds since the Unix epoch.
    pub created_unix: u64,
}

/// An object of `apply`, tagged by its Kubernetes `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Object {
    /// A v1 Service (type ClusterIP).
    Service(ServiceSpec),
    /// A v1 Namespace.
    Namespace(NamespaceSpec),
}

impl Object {
    /// The object's name.
    pub fn key(&self) -> ObjectKey {
        match self {
            Object::Service(s) => ObjectKey::Service(ServiceKey {
                name: s.name.clone(),
                namespace: s.namespace.clone(),
            }),
            Object::Namespace(n) => ObjectKey::Namespace {
                name: n.name.clone(),
            },
        }
    }
}

/// Names an object of `delete`, tagged by its Kubernetes `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum ObjectKey {
    /// A Service.
    Service(ServiceKey),
    /// A Namespace.
    Namespace {
        /// Its name.
        name: String,
    },
}

impl ObjectKey {
    /// `Service` or `Namespace`.
    pub fn kind(&self) -> &'static str {
        match self {
            ObjectKey::Service(_) => "Service",
            ObjectKey::Namespace { .. } => "Namespace",
        }
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        match self {
            ObjectKey::Service(k) => &k.name,
            ObjectKey::Namespace { name } => name,
        }
    }
}

/// What `apply` or `delete` did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// It did not exist and was created.
    Created,
    /// It existed and was replaced by the new one.
    Configured,
    /// It existed just like this; nothing changed.
    Unchanged,
    /// It was removed.
    Deleted,
    /// `delete`: it does not exist.
    NotFound,
}

impl Action {
    /// The wire spelling, which is also kubectl's word (`not found` for [`Action::NotFound`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Configured => "configured",
            Action::Unchanged => "unchanged",
            Action::Deleted => "deleted",
            Action::NotFound => "not found",
        }
    }
}

/// One object's outcome in the answer to `apply` or `delete`, in request order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectResult {
    /// Which object.
    pub object: ObjectKey,
    /// What happened to it.
    pub action: Action,
}

/// One port of a Service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServicePortInfo {
    /// The port's name (may be empty).
    pub name: String,
    /// The port on the VIP.
    pub port: u16,
    /// The port on the endpoints.
    pub target_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// A Service as the daemon reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// The Service name.
    pub name: String,
    /// The Service's namespace.
    pub namespace: String,
    /// The virtual IP.
    pub vip: String,
    /// Its ports.
    pub ports: Vec<ServicePortInfo>,
    /// Its selector.
    pub selector: BTreeMap<String, String>,
    /// The endpoints in use now (`IP`, or `IP:PORT` when the port is fixed).
    pub endpoints: Vec<String>,
    /// ClientIP affinity timeout in seconds, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_seconds: Option<u32>,
    /// The DNS names that resolve to the VIP.
    pub dns_names: Vec<String>,
}

/// A failure, naming the offending field when there is one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What kind of failure.
    #[serde(default)]
    pub kind: ErrorKind,
    /// The request field that was wrong (`ip`, `mac`, `netns`, `name`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What was wrong, in a sentence.
    pub message: String,
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{field}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Everything the daemon answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", content = "data", rename_all = "snake_case")]
pub enum Response {
    /// The request failed; nothing changed.
    Error(ErrorBody),
    /// Done, nothing to report.
    Done,
    /// `node show`.
    Node(NodeInfo),
    /// `node list`.
    Nodes(Vec<ClusterNode>),
    /// `port add`.
    Port(PortInfo),
    /// `port list`.
    Ports(Vec<PortInfo>),
    /// `peer add`.
    Peer(PeerInfo),
    /// `peer list`.
    Peers(Vec<PeerInfo>),
    /// `service add`.
    Service(ServiceInfo),
    /// `service list`.
    Services(Vec<ServiceInfo>),
    /// `stats`.
    Stats(StatsReport),
    /// `apply` and `delete`: what happened to each object, in request order.
    Objects(Vec<ObjectResult>),
    /// `namespace list`.
    Namespaces(Vec<NamespaceInfo>),
    /// `capture`: accepted; binary records follow (see [`crate::capture`]).
    CaptureStarted(crate::capture::CaptureStart),
    /// `trace`.
    Trace(crate::inspect::TraceReport),
    /// `conntrack list`.
    Conntrack(Vec<crate::inspect::ConnEntry>),
    /// `conntrack flush`: how many connections were removed.
    ConntrackFlushed {
        /// Connections removed.
        removed: usize,
    },
    /// `log-level`: the filter now in force and the one before.
    LogLevel {
        /// The new filter.
        level: String,
        /// The filter it replaced.
        previous: String,
    },
    /// `observe`: the flow log's matching events.
    Flows(crate::observe::FlowsReport),
}

impl Response {
    /// An error response naming `field`.
    pub fn error(kind: ErrorKind, field: Option<&str>, message: impl Into<String>) -> Response {
        Response::Error(ErrorBody {
            kind,
            field: field.map(str::to_string),
            message: message.into(),
        })
    }
}
