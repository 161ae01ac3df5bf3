//! The datastore's keys and values, pure: flannel's network config and subnet leases (so a
//! flanneld node can share the network), vswitch's node liveness records beside them, the
//! choice of this node's subnet, and what the leases mean for this node's peers. No etcd, no
//! clock, no I/O: `mod.rs` reads and writes what this module encodes and decides.
//!
//! Keys under the prefix P (`--datastore-prefix`, flannel's `/coreos.com/network`):
//!
//! | key | value |
//! |---|---|
//! | `P/config` | `{"Network":"198.18.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan","VNI":1,"Port":4789}}` |
//! | `P/subnets/198.18.1.0-24` | `{"PublicIP":"198.19.0.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:58:c6:12:01:00"}}` |
//! | `P/vswitch/nodes/NAME` | `{"name":"node1","subnet":"198.18.1.0/24","underlay":"198.19.0.1","vtep_mac":"...","start_time":1700000000}` |
//!
//! Contract: decoding never panics on any value; a value that does not decode is an error
//! string for the caller to log and count, never a crash. Subnet choice is deterministic.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use vswitch_datapath::{Ipv4Cidr, Mac};
use vswitch_proto::{ClusterNode, PeerSpec};

/// flannel's backend type for VXLAN.
pub const VXLAN: &str = "vxlan";
/// The VXLAN port flannel's vxlan backend uses when the config gives none (the kernel's).
pub const FLANNEL_DEFAULT_PORT: u16 = 8472;
/// The VNI flannel's vxlan backend uses when the config gives none.
pub const FLANNEL_DEFAULT_VNI: u32 = 1;

/// `P/config`.
pub fn config_key(prefix: &str) -> String {
    format!("{prefix}/config")
}

/// The directory of subnet leases, `P/subnets/`.
pub fn subnets_dir(prefix: &str) -> String {
    format!("{prefix}/subnets/")
}

/// The directory of node liveness records, `P/vswitch/nodes/`.
pub fn nodes_dir(prefix: &str) -> String {
    format!("{prefix}/vswitch/nodes/")
}

/// A subnet's lease key, `P/subnets/A.B.C.D-LEN`.
pub fn subnet_key(prefix: &str, subnet: Ipv4Cidr) -> String {
    format!("{}{}", subnets_dir(prefix), subnet_name(subnet))
}

/// A subnet as flannel names it in keys, `A.B.C.D-LEN`.
pub fn subnet_name(subnet: Ipv4Cidr) -> String {
    format!("{}-{}", subnet.network(), subnet.prefix_len())
}

/// Parses `A.B.C.D-LEN` (the part of a lease key after `subnets/`); `None` unless it is a
/// network address with a prefix length of at most 32, spelled canonically.
pub fn parse_subnet_name(s: &str) -> Option<Ipv4Cidr> {
    let (a, l) = s.split_once('-')?;
    let addr: Ipv4Addr = a.parse().ok()?;
    let len: u8 = l.parse().ok()?;
    let net = Ipv4Cidr::new(addr, len)?;
    (net.network() == addr && subnet_name(net) == s).then_some(net)
}

/// flannel's network config (`P/config`), the fields vswitch reads and writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetConfig {
    #[serde(rename = "Network")]
    pub network: String,
    #[serde(rename = "SubnetLen", default, skip_serializing_if = "Option::is_none")]
    pub subnet_len: Option<u8>,
    #[serde(rename = "Backend", default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendConfig>,
}

/// The `Backend` object of the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendConfig {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "VNI", default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    #[serde(rename = "Port", default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// The cluster network as vswitch runs it: what the config must say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    /// The cluster CIDR (`--cluster-cidr`).
    pub cidr: Ipv4Cidr,
    /// Each node's subnet length.
    pub subnet_len: u8,
    /// `--vni`.
    pub vni: u32,
    /// `--vxlan-port`.
    pub port: u16,
}

/// flannel's default subnet length for a network: /24 when the network holds at least four
/// of them, else four subnets.
pub fn default_subnet_len(cidr: Ipv4Cidr) -> u8 {
    if cidr.prefix_len() <= 22 {
        24
    } else {
        cidr.prefix_len() + 2
    }
}

