//! The datapath's integration tests, one binary (one link instead of one per area): each
//! module drives the public API of `vswitch-datapath` without root, on the fixtures of
//! `common` (a node with two pods and a peer, frame builders, golden frames). Run one area
//! with a filter, for example `cargo test -p vswitch-datapath --test integration -- gso::`.

mod common;
mod conntrack;
mod ct_persist;
mod dns;
mod dns_forward;
mod drops;
mod flow_log;
mod fuzz_seeds;
mod gro;
mod gso;
mod layers;
mod port_ingress;
mod rate_limits;
mod service_nat;
mod services;
mod trace;
mod tunnel;
