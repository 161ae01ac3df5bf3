//! `vswitchctl`: the operator CLI of vswitch. It programs and inspects one node's `vswitchd`
//! over its control socket, one request and one response per invocation (see `vswitch-proto`;
//! `capture`, `observe --follow` and `top` are the streams: [`capture`], [`observe`],
//! [`top`]).
//!
//! Contract (scripts rely on it):
//! - Exit codes: `0` success; `1` the daemon refused the request (stderr
//!   `error: FIELD: MESSAGE`, the daemon's state unchanged), or the daemon could not be reached or
//!   answered badly or not within `--timeout` (`error: cannot connect to vswitchd at PATH: ...
//!   (is vswitchd running?)`); `2` usage or local validation error, found before connecting
//!   (stderr names the flag or `FIELD:`; for `apply`/`delete -f`, the document and its
//!   field: `error: document 2 (Service web): spec.ports[0].port: ...`). `delete -f` exits 1
//!   when an object it names does not exist (`error: services "x" not found`), after
//!   deleting the others.
//! - Results go to stdout, diagnostics to stderr. `-o json` prints the response data as pretty
//!   JSON with the protocol's field names for every command (listings are arrays); `table` and
//!   `wide` are for people and may gain columns.
//! - The socket is `--socket`, else `$VSWITCH_SOCKET`, else [`vswitch_proto::DEFAULT_SOCKET`].
//! - It never hangs: every step waits at most `--timeout` seconds (default 10).
//!
//! It must never guess at daemon state: it checks only the shape of arguments (in
//! [`commands`], with the daemon's own checks from [`vswitch_proto::validate`], and for
//! `-f` files in [`apply`] with [`vswitch_proto::manifest`]) and leaves every decision to
//! the daemon.

#![forbid(unsafe_code)]

mod apply;
mod capture;
mod capture_line;
mod commands;
mod inspect;
mod observe;
mod output;
mod top;

use clap::Parser;
use commands::{request, Command, NamespaceCmd, NodeCmd, PeerCmd, PortCmd, ServiceCmd};
use output::Format;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use vswitch_proto::client::{self, ClientError};
use vswitch_proto::validate::Invalid;
use vswitch_proto::{ErrorBody, PortKey, Response, ServiceKey};

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

/// Why a command failed; decides the exit code.
#[derive(Debug)]
enum Failure {
    /// A malformed argument, caught before connecting (exit 2).
    Invalid(Invalid),
    /// A bad `-f` file: unreadable (exit 2).
    Usage(String),
    /// A document of an `-f` file refused before connecting (exit 2).
    Manifest(vswitch_proto::manifest::ManifestError),
    /// `delete -f`: some objects did not exist; the others were deleted (exit 1). `printed`
    /// goes to stdout, `message` to stderr.
    NotFound { printed: String, message: String },
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
            Failure::Invalid(_) | Failure::Usage(_) | Failure::Manifest(_) => 2,
            _ => 1,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Invalid(e) => write!(f, "{e}"),
            Failure::Usage(e) => f.write_str(e),
            Failure::Manifest(e) => write!(f, "{e}"),
            Failure::NotFound { message, .. } => f.write_str(message),
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
            if let Failure::NotFound { printed, .. } = &e {
                let _ = std::io::stdout().lock().write_all(printed.as_bytes());
            }
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Validates, sends one request, and renders the answer.
fn run(cli: &Cli) -> Result<String, Failure> {
    let docs = match &cli.command {
        Command::Apply(a) | Command::Delete(a) => apply::documents(&a.file)?,
        _ => Vec::new(),
    };
    let socket = socket_path(cli.socket.clone(), std::env::var_os("VSWITCH_SOCKET"));
    if let Command::Capture(a) = &cli.command {
        // A stream: written out as it comes, nothing left to render.
        capture::run(a, &socket, Duration::from_secs(cli.timeout))?;
        return Ok(String::new());
    }
    if let Command::Observe(a) = &cli.command {
        // With --follow a stream: printed as it comes.
        observe::run(a, &socket, Duration::from_secs(cli.timeout), cli.output)?;
        return Ok(String::new());
    }
    if let Command::Top(a) = &cli.command {
        top::run(a, &socket, Duration::from_secs(cli.timeout))?;
        return Ok(String::new());
    }
    let req = request(&cli.command, &docs).map_err(Failure::Invalid)?;
    let resp =
        client::call(&socket, &req, Duration::from_secs(cli.timeout)).map_err(Failure::Client)?;
    render(&cli.command, resp, cli.output, &docs)
}

/// `--socket`, else a non-empty `$VSWITCH_SOCKET`, else the default.
fn socket_path(flag: Option<PathBuf>, env: Option<OsString>) -> PathBuf {
    flag.or_else(|| env.filter(|s| !s.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(vswitch_proto::DEFAULT_SOCKET))
}

/// Renders the daemon's answer to `cmd` (`docs`: the documents of `apply`/`delete -f`), or
/// the failure it reports.
fn render(
    cmd: &Command,
    resp: Response,
    f: Format,
    docs: &[vswitch_proto::manifest::Document],
) -> Result<String, Failure> {
    Ok(match (cmd, resp) {
        (Command::Apply(_), Response::Error(e)) => {
            return Err(Failure::Daemon(apply::daemon_error(e, docs)))
        }
        (_, Response::Error(e)) => return Err(Failure::Daemon(e)),
        (Command::Apply(_) | Command::Delete(_), Response::Objects(rs)) => apply::results(&rs, f)?,
        (Command::Namespace(NamespaceCmd::List), Response::Namespaces(ns)) => {
            apply::namespaces(&ns, f, output::unix_now())
        }
        (Command::Node(NodeCmd::Show), Response::Node(n)) => output::node(&n, f),
        (Command::Node(NodeCmd::List), Response::Nodes(ns)) => {
            output::nodes(&ns, output::unix_now(), f)
        }
        (Command::Port(PortCmd::Add(_)), Response::Port(p)) => output::port_added(&p, f),
        (Command::Port(PortCmd::Del { name, namespace }), Response::Done) => output::port_deleted(
            &PortKey {
                name: name.clone(),
                namespace: namespace.clone(),
            },
            f,
        ),
        (Command::Port(PortCmd::List { .. }), Response::Ports(mut ps)) => {
            ps.sort_by(|a, b| {
                (&a.namespace, &a.name, &a.node).cmp(&(&b.namespace, &b.name, &b.node))
            });
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
        (Command::Trace(_), Response::Trace(r)) => inspect::trace(&r, f),
        (Command::Conntrack(_), Response::Conntrack(cs)) => inspect::conntrack(&cs, f),
        (Command::Conntrack(_), Response::ConntrackFlushed { removed }) => {
            inspect::flushed(removed, f)
        }
        (Command::LogLevel { .. }, Response::LogLevel { level, previous }) => {
            inspect::log_level(&level, &previous, f)
        }
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

    pub(crate) fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("vswitchctl").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    pub(crate) fn usage_error(args: &[&str]) -> clap::Error {
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
            render(&cmd, Response::Done, Format::Table, &[]).unwrap(),
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
            &[],
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "node: no peer `node2`");
        assert_eq!(err.exit_code(), 1);
        let err = render(&cmd, Response::Ports(vec![]), Format::Table, &[]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("unexpected answer from vswitchd"),
            "{err}"
        );
        assert_eq!(err.exit_code(), 1);
        let invalid = Failure::Invalid(vswitch_proto::validate::mac("mac", "zz").unwrap_err());
        assert_eq!(invalid.exit_code(), 2);
    }
}