impl Network {
    /// The config vswitch writes when none exists.
    pub fn config(&self) -> NetConfig {
        NetConfig {
            network: self.cidr.to_string(),
            subnet_len: Some(self.subnet_len),
            backend: Some(BackendConfig {
                kind: VXLAN.to_string(),
                vni: Some(self.vni),
                port: Some(self.port),
            }),
        }
    }

    /// Checks an existing config against the flags; the error names the config field and
    /// the flag that disagree.
    pub fn check(&self, json: &[u8]) -> Result<(), String> {
        let c: NetConfig = serde_json::from_slice(json)
            .map_err(|e| format!("the network config does not parse: {e}"))?;
        let net = crate::checked::cidr("Network", &c.network)
            .map_err(|e| format!("the network config's Network: {}", e.message))?;
        if net != self.cidr {
            return Err(format!(
                "the network config's Network is {net}, --cluster-cidr is {}",
                self.cidr
            ));
        }
        let len = c.subnet_len.unwrap_or_else(|| default_subnet_len(net));
        if len != self.subnet_len {
            return Err(format!(
                "the network config's SubnetLen is {len}, vswitch uses {}",
                self.subnet_len
            ));
        }
        let b = c.backend.as_ref();
        let kind = b.map_or("udp", |b| b.kind.as_str());
        if kind != VXLAN {
            return Err(format!(
                "the network config's Backend.Type is {kind:?}, vswitch needs \"vxlan\""
            ));
        }
        let vni = b.and_then(|b| b.vni).unwrap_or(FLANNEL_DEFAULT_VNI);
        if vni != self.vni {
            return Err(format!(
                "the network config's Backend.VNI is {vni}, --vni is {}",
                self.vni
            ));
        }
        let port = b
            .and_then(|b| b.port)
            .filter(|p| *p != 0)
            .unwrap_or(FLANNEL_DEFAULT_PORT);
        if port != self.port {
            return Err(format!(
                "the network config's Backend.Port is {port}, --vxlan-port is {}",
                self.port
            ));
        }
        Ok(())
    }

    /// True when `s` is one of this network's node subnets.
    pub fn holds(&self, s: Ipv4Cidr) -> bool {
        s.prefix_len() == self.subnet_len && self.cidr.contains(s.network())
    }
}

/// A lease value as flannel writes it (field order and `"PublicIPv6":null` included).
#[derive(Serialize)]
struct LeaseOut<'a> {
    #[serde(rename = "PublicIP")]
    public_ip: String,
    #[serde(rename = "PublicIPv6")]
    public_ipv6: Option<()>,
    #[serde(rename = "BackendType")]
    backend_type: &'a str,
    #[serde(rename = "BackendData")]
    backend_data: VxlanData,
}

#[derive(Serialize, Deserialize)]
struct VxlanData {
    #[serde(rename = "VNI", default, skip_serializing_if = "Option::is_none")]
    vni: Option<u32>,
    #[serde(rename = "VtepMAC", default, skip_serializing_if = "Option::is_none")]
    vtep_mac: Option<String>,
}

/// This node's lease value.
pub fn lease_value(public_ip: Ipv4Addr, vni: u32, vtep_mac: Mac) -> String {
    serde_json::to_string(&LeaseOut {
        public_ip: public_ip.to_string(),
        public_ipv6: None,
        backend_type: VXLAN,
        backend_data: VxlanData {
            vni: Some(vni),
            vtep_mac: Some(vtep_mac.to_string()),
        },
    })
    .expect("a lease serializes")
}

/// A lease as read back, any backend.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub subnet: Ipv4Cidr,
    pub public_ip: Ipv4Addr,
    pub backend_type: String,
    /// `BackendData.VNI` (older flanneld versions write none).
    pub vni: Option<u32>,
    /// `BackendData.VtepMAC`, when present and a unicast MAC.
    pub vtep_mac: Option<Mac>,
}

#[derive(Deserialize)]
struct LeaseIn {
    #[serde(rename = "PublicIP")]
    public_ip: String,
    #[serde(rename = "BackendType", default)]
    backend_type: String,
    #[serde(rename = "BackendData", default)]
    backend_data: Option<serde_json::Value>,
}

