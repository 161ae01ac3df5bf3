//! `trace`, `conntrack list|flush` and `log-level`: their arguments, requests and output.

use crate::output::{pretty, table, Format};
use clap::{Args, Subcommand};
use std::fmt::Write as _;
use vswitch_proto::inspect::{ConnEntry, ConntrackQuery, TraceReport, TraceSpec};
use vswitch_proto::validate::{self, Invalid};
use vswitch_proto::Request;

/// `trace POD --dst IP[:PORT] ...`.
#[derive(Debug, Args)]
pub(crate) struct TraceArgs {
    /// The pod the packet comes from
    pub(crate) pod: String,
    /// The pod's namespace
    #[arg(short = 'n', long, default_value = "default")]
    pub(crate) namespace: String,
    /// Destination, IP[:PORT] (a pod, a Service VIP, the gateway, ...)
    #[arg(long, value_name = "IP[:PORT]")]
    pub(crate) dst: String,
    /// tcp (a SYN), udp or icmp (an echo request) [default: tcp with a port, else icmp]
    #[arg(long, value_name = "tcp|udp|icmp")]
    pub(crate) proto: Option<String>,
    /// Forge the IPv4 source (default: the pod's address)
    #[arg(long, value_name = "IP")]
    pub(crate) src: Option<String>,
    /// Forge the source MAC (default: the pod's MAC)
    #[arg(long = "src-mac", value_name = "MAC")]
    pub(crate) src_mac: Option<String>,
}

/// `conntrack ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum ConntrackCmd {
    /// List tracked Service connections
    List(ConntrackFilter),
    /// Remove tracked Service connections (all, or those of a Service or pod)
    Flush(ConntrackFilter),
}

/// The filters of `conntrack list|flush`.
#[derive(Debug, Args)]
pub(crate) struct ConntrackFilter {
    /// Only connections to this Service's ports (NS/NAME, or NAME in `default`)
    #[arg(long, value_name = "NS/NAME")]
    pub(crate) service: Option<String>,
    /// Only connections from or to this pod, as client or endpoint (NS/NAME)
    #[arg(long, value_name = "NS/NAME")]
    pub(crate) pod: Option<String>,
}

/// A log filter directive checked like the daemon checks it; the error names it.
pub(crate) fn log_filter(level: &str) -> Result<(), Invalid> {
    validate::log_filter(level)?;
    tracing_subscriber::EnvFilter::builder()
        .with_regex(false)
        .parse(level)
        .map(|_| ())
        .map_err(|e| Invalid::new("level", format!("`{level}` is not a log filter: {e}")))
}

pub(crate) fn trace_request(a: &TraceArgs) -> Result<Request, Invalid> {
    let spec = TraceSpec {
        pod: a.pod.clone(),
        namespace: a.namespace.clone(),
        dst: a.dst.clone(),
        proto: a.proto.clone(),
        src: a.src.clone(),
        src_mac: a.src_mac.clone(),
    };
    validate::trace_spec(&spec)?;
    Ok(Request::Trace(spec))
}

pub(crate) fn conntrack_request(c: &ConntrackCmd) -> Result<Request, Invalid> {
    let (ConntrackCmd::List(f) | ConntrackCmd::Flush(f)) = c;
    if let Some(s) = &f.service {
        validate::namespaced("service", s)?;
    }
    if let Some(p) = &f.pod {
        validate::namespaced("pod", p)?;
    }
    let q = ConntrackQuery {
        service: f.service.clone(),
        pod: f.pod.clone(),
    };
    Ok(match c {
        ConntrackCmd::List(_) => Request::ConntrackList(q),
        ConntrackCmd::Flush(_) => Request::ConntrackFlush(q),
    })
}

/// A trace: the packet, one line per stage decision, the verdict.
pub(crate) fn trace(r: &TraceReport, f: Format) -> String {
    if f == Format::Json {
        return pretty(serde_json::to_string_pretty(r));
    }
    let mut out = String::new();
    let _ = writeln!(out, "trace {}/{}: {}", r.namespace, r.pod, r.packet);
    let w = r.steps.iter().map(|s| s.stage.len()).max().unwrap_or(0);
    for (i, s) in r.steps.iter().enumerate() {
        let _ = writeln!(out, "{:>2}. {:<w$}  {}", i + 1, s.stage, s.text);
    }
    let _ = writeln!(out, "verdict: {}: {}", r.verdict, r.verdict_text);
    out
}

const CT_HEADERS: [&str; 6] = [
    "PROTO",
    "ORIGINAL",
    "REPLY/ENDPOINT",
    "STATE",
    "TTL",
    "SERVICE",
];

