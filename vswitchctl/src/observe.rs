//! `vswitchctl observe`: the daemon's flow log (new connections, drops with their reason,
//! connection ends), in the spirit of `hubble observe`. Without `--follow` one request and
//! its answer; with it, the answer then every new matching event as it comes, until
//! interrupted. `-o json`: the events as a JSON array, or with `--follow` one JSON object
//! per line (the protocol's `FlowRecord`).

use crate::output::Format;
use crate::Failure;
use clap::Args;
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use vswitch_proto::client::{self, FollowItem};
use vswitch_proto::observe::{self, FlowEndpoint, FlowRecord, ObserveSpec, Verdict};
use vswitch_proto::validate::Invalid;
use vswitch_proto::{Request, Response};

#[derive(Debug, Args)]
pub(crate) struct ObserveArgs {
    /// Keep going: print new events as they happen
    #[arg(short = 'f', long)]
    pub(crate) follow: bool,
    /// Print the last N events [default: 20, 0 with --follow]
    #[arg(long, value_name = "N")]
    pub(crate) last: Option<usize>,
    /// Only events of this verdict
    #[arg(long, value_enum)]
    pub(crate) verdict: Option<VerdictArg>,
    /// Only events from or to this pod (NAMESPACE/NAME, or NAME in `default`)
    #[arg(long, value_name = "NS/NAME")]
    pub(crate) pod: Option<String>,
    /// Only events from or to this IPv4 address (a pod, a Service VIP or an endpoint)
    #[arg(long, value_name = "IP")]
    pub(crate) ip: Option<String>,
}

/// `--verdict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum VerdictArg {
    /// New connections
    Forwarded,
    /// Dropped frames
    Dropped,
    /// Connections that ended
    Ended,
}

/// The request, after the same checks the daemon runs (exit 2 before connecting).
pub(crate) fn request(a: &ObserveArgs) -> Result<Request, Invalid> {
    let spec = ObserveSpec {
        last: Some(a.last.unwrap_or(if a.follow { 0 } else { 20 })),
        follow: a.follow,
        verdict: a.verdict.map(|v| match v {
            VerdictArg::Forwarded => Verdict::Forwarded,
            VerdictArg::Dropped => Verdict::Dropped,
            VerdictArg::Ended => Verdict::Ended,
        }),
        pod: a.pod.clone(),
        ip: a.ip.clone(),
    };
    observe::check(&spec)?;
    Ok(Request::Observe(spec))
}

fn endpoint(e: &FlowEndpoint) -> String {
    let addr = match (&e.ip, e.port) {
        (Some(ip), Some(p)) => format!("{ip}:{p}"),
        (Some(ip), None) => ip.clone(),
        (None, _) => "-".to_string(),
    };
    match &e.pod {
        Some(p) => format!("{}/{} ({addr})", p.namespace, p.name),
        None => addr,
    }
}

/// One event as a line for people.
pub(crate) fn line(r: &FlowRecord) -> String {
    let mut s = format!(
        "{}  {}  {}",
        r.time,
        r.node,
        match (&r.drop_reason, &r.end_reason) {
            (Some(why), _) => format!("{} ({why})", r.verdict),
            (_, Some(why)) => format!("{} ({why})", r.verdict),
            _ => r.verdict.to_string(),
        }
    );
    s += &format!(
        "  {}  {} -> {}",
        r.protocol.as_deref().unwrap_or("-"),
        endpoint(&r.source),
        endpoint(&r.destination)
    );
    if let Some(f) = &r.tcp_flags {
        s += &format!("  [{f}]");
    }
    if let Some(svc) = &r.service {
        s += &format!(
            "  service {} -> endpoint {}",
            svc.name.as_deref().unwrap_or(&svc.vip),
            svc.endpoint
        );
        if let Some(p) = &svc.endpoint_pod {
            s += &format!(" ({}/{})", p.namespace, p.name);
        }
    }
    match (r.direction.as_deref(), &r.peer) {
        (Some("tunnel"), Some(peer)) => s += &format!("  from-peer {peer}"),
        (Some("pod"), Some(peer)) => s += &format!("  to-peer {peer}"),
        _ => {}
    }
    if r.suppressed > 0 {
        s += &format!("  (+{} drops not logged)", r.suppressed);
    }
    s
}

fn out(s: &str) -> Result<(), Failure> {
    let mut o = std::io::stdout().lock();
    match o.write_all(s.as_bytes()).and_then(|()| o.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Err(Failure::Other(anyhow::anyhow!("stdout closed")))
        }
        Err(e) => Err(Failure::Other(
            anyhow::Error::new(e).context("writing stdout"),
        )),
        Ok(()) => Ok(()),
    }
}

