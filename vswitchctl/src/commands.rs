//! The subcommands: their arguments (clap derive) and the request each one sends. Before a
//! request is built its values go through the same shape checks the daemon runs
//! ([`vswitch_proto::validate`]), so an obviously malformed argument fails fast (exit code 2)
//! without touching the daemon; the daemon checks again and stays the authority. Nothing here
//! looks at node state.

use clap::{Args, Subcommand};
use vswitch_proto::manifest::Document;
use vswitch_proto::validate::{self, Invalid};
use vswitch_proto::{PeerSpec, PortKey, PortSpec, Request, ServiceKey, ServiceSpec};

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
    /// Create or update the objects of a Kubernetes YAML file (v1 Service, v1 Namespace)
    Apply(ManifestArgs),
    /// Delete the objects named in a Kubernetes YAML file
    Delete(ManifestArgs),
    /// Namespaces stored by `apply`
    #[command(subcommand)]
    Namespace(NamespaceCmd),
    /// Capture a pod's port or the tunnel as pcap (`-w`) or summary lines
    Capture(crate::capture::CaptureArgs),
    /// Trace a synthetic packet from a pod through the live tables (nothing is sent or
    /// counted): every pipeline stage's decision and the verdict
    Trace(crate::inspect::TraceArgs),
    /// Tracked Service connections (list, flush)
    #[command(subcommand)]
    Conntrack(crate::inspect::ConntrackCmd),
    /// Change the daemon's log filter at run time (error, warn, info, debug, trace, or
    /// directives like `info,vswitchd::node=debug`)
    LogLevel {
        /// The filter
        level: String,
    },
    /// The flow log: new connections (with their Service and endpoint), drops with their
    /// reason, connection ends
    Observe(crate::observe::ObserveArgs),
    /// A live view of per-port and per-peer rates, drops per second and conntrack
    Top(crate::top::TopArgs),
    /// Drop counters by reason, and per-port counters
    Stats {
        /// Only this port
        port: Option<String>,
        /// The port's namespace [default: default]
        #[arg(long, requires = "port")]
        namespace: Option<String>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ManifestArgs {
    /// The YAML file (documents separated by `---`), or `-` for stdin
    #[arg(short = 'f', long = "filename", value_name = "FILE|-")]
    pub(crate) file: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum NamespaceCmd {
    /// List namespaces with their labels
    List,
}

#[derive(Debug, Subcommand)]
pub(crate) enum NodeCmd {
    /// Describe this node
    Show,
    /// The cluster's nodes (from the datastore; this node alone without one)
    List,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PortCmd {
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
    List {
        /// Every node's pods (with a datastore), with the node of each
        #[arg(long)]
        all_nodes: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct PortAddArgs {
    /// Pod name
    pub(crate) name: String,
    /// Network namespace: a name under /var/run/netns, /var/run/netns/NAME, /run/netns/NAME
    /// or /proc/PID/ns/net
    #[arg(long)]
    pub(crate) netns: String,
    /// Pod namespace
    #[arg(long, default_value = "default")]
    pub(crate) namespace: String,
    /// ADDR/PLEN in the node's pod subnet [default: allocated]
    #[arg(long)]
    pub(crate) ip: Option<String>,
    /// Pod MAC [default: derived from the address]
    #[arg(long)]
    pub(crate) mac: Option<String>,
    /// Interface name inside the pod
    #[arg(long, default_value = "eth0")]
    pub(crate) ifname: String,
    /// Label K=V (repeatable)
    #[arg(long = "label", value_name = "K=V")]
    pub(crate) labels: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PeerCmd {
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
pub(crate) enum ServiceCmd {
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
pub(crate) struct ServiceAddArgs {
    /// Service name (also its DNS name)
    pub(crate) name: String,
    /// Service namespace
    #[arg(long, default_value = "default")]
    pub(crate) namespace: String,
    /// Virtual IP, inside the node's service CIDR
    #[arg(long)]
    pub(crate) vip: String,
    /// Port (repeatable); TARGETPORT defaults to PORT, the protocol to tcp
    #[arg(
        long = "port",
        value_name = "[NAME:]PORT[:TARGETPORT][/tcp|/udp]",
        required = true
    )]
    pub(crate) ports: Vec<String>,
    /// Select this node's pods by label (repeatable; all must match)
    #[arg(long = "selector", value_name = "K=V")]
    pub(crate) selector: Vec<String>,
    /// Explicit endpoint, a pod on this node or a peer (repeatable)
    #[arg(long = "endpoint", value_name = "IP[:PORT]")]
    pub(crate) endpoints: Vec<String>,
    /// Session affinity by client IP [default timeout: 10800 s]
    #[arg(long, value_name = "client-ip[:SECONDS]")]
    pub(crate) affinity: Option<String>,
}

/// The request for a command, after the local shape checks; `docs` are the converted
/// documents of `apply`/`delete -f` (read by the caller).
pub(crate) fn request(cmd: &Command, docs: &[Document]) -> Result<Request, Invalid> {
    Ok(match cmd {
        Command::Apply(_) => crate::apply::request(docs, false),
        Command::Delete(_) => crate::apply::request(docs, true),
        Command::Namespace(NamespaceCmd::List) => Request::NamespaceList,
        Command::Node(NodeCmd::Show) => Request::NodeShow,
        Command::Node(NodeCmd::List) => Request::NodeList,
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
        Command::Port(PortCmd::List { all_nodes: false }) => Request::PortList,
        Command::Port(PortCmd::List { all_nodes: true }) => Request::PortListAll,
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
                vip: Some(a.vip.clone()),
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
        Command::Capture(a) => crate::capture::request(a)?,
        Command::Trace(a) => crate::inspect::trace_request(a)?,
        Command::Conntrack(c) => crate::inspect::conntrack_request(c)?,
        Command::LogLevel { level } => {
            crate::inspect::log_filter(level)?;
            Request::LogLevel {
                level: level.clone(),
            }
        }
        Command::Observe(a) => crate::observe::request(a)?,
        Command::Top(_) => Request::Stats {
            port: None,
            namespace: None,
        },
        Command::Stats { port, namespace } => Request::Stats {
            port: port.clone(),
            namespace: namespace.clone(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Format;
    use crate::render;
    use crate::tests::{parse, usage_error};
    use vswitch_proto::Response;

    fn req(args: &[&str]) -> Result<Request, Invalid> {
        request(&parse(args).command, &[])
    }

    #[test]
    fn node_show() {
        assert_eq!(req(&["node", "show"]).unwrap(), Request::NodeShow);
        assert_eq!(req(&["node", "list"]).unwrap(), Request::NodeList);
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
        assert_eq!(
            req(&["port", "list", "--all-nodes"]).unwrap(),
            Request::PortListAll
        );
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
            vip: Some("198.19.96.20".into()),
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
            render(&cmd, Response::Done, Format::Table, &[]).unwrap(),
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
            &[],
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
    fn apply_delete_and_namespace_parse() {
        assert!(matches!(parse(&["apply", "-f", "-"]).command, Command::Apply(a) if a.file == "-"));
        assert!(matches!(
            parse(&["delete", "--filename", "x.yaml"]).command,
            Command::Delete(a) if a.file == "x.yaml"
        ));
        assert_eq!(usage_error(&["apply"]).exit_code(), 2);
        assert_eq!(req(&["namespace", "list"]).unwrap(), Request::NamespaceList);
    }
}
