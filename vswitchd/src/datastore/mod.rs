//! The cluster datastore: etcd (v3 API), holding flannel's network config and subnet leases
//! and vswitch's node liveness records under one prefix (`flannel.rs` has the keys, the
//! values and the decisions; this file does the I/O around them).
//!
//! Contract:
//! - At start ([`acquire`]) the node leases its subnet: the config is created from the flags
//!   or checked against them, then the node takes its own lease again (same PublicIP), or the
//!   subnet saved in the state directory, or the lowest free one, with a create-if-absent
//!   transaction under a 24 h etcd lease (flannel's TTL), and publishes its liveness record
//!   under a short one (`--node-ttl`). Without etcd it starts on the saved subnet
//!   (fail-static) and claims it once etcd answers; without either it refuses to start.
//! - Then [`Datastore::run`] keeps both leases alive and keeps the node's datastore peers
//!   equal to the other nodes' leases: list, then watch from the listed revision + 1; after a
//!   lost connection it reconnects with a backoff and resumes the watch from the last
//!   revision seen + 1; a compacted revision means list again and diff.
//! - Fail-static: losing etcd never removes a peer. Peers change only on what etcd says
//!   (a lease deleted or expired); a lease value that does not decode is logged, counted and
//!   skipped.
//! - Every etcd call is bounded in time; nothing here blocks the control plane's lock while
//!   it waits for etcd.

pub mod flannel;
pub mod objects;

use crate::node::Node;
use anyhow::{anyhow, bail, Context, Result};
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    LeaseKeepAliveStream, LeaseKeeper, PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};
use flannel::{LeaseUse, Network};
use objects::{Kind, Objects};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::{error, info, warn};
use vswitch_datapath::{Ipv4Cidr, Mac};
use vswitch_proto::{ClusterNode, DatastoreStatus, PeerSpec};

/// flannel's subnet lease TTL (24 h); kept alive far ahead of expiry.
pub const SUBNET_TTL: i64 = 24 * 3600;
/// How long connecting to etcd may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one etcd request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnection backoff: doubled after each failure up to the maximum.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// Tries at leasing a subnet when other nodes take each one first.
const CLAIM_TRIES: usize = 8;

/// TLS client files (`--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    fn options(&self) -> Result<TlsOptions> {
        let mut o = TlsOptions::new();
        if let Some(ca) = &self.ca {
            let pem = std::fs::read(ca)
                .with_context(|| format!("--etcd-cafile: reading {}", ca.display()))?;
            o = o.ca_certificate(Certificate::from_pem(pem));
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            let c = std::fs::read(cert)
                .with_context(|| format!("--etcd-certfile: reading {}", cert.display()))?;
            let k = std::fs::read(key)
                .with_context(|| format!("--etcd-keyfile: reading {}", key.display()))?;
            o = o.identity(Identity::from_pem(c, k));
        }
        Ok(o)
    }
}

/// What the datastore flags say.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `HOST:PORT` of each etcd endpoint.
    pub endpoints: Vec<String>,
    /// `--datastore-prefix`.
    pub prefix: String,
    pub tls: Option<TlsFiles>,
    /// `--node-ttl`, seconds.
    pub node_ttl: u64,
    pub net: Network,
    /// `--node`.
    pub node: String,
    /// `--underlay`: the lease's PublicIP.
    pub underlay: Ipv4Addr,
}

impl Settings {
    fn urls(&self) -> Vec<String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        self.endpoints
            .iter()
            .map(|e| format!("{scheme}://{e}"))
            .collect()
    }
}

/// Bounds one etcd call in time.
async fn t<T>(f: impl Future<Output = Result<T, etcd_client::Error>>) -> Result<T> {
    match tokio::time::timeout(REQUEST_TIMEOUT, f).await {
        Ok(r) => r.map_err(|e| anyhow!("etcd: {e}")),
        Err(_) => bail!("etcd did not answer within {REQUEST_TIMEOUT:?}"),
    }
}

