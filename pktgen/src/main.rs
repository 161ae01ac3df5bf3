//! vswitch-pktgen: bounded UDP streams for netns testbeds (`send`), their receiver (`recv`),
//! and bounded hostile traffic (`attack MODE`) for the hostile-pod suite.
//! The contract and the wire format are in the library's documentation.

#![forbid(unsafe_code)]

use anyhow::{Context, Result};
use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddrV4;
use vswitch_pktgen::{
    attack, AttackConfig, Mode, Receiver, RecvConfig, SendConfig, Sender, MAX_FRAME, MIN_FRAME,
};

#[derive(Parser)]
#[command(name = "vswitch-pktgen", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send a bounded stream of UDP datagrams.
    Send(SendArgs),
    /// Receive, check sequence numbers and measure one-way latency.
    Recv(RecvArgs),
    /// Send hostile traffic (bounded): garbage, ARP/broadcast storms, forged sources, a SYN
    /// flood, VXLAN from a non-peer.
    Attack(AttackArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum AttackMode {
    /// Random frames (most with the pod's own source MAC and an IPv4/ARP ethertype).
    Garbage,
    /// ARP requests for the gateway and random addresses of the subnet.
    ArpStorm,
    /// UDP to the subnet broadcast address and ff:ff:ff:ff:ff:ff.
    Broadcast,
    /// Forged source MAC, source IP, or ARP sender.
    Forged,
    /// TCP SYNs to --dst from many source ports.
    SynFlood,
    /// VXLAN datagrams to --dst (a node's underlay IP:PORT) from a non-peer.
    VxlanFromStranger,
}

#[derive(Args)]
struct AttackArgs {
    /// What to send.
    #[arg(value_enum)]
    mode: AttackMode,
    /// The interface to send on (all modes but vxlan-from-stranger).
    #[arg(long, default_value = "eth0")]
    dev: String,
    /// syn-flood: the target IPv4:PORT (a Service VIP); vxlan-from-stranger: the node's
    /// underlay IPv4:PORT; forged: the destination (port ignored; default the gateway).
    #[arg(long)]
    dst: Option<SocketAddrV4>,
    /// vxlan-from-stranger: the VNI.
    #[arg(long, default_value_t = 1)]
    vni: u32,
    /// Packets to send at most.
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Seconds to send at most (whichever of count and duration comes first).
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Packets per second; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// PRNG seed (default: from the clock and pid).
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct SendArgs {
    /// Destination IPv4:PORT.
    #[arg(long)]
    dst: SocketAddrV4,
    /// Ethernet frame size without FCS (UDP payload = size - 42).
    #[arg(long, default_value_t = MIN_FRAME,
          value_parser = clap::value_parser!(u16).range(MIN_FRAME as i64..=MAX_FRAME as i64).map(usize::from))]
    size: usize,
    /// Packets to send at most.
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// Seconds to send at most (whichever of count and duration comes first).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Packets per second; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Datagrams per sendmmsg call.
    #[arg(long, default_value_t = 64,
          value_parser = clap::value_parser!(u16).range(1..=1024).map(usize::from))]
    batch: usize,
    /// Stream id in the header (default: derived from the pid and the clock).
    #[arg(long)]
    stream_id: Option<u32>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RecvArgs {
    /// Address to bind, IPv4:PORT.
    #[arg(long)]
    bind: SocketAddrV4,
    /// Seconds to receive at most.
    #[arg(long, default_value_t = 15.0)]
    duration: f64,
    /// Stop after this many seconds without packets, once some arrived.
    #[arg(long, default_value_t = 2.0)]
    idle: f64,
    /// Stop when this many packets arrived.
    #[arg(long)]
    expect: Option<u64>,
    /// Datagrams per recvmmsg call.
    #[arg(long, default_value_t = 256,
          value_parser = clap::value_parser!(u16).range(1..=1024).map(usize::from))]
    batch: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn print<T: serde::Serialize + std::fmt::Display>(report: &T, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Send(a) => {
            let cfg = SendConfig {
                size: a.size,
                count: a.count,
                duration_secs: a.duration,
                rate_pps: a.rate,
                batch: a.batch,
                stream_id: a.stream_id,
                ..SendConfig::new(a.dst)
            };
            let sender = Sender::new(cfg).with_context(|| format!("sender to {}", a.dst))?;
            let report = sender.run().context("sending")?;
            print(&report, a.json)
        }
        Cmd::Recv(a) => {
            let cfg = RecvConfig {
                duration_secs: a.duration,
                idle_secs: a.idle,
                expect: a.expect,
                batch: a.batch,
                ..RecvConfig::new(a.bind)
            };
            let receiver =
                Receiver::bind(cfg).with_context(|| format!("receiver on {}", a.bind))?;
            // Scripts may wait for this line before starting the sender; stdout stays the report.
            eprintln!("vswitch-pktgen: receiving on {}", receiver.local_addr()?);
            let report = receiver.run().context("receiving")?;
            print(&report, a.json)
        }
        Cmd::Attack(a) => {
            let mode = match a.mode {
                AttackMode::Garbage => Mode::Garbage,
                AttackMode::ArpStorm => Mode::ArpStorm,
                AttackMode::Broadcast => Mode::Broadcast,
                AttackMode::Forged => Mode::Forged,
                AttackMode::SynFlood => Mode::SynFlood,
                AttackMode::VxlanFromStranger => Mode::VxlanFromStranger,
            };
            let cfg = AttackConfig {
                mode,
                dev: a.dev,
                dst: a.dst,
                vni: a.vni,
                count: a.count,
                duration_secs: a.duration,
                rate_pps: a.rate,
                seed: a.seed,
            };
            let report = attack::run(&cfg).context("attack")?;
            print(&report, a.json)
        }
    }
}
