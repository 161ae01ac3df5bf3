//! The one implementation of the shape checks of request values: names (pod, namespace, node,
//! interface, label, DNS label and name, service, container id), network namespace references
//! (which files the daemon opens, by shape), IPv4 addresses, addresses
//! with a prefix, CIDRs, unicast socket addresses, unicast MACs, rate limits, a Service's
//! port specs, endpoints and affinity, and a capture's filter and bounds.
//!
//! Contract:
//! - Pure: every check looks at one value only, never at node state, reads no clock and
//!   performs no I/O. A check never panics, on any input.
//! - A check returns the parsed value (a [`ServicePort`], an [`Endpoint`], an [`Ipv4Net`]
//!   (`ipnet`'s, re-exported), six MAC bytes...), or an [`Invalid`] naming the request field
//!   (proto field names: `ip`, `mac`, `vip`, `pod_cidr`, ...) and what is wrong, with the
//!   offending value in backticks.
//! - Three clients run the same code: `vswitchd` on every request it decodes (it must not
//!   trust its input, and stays the authority), `vswitchctl` before it sends anything (so a
//!   malformed argument fails fast with exit code 2), and `vswitch-cni` on its environment;
//!   the daemon's own flags (`--cluster-domain`, `--dns-upstream`, ...) go through it too.
//!   The fuzz target `control` runs the name checks on whatever the decoder accepts.
//! - Checks that need state (an address inside this node's subnet, a VIP inside the service
//!   CIDR, a name not taken) are the daemon's, not here.

mod capture;
mod datastore;
mod inspect;
mod name;
mod net;
mod netns;
mod rate;
mod service;
#[cfg(test)]
mod tests;

pub use capture::{capture_filter, capture_spec, FilterProto, FilterTerm, MAX_FILTER_TERMS};
pub use datastore::{datastore_prefix, datastore_url, ETCD_SCHEME};
pub use inspect::{log_filter, namespaced, trace_spec, TraceProto, TraceTarget, LOG_LEVELS};
pub use ipnet::Ipv4Net;
pub use name::{
    container_id, dns_label, dns_name, ifname, k8s_name, label, labels, node_name,
    runtime_port_name, selector, service_name, MAX_DNS_NAME_LEN, MAX_K8S_NAME_LEN,
};
pub use net::{cidr, ip_with_prefix, ipv4, mac, socket_addr_v4};
pub use netns::{netns, NetnsRef, NETNS_DIRS, NETNS_RUN_DIR};
pub use rate::{rate_limit, RateSpec, MAX_BURST, MAX_RATE};
pub use service::{
    affinity, endpoint, service_port, Endpoint, Protocol, ServicePort, DEFAULT_AFFINITY_SECONDS,
    MAX_AFFINITY_SECONDS,
};

use std::fmt;

/// A malformed value: which request field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The request field (proto name, or the variable's name for the CNI environment).
    pub field: &'static str,
    /// What was wrong, in a sentence naming the value.
    pub message: String,
}

impl Invalid {
    /// An error about `field`.
    pub fn new(field: &'static str, message: impl Into<String>) -> Invalid {
        Invalid {
            field,
            message: message.into(),
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for Invalid {}