/// Connects to etcd and checks that it answers: to one member at a time, starting with the
/// member after the one the previous connection tried first, until one answers. Not one
/// client balanced over every member: its first request could be routed to a member that
/// is gone, and a node whose member died then failed to reconnect for as long as the
/// balancer kept picking it (while the cluster had its quorum).
async fn connect(s: &Settings) -> Result<Client> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let urls = s.urls();
    let start = NEXT.fetch_add(1, Relaxed);
    let mut errors = Vec::new();
    for i in 0..urls.len() {
        let url = &urls[(start + i) % urls.len()];
        match connect_one(s, url).await {
            Ok(c) => return Ok(c),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    bail!("no etcd member answered: {}", errors.join("; "))
}

/// Connects to the etcd member at `url` and checks that it answers.
async fn connect_one(s: &Settings, url: &str) -> Result<Client> {
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        // HTTP/2 pings: a dead connection fails the watch and keepalive streams.
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
        .with_keep_alive_while_idle(true);
    if let Some(tls) = &s.tls {
        opts = opts.with_tls(tls.options()?);
    }
    let mut c =
        match tokio::time::timeout(CONNECT_TIMEOUT, Client::connect([url], Some(opts))).await {
            Ok(r) => r.map_err(|e| anyhow!("connecting to {url}: {e}"))?,
            Err(_) => bail!("connecting to {url} timed out"),
        };
    t(c.status())
        .await
        .with_context(|| format!("etcd at {url}"))?;
    Ok(c)
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The datastore of a running node: its subnet, the connection and the sync's state.
pub struct Datastore {
    s: Settings,
    subnet: Ipv4Cidr,
    vtep_mac: Mac,
    start_time: u64,
    /// The current connection (a cheap handle), while connected.
    client: Mutex<Option<Client>>,
    /// (subnet lease, node lease) ids once registered.
    leases: Mutex<Option<(i64, i64)>>,
    /// Lease specs the node refused (they conflict with its peers): not retried until
    /// their value changes or the next full list.
    rejected: Mutex<BTreeMap<String, PeerSpec>>,
    /// The cluster objects skipped by the last sync, with why (each counted once).
    skipped_objects: Mutex<BTreeMap<String, String>>,
    connected: AtomicBool,
    revision: AtomicI64,
    last_sync: AtomicU64,
    skipped: AtomicU64,
}

/// Leases this node's subnet (see the module's contract). `wanted` is `--pod-cidr`, `saved`
/// the subnet of the state directory.
pub async fn acquire(
    s: Settings,
    wanted: Option<Ipv4Cidr>,
    saved: Option<Ipv4Cidr>,
) -> Result<Datastore> {
    let mut c = match connect(&s).await {
        Ok(c) => c,
        Err(e) => {
            let Some(subnet) = wanted.or(saved) else {
                bail!(
                    "--datastore: {e:#}; and no subnet is saved in the state directory to \
                     start with (give --pod-cidr, or start etcd first)"
                );
            };
            warn!(%subnet, "datastore unreachable ({e:#}): starting on the saved subnet \
                  (fail-static); it is claimed when etcd answers");
            return Ok(Datastore::new(s, subnet));
        }
    };
    ensure_config(&mut c, &s).await?;
    for _ in 0..CLAIM_TRIES {
        let (leases, _) = list(&mut c, &flannel::subnets_dir(&s.prefix)).await?;
        let taken = leases
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    flannel::parse_lease(k, v).ok().map(|l| l.public_ip),
                )
            })
            .collect();
        let subnet = flannel::choose_subnet(&s.net, &taken, s.underlay, wanted, saved).map_err(
            |e| match e {
                flannel::NoSubnet::Full(_) => anyhow!("--cluster-cidr: {e}"),
                _ => anyhow!("--pod-cidr: {e}"),
            },
        )?;
        let ds = Datastore::new(s.clone(), subnet);
        if let Some(subnet_lease) = ds.claim(&mut c).await? {
            let node_lease = ds.publish_node(&mut c).await?;
            *ds.leases.lock().expect("not poisoned") = Some((subnet_lease, node_lease));
            *ds.client.lock().expect("not poisoned") = Some(c);
            info!(%subnet, "datastore: subnet leased");
            return Ok(ds);
        }
        if wanted.is_some() {
            bail!("--pod-cidr: {subnet} is leased by another node");
        }
    }
    bail!("--datastore: no subnet could be leased in {CLAIM_TRIES} tries (other nodes took each first)")
}

