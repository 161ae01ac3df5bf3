//! Hostile traffic for the hostile-pod suite: what a broken or malicious pod (or a stranger on
//! the underlay) sends. Every run is bounded by a packet count AND a duration, optionally
//! paced, and reports what it sent.
//!
//! Modes (all but `vxlan-from-stranger` write whole Ethernet frames to the pod's interface
//! through an AF_PACKET socket, so the switch sees exactly these bytes):
//! - `garbage`: random frames of random length. A quarter are random from the first byte
//!   (a foreign source MAC); the rest carry the pod's own source MAC, the gateway's or a
//!   random destination, an IPv4 or ARP ethertype and random bytes after it, so that they
//!   get past the source check into the parsers.
//! - `arp-storm`: ARP requests from the pod's own MAC and address, for the gateway (which the
//!   switch answers) and for random addresses of the pod's subnet.
//! - `broadcast`: UDP datagrams to the subnet's broadcast address and ff:ff:ff:ff:ff:ff.
//! - `forged`: frames with forged sources, in turn: a random source MAC, the pod's MAC with a
//!   random source address in 198.18.0.0/15, and ARP with a forged sender address.
//! - `syn-flood`: TCP SYNs from the pod's own MAC and address to `--dst IP:PORT` (a Service
//!   VIP), each from another source port, so that each asks for a conntrack entry.
//! - `vxlan-from-stranger`: VXLAN datagrams (a plain UDP socket) to a node's tunnel port,
//!   `--dst UNDERLAY:PORT`, from whatever address the sender has: run it where that address
//!   is no peer of the node.
//!
//! Destinations (the IPv4 ones, and the VXLAN target) must lie in 198.18.0.0/15 or loopback.

use crate::frames::{self, Addrs, Rng, BROADCAST, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETH_LEN};
use crate::pacer::Pacer;
use crate::sender::allowed_destination;
use crate::{now_ns, secs_to_ns, Error, Result, StopReason};
use nix::ifaddrs::getifaddrs;
use nix::sys::socket::{
    sendto, socket, AddressFamily, MsgFlags, SockFlag, SockType, SockaddrStorage,
};
use serde::Serialize;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

/// The attack modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Random frames.
    Garbage,
    /// ARP requests.
    ArpStorm,
    /// Broadcast UDP.
    Broadcast,
    /// Forged source MAC, IP or ARP sender.
    Forged,
    /// TCP SYNs to `dst` from many source ports.
    SynFlood,
    /// VXLAN datagrams to `dst` from a non-peer.
    VxlanFromStranger,
}

/// What to send.
#[derive(Debug, Clone)]
pub struct AttackConfig {
    /// The mode.
    pub mode: Mode,
    /// The pod's interface (AF_PACKET modes).
    pub dev: String,
    /// `syn-flood`: the target IP:PORT; `vxlan-from-stranger`: the node's underlay IP:PORT;
    /// `forged`: the destination IP (port ignored; default the gateway).
    pub dst: Option<SocketAddrV4>,
    /// `vxlan-from-stranger`: the VNI.
    pub vni: u32,
    /// Packets at most.
    pub count: u64,
    /// Seconds at most.
    pub duration_secs: f64,
    /// Packets per second; 0 = as fast as possible.
    pub rate_pps: u64,
    /// PRNG seed (default: from the clock).
    pub seed: Option<u64>,
}

/// What an attack did.
#[derive(Debug, Clone, Serialize)]
pub struct AttackReport {
    /// The mode.
    pub mode: Mode,
    /// Interface (AF_PACKET modes) or local address (VXLAN) it sent from.
    pub from: String,
    /// What it sent to.
    pub target: String,
    /// The configured bounds and pacing.
    pub count: u64,
    /// Seconds at most.
    pub duration_secs: f64,
    /// Packets per second, 0 = unpaced.
    pub rate_pps: u64,
    /// The PRNG seed (to replay a run).
    pub seed: u64,
    /// Frames (datagrams for VXLAN) the kernel accepted.
    pub sent: u64,
    /// Bytes of those (whole Ethernet frames; UDP payloads for VXLAN).
    pub bytes: u64,
    /// Sends that failed (ENOBUFS, ...), not retried.
    pub send_errors: u64,
    /// Seconds it ran.
    pub elapsed_s: f64,
    /// `sent / elapsed_s`.
    pub offered_pps: f64,
    /// Why it stopped.
    pub stopped_by: StopReason,
}