/// `conntrack list`.
pub(crate) fn conntrack(cs: &[ConnEntry], f: Format) -> String {
    if f == Format::Json {
        return pretty(serde_json::to_string_pretty(cs));
    }
    let rows: Vec<Vec<String>> = cs
        .iter()
        .map(|c| {
            let mut reply = c.endpoint.clone();
            if f == Format::Wide || c.reply_to != c.client {
                let _ = write!(reply, " -> {}", c.reply_to);
            }
            let mut state = c.state.clone();
            if c.assured && f == Format::Wide {
                state.push_str(" [assured]");
            }
            vec![
                c.proto.clone(),
                format!("{} -> {}", c.client, c.vip),
                reply,
                state,
                format!("{}s", c.ttl_s),
                c.service.clone().unwrap_or_else(|| "<none>".into()),
            ]
        })
        .collect();
    table(&CT_HEADERS, &rows)
}

/// `conntrack flush`.
pub(crate) fn flushed(removed: usize, f: Format) -> String {
    if f == Format::Json {
        return pretty(serde_json::to_string_pretty(
            &serde_json::json!({ "removed": removed }),
        ));
    }
    let s = if removed == 1 { "" } else { "s" };
    format!("{removed} connection{s} removed\n")
}

/// `log-level`.
pub(crate) fn log_level(level: &str, previous: &str, f: Format) -> String {
    if f == Format::Json {
        return pretty(serde_json::to_string_pretty(
            &serde_json::json!({ "level": level, "previous": previous }),
        ));
    }
    format!("log level: {level} (was {previous})\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{parse, usage_error};
    use vswitch_proto::inspect::TraceStepInfo;

    #[test]
    fn bad_log_levels_are_named_before_connecting() {
        for bad in ["loud", "info,vswitchd=loud", ""] {
            let e = log_filter(bad).unwrap_err();
            assert_eq!(e.field, "level");
            assert!(e.message.contains(&format!("`{bad}`")), "{e}");
        }
        log_filter("debug").unwrap();
        log_filter("info,vswitchd::node=debug").unwrap();
    }

    #[test]
    fn trace_and_conntrack_requests() {
        let cli = parse(&["trace", "a", "--dst", "198.19.96.20:80", "-n", "prod"]);
        let crate::commands::Command::Trace(a) = &cli.command else {
            panic!()
        };
        let Request::Trace(s) = trace_request(a).unwrap() else {
            panic!()
        };
        assert_eq!(
            (s.namespace.as_str(), s.dst.as_str()),
            ("prod", "198.19.96.20:80")
        );
        let cli = parse(&["trace", "a", "--dst", "198.19.96.20", "--proto", "udp"]);
        let crate::commands::Command::Trace(a) = &cli.command else {
            panic!()
        };
        assert_eq!(trace_request(a).unwrap_err().field, "dst");
        usage_error(&["trace", "a"]);
        let cli = parse(&["conntrack", "flush", "--service", "prod/web"]);
        let crate::commands::Command::Conntrack(c) = &cli.command else {
            panic!()
        };
        assert_eq!(
            conntrack_request(c).unwrap(),
            Request::ConntrackFlush(ConntrackQuery {
                service: Some("prod/web".into()),
                pod: None
            })
        );
        let cli = parse(&["conntrack", "list", "--pod", "Bad/x"]);
        let crate::commands::Command::Conntrack(c) = &cli.command else {
            panic!()
        };
        assert_eq!(conntrack_request(c).unwrap_err().field, "pod");
    }

    #[test]
    fn trace_and_conntrack_output() {
        let r = TraceReport {
            pod: "a".into(),
            namespace: "default".into(),
            packet: "icmp 198.18.1.2 -> 198.18.1.3 echo request".into(),
            steps: vec![
                TraceStepInfo {
                    stage: "port_ingress".into(),
                    text: "spoof guard: ok".into(),
                    data: serde_json::json!({}),
                },
                TraceStepInfo {
                    stage: "route".into(),
                    text: "route: 198.18.1.3 -> local".into(),
                    data: serde_json::json!({}),
                },
            ],
            verdict: "forward".into(),
            verdict_text: "to port 2".into(),
            drop_reason: None,
        };
        assert_eq!(
            trace(&r, Format::Table),
            "trace default/a: icmp 198.18.1.2 -> 198.18.1.3 echo request\n \
             1. port_ingress  spoof guard: ok\n \
             2. route         route: 198.18.1.3 -> local\n\
             verdict: forward: to port 2\n"
        );
        let c = ConnEntry {
            proto: "tcp".into(),
            client: "198.18.1.2:40000".into(),
            vip: "198.19.96.20:80".into(),
            endpoint: "198.18.2.5:8080".into(),
            reply_to: "198.18.1.2:40000".into(),
            state: "established".into(),
            assured: true,
            ttl_s: 86399,
            service: Some("default/web".into()),
        };
        assert_eq!(
            conntrack(&[c], Format::Table),
            "PROTO  ORIGINAL                             REPLY/ENDPOINT   STATE        TTL     SERVICE\n\
             tcp    198.18.1.2:40000 -> 198.19.96.20:80  198.18.2.5:8080  established  86399s  default/web\n"
        );
        assert_eq!(flushed(1, Format::Table), "1 connection removed\n");
        assert_eq!(flushed(0, Format::Table), "0 connections removed\n");
    }
}