/// Creates the network config from the flags when absent, else checks it against them.
async fn ensure_config(c: &mut Client, s: &Settings) -> Result<()> {
    let key = flannel::config_key(&s.prefix);
    let value = serde_json::to_string(&s.net.config()).expect("a config serializes");
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key.clone(), value, None)])
        .or_else([TxnOp::get(key.clone(), None)]);
    let r = t(c.txn(txn)).await?;
    if r.succeeded() {
        info!(%key, "datastore: network config created");
        return Ok(());
    }
    let existing = first_value(&r.op_responses()).unwrap_or_default();
    s.net
        .check(&existing)
        .map_err(|e| anyhow!("--datastore: {key}: {e}"))
}

fn first_value(ops: &[TxnOpResponse]) -> Option<Vec<u8>> {
    ops.iter().find_map(|o| match o {
        TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
        _ => None,
    })
}

/// The keys under `dir` (names after it, values) and the revision of the list.
async fn list(c: &mut Client, dir: &str) -> Result<(Vec<(String, Vec<u8>)>, i64)> {
    let r = t(c.get(dir, Some(GetOptions::new().with_prefix()))).await?;
    let rev = r.header().map_or(0, |h| h.revision());
    let kvs = r
        .kvs()
        .iter()
        .filter_map(|kv| {
            let name = kv.key_str().ok()?.strip_prefix(dir)?;
            Some((name.to_string(), kv.value().to_vec()))
        })
        .collect();
    Ok((kvs, rev))
}

