//! The end-to-end tests, one binary: each module is one area, driving the release binaries
//! in network namespaces through the harness in `tests/src` (`vswitch_e2e`). One binary
//! rather than one per file: each test binary is linked on its own (thin LTO in the release
//! profile), and CI time is spent on tests, not links. Run one area with a filter, for
//! example `cargo test --release -p vswitch-e2e -- restart::`.

mod apply;
mod capture;
mod cni;
mod control;
mod crash_safety;
mod cross_node;
mod datastore;
mod datastore_outage;
mod dns_upstream;
mod faults;
mod harness;
mod hostile;
mod inspect;
mod metrics;
mod one_node;
mod restart;
mod scale;
mod services;
mod services_input;
mod soak;
mod workers;