/// Decodes the lease of `name` (`A.B.C.D-LEN`) with value `json`.
pub fn parse_lease(name: &str, json: &[u8]) -> Result<Lease, String> {
    let subnet = parse_subnet_name(name).ok_or_else(|| format!("`{name}` is not A.B.C.D-LEN"))?;
    let v: LeaseIn = serde_json::from_slice(json).map_err(|e| format!("bad lease JSON: {e}"))?;
    let public_ip = v
        .public_ip
        .parse()
        .map_err(|_| format!("PublicIP `{}` is not an IPv4 address", v.public_ip))?;
    let (vni, vtep_mac) = match v.backend_data {
        Some(d) if v.backend_type == VXLAN => {
            let d: VxlanData =
                serde_json::from_value(d).map_err(|e| format!("bad vxlan BackendData: {e}"))?;
            let mac = match d.vtep_mac {
                Some(m) => Some(
                    crate::checked::mac("VtepMAC", &m)
                        .map_err(|e| format!("BackendData.VtepMAC: {}", e.message))?,
                ),
                None => None,
            };
            (d.vni, mac)
        }
        _ => (None, None),
    };
    Ok(Lease {
        subnet,
        public_ip,
        backend_type: v.backend_type,
        vni,
        vtep_mac,
    })
}

/// What one lease means for this node.
#[derive(Debug, Clone, PartialEq)]
pub enum LeaseUse {
    /// This node's own lease.
    Own,
    /// Another node: a peer named after its subnet (`A.B.C.D-LEN`).
    Peer(PeerSpec),
    /// Not usable, and why (logged and counted).
    Skip(String),
}

/// Classifies the lease `name` = `json` for the node owning `own` in a network of VNI `vni`.
pub fn classify(name: &str, json: &[u8], own: Ipv4Cidr, vni: u32) -> LeaseUse {
    let l = match parse_lease(name, json) {
        Ok(l) => l,
        Err(e) => return LeaseUse::Skip(e),
    };
    if l.subnet == own {
        return LeaseUse::Own;
    }
    if l.backend_type != VXLAN {
        return LeaseUse::Skip(format!("backend type {:?} is not vxlan", l.backend_type));
    }
    if let Some(v) = l.vni.filter(|v| *v != vni) {
        return LeaseUse::Skip(format!("VNI {v} differs from this node's {vni}"));
    }
    let Some(mac) = l.vtep_mac else {
        return LeaseUse::Skip("no BackendData.VtepMAC".into());
    };
    LeaseUse::Peer(PeerSpec {
        node: name.to_string(),
        underlay: l.public_ip.to_string(),
        pod_cidr: l.subnet.to_string(),
        vtep_mac: Some(mac.to_string()),
    })
}

/// What to change in the datastore's peers: peers to add or replace, names to remove.
#[derive(Debug, Default, PartialEq)]
pub struct PeerDiff {
    pub set: Vec<PeerSpec>,
    pub del: Vec<String>,
}

/// The changes taking the peers from the datastore now (`current`, by name) to `desired`.
pub fn diff(
    desired: &BTreeMap<String, PeerSpec>,
    current: &BTreeMap<String, PeerSpec>,
) -> PeerDiff {
    PeerDiff {
        set: desired
            .iter()
            .filter(|(k, v)| current.get(*k) != Some(v))
            .map(|(_, v)| v.clone())
            .collect(),
        del: current
            .keys()
            .filter(|k| !desired.contains_key(*k))
            .cloned()
            .collect(),
    }
}

/// Why no subnet could be chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum NoSubnet {
    /// The subnet asked for is not one of the network's.
    NotInNetwork(Ipv4Cidr),
    /// The subnet asked for is another node's.
    Taken { subnet: Ipv4Cidr, by: String },
    /// Every subnet is leased.
    Full(Ipv4Cidr),
}

impl std::fmt::Display for NoSubnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoSubnet::NotInNetwork(s) => {
                write!(f, "{s} is not a node subnet of the cluster network")
            }
            NoSubnet::Taken { subnet, by } => write!(f, "{subnet} is leased by {by}"),
            NoSubnet::Full(n) => write!(f, "the cluster CIDR {n} has no free subnet left"),
        }
    }
}