impl Datastore {
    fn new(s: Settings, subnet: Ipv4Cidr) -> Datastore {
        Datastore {
            vtep_mac: Mac::from_ipv4(subnet.network()),
            subnet,
            s,
            start_time: now_unix(),
            client: Mutex::new(None),
            leases: Mutex::new(None),
            rejected: Mutex::new(BTreeMap::new()),
            skipped_objects: Mutex::new(BTreeMap::new()),
            connected: AtomicBool::new(false),
            revision: AtomicI64::new(0),
            last_sync: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// The node's subnet (its pod CIDR).
    pub fn subnet(&self) -> Ipv4Cidr {
        self.subnet
    }

    /// What `node show` reports.
    pub fn status(&self) -> DatastoreStatus {
        DatastoreStatus {
            endpoints: self.s.urls(),
            prefix: self.s.prefix.clone(),
            connected: self.connected.load(Relaxed),
            revision: self.revision.load(Relaxed),
            last_sync: Some(self.last_sync.load(Relaxed)).filter(|t| *t > 0),
            skipped: self.skipped.load(Relaxed),
        }
    }

    /// Takes the subnet's lease under a new 24 h etcd lease: created when absent, taken
    /// over when its PublicIP is ours. `None` when another node holds it.
    async fn claim(&self, c: &mut Client) -> Result<Option<i64>> {
        let key = flannel::subnet_key(&self.s.prefix, self.subnet);
        let value = flannel::lease_value(self.s.underlay, self.s.net.vni, self.vtep_mac);
        let lease = t(c.lease_grant(SUBNET_TTL, None)).await?.id();
        let put = TxnOp::put(
            key.clone(),
            value.clone(),
            Some(PutOptions::new().with_lease(lease)),
        );
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([put.clone()])
            .or_else([TxnOp::get(key.clone(), None)]);
        let r = t(c.txn(txn)).await?;
        if r.succeeded() {
            return Ok(Some(lease));
        }
        let name = flannel::subnet_name(self.subnet);
        let ours = first_value(&r.op_responses())
            .and_then(|v| flannel::parse_lease(&name, &v).ok())
            .is_some_and(|l| l.public_ip == self.s.underlay);
        if ours {
            // Our own lease from before a restart: rewritten under the new etcd lease.
            t(c.put(key, value, Some(PutOptions::new().with_lease(lease)))).await?;
            return Ok(Some(lease));
        }
        let _ = t(c.lease_revoke(lease)).await;
        Ok(None)
    }

    /// Publishes the node's liveness record under a new `--node-ttl` lease.
    async fn publish_node(&self, c: &mut Client) -> Result<i64> {
        let ttl = i64::try_from(self.s.node_ttl).unwrap_or(i64::MAX);
        let lease = t(c.lease_grant(ttl, None)).await?.id();
        let rec = flannel::NodeRecord {
            name: self.s.node.clone(),
            subnet: self.subnet.to_string(),
            underlay: self.s.underlay.to_string(),
            vtep_mac: self.vtep_mac.to_string(),
            start_time: self.start_time,
        };
        let key = format!("{}{}", flannel::nodes_dir(&self.s.prefix), self.s.node);
        let value = serde_json::to_string(&rec).expect("a record serializes");
        t(c.put(key, value, Some(PutOptions::new().with_lease(lease)))).await?;
        Ok(lease)
    }

    /// Claims the subnet and publishes the record (again).
    async fn register(&self, c: &mut Client) -> Result<(i64, i64)> {
        let Some(subnet_lease) = self.claim(c).await? else {
            error!(subnet = %self.subnet, "datastore: another node holds this node's subnet; \
                   not publishing (remove one of the two nodes' leases)");
            bail!("subnet {} is leased by another node", self.subnet);
        };
        let node_lease = self.publish_node(c).await?;
        *self.leases.lock().expect("not poisoned") = Some((subnet_lease, node_lease));
        Ok((subnet_lease, node_lease))
    }

    /// The current connection; an error when there is none.
    fn connected_client(&self) -> Result<Client> {
        self.client
            .lock()
            .expect("not poisoned")
            .clone()
            .ok_or_else(|| anyhow!("not connected to the datastore"))
    }

    /// `node list`: the leases and liveness records as etcd has them now.
    pub async fn node_list(&self) -> Result<Vec<ClusterNode>> {
        let mut c = self.connected_client()?;
        let (leases, _) = list(&mut c, &flannel::subnets_dir(&self.s.prefix)).await?;
        let (records, _) = list(&mut c, &flannel::nodes_dir(&self.s.prefix)).await?;
        let records: Vec<Vec<u8>> = records.into_iter().map(|(_, v)| v).collect();
        Ok(flannel::cluster_nodes(&leases, &records))
    }

    /// Keeps the leases alive and the peers in line with etcd, forever: each session ends
    /// on an error, the next one starts after a backoff.
    pub async fn run(self: std::sync::Arc<Self>, node: std::sync::Arc<Node>) {
        let mut backoff = BACKOFF_MIN;
        // Everything the watch follows, as of `self.revision`.
        let mut objs = Objects::default();
        loop {
            let started = Instant::now();
            let Err(e) = self.session(&node, &mut objs).await;
            self.connected.store(false, Relaxed);
            *self.client.lock().expect("not poisoned") = None;
            if started.elapsed() > Duration::from_secs(30) {
                backoff = BACKOFF_MIN;
            }
            warn!("datastore: {e:#}; reconnecting in {backoff:?} (peers are kept meanwhile)");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One connection's life; returns only on an error.
    async fn session(&self, node: &Node, objs: &mut Objects) -> Result<std::convert::Infallible> {
        let existing = self.client.lock().expect("not poisoned").clone();
        let mut c = match existing {
            Some(c) => c,
            None => connect(&self.s).await?,
        };
        let (mut sk, mut ss, mut nk, mut ns) = self.keepers(&mut c).await?;
        *self.client.lock().expect("not poisoned") = Some(c.clone());
        let dir = format!("{}/", self.s.prefix);
        let mut tick = tokio::time::interval(Duration::from_secs((self.s.node_ttl / 3).max(1)));
        loop {
            let mut rev = self.revision.load(Relaxed);
            if rev == 0 {
                rev = self.relist(&mut c, node, objs).await?;
            } else {
                // Changes made while disconnected.
                self.publish(&mut c, node, objs).await?;
            }
            let w_from = rev + 1;
            let opts = WatchOptions::new()
                .with_prefix()
                .with_start_revision(w_from);
            let mut w = t(c.watch(dir.clone(), Some(opts))).await?;
            self.connected.store(true, Relaxed);
            loop {
                tokio::select! {
                    m = w.message() => {
                        let m = m.map_err(|e| anyhow!("watch: {e}"))?
                            .ok_or_else(|| anyhow!("the watch stream ended"))?;
                        if m.compact_revision() > 0 {
                            info!(compacted = m.compact_revision(), "datastore: revision {} \
                                  was compacted; listing again", w_from);
                            self.revision.store(0, Relaxed);
                            break;
                        }
                        if m.canceled() {
                            bail!("the watch was cancelled: {}", m.cancel_reason());
                        }
                        let (mut leases, mut others) = (false, false);
                        for ev in m.events() {
                            let Some(kv) = ev.kv() else { continue };
                            rev = rev.max(kv.mod_revision());
                            let Some((kind, name)) =
                                kv.key_str().ok().and_then(|k| objects::route(&self.s.prefix, k))
                            else {
                                continue;
                            };
                            if kind == Kind::Lease {
                                leases = true;
                            } else {
                                others = true;
                            }
                            match ev.event_type() {
                                EventType::Put => {
                                    if kind == Kind::Lease {
                                        self.check_value(name, kv.value());
                                    }
                                    objs.of(kind).insert(name.to_string(), kv.value().to_vec());
                                }
                                EventType::Delete => {
                                    objs.of(kind).remove(name);
                                }
                            }
                        }
                        if leases {
                            self.apply(node, &objs.leases).await;
                        }
                        if leases || others {
                            // Peers first: a pod is an endpoint only inside a peer's subnet.
                            self.sync_objects(node, objs).await;
                            self.publish(&mut c, node, objs).await?;
                        }
                        // Only events move the revision seen: a response's header
                        // revision (the store's) may be ahead of events not yet delivered.
                        self.revision.store(rev, Relaxed);
                    }
                    _ = tick.tick() => {
                        t(sk.keep_alive()).await?;
                        t(nk.keep_alive()).await?;
                    }
                    _ = node.pods_changed.notified() => self.publish(&mut c, node, objs).await?,
                    r = ss.message() => expect_alive("subnet", r)?,
                    r = ns.message() => expect_alive("node liveness", r)?,
                }
            }
        }
    }

    /// Keepalive streams for both leases, registering (again) when either is gone (expired
    /// while disconnected: etcd answers TTL 0 or "lease not found").
    async fn keepers(&self, c: &mut Client) -> Result<Keepers> {
        let ids = *self.leases.lock().expect("not poisoned");
        if let Some(ids) = ids {
            match alive_keepers(c, ids).await {
                Ok(k) => return Ok(k),
                Err(e) => info!("datastore: a lease is gone ({e:#}); registering again"),
            }
        }
        let ids = self.register(c).await?;
        alive_keepers(c, ids).await
    }

    /// Lists everything under the prefix, replaces `objs` with it, brings the peers and the
    /// cluster's objects in line and publishes the node's pods; returns the list's revision.
    async fn relist(&self, c: &mut Client, node: &Node, objs: &mut Objects) -> Result<i64> {
        let dir = format!("{}/", self.s.prefix);
        let (kvs, rev) = list(c, &dir).await?;
        *objs = Objects::default();
        for (name, v) in kvs {
            let key = format!("{dir}{name}");
            let Some((kind, name)) = objects::route(&self.s.prefix, &key) else {
                continue;
            };
            if kind == Kind::Lease {
                self.check_value(name, &v);
            }
            objs.of(kind).insert(name.to_string(), v);
        }
        self.rejected.lock().expect("not poisoned").clear();
        self.apply(node, &objs.leases).await;
        self.sync_objects(node, objs).await;
        self.revision.store(rev, Relaxed);
        self.last_sync.store(now_unix(), Relaxed);
        info!(
            revision = rev,
            leases = objs.leases.len(),
            pods = objs.pods.len(),
            services = objs.services.len(),
            "datastore: listed"
        );
        self.publish(c, node, objs).await?;
        Ok(rev)
    }

    /// Hands the cluster's objects to the node; logs and counts what it skipped, once per
    /// value (every sync sees every value again).
    async fn sync_objects(&self, node: &Node, objs: &Objects) {
        let skipped = node.sync_cluster(objs.decode()).await;
        let mut seen = self.skipped_objects.lock().expect("not poisoned");
        let now: BTreeMap<String, String> = skipped.into_iter().collect();
        for (what, why) in &now {
            if seen.get(what) != Some(why) {
                self.skipped.fetch_add(1, Relaxed);
                warn!("datastore: skipping {what}: {why}");
            }
        }
        *seen = now;
    }

    /// Publishes the node's pods: puts what changed, deletes what is gone (the watch then
    /// brings the writes back into `objs`).
    async fn publish(&self, c: &mut Client, node: &Node, objs: &Objects) -> Result<()> {
        let own = node.own_pods().await;
        let (puts, deletes) = objs.pod_writes(&self.s.prefix, &self.s.node, &own);
        if !puts.is_empty() || !deletes.is_empty() {
            let n = (puts.len(), deletes.len());
            self.txn(c, puts, deletes).await?;
            info!(
                put = n.0,
                deleted = n.1,
                "datastore: published this node's pods"
            );
        }
        Ok(())
    }

    /// Puts and deletes in one transaction; its revision.
    async fn txn(
        &self,
        c: &mut Client,
        puts: Vec<(String, String)>,
        deletes: Vec<String>,
    ) -> Result<i64> {
        let ops: Vec<TxnOp> = puts
            .into_iter()
            .map(|(k, v)| TxnOp::put(k, v, None))
            .chain(deletes.into_iter().map(|k| TxnOp::delete(k, None)))
            .collect();
        let r = t(c.txn(Txn::new().and_then(ops))).await?;
        Ok(r.header().map_or(0, |h| h.revision()))
    }

    /// The datastore prefix.
    pub fn prefix(&self) -> &str {
        &self.s.prefix
    }

    /// Writes (`apply`, `delete`) in one transaction; its revision. Fails when not
    /// connected: nothing is queued.
    pub async fn write(&self, puts: Vec<(String, String)>, deletes: Vec<String>) -> Result<i64> {
        let mut c = self.connected_client()?;
        self.txn(&mut c, puts, deletes).await
    }

    /// Waits until the watch has seen revision `rev` (at most `within`); whether it did.
    pub async fn wait_revision(&self, rev: i64, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.revision.load(Relaxed) < rev {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Logs and counts a lease value this node cannot use.
    fn check_value(&self, name: &str, v: &[u8]) {
        if let LeaseUse::Skip(why) = flannel::classify(name, v, self.subnet, self.s.net.vni) {
            self.skipped.fetch_add(1, Relaxed);
            warn!(lease = %name, "datastore: skipping a lease: {why}");
        }
    }

    /// Brings the node's datastore peers in line with `leases`.
    async fn apply(&self, node: &Node, leases: &BTreeMap<String, Vec<u8>>) {
        let desired: BTreeMap<String, PeerSpec> = {
            let rejected = self.rejected.lock().expect("not poisoned");
            leases
                .iter()
                .filter_map(
                    |(k, v)| match flannel::classify(k, v, self.subnet, self.s.net.vni) {
                        LeaseUse::Peer(p) if rejected.get(k) != Some(&p) => Some((k.clone(), p)),
                        _ => None,
                    },
                )
                .collect()
        };
        let refused = node.sync_datastore_peers(&desired).await;
        let mut rejected = self.rejected.lock().expect("not poisoned");
        for (spec, why) in refused {
            self.skipped.fetch_add(1, Relaxed);
            warn!(lease = %spec.node, "datastore: skipping a lease: {why}");
            rejected.insert(spec.node.clone(), spec);
        }
    }
}

/// The keepalive handles and answer streams of the subnet and the node leases.
type Keepers = (
    LeaseKeeper,
    LeaseKeepAliveStream,
    LeaseKeeper,
    LeaseKeepAliveStream,
);

/// Keepalive streams for leases `(subnet, node)`, each kept alive once: an error when
/// either is gone.
async fn alive_keepers(c: &mut Client, (subnet, node): (i64, i64)) -> Result<Keepers> {
    let (mut sk, mut ss) = t(c.lease_keep_alive(subnet)).await?;
    let (mut nk, mut ns) = t(c.lease_keep_alive(node)).await?;
    for (what, k, s) in [
        ("subnet", &mut sk, &mut ss),
        ("node liveness", &mut nk, &mut ns),
    ] {
        t(k.keep_alive()).await?;
        expect_alive(what, t(s.message()).await)?;
    }
    Ok((sk, ss, nk, ns))
}

/// A keepalive answer: an expired lease (TTL 0) or a closed stream ends the session.
fn expect_alive<E: std::fmt::Display>(
    what: &str,
    r: Result<Option<etcd_client::LeaseKeepAliveResponse>, E>,
) -> Result<()> {
    match r {
        Ok(Some(r)) if r.ttl() > 0 => Ok(()),
        Ok(Some(_)) => bail!("the {what} lease expired"),
        Ok(None) => bail!("the {what} keepalive stream ended"),
        Err(e) => bail!("{what} keepalive: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(tls: Option<TlsFiles>) -> Settings {
        let cidr = crate::checked::cidr("c", "198.18.0.0/16").unwrap();
        Settings {
            endpoints: vec!["198.19.0.254:2379".into(), "198.19.0.253:2379".into()],
            prefix: "/coreos.com/network".into(),
            tls,
            node_ttl: 20,
            net: Network {
                cidr,
                subnet_len: 24,
                vni: 1,
                port: 4789,
            },
            node: "node1".into(),
            underlay: Ipv4Addr::new(198, 19, 0, 1),
        }
    }

    #[test]
    fn tls_files_switch_the_scheme_and_name_the_flag_when_unreadable() {
        assert_eq!(
            settings(None).urls(),
            ["http://198.19.0.254:2379", "http://198.19.0.253:2379"]
        );
        let missing = |ca: bool| TlsFiles {
            ca: ca.then(|| PathBuf::from("/nonexistent/vswitch-ca.pem")),
            cert: (!ca).then(|| PathBuf::from("/nonexistent/vswitch-cert.pem")),
            key: (!ca).then(|| PathBuf::from("/nonexistent/vswitch-key.pem")),
        };
        let s = settings(Some(missing(true)));
        assert_eq!(s.urls()[0], "https://198.19.0.254:2379");
        let e = format!("{:#}", missing(true).options().unwrap_err());
        assert!(
            e.starts_with("--etcd-cafile: reading /nonexistent/vswitch-ca.pem"),
            "{e}"
        );
        let e = format!("{:#}", missing(false).options().unwrap_err());
        assert!(e.starts_with("--etcd-certfile: reading"), "{e}");
        // Readable PEM files are taken as given (checked by the TLS handshake).
        let dir = std::env::temp_dir().join(format!("vswitchd-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(dir.join(f), "-----BEGIN CERTIFICATE-----\n").unwrap();
        }
        let ok = TlsFiles {
            ca: Some(dir.join("ca.pem")),
            cert: Some(dir.join("cert.pem")),
            key: Some(dir.join("key.pem")),
        };
        assert!(ok.options().is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn acquire_without_etcd_starts_on_the_saved_subnet_or_refuses() {
        // Nothing listens on loopback's port 9 (discard): the connection is refused at once.
        let mut s = settings(None);
        s.endpoints = vec!["127.0.0.1:9".into()];
        let saved = crate::checked::cidr("c", "198.18.7.0/24").ok();
        let ds = acquire(s.clone(), None, saved).await.unwrap();
        assert_eq!(ds.subnet(), saved.unwrap());
        assert!(!ds.status().connected);
        let e = acquire(s, None, None)
            .await
            .err()
            .expect("no subnet to start on");
        let e = format!("{e:#}");
        assert!(
            e.starts_with("--datastore: ") && e.contains("no subnet is saved"),
            "{e}"
        );
    }
}
