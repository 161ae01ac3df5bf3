//! The state layer: what the datapath remembers between frames. The forwarding tables
//! (immutable snapshots the control plane swaps in), the service table and the endpoint
//! balancer (ClientIP affinities), connection tracking with its TCP/UDP states and its
//! export/import: shared by every worker (lock-free or concurrent maps). Two pieces are per
//! worker instead: the GRO hold (`gro_hold`) and the upstream DNS forwarder (`dns_forward`). No
//! packet parsing
//! beyond the wire layer's types, and no forwarding decisions (those are the pipeline's).
//!
//! Imports go down only: `state` uses `wire` and the crate's value types, never `pipeline`.

pub mod balancer;
pub mod conntrack;
pub mod ct_list;
pub mod ct_persist;
pub mod ct_state;
pub mod dns_forward;
pub mod gro_hold;
pub mod service;
pub mod tables;
