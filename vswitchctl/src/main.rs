//! `vswitchctl`: the operator CLI of vswitch. It programs and inspects one node's `vswitchd`
//! over its control socket, one request and one response per invocation (see `vswitch-proto`).
//!
//! Contract (scripts rely on it):
//! - Exit codes: `0` success; `1` the daemon refused the request (stderr
//!   `error: FIELD: MESSAGE`, the daemon's state unchanged), or the daemon could not be reached or
//!   answered badly or not within `--timeout` (`error: cannot connect to vswitchd at PATH: ...
//!   (is vswitchd running?)`); `2` usage or local validation error, found before connecting
//!   (stderr names the flag or `FIELD:`).
//! - Results go to stdout, diagnostics to stderr. `-o json` prints the response data as pretty
//!   JSON with the protocol's field names for every command (listings are arrays); `table` and
//!   `wide` are for people and may gain columns.
//! - The socket is `--socket`, else `$VSWITCH_SOCKET`, else [`vswitch_proto::DEFAULT_SOCKET`].
//! - It never hangs: every step waits at most `--timeout` seconds (default 10).
//!
//! It must never guess at daemon state: it checks only the shape of arguments
//! ([`validate`]) and leaves every decision to the daemon.

mod output;
mod validate;

use clap::{Args, Parser, Subcommand};
use output::Format;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use validate::Invalid;
use vswitch_proto::client::{self, ClientError};
use vswitch_proto::{
    ErrorBody, PeerSpec, PortKey, PortSpec, Request, Response, ServiceKey, ServiceSpec,
};

/// Program and inspect the vswitch daemon of this node.
#[derive(Debug, Parser)]
#[command(name = "vswitchctl", version)]
struct Cli {
    /// Control socket of vswitchd [default: $VSWITCH_SOCKET, else /run/vswitch/vswitchd.sock]
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        help_heading = "Global options"
    )]
    socket: Option<PathBuf>,
    /// Output format
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Table,
          help_heading = "Global options")]
    output: Format,
    /// Give up on the daemon after this many seconds per step
    #[arg(long, global = true, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600),
          help_heading = "Global options")]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// This node
    #[command(subcommand)]
    Node(NodeCmd),
    /// Pods attached to this node
    #[command(subcommand)]
    Port(PortCmd),
    /// Other nodes, reached through the tunnel
    #[command(subcommand)]
    Peer(PeerCmd),
    /// Services: stable virtual IPs (and DNS names) load-balanced to pods
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Drop counters by reason, and per-port counters
    Stats {
        /// Only this port
        port: Option<String>,
        /// The port's namespace [default: default]
        #[arg(long, requires = "port")]
        namespace: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum NodeCmd {
    /// Describe this node
    Show,
}

#[derive(Debug, Subcommand)]
enum PortCmd {
    /// Attach a pod: create its interface in NETNS and configure it
    Add(PortAddArgs),
    /// Detach a pod and free its address
    Del {
        /// Pod name
        name: String,
        /// Pod namespace
        #[arg(long, default_value = "default")]
        namespace: String,
    },
    /// List attached pods
    List,
}

#[derive(Debug, Args)]
struct PortAddArgs {
    /// Pod name
    name: String,
    /// Network namespace: a name under /var/run/netns or a path
    #[arg(long)]
    netns: String,
    /// Pod namespace
    #[arg(long, default_value = "default")]
    namespace: String,
    /// ADDR/PLEN in the node's pod subnet [default: allocated]
    #[arg(long)]
    ip: Option<String>,
    /// Pod MAC [default: derived from the address]
    #[arg(long)]
    mac: Option<String>,
    /// Interface name inside the pod
    #[arg(long, default_value = "eth0")]
    ifname: String,
    /// Label K=V (repeatable)
    #[arg(long = "label", value_name = "K=V")]
    labels: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum PeerCmd {
    /// Add or replace a peer node
    Add {
        /// Peer node name
        node: String,
        /// The peer's underlay IPv4 address
        #[arg(long)]
        underlay: String,
        /// The peer's pod subnet A.B.C.D/N
        #[arg(long)]
        pod_cidr: String,
        /// The peer's VTEP MAC [default: derived from its subnet]
        #[arg(long)]
        vtep_mac: Option<String>,
    },
    /// Remove a peer node
    Del {
        /// Peer node name
        node: String,
    },
    /// List peer nodes with their traffic counters
    List,
}

#[derive(Debug, Subcommand)]
enum ServiceCmd {
    /// Add a Service: a VIP whose ports are load-balanced to pod endpoints
    Add(ServiceAddArgs),
    /// Remove a Service
    Del {
        /// Service name
        name: String,
        /// Service namespace
        #[arg(long, default_value = "default")]
        namespace: String,
    },
    /// List Services with the endpoints they use now
    List,
}

#[derive(Debug, Args)]
struct ServiceAddArgs {
    /// Service name (also its DNS name)
    name: String,
    /// Service namespace
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Virtual IP, inside the node's service CIDR
    #[arg(long)]
    vip: String,
    /// Port (repeatable); TARGETPORT defaults to PORT, the protocol to tcp
    #[arg(
        long = "port",
        value_name = "[NAME:]PORT[:TARGETPORT][/tcp|/udp]",
        required = true
    )]
    ports: Vec<String>,
    /// Select this node's pods by label (repeatable; all must match)
    #[arg(long = "selector", value_name = "K=V")]
    selector: Vec<String>,
    /// Explicit endpoint, a pod on this node or a peer (repeatable)
    #[arg(long = "endpoint", value_name = "IP[:PORT]")]
    endpoints: Vec<String>,
    /// Session affinity by client IP [default timeout: 10800 s]
    #[arg(long, value_name = "client-ip[:SECONDS]")]
    affinity: Option<String>,
}