impl std::fmt::Display for AttackReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} from {} to {}: sent {} ({} bytes, {} errors) in {:.2} s ({:.0} pps), stopped by {:?}",
            self.mode,
            self.from,
            self.target,
            self.sent,
            self.bytes,
            self.send_errors,
            self.elapsed_s,
            self.offered_pps,
            self.stopped_by
        )
    }
}

/// The pod's side of an AF_PACKET attack: its interface and addresses.
struct Link {
    fd: OwnedFd,
    addr: SockaddrStorage,
    mac: [u8; 6],
    ip: Ipv4Addr,
    prefix_len: u8,
    mtu: usize,
}

impl Link {
    fn open(dev: &str) -> Result<Link> {
        let mut link = None;
        let mut inet = None;
        for a in getifaddrs().map_err(|e| Error::io("getifaddrs", e))? {
            if a.interface_name != dev {
                continue;
            }
            let Some(addr) = a.address else { continue };
            if let Some(ll) = addr.as_link_addr() {
                link = ll.addr().map(|mac| (addr, mac));
            } else if let Some(sin) = addr.as_sockaddr_in() {
                let mask = a
                    .netmask
                    .and_then(|m| m.as_sockaddr_in().map(|m| u32::from(m.ip())))
                    .unwrap_or(u32::MAX);
                inet = Some((sin.ip(), mask.count_ones() as u8));
            }
        }
        let (addr, mac) =
            link.ok_or_else(|| Error::Config(format!("dev: no interface {dev} with a MAC")))?;
        let (ip, prefix_len) =
            inet.ok_or_else(|| Error::Config(format!("dev: {dev} has no IPv4 address")))?;
        let mtu = std::fs::read_to_string(format!("/sys/class/net/{dev}/mtu"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1500usize);
        // Protocol 0: this socket only sends (it receives nothing).
        let fd = socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::empty(),
            None,
        )
        .map_err(|e| Error::io("socket(AF_PACKET)", e))?;
        Ok(Link {
            fd,
            addr,
            mac,
            ip,
            prefix_len,
            mtu,
        })
    }

    fn subnet_host(&self, rng: &mut Rng) -> Ipv4Addr {
        let host_bits = 32 - u32::from(self.prefix_len.min(30));
        let mask = (1u32 << host_bits) - 1;
        let net = u32::from(self.ip) & !mask;
        Ipv4Addr::from(net | (rng.range(1, u64::from(mask - 1)) as u32))
    }

    fn broadcast(&self) -> Ipv4Addr {
        let host_bits = 32 - u32::from(self.prefix_len.min(30));
        Ipv4Addr::from(u32::from(self.ip) | ((1u32 << host_bits) - 1))
    }
}

/// The default gateway of `dev` from /proc/net/route.
fn gateway(dev: &str) -> Option<Ipv4Addr> {
    let routes = std::fs::read_to_string("/proc/net/route").ok()?;
    routes.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 2 && f[0] == dev && f[1] == "00000000")
            .then(|| u32::from_str_radix(f[2], 16).ok())
            .flatten()
            .map(|g| Ipv4Addr::from(u32::from_be(g)))
    })
}