/// This node's subnet. `taken` maps every leased subnet (by `A.B.C.D-LEN` key name, parsed
/// or not) to its holder's PublicIP when the value says. In order: `wanted` (`--pod-cidr`)
/// unless another node holds it; the lease whose PublicIP is `me` (a restart); `saved` (the
/// state directory's) when free or ours; else the lowest free subnet, skipping the network's
/// first one as flannel does (its `.0` would be the network address).
pub fn choose_subnet(
    net: &Network,
    taken: &BTreeMap<String, Option<Ipv4Addr>>,
    me: Ipv4Addr,
    wanted: Option<Ipv4Cidr>,
    saved: Option<Ipv4Cidr>,
) -> Result<Ipv4Cidr, NoSubnet> {
    let holder = |s: Ipv4Cidr| taken.get(&subnet_name(s));
    let free_or_mine = |s: Ipv4Cidr| match holder(s) {
        None => true,
        Some(Some(ip)) => *ip == me,
        Some(None) => false,
    };
    if let Some(w) = wanted {
        if !net.holds(w) {
            return Err(NoSubnet::NotInNetwork(w));
        }
        return match holder(w) {
            None => Ok(w),
            Some(Some(ip)) if *ip == me => Ok(w),
            Some(by) => Err(NoSubnet::Taken {
                subnet: w,
                by: by.map_or("a lease that does not parse".into(), |ip| ip.to_string()),
            }),
        };
    }
    let mine = taken
        .iter()
        .filter(|(_, ip)| **ip == Some(me))
        .filter_map(|(k, _)| parse_subnet_name(k))
        .filter(|s| net.holds(*s))
        .min_by_key(|s| u32::from(s.network()));
    if let Some(s) = mine {
        return Ok(s);
    }
    if let Some(s) = saved.filter(|s| net.holds(*s) && free_or_mine(*s)) {
        return Ok(s);
    }
    let size = 1u64 << (32 - u32::from(net.subnet_len));
    let first = u64::from(u32::from(net.cidr.network())) + size;
    let end = u64::from(u32::from(net.cidr.broadcast())) + 1;
    (0..)
        .map(|i| first + i * size)
        .take_while(|a| *a < end)
        .filter_map(|a| Ipv4Cidr::new(Ipv4Addr::from(a as u32), net.subnet_len))
        .find(|s| holder(*s).is_none())
        .ok_or(NoSubnet::Full(net.cidr))
}

/// A node's liveness record (`P/vswitch/nodes/NAME`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    pub subnet: String,
    pub underlay: String,
    pub vtep_mac: String,
    /// Unix time (seconds) the daemon started.
    pub start_time: u64,
}

/// The cluster's nodes from the leases (`name` after `subnets/` to value) and the liveness
/// records (values): a lease with a record for its subnet is that node, Ready; a lease
/// without one is NotReady, named after its subnet; a record without a lease is Ready.
/// Values that do not parse are left out. Sorted by name.
pub fn cluster_nodes(leases: &[(String, Vec<u8>)], records: &[Vec<u8>]) -> Vec<ClusterNode> {
    let mut recs: BTreeMap<String, NodeRecord> = records
        .iter()
        .filter_map(|v| serde_json::from_slice::<NodeRecord>(v).ok())
        .map(|r| (r.subnet.clone(), r))
        .collect();
    let mut out: Vec<ClusterNode> = leases
        .iter()
        .filter_map(|(name, v)| parse_lease(name, v).ok())
        .map(|l| {
            let mac = l.vtep_mac.map(|m| m.to_string()).unwrap_or_default();
            match recs.remove(&l.subnet.to_string()) {
                Some(r) => ClusterNode {
                    name: r.name,
                    subnet: l.subnet.to_string(),
                    underlay: l.public_ip.to_string(),
                    vtep_mac: mac,
                    status: "Ready".into(),
                    started_at: Some(r.start_time),
                },
                None => ClusterNode {
                    name: subnet_name(l.subnet),
                    subnet: l.subnet.to_string(),
                    underlay: l.public_ip.to_string(),
                    vtep_mac: mac,
                    status: "NotReady".into(),
                    started_at: None,
                },
            }
        })
        .collect();
    out.extend(recs.into_values().map(|r| ClusterNode {
        name: r.name,
        subnet: r.subnet,
        underlay: r.underlay,
        vtep_mac: r.vtep_mac,
        status: "Ready".into(),
        started_at: Some(r.start_time),
    }));
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests;