/// Runs `observe`: prints the answer, then with `--follow` every new event.
pub(crate) fn run(
    a: &ObserveArgs,
    socket: &Path,
    timeout: Duration,
    f: Format,
) -> Result<(), Failure> {
    let req = request(a).map_err(Failure::Invalid)?;
    let (resp, stream) = client::observe(socket, &req, timeout).map_err(Failure::Client)?;
    let report = match resp {
        Response::Flows(r) => r,
        Response::Error(e) => return Err(Failure::Daemon(e)),
        other => {
            return Err(Failure::Other(anyhow::anyhow!(
                "unexpected answer from vswitchd: {}",
                vswitch_proto::encode_response(&other).trim_end()
            )))
        }
    };
    let json = f == Format::Json;
    if report.capacity == 0 {
        eprintln!("note: the flow log is off on this node (vswitchd --flow-log-size 0)");
    }
    match (json, a.follow) {
        (true, false) => out(&crate::output::pretty(serde_json::to_string_pretty(
            &report.flows,
        )))?,
        (true, true) => {
            for r in &report.flows {
                out(&format!(
                    "{}\n",
                    serde_json::to_string(r).expect("serializes")
                ))?;
            }
        }
        (false, _) => {
            for r in &report.flows {
                out(&format!("{}\n", line(r)))?;
            }
        }
    }
    let Some(mut stream) = stream else {
        return Ok(());
    };
    loop {
        match stream.next_item() {
            Ok(FollowItem::Flow(r)) if json => out(&format!(
                "{}\n",
                serde_json::to_string(&r).expect("serializes")
            ))?,
            Ok(FollowItem::Flow(r)) => out(&format!("{}\n", line(&r)))?,
            Ok(FollowItem::Lost(n)) => eprintln!("warning: {n} events lost (output too slow)"),
            Err(e) => return Err(Failure::Client(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{parse, usage_error};
    use vswitch_proto::observe::{FlowPod, FlowService};

    fn args(cmd: &crate::commands::Command) -> &ObserveArgs {
        match cmd {
            crate::commands::Command::Observe(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_become_the_request_and_are_checked_before_connecting() {
        let cli = parse(&[
            "observe",
            "--follow",
            "--verdict",
            "dropped",
            "--pod",
            "ns1/web",
            "--ip",
            "10.0.0.1",
        ]);
        match request(args(&cli.command)).unwrap() {
            Request::Observe(s) => {
                assert!(s.follow);
                assert_eq!(s.last, Some(0), "--follow alone: new events only");
                assert_eq!(s.verdict, Some(Verdict::Dropped));
                assert_eq!(s.pod.as_deref(), Some("ns1/web"));
            }
            other => panic!("{other:?}"),
        }
        let cli = parse(&["observe", "--ip", "10.0.0.300"]);
        assert_eq!(request(args(&cli.command)).unwrap_err().field, "ip");
        let cli = parse(&["observe", "--pod", "Bad_Name"]);
        assert_eq!(request(args(&cli.command)).unwrap_err().field, "pod");
        assert_eq!(
            usage_error(&["observe", "--verdict", "maybe"]).exit_code(),
            2
        );
    }

    #[test]
    fn a_service_connection_reads_as_one_line() {
        let pod = |n: &str| FlowPod {
            namespace: "default".into(),
            name: n.into(),
            node: "n1".into(),
        };
        let r = FlowRecord {
            time: "2026-12-07T23:50:01.123Z".into(),
            time_ms: 0,
            node: "n1".into(),
            verdict: Verdict::Forwarded,
            drop_reason: None,
            end_reason: None,
            direction: Some("pod".into()),
            peer: None,
            protocol: Some("tcp".into()),
            source: FlowEndpoint {
                ip: Some("198.18.1.2".into()),
                port: Some(40000),
                pod: Some(pod("client")),
            },
            destination: FlowEndpoint {
                ip: Some("10.96.0.10".into()),
                port: Some(80),
                pod: None,
            },
            tcp_flags: Some("SYN".into()),
            service: Some(FlowService {
                name: Some("default/web".into()),
                vip: "10.96.0.10:80".into(),
                endpoint: "198.18.1.3:80".into(),
                endpoint_pod: Some(pod("nginx")),
            }),
            suppressed: 0,
        };
        assert_eq!(
            line(&r),
            "2026-12-07T23:50:01.123Z  n1  FORWARDED  tcp  default/client (198.18.1.2:40000) \
             -> 10.96.0.10:80  [SYN]  service default/web -> endpoint 198.18.1.3:80 (default/nginx)"
        );
    }
}