/// Why a command failed; decides the exit code.
#[derive(Debug)]
enum Failure {
    /// A malformed argument, caught before connecting (exit 2).
    Invalid(Invalid),
    /// The daemon refused (exit 1).
    Daemon(ErrorBody),
    /// The daemon could not be reached or did not answer properly (exit 1).
    Client(ClientError),
    /// Anything else (exit 1).
    Other(anyhow::Error),
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Invalid(_) => 2,
            _ => 1,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Invalid(e) => write!(f, "{e}"),
            Failure::Daemon(e) => write!(f, "{e}"),
            // ClientError's message already includes its cause.
            Failure::Client(e) => write!(f, "{e}"),
            Failure::Other(e) => write!(f, "{e:#}"),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = run(&cli).and_then(|out| {
        match std::io::stdout().lock().write_all(out.as_bytes()) {
            // A closed pipe (`| head`) is the reader's choice, not a failure.
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::Other(
                anyhow::Error::new(e).context("writing stdout"),
            )),
            _ => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Validates, sends one request, and renders the answer.
fn run(cli: &Cli) -> Result<String, Failure> {
    let req = request(&cli.command).map_err(Failure::Invalid)?;
    let socket = socket_path(cli.socket.clone(), std::env::var_os("VSWITCH_SOCKET"));
    let resp =
        client::call(&socket, &req, Duration::from_secs(cli.timeout)).map_err(Failure::Client)?;
    render(&cli.command, resp, cli.output)
}

/// `--socket`, else a non-empty `$VSWITCH_SOCKET`, else the default.
fn socket_path(flag: Option<PathBuf>, env: Option<OsString>) -> PathBuf {
    flag.or_else(|| env.filter(|s| !s.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(vswitch_proto::DEFAULT_SOCKET))
}

/// The request for a command, after the local shape checks.
fn request(cmd: &Command) -> Result<Request, Invalid> {
    Ok(match cmd {
        Command::Node(NodeCmd::Show) => Request::NodeShow,
        Command::Port(PortCmd::Add(a)) => {
            if let Some(ip) = &a.ip {
                validate::ip_with_prefix("ip", ip)?;
            }
            if let Some(mac) = &a.mac {
                validate::mac("mac", mac)?;
            }
            Request::PortAdd(PortSpec {
                name: a.name.clone(),
                namespace: a.namespace.clone(),
                netns: a.netns.clone(),
                ip: a.ip.clone(),
                mac: a.mac.clone(),
                ifname: a.ifname.clone(),
                labels: validate::labels(&a.labels)?,
            })
        }
        Command::Port(PortCmd::Del { name, namespace }) => Request::PortDel(PortKey {
            name: name.clone(),
            namespace: namespace.clone(),
        }),
        Command::Port(PortCmd::List) => Request::PortList,
        Command::Peer(PeerCmd::Add {
            node,
            underlay,
            pod_cidr,
            vtep_mac,
        }) => {
            validate::ipv4("underlay", underlay)?;
            validate::cidr("pod_cidr", pod_cidr)?;
            if let Some(mac) = vtep_mac {
                validate::mac("vtep_mac", mac)?;
            }
            Request::PeerAdd(PeerSpec {
                node: node.clone(),
                underlay: underlay.clone(),
                pod_cidr: pod_cidr.clone(),
                vtep_mac: vtep_mac.clone(),
            })
        }
        Command::Peer(PeerCmd::Del { node }) => Request::PeerDel { node: node.clone() },
        Command::Peer(PeerCmd::List) => Request::PeerList,
        Command::Service(ServiceCmd::Add(a)) => {
            validate::ipv4("vip", &a.vip)?;
            for p in &a.ports {
                validate::service_port(p)?;
            }
            let selector = validate::selector(&a.selector)?;
            for e in &a.endpoints {
                validate::endpoint(e)?;
            }
            if selector.is_empty() && a.endpoints.is_empty() {
                return Err(Invalid {
                    field: "selector",
                    message: "a service needs --selector K=V or --endpoint IP[:PORT]".into(),
                });
            }
            if let Some(aff) = &a.affinity {
                validate::affinity(aff)?;
            }
            Request::ServiceAdd(ServiceSpec {
                name: a.name.clone(),
                namespace: a.namespace.clone(),
                vip: a.vip.clone(),
                ports: a.ports.clone(),
                selector,
                endpoints: a.endpoints.clone(),
                affinity: a.affinity.clone(),
            })
        }
        Command::Service(ServiceCmd::Del { name, namespace }) => Request::ServiceDel(ServiceKey {
            name: name.clone(),
            namespace: namespace.clone(),
        }),
        Command::Service(ServiceCmd::List) => Request::ServiceList,
        Command::Stats { port, namespace } => Request::Stats {
            port: port.clone(),
            namespace: namespace.clone(),
        },
    })
}

/// Renders the daemon's answer to `cmd`, or the failure it reports.
fn render(cmd: &Command, resp: Response, f: Format) -> Result<String, Failure> {
    Ok(match (cmd, resp) {
        (_, Response::Error(e)) => return Err(Failure::Daemon(e)),
        (Command::Node(_), Response::Node(n)) => output::node(&n, f),
        (Command::Port(PortCmd::Add(_)), Response::Port(p)) => output::port_added(&p, f),
        (Command::Port(PortCmd::Del { name, namespace }), Response::Done) => output::port_deleted(
            &PortKey {
                name: name.clone(),
                namespace: namespace.clone(),
            },
            f,
        ),
        (Command::Port(PortCmd::List), Response::Ports(mut ps)) => {
            ps.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
            output::ports(&ps, f)
        }
        (Command::Peer(PeerCmd::Add { .. }), Response::Peer(p)) => output::peer_added(&p, f),
        (Command::Peer(PeerCmd::Del { node }), Response::Done) => output::peer_deleted(node, f),
        (Command::Peer(PeerCmd::List), Response::Peers(mut ps)) => {
            ps.sort_by(|a, b| a.node.cmp(&b.node));
            output::peers(&ps, f)
        }
        (Command::Service(ServiceCmd::Add(_)), Response::Service(s)) => {
            output::service_added(&s, f)
        }
        (Command::Service(ServiceCmd::Del { name, namespace }), Response::Done) => {
            output::service_deleted(
                &ServiceKey {
                    name: name.clone(),
                    namespace: namespace.clone(),
                },
                f,
            )
        }
        (Command::Service(ServiceCmd::List), Response::Services(mut ss)) => {
            ss.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
            output::services(&ss, f)
        }
        (Command::Stats { .. }, Response::Stats(s)) => output::stats(&s, f),
        (_, other) => {
            return Err(Failure::Other(anyhow::anyhow!(
                "unexpected answer from vswitchd: {}",
                vswitch_proto::encode_response(&other).trim_end()
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("vswitchctl").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn req(args: &[&str]) -> Result<Request, Invalid> {
        request(&parse(args).command)
    }

    fn usage_error(args: &[&str]) -> clap::Error {
        Cli::try_parse_from(std::iter::once("vswitchctl").chain(args.iter().copied()))
            .expect_err("should not parse")
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_default_and_parse_anywhere() {
        let cli = parse(&["node", "show"]);
        assert_eq!(cli.output, Format::Table);
        assert_eq!(cli.timeout, 10);
        assert_eq!(cli.socket, None);
        let cli = parse(&[
            "--socket",
            "/tmp/s",
            "port",
            "list",
            "-o",
            "json",
            "--timeout",
            "3",
        ]);
        assert_eq!(cli.output, Format::Json);
        assert_eq!(cli.timeout, 3);
        assert_eq!(cli.socket, Some(PathBuf::from("/tmp/s")));
        assert_eq!(parse(&["-o", "wide", "port", "list"]).output, Format::Wide);
    }

    #[test]
    fn bad_global_options_are_usage_errors() {
        assert_eq!(usage_error(&["-o", "yaml", "port", "list"]).exit_code(), 2);
        assert_eq!(
            usage_error(&["--timeout", "0", "port", "list"]).exit_code(),
            2
        );
        assert_eq!(usage_error(&[]).exit_code(), 2);
    }

    #[test]
    fn node_show() {
        assert_eq!(req(&["node", "show"]).unwrap(), Request::NodeShow);
    }

    #[test]
    fn port_add_full() {
        let got = req(&[
            "port",
            "add",
            "nginx",
            "--netns",
            "p1",
            "--namespace",
            "web",
            "--ip",
            "198.18.1.5/24",
            "--mac",
            "0a:58:c6:12:01:05",
            "--ifname",
            "eth1",
            "--label",
            "app=nginx",
            "--label",
            "tier=front",
        ])
        .unwrap();
        let want = Request::PortAdd(PortSpec {
            name: "nginx".into(),
            namespace: "web".into(),
            netns: "p1".into(),
            ip: Some("198.18.1.5/24".into()),
            mac: Some("0a:58:c6:12:01:05".into()),
            ifname: "eth1".into(),
            labels: [("app", "nginx"), ("tier", "front")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        });
        assert_eq!(got, want);
    }

    #[test]
    fn port_add_defaults() {
        let Request::PortAdd(spec) =
            req(&["port", "add", "bb", "--netns", "/proc/1/ns/net"]).unwrap()
        else {
            panic!("not a port add");
        };
        assert_eq!(spec.namespace, "default");
        assert_eq!(spec.ifname, "eth0");
        assert_eq!((spec.ip, spec.mac), (None, None));
        assert!(spec.labels.is_empty());
        assert_eq!(usage_error(&["port", "add", "bb"]).exit_code(), 2); // --netns required
    }

    #[test]
    fn port_add_validation_names_the_field() {
        let field = |args: &[&str]| req(args).unwrap_err().field;
        let base = ["port", "add", "bb", "--netns", "n"];
        let with = |extra: &[&'static str]| [&base[..], extra].concat();
        assert_eq!(field(&with(&["--mac", "zz"])), "mac");
        assert_eq!(field(&with(&["--ip", "198.18.1.5"])), "ip");
        assert_eq!(field(&with(&["--ip", "198.18.1.5/33"])), "ip");
        assert_eq!(field(&with(&["--label", "=x"])), "labels");
        assert_eq!(field(&with(&["--label", "novalue"])), "labels");
    }

    #[test]
    fn port_del_and_list() {
        assert_eq!(
            req(&["port", "del", "x"]).unwrap(),
            Request::PortDel(PortKey {
                name: "x".into(),
                namespace: "default".into()
            })
        );
        assert_eq!(
            req(&["port", "del", "x", "--namespace", "ns"]).unwrap(),
            Request::PortDel(PortKey {
                name: "x".into(),
                namespace: "ns".into()
            })
        );
        assert_eq!(req(&["port", "list"]).unwrap(), Request::PortList);
    }

    #[test]
    fn peer_commands() {
        assert_eq!(
            req(&[
                "peer",
                "add",
                "node2",
                "--underlay",
                "192.168.56.12",
                "--pod-cidr",
                "198.18.2.0/24",
                "--vtep-mac",
                "0a:58:c6:12:02:00",
            ])
            .unwrap(),
            Request::PeerAdd(PeerSpec {
                node: "node2".into(),
                underlay: "192.168.56.12".into(),
                pod_cidr: "198.18.2.0/24".into(),
                vtep_mac: Some("0a:58:c6:12:02:00".into()),
            })
        );
        let add = |u: &'static str, c: &'static str| {
            req(&["peer", "add", "n2", "--underlay", u, "--pod-cidr", c])
        };
        assert_eq!(
            add("n2.example", "198.18.2.0/24").unwrap_err().field,
            "underlay"
        );
        assert_eq!(add("10.0.0.2", "198.18.2.0").unwrap_err().field, "pod_cidr");
        assert_eq!(
            req(&[
                "peer",
                "add",
                "n2",
                "--underlay",
                "10.0.0.2",
                "--pod-cidr",
                "198.18.2.0/24",
                "--vtep-mac",
                "0a:58",
            ])
            .unwrap_err()
            .field,
            "vtep_mac"
        );
        assert_eq!(
            usage_error(&["peer", "add", "n2", "--underlay", "10.0.0.2"]).exit_code(),
            2
        );
        assert_eq!(
            req(&["peer", "del", "node2"]).unwrap(),
            Request::PeerDel {
                node: "node2".into()
            }
        );
        assert_eq!(req(&["peer", "list"]).unwrap(), Request::PeerList);
    }

    #[test]
    fn service_add_full_and_defaults() {
        let got = req(&[
            "service",
            "add",
            "nginx-service",
            "--namespace",
            "web",
            "--vip",
            "198.19.96.20",
            "--port",
            "http:80:8080/tcp",
            "--port",
            "53/udp",
            "--selector",
            "app=nginx",
            "--endpoint",
            "198.18.2.5",
            "--affinity",
            "client-ip:60",
        ])
        .unwrap();
        let want = Request::ServiceAdd(ServiceSpec {
            name: "nginx-service".into(),
            namespace: "web".into(),
            vip: "198.19.96.20".into(),
            ports: vec!["http:80:8080/tcp".into(), "53/udp".into()],
            selector: [("app".to_string(), "nginx".to_string())].into(),
            endpoints: vec!["198.18.2.5".into()],
            affinity: Some("client-ip:60".into()),
        });
        assert_eq!(got, want);
        let Request::ServiceAdd(spec) = req(&[
            "service",
            "add",
            "s",
            "--vip",
            "198.19.96.21",
            "--port",
            "80",
            "--endpoint",
            "198.18.1.5:8080",
        ])
        .unwrap() else {
            panic!("not a service add");
        };
        assert_eq!(spec.namespace, "default");
        assert!(spec.selector.is_empty());
        assert_eq!(spec.affinity, None);
        // --vip and --port are required.
        assert_eq!(
            usage_error(&["service", "add", "s", "--port", "80", "--selector", "a=b"]).exit_code(),
            2
        );
        assert_eq!(
            usage_error(&[
                "service",
                "add",
                "s",
                "--vip",
                "198.19.96.2",
                "--selector",
                "a=b"
            ])
            .exit_code(),
            2
        );
    }

    #[test]
    fn service_add_validation_names_the_field() {
        let field = |extra: &[&'static str]| {
            let base = [
                "service",
                "add",
                "s",
                "--vip",
                "198.19.96.20",
                "--port",
                "80",
            ];
            req(&[&base[..], extra].concat()).unwrap_err().field
        };
        assert_eq!(field(&[]), "selector");
        assert_eq!(field(&["--selector", "app"]), "selector");
        assert_eq!(field(&["--endpoint", "198.18.1"]), "endpoint");
        assert_eq!(field(&["--port", "80/sctp", "--selector", "a=b"]), "port");
        assert_eq!(field(&["--port", "http:x", "--selector", "a=b"]), "port");
        assert_eq!(
            field(&["--selector", "a=b", "--affinity", "cookie"]),
            "affinity"
        );
        let vip = req(&[
            "service",
            "add",
            "s",
            "--vip",
            "nginx",
            "--port",
            "80",
            "--selector",
            "a=b",
        ]);
        assert_eq!(vip.unwrap_err().field, "vip");
    }

    #[test]
    fn service_del_and_list() {
        assert_eq!(
            req(&["service", "del", "x"]).unwrap(),
            Request::ServiceDel(ServiceKey {
                name: "x".into(),
                namespace: "default".into()
            })
        );
        assert_eq!(
            req(&["service", "del", "x", "--namespace", "web"]).unwrap(),
            Request::ServiceDel(ServiceKey {
                name: "x".into(),
                namespace: "web".into()
            })
        );
        assert_eq!(req(&["service", "list"]).unwrap(), Request::ServiceList);
        let cmd = parse(&["service", "del", "x"]).command;
        assert_eq!(
            render(&cmd, Response::Done, Format::Table).unwrap(),
            "service default/x deleted
"
        );
        let err = render(
            &cmd,
            Response::error(
                vswitch_proto::ErrorKind::NotFound,
                Some("name"),
                "no such service",
            ),
            Format::Table,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "name: no such service");
        assert_eq!(err.exit_code(), 1);
    }

    #[test]
    fn stats_command() {
        assert_eq!(
            req(&["stats"]).unwrap(),
            Request::Stats {
                port: None,
                namespace: None
            }
        );
        assert_eq!(
            req(&["stats", "bb", "--namespace", "ns"]).unwrap(),
            Request::Stats {
                port: Some("bb".into()),
                namespace: Some("ns".into())
            }
        );
        // --namespace only makes sense with a port.
        assert_eq!(usage_error(&["stats", "--namespace", "ns"]).exit_code(), 2);
    }

    #[test]
    fn socket_path_precedence() {
        let flag = Some(PathBuf::from("/flag.sock"));
        let env = Some(OsString::from("/env.sock"));
        assert_eq!(socket_path(flag, env.clone()), PathBuf::from("/flag.sock"));
        assert_eq!(socket_path(None, env), PathBuf::from("/env.sock"));
        assert_eq!(
            socket_path(None, Some(OsString::new())),
            PathBuf::from(vswitch_proto::DEFAULT_SOCKET)
        );
        assert_eq!(
            socket_path(None, None),
            PathBuf::from(vswitch_proto::DEFAULT_SOCKET)
        );
    }

    #[test]
    fn render_maps_answers_and_failures() {
        let cmd = parse(&["peer", "del", "node2"]).command;
        assert_eq!(
            render(&cmd, Response::Done, Format::Table).unwrap(),
            "peer node2 deleted\n"
        );
        let err = render(
            &cmd,
            Response::error(
                vswitch_proto::ErrorKind::NotFound,
                Some("node"),
                "no peer `node2`",
            ),
            Format::Table,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "node: no peer `node2`");
        assert_eq!(err.exit_code(), 1);
        let err = render(&cmd, Response::Ports(vec![]), Format::Table).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("unexpected answer from vswitchd"),
            "{err}"
        );
        assert_eq!(err.exit_code(), 1);
        let invalid = Failure::Invalid(validate::mac("mac", "zz").unwrap_err());
        assert_eq!(invalid.exit_code(), 2);
    }
}