/// The MAC of `ip` in the kernel's neighbour table (/proc/net/arp), resolving it first (a UDP
/// datagram to the discard port makes the kernel ARP) when it is not there, for up to 2 s.
fn neighbour_mac(ip: Ipv4Addr) -> Result<[u8; 6]> {
    let lookup = || -> Option<[u8; 6]> {
        let table = std::fs::read_to_string("/proc/net/arp").ok()?;
        table.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 4 || f[0] != ip.to_string() || f[2] == "0x0" {
                return None;
            }
            let mut m = [0u8; 6];
            let parts: Vec<&str> = f[3].split(':').collect();
            if parts.len() != 6 {
                return None;
            }
            for (i, p) in parts.iter().enumerate() {
                m[i] = u8::from_str_radix(p, 16).ok()?;
            }
            (m != [0; 6]).then_some(m)
        })
    };
    let deadline = now_ns() + 2_000_000_000;
    let sock = UdpSocket::bind("0.0.0.0:0").map_err(|e| Error::io("bind", e))?;
    loop {
        if let Some(m) = lookup() {
            return Ok(m);
        }
        if now_ns() > deadline {
            return Err(Error::Config(format!(
                "dst: no MAC for {ip} in /proc/net/arp after 2 s"
            )));
        }
        let _ = sock.send_to(b"resolve", SocketAddrV4::new(ip, 9));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs an attack to the end (count or duration).
pub fn run(cfg: &AttackConfig) -> Result<AttackReport> {
    if cfg.duration_secs.is_nan() || cfg.duration_secs <= 0.0 {
        return Err(Error::Config("duration: must be > 0".into()));
    }
    if let Some(d) = cfg.dst {
        if !allowed_destination(*d.ip()) {
            return Err(Error::Config(format!(
                "dst: {} is outside 198.18.0.0/15 (RFC 2544 benchmarking) and 127.0.0.0/8",
                d.ip()
            )));
        }
    }
    let seed = cfg
        .seed
        .unwrap_or_else(|| now_ns() ^ u64::from(std::process::id()));
    let mut rng = Rng::new(seed);
    let need_dst = |what: &str| {
        cfg.dst
            .ok_or_else(|| Error::Config(format!("dst: {what} needs --dst IP:PORT")))
    };
    let mut buf = Vec::with_capacity(2048);
    let mut inner = Vec::with_capacity(128);
    let (from, target, mut send): (String, String, Box<SendFn>);
    if cfg.mode == Mode::VxlanFromStranger {
        let dst = need_dst("vxlan-from-stranger")?;
        let sock = UdpSocket::bind("0.0.0.0:0").map_err(|e| Error::io("bind", e))?;
        sock.connect(dst).map_err(|e| Error::io("connect", e))?;
        from = sock.local_addr().map(|a| a.to_string()).unwrap_or_default();
        target = format!("{dst} vni {}", cfg.vni);
        let vni = cfg.vni;
        send = Box::new(move |rng, i| {
            // An inner frame for a pod of the node: what a forged peer would inject.
            let a = Addrs {
                src_mac: rng.mac(),
                dst_mac: rng.mac(),
                src: Ipv4Addr::new(198, 18, 200, rng.range(2, 254) as u8),
                dst: Ipv4Addr::new(198, 18, 1, rng.range(2, 254) as u8),
            };
            frames::udp(&mut inner, a, 4000, 5000, b"stranger", i as u16);
            frames::vxlan(&mut buf, vni, &inner);
            SendResult::of(sock.send(&buf))
        });
    } else {
        let link = Link::open(&cfg.dev)?;
        let gw = gateway(&cfg.dev);
        if let Some(g) = gw.filter(|g| !allowed_destination(*g)) {
            return Err(Error::Config(format!(
                "dev: the gateway {g} of {} is outside 198.18.0.0/15 and 127.0.0.0/8",
                cfg.dev
            )));
        }
        let gw_mac = match (cfg.mode, gw) {
            (Mode::ArpStorm | Mode::Broadcast, _) => None,
            (_, Some(gw)) => Some(neighbour_mac(gw)?),
            (Mode::Garbage, None) => None,
            (_, None) => {
                return Err(Error::Config(format!(
                    "dev: {} has no default gateway (needed to address the router)",
                    cfg.dev
                )))
            }
        };
        from = format!("{} ({}, {})", cfg.dev, fmt_mac(link.mac), link.ip);
        let mode = cfg.mode;
        let max_len = (link.mtu + ETH_LEN).min(1514);
        let router = gw_mac.unwrap_or(BROADCAST);
        let own = Addrs {
            src_mac: link.mac,
            dst_mac: router,
            src: link.ip,
            dst: gw.unwrap_or(link.ip),
        };
        target = match mode {
            Mode::SynFlood => format!("{} via {}", need_dst("syn-flood")?, fmt_mac(router)),
            Mode::Forged => format!("{}", cfg.dst.map(|d| *d.ip()).unwrap_or(own.dst)),
            Mode::Broadcast => format!("{} (ff:ff:ff:ff:ff:ff)", link.broadcast()),
            Mode::ArpStorm => format!("ARP for {} and the subnet", own.dst),
            _ => format!("{}: random frames", fmt_mac(router)),
        };
        let dst = cfg.dst;
        let base_port = rng.range(1024, 60000) as u32;
        send = Box::new(move |rng, i| {
            match mode {
                Mode::Garbage => garbage(&mut buf, rng, &link, router, max_len),
                Mode::ArpStorm => {
                    let t = if i % 2 == 0 {
                        own.dst
                    } else {
                        link.subnet_host(rng)
                    };
                    frames::arp_request(&mut buf, link.mac, link.ip, t);
                }
                Mode::Broadcast => {
                    let a = Addrs {
                        dst_mac: BROADCAST,
                        dst: link.broadcast(),
                        ..own
                    };
                    frames::udp(&mut buf, a, 5353, 5353, b"broadcast storm", i as u16);
                }
                Mode::Forged => {
                    let to = dst.map(|d| *d.ip()).unwrap_or(own.dst);
                    let forged_ip = Ipv4Addr::new(198, 18 + (i % 2) as u8, rng.next_u64() as u8, 7);
                    match i % 3 {
                        0 => {
                            let a = Addrs {
                                src_mac: rng.mac(),
                                dst: to,
                                ..own
                            };
                            frames::udp(&mut buf, a, 4000, 5000, b"forged mac", i as u16);
                        }
                        1 => {
                            let a = Addrs {
                                src: forged_ip,
                                dst: to,
                                ..own
                            };
                            frames::udp(&mut buf, a, 4000, 5000, b"forged ip", i as u16);
                        }
                        _ => frames::arp_request(&mut buf, link.mac, forged_ip, own.dst),
                    }
                }
                Mode::SynFlood => {
                    let d = dst.unwrap_or(SocketAddrV4::new(own.dst, 80));
                    let a = Addrs {
                        dst: *d.ip(),
                        ..own
                    };
                    let sport = 1024 + ((base_port + i as u32) % 64512) as u16;
                    frames::tcp_syn(
                        &mut buf,
                        a,
                        sport,
                        d.port(),
                        rng.next_u64() as u32,
                        i as u16,
                    );
                }
                Mode::VxlanFromStranger => unreachable!("handled above"),
            }
            let r = sendto(link.fd.as_raw_fd(), &buf, &link.addr, MsgFlags::empty());
            SendResult::of(r.map_err(std::io::Error::from))
        });
    }
    let (sent, bytes, send_errors, elapsed_ns, stopped_by) = drive(cfg, &mut rng, &mut *send);
    let elapsed_s = elapsed_ns as f64 / 1e9;
    Ok(AttackReport {
        mode: cfg.mode,
        from,
        target,
        count: cfg.count,
        duration_secs: cfg.duration_secs,
        rate_pps: cfg.rate_pps,
        seed,
        sent,
        bytes,
        send_errors,
        elapsed_s,
        offered_pps: if elapsed_s > 0.0 {
            sent as f64 / elapsed_s
        } else {
            0.0
        },
        stopped_by,
    })
}

/// Builds and sends packet `i`.
type SendFn = dyn FnMut(&mut Rng, u64) -> SendResult;

/// One send's outcome: bytes accepted, or an error.
enum SendResult {
    Sent(usize),
    Failed,
}

impl SendResult {
    fn of(r: std::io::Result<usize>) -> SendResult {
        match r {
            Ok(n) => SendResult::Sent(n),
            Err(_) => SendResult::Failed,
        }
    }
}

/// The send loop: until `count` or `duration`, paced when asked.
fn drive(
    cfg: &AttackConfig,
    rng: &mut Rng,
    send: &mut dyn FnMut(&mut Rng, u64) -> SendResult,
) -> (u64, u64, u64, u64, StopReason) {
    let start = now_ns();
    let deadline = start.saturating_add(secs_to_ns(cfg.duration_secs));
    let mut pacer = (cfg.rate_pps > 0).then(|| Pacer::new(cfg.rate_pps, 64, start));
    let (mut sent, mut bytes, mut errors, mut i) = (0u64, 0u64, 0u64, 0u64);
    let stopped_by = loop {
        if i >= cfg.count {
            break StopReason::Count;
        }
        let now = now_ns();
        if now >= deadline {
            break StopReason::Duration;
        }
        if let Some(p) = pacer.as_mut() {
            if p.available(now) == 0 {
                let wait = p.next_due_ns().saturating_sub(now).min(deadline - now);
                std::thread::sleep(Duration::from_nanos(wait.max(1000)));
                continue;
            }
            p.consume(now, 1);
        }
        match send(rng, i) {
            SendResult::Sent(n) => {
                sent += 1;
                bytes += n as u64;
            }
            SendResult::Failed => {
                errors += 1;
                // A full queue (ENOBUFS): let the reader catch up a little.
                if errors % 64 == 0 {
                    std::thread::yield_now();
                }
            }
        }
        i += 1;
    };
    (sent, bytes, errors, now_ns() - start, stopped_by)
}

/// One garbage frame (see the module documentation).
fn garbage(buf: &mut Vec<u8>, rng: &mut Rng, link: &Link, router: [u8; 6], max_len: usize) {
    let len = rng.range(ETH_LEN as u64, max_len as u64) as usize;
    buf.clear();
    buf.resize(len, 0);
    rng.fill(buf);
    if rng.range(0, 3) == 0 {
        return; // random from the first byte
    }
    let dst = if rng.range(0, 1) == 0 {
        router
    } else {
        rng.mac()
    };
    let ethertype = if rng.range(0, 2) == 0 {
        ETHERTYPE_ARP
    } else {
        ETHERTYPE_IPV4
    };
    buf[..6].copy_from_slice(&dst);
    buf[6..12].copy_from_slice(&link.mac);
    buf[12..14].copy_from_slice(&ethertype.to_be_bytes());
}

fn fmt_mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_outside_the_plan_are_refused() {
        let cfg = AttackConfig {
            mode: Mode::VxlanFromStranger,
            dev: "lo".into(),
            dst: Some("192.0.2.1:4789".parse().unwrap()),
            vni: 1,
            count: 1,
            duration_secs: 1.0,
            rate_pps: 0,
            seed: Some(1),
        };
        let e = run(&cfg).unwrap_err().to_string();
        assert!(e.contains("dst: 192.0.2.1 is outside"), "{e}");
        let e = run(&AttackConfig { dst: None, ..cfg })
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs --dst"), "{e}");
    }

    #[test]
    fn vxlan_over_loopback_is_bounded_by_count_and_duration() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let std::net::SocketAddr::V4(dst) = rx.local_addr().unwrap() else {
            panic!("v4")
        };
        let cfg = AttackConfig {
            mode: Mode::VxlanFromStranger,
            dev: String::new(),
            dst: Some(dst),
            vni: 7,
            count: 50,
            duration_secs: 5.0,
            rate_pps: 0,
            seed: Some(3),
        };
        let r = run(&cfg).unwrap();
        assert_eq!((r.sent, r.stopped_by), (50, StopReason::Count));
        let mut b = [0u8; 2048];
        let n = rx.recv(&mut b).unwrap();
        assert_eq!(&b[..8], &[8, 0, 0, 0, 0, 0, 7, 0]);
        assert_eq!(n, 8 + 14 + 20 + 8 + 8);
        // Paced at 100/s for 0.3 s: the duration stops it.
        let r = run(&AttackConfig {
            count: 1_000_000,
            duration_secs: 0.3,
            rate_pps: 100,
            ..cfg
        })
        .unwrap();
        assert_eq!(r.stopped_by, StopReason::Duration);
        assert!(r.sent <= 40, "sent {}", r.sent);
    }
}
