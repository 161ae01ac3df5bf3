//! The node's effects: the pods' TAPs (created in their namespaces, made persistent, handed
//! to the I/O engine), saving the state, and installing the table snapshot the state builds
//! (with the UDP conntrack flush for endpoints that left a service).

use super::{Inner, Node};
use crate::podnet::{self, PodIfConfig};
use crate::state::PortRecord;
use crate::{tap, OnOff};
use anyhow::Result;
use std::os::fd::AsFd;
use std::path::PathBuf;
use tracing::warn;
use vswitch_datapath::{Mac, PortId};

impl Node {
    /// What the pod's interface must look like.
    pub(super) fn pod_if_config(&self, rec: &PortRecord, mac: Mac) -> PodIfConfig {
        let cfg = self.datapath.config();
        PodIfConfig {
            netns: PathBuf::from(&rec.netns),
            ifname: rec.ifname.clone(),
            mac: mac.0,
            addr: rec.ip,
            prefix_len: rec.prefix_len,
            gateway: cfg.gateway,
            mtu: u32::from(cfg.pod_mtu),
            offload: self.args.offload == OnOff::On,
            queues: self.io.workers(),
        }
    }

    /// Creates the pod's TAP and allocates its port id. The TAP is not persistent yet and not
    /// served: a crash before the port is saved removes it with its fd, and dropping the fd
    /// undoes it. Once the port is saved, [`Node::serve`] takes it from there.
    pub(super) async fn attach(
        &self,
        inner: &mut Inner,
        rec: &PortRecord,
        mac: Mac,
    ) -> Result<(PortId, podnet::Queues)> {
        self.create_tap(inner, rec, mac, podnet::attach_pod).await
    }

    /// Makes a TAP from [`Node::attach`] persistent, now that its port is saved (it survives
    /// a restart of the daemon from here on), and hands it to the I/O engine.
    pub(super) fn serve(&self, id: PortId, fd: podnet::Queues) {
        let persist = match fd.first() {
            Some(q) => tap::set_persist(q.as_fd(), true),
            None => Err(std::io::Error::from_raw_os_error(libc::EBADF)),
        };
        if let Err(e) = persist {
            warn!(
                port = id.get(),
                "TUNSETPERSIST: {e}; the pod loses its interface when the daemon stops"
            );
        }
        self.io.add_port(id, fd);
    }

    /// Takes over the pod's TAP when it survived a restart of the daemon (or creates it
    /// again), persistent at once (its port is saved). The caller hands it to the I/O engine.
    pub(super) async fn reattach(
        &self,
        inner: &mut Inner,
        rec: &PortRecord,
        mac: Mac,
    ) -> Result<(PortId, podnet::Queues)> {
        self.create_tap(inner, rec, mac, podnet::reattach_pod).await
    }

    async fn create_tap(
        &self,
        inner: &mut Inner,
        rec: &PortRecord,
        mac: Mac,
        how: fn(&PodIfConfig) -> Result<(podnet::Queues, u32)>,
    ) -> Result<(PortId, podnet::Queues)> {
        let ifcfg = self.pod_if_config(rec, mac);
        let (fd, _ifindex) = tokio::task::spawn_blocking(move || how(&ifcfg))
            .await
            .map_err(|e| anyhow::anyhow!("attach task failed: {e}"))??;
        Ok((PortId::new(inner.alloc_id()), fd))
    }

    /// Builds and installs a new table snapshot from the current state (ports, peers, and
    /// the services with their endpoints recomputed), then flushes the UDP conntrack of
    /// endpoints that left a service.
    pub(super) fn install(&self, inner: &mut Inner) {
        let (services, dns, udp) = inner.service_tables();
        self.datapath.install(inner.tables(services, dns));
        self.flush_removed_udp(&inner.udp_backends, &udp);
        inner.udp_backends = udp;
    }

    /// Saves the state; the datastore task then publishes the node's pods (when changed).
    pub(super) fn persist(&self, inner: &Inner) -> Result<()> {
        self.store.save(&inner.persisted())?;
        self.pods_changed.notify_one();
        Ok(())
    }
}
