//! The CNI commands: environment and configuration in, one request to vswitchd, the spec's
//! answer out.

use crate::config::{CniArgs, CniVersion, Command, Env, NetConf, Target};
use crate::daemon::{CallError, Daemon};
use crate::error::{CniError, Code};
use crate::result::{self, AddResult};
use vswitch_proto::{CniAttach, ErrorBody, ErrorKind, PortInfo, Request, Response};

/// What the binary prints on stdout and whether it exits 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// One JSON object (a result, VERSION's answer or an error), or empty.
    pub stdout: String,
    /// Exit status 0 (otherwise 1, with the error object on stdout).
    pub success: bool,
}

/// Runs one CNI invocation. `get` reads the environment, `stdin` is what the runtime wrote
/// (or why it could not be read), `connect` makes the daemon client from the configuration.
pub fn run<D: Daemon>(
    get: impl Fn(&str) -> Option<String>,
    stdin: std::io::Result<Vec<u8>>,
    connect: impl FnOnce(&NetConf) -> D,
) -> Outcome {
    let reply_version = match &stdin {
        Ok(bytes) => crate::config::reply_version(bytes),
        Err(_) => CniVersion::LATEST,
    };
    match execute(get, stdin, connect) {
        Ok(out) => Outcome {
            stdout: out.unwrap_or_default(),
            success: true,
        },
        Err(e) => Outcome {
            stdout: e.to_json(reply_version.as_str()),
            success: false,
        },
    }
}

fn execute<D: Daemon>(
    get: impl Fn(&str) -> Option<String>,
    stdin: std::io::Result<Vec<u8>>,
    connect: impl FnOnce(&NetConf) -> D,
) -> Result<Option<String>, CniError> {
    let env = Env::from_lookup(get)?;
    let stdin = stdin.map_err(|e| {
        CniError::new(
            Code::Io,
            format!("reading the network configuration from stdin: {e}"),
        )
    })?;
    if env.command == Command::Version {
        // Never fails: this is how a runtime finds out what to send.
        return Ok(Some(result::version_json(crate::config::reply_version(
            &stdin,
        ))));
    }
    let conf = NetConf::parse(&stdin)?;
    if conf.cni_version < env.command.since() {
        return Err(CniError::new(
            Code::IncompatibleVersion,
            format!(
                "{} needs cniVersion {} or later; the configuration has {}",
                env.command.name(),
                env.command.since().as_str(),
                conf.cni_version.as_str()
            ),
        )
        .details("cniVersion"));
    }
    let daemon = connect(&conf);
    let target = env.target.as_ref();
    match env.command {
        Command::Add => add(&daemon, target.expect("ADD has a target"), &env, &conf).map(Some),
        Command::Del => del(&daemon, target.expect("DEL has a target")).map(|()| None),
        Command::Check => {
            check(&daemon, target.expect("CHECK has a target"), &env, &conf).map(|()| None)
        }
        Command::Status => status(&daemon).map(|()| None),
        Command::Gc => gc(&daemon, &conf).map(|()| None),
        Command::Version => unreachable!("answered above"),
    }
}

/// Which command a daemon error answers (CHECK's `other` means drift).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verb {
    Add,
    Del,
    Check,
    Gc,
}

/// Maps a refusal of vswitchd to a CNI error.
fn refused(body: ErrorBody, verb: Verb) -> CniError {
    let code = match body.kind {
        ErrorKind::Unavailable => Code::TryAgainLater,
        ErrorKind::Exhausted => Code::AddressesExhausted,
        ErrorKind::NotFound => Code::UnknownContainer,
        ErrorKind::Other if verb == Verb::Check => Code::CheckFailed,
        ErrorKind::Invalid | ErrorKind::Exists | ErrorKind::Other => Code::Rejected,
    };
    let prefix = match verb {
        Verb::Check if code == Code::CheckFailed => "interface check failed",
        _ => "vswitchd refused the request",
    };
    CniError::new(code, format!("{prefix}: {body}")).details(body.field.unwrap_or_default())
}

/// Maps a call that got no answer to a CNI error: 11 when waiting may help, else 5.
fn unanswered(e: CallError) -> CniError {
    let code = if e.is_transient() {
        Code::TryAgainLater
    } else {
        Code::Io
    };
    CniError::new(code, e.message().to_string())
}

fn unexpected(answer: &Response) -> CniError {
    let shown = serde_json::to_string(answer).unwrap_or_default();
    CniError::new(
        Code::Io,
        format!("vswitchd answered something unexpected: {shown}"),
    )
}

fn attach(t: &Target, env: &Env) -> Result<CniAttach, CniError> {
    let args = CniArgs::parse(&env.args)?;
    Ok(CniAttach {
        container_id: t.container_id.clone(),
        ifname: t.ifname.clone(),
        netns: t.netns.clone().unwrap_or_default(),
        pod_name: args.pod_name,
        pod_namespace: args.pod_namespace,
    })
}

/// ADD: attach (or find the existing attachment of the same container and interface).
fn add(d: &impl Daemon, t: &Target, env: &Env, conf: &NetConf) -> Result<String, CniError> {
    let req = Request::CniAdd(attach(t, env)?);
    match d.call(&req).map_err(unanswered)? {
        Response::Port(port) => {
            let sandbox = t.netns.as_deref().unwrap_or_default();
            Ok(AddResult::from_port(&port, sandbox, conf.dns.clone()).to_json(conf.cni_version))
        }
        Response::Error(body) => Err(refused(body, Verb::Add)),
        other => Err(unexpected(&other)),
    }
}

/// DEL: detach; an unknown attachment (never added, or deleted already) is success. An
/// unreachable daemon is code 11, so that the runtime retries and nothing leaks.
fn del(d: &impl Daemon, t: &Target) -> Result<(), CniError> {
    match d.call(&Request::CniDel(t.key())).map_err(unanswered)? {
        Response::Done => Ok(()),
        Response::Error(ErrorBody {
            kind: ErrorKind::NotFound,
            ..
        }) => Ok(()),
        Response::Error(body) => Err(refused(body, Verb::Del)),
        other => Err(unexpected(&other)),
    }
}

/// CHECK: vswitchd inspects the pod's interface; the answer must also match `prevResult`.
fn check(d: &impl Daemon, t: &Target, env: &Env, conf: &NetConf) -> Result<(), CniError> {
    let req = Request::CniCheck(attach(t, env)?);
    match d.call(&req).map_err(unanswered)? {
        Response::Port(port) => match_prev_result(&port, conf),
        Response::Error(body) => Err(refused(body, Verb::Check)),
        other => Err(unexpected(&other)),
    }
}

fn match_prev_result(port: &PortInfo, conf: &NetConf) -> Result<(), CniError> {
    let Some(prev) = &conf.prev_result else {
        return Ok(());
    };
    let have = format!("{}/{}", port.ip, port.prefix_len);
    if !prev.addresses.is_empty() && !prev.addresses.contains(&have) {
        return Err(CniError::new(
            Code::CheckFailed,
            format!(
                "interface check failed: prevResult has {} but {} has {have}",
                prev.addresses.join(", "),
                port.ifname
            ),
        )
        .details("prevResult.ips"));
    }
    let mac = prev
        .interfaces
        .iter()
        .filter(|(name, _)| *name == port.ifname)
        .find_map(|(_, mac)| mac.as_deref());
    if let Some(mac) = mac {
        if !mac.eq_ignore_ascii_case(&port.mac) {
            return Err(CniError::new(
                Code::CheckFailed,
                format!(
                    "interface check failed: prevResult has MAC {mac} for {} but it has {}",
                    port.ifname, port.mac
                ),
            )
            .details("prevResult.interfaces"));
        }
    }
    Ok(())
}

/// STATUS: ready when vswitchd answers.
fn status(d: &impl Daemon) -> Result<(), CniError> {
    let not_available = |why: String| {
        CniError::new(
            Code::NotAvailable,
            format!("the plugin is not available: {why}"),
        )
    };
    match d.call(&Request::NodeShow) {
        Ok(Response::Node(_)) => Ok(()),
        Ok(Response::Error(body)) => Err(not_available(format!("vswitchd: {body}"))),
        Ok(other) => Err(not_available(unexpected(&other).msg)),
        Err(e) => Err(not_available(e.message().to_string())),
    }
}

/// GC: remove every attachment the runtime does not list.
fn gc(d: &impl Daemon, conf: &NetConf) -> Result<(), CniError> {
    let valid = conf.valid_attachments.clone().ok_or_else(|| {
        CniError::new(
            Code::InvalidConfig,
            "GC needs `cni.dev/valid-attachments` in the network configuration (refusing to \
             guess: an absent list would remove every attachment)",
        )
        .details("cni.dev/valid-attachments")
    })?;
    match d.call(&Request::CniGc { valid }).map_err(unanswered)? {
        Response::Done => Ok(()),
        Response::Error(body) => Err(refused(body, Verb::Gc)),
        other => Err(unexpected(&other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::cell::RefCell;
    use std::collections::{BTreeMap, HashMap};
    use vswitch_proto::{CniKey, NodeInfo, PortStatus};

    const CONF_110: &str = r#"{"cniVersion":"1.1.0","name":"pods","type":"vswitch"}"#;

    fn port() -> PortInfo {
        PortInfo {
            name: "nginx".into(),
            namespace: "web".into(),
            ip: "198.18.1.7".into(),
            prefix_len: 24,
            mac: "02:00:c6:12:01:07".into(),
            node: "node1".into(),
            status: PortStatus::Running,
            netns: "/run/netns/p1".into(),
            ifname: "eth0".into(),
            gateway: "198.18.1.1".into(),
            mtu: 1450,
            labels: BTreeMap::new(),
            container_id: Some("c1".into()),
            runtime_name: None,
            runtime_namespace: None,
            dns: None,
        }
    }

    fn node() -> NodeInfo {
        // From JSON, so that fields the protocol gains (with defaults) do not break the test.
        serde_json::from_value(json!({
            "node": "node1", "pod_cidr": "198.18.1.0/24", "gateway": "198.18.1.1",
            "router_mac": "02:00:00:00:00:01", "vtep_ip": "198.18.1.0",
            "vtep_mac": "02:00:00:00:00:02", "underlay": null, "vxlan_port": 4789, "vni": 1,
            "pod_mtu": 1450, "datapath": "epoll", "ports": 0, "peers": 0, "version": "0.1.0"
        }))
        .expect("a NodeInfo")
    }

    fn err(kind: ErrorKind, field: Option<&str>, msg: &str) -> Response {
        Response::error(kind, field, msg)
    }

    /// Runs the plugin with `vars` and `stdin` against a fake daemon answering `answer`;
    /// returns the outcome and the requests the daemon saw.
    fn invoke(
        vars: &[(&str, &str)],
        stdin: &str,
        answer: impl Fn(&Request) -> Result<Response, CallError>,
    ) -> (Outcome, Vec<Request>) {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let seen = RefCell::new(Vec::new());
        let out = run(
            |k| map.get(k).cloned(),
            Ok(stdin.as_bytes().to_vec()),
            |_conf| {
                |req: &Request| {
                    seen.borrow_mut().push(req.clone());
                    answer(req)
                }
            },
        );
        (out, seen.into_inner())
    }

    fn add_env(cmd: &'static str) -> Vec<(&'static str, &'static str)> {
        vec![
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/var/run/netns/p1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin"),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=web;K8S_POD_NAME=nginx",
            ),
        ]
    }

    fn json_of(out: &Outcome) -> Value {
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", out.stdout))
    }

    fn assert_error(out: &Outcome, code: u32) -> Value {
        assert!(!out.success, "expected error {code}, got {out:?}");
        let v = json_of(out);
        assert_eq!(v["code"], code, "{v}");
        assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        v
    }

    fn never(_: &Request) -> Result<Response, CallError> {
        panic!("the daemon must not be called")
    }

    #[test]
    fn add_sends_the_attachment_and_prints_the_result() {
        let (out, seen) = invoke(&add_env("ADD"), CONF_110, |_| Ok(Response::Port(port())));
        assert!(out.success, "{out:?}");
        assert_eq!(
            seen,
            vec![Request::CniAdd(CniAttach {
                container_id: "c1".into(),
                ifname: "eth0".into(),
                netns: "/var/run/netns/p1".into(),
                pod_name: Some("nginx".into()),
                pod_namespace: Some("web".into()),
            })]
        );
        assert_eq!(
            json_of(&out),
            json!({
                "cniVersion": "1.1.0",
                "interfaces": [{"name": "eth0", "mac": "02:00:c6:12:01:07", "mtu": 1450,
                                "sandbox": "/var/run/netns/p1"}],
                "ips": [{"address": "198.18.1.7/24", "gateway": "198.18.1.1", "interface": 0}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "198.18.1.1"}],
                "dns": {}
            })
        );
    }

    /// podman passes the container's name as K8S_POD_NAME, containerd 64-hex ids: the
    /// plugin passes both on as given (the daemon maps the name to a port name).
    #[test]
    fn add_passes_runtime_names_and_ids_on_unchanged() {
        let id = "4f1bf1b0f7ad4b6dd2f5c2c8a0e96ae2b3bb0aa3f6f5d0f05b5a3f0d7e4c1a90";
        for name in ["dazzling_chatterjee", "Web_1", "web_1"] {
            let args = format!("IgnoreUnknown=1;K8S_POD_NAME={name}");
            let mut vars: Vec<(&str, &str)> = add_env("ADD")
                .into_iter()
                .filter(|(k, _)| *k != "CNI_ARGS" && *k != "CNI_CONTAINERID")
                .collect();
            vars.push(("CNI_ARGS", &args));
            vars.push(("CNI_CONTAINERID", id));
            let (out, seen) = invoke(&vars, CONF_110, |_| Ok(Response::Port(port())));
            assert!(out.success, "{name}: {out:?}");
            let Request::CniAdd(a) = &seen[0] else {
                panic!("{seen:?}")
            };
            assert_eq!(a.pod_name.as_deref(), Some(name));
            assert_eq!(a.pod_namespace, None);
            assert_eq!(a.container_id, id);
        }
    }

    #[test]
    fn add_answers_in_the_version_asked() {
        let conf = r#"{"cniVersion":"0.4.0","name":"pods","type":"vswitch"}"#;
        let (out, _) = invoke(&add_env("ADD"), conf, |_| Ok(Response::Port(port())));
        let v = json_of(&out);
        assert_eq!(v["cniVersion"], "0.4.0");
        assert_eq!(v["ips"][0]["version"], "4");
        assert!(v["interfaces"][0].get("mtu").is_none(), "{v}");
    }

    #[test]
    fn add_without_pod_args_leaves_naming_to_the_daemon() {
        let vars: Vec<_> = add_env("ADD")
            .into_iter()
            .filter(|(k, _)| *k != "CNI_ARGS")
            .collect();
        let (_, seen) = invoke(&vars, CONF_110, |_| Ok(Response::Port(port())));
        let Request::CniAdd(a) = &seen[0] else {
            panic!("{seen:?}")
        };
        assert_eq!(
            (a.pod_name.as_deref(), a.pod_namespace.as_deref()),
            (None, None)
        );
    }

    #[test]
    fn add_errors_map_to_codes() {
        let cases: [(Response, u32, &str); 6] = [
            (
                err(
                    ErrorKind::Exhausted,
                    Some("ip"),
                    "no free address left in 198.18.7.0/29",
                ),
                100,
                "ip",
            ),
            (
                err(
                    ErrorKind::Invalid,
                    Some("name"),
                    "`Nginx` may contain only lowercase",
                ),
                102,
                "name",
            ),
            (
                err(
                    ErrorKind::Exists,
                    Some("name"),
                    "port web/nginx already exists",
                ),
                102,
                "name",
            ),
            (err(ErrorKind::Other, None, "something broke"), 102, ""),
            (
                err(
                    ErrorKind::Unavailable,
                    None,
                    "saving state failed, nothing changed",
                ),
                11,
                "",
            ),
            (
                err(ErrorKind::NotFound, Some("netns"), "no such netns"),
                3,
                "netns",
            ),
        ];
        for (answer, code, details) in cases {
            let msg = match &answer {
                Response::Error(b) => b.message.clone(),
                _ => unreachable!(),
            };
            let (out, _) = invoke(&add_env("ADD"), CONF_110, |_| Ok(answer.clone()));
            let v = assert_error(&out, code);
            assert_eq!(v["cniVersion"], "1.1.0");
            assert_eq!(
                v.get("details").and_then(Value::as_str).unwrap_or(""),
                details,
                "{v}"
            );
            assert!(v["msg"].as_str().unwrap().contains(&msg), "{v}");
        }
    }

    #[test]
    fn unanswered_calls_map_to_11_or_5() {
        for (e, code) in [
            (
                CallError::Unreachable("cannot connect (is vswitchd running?)".into()),
                11,
            ),
            (
                CallError::Timeout("did not answer within 10.0 s".into()),
                11,
            ),
            (CallError::Interrupted("closed the connection".into()), 11),
            (CallError::Failed("permission denied".into()), 5),
        ] {
            for cmd in ["ADD", "DEL", "CHECK"] {
                let (out, _) = invoke(&add_env(cmd), CONF_110, |_| Err(e.clone()));
                let v = assert_error(&out, code);
                assert!(v["msg"].as_str().unwrap().contains(e.message()), "{v}");
            }
        }
        let (out, _) = invoke(&add_env("ADD"), CONF_110, |_| Ok(Response::Done));
        assert_error(&out, 5);
    }

    #[test]
    fn del_is_idempotent() {
        let (out, seen) = invoke(&add_env("DEL"), CONF_110, |_| Ok(Response::Done));
        assert_eq!(
            out,
            Outcome {
                stdout: String::new(),
                success: true
            }
        );
        assert_eq!(
            seen,
            vec![Request::CniDel(CniKey {
                container_id: "c1".into(),
                ifname: "eth0".into()
            })]
        );
        let (out, _) = invoke(&add_env("DEL"), CONF_110, |_| {
            Ok(err(
                ErrorKind::NotFound,
                Some("name"),
                "port does not exist",
            ))
        });
        assert!(out.success && out.stdout.is_empty(), "{out:?}");
        // Without CNI_NETNS too (the namespace may be gone).
        let vars: Vec<_> = add_env("DEL")
            .into_iter()
            .filter(|(k, _)| *k != "CNI_NETNS")
            .collect();
        let (out, _) = invoke(&vars, CONF_110, |_| Ok(Response::Done));
        assert!(out.success, "{out:?}");
    }

    #[test]
    fn del_with_the_daemon_down_asks_for_a_retry() {
        let (out, _) = invoke(&add_env("DEL"), CONF_110, |_| {
            Err(CallError::Unreachable("cannot connect".into()))
        });
        assert_error(&out, 11);
    }

    #[test]
    fn check_passes_and_matches_prev_result() {
        let conf = r#"{"cniVersion":"1.0.0","name":"pods","type":"vswitch",
            "prevResult":{"cniVersion":"1.0.0",
                "interfaces":[{"name":"eth0","mac":"02:00:C6:12:01:07","sandbox":"/var/run/netns/p1"}],
                "ips":[{"address":"198.18.1.7/24","gateway":"198.18.1.1","interface":0}]}}"#;
        let (out, seen) = invoke(&add_env("CHECK"), conf, |_| Ok(Response::Port(port())));
        assert_eq!(
            out,
            Outcome {
                stdout: String::new(),
                success: true
            }
        );
        assert!(matches!(&seen[0], Request::CniCheck(a) if a.netns == "/var/run/netns/p1"));
    }

    #[test]
    fn check_fails_on_drift() {
        let (out, _) = invoke(&add_env("CHECK"), CONF_110, |_| {
            Ok(err(
                ErrorKind::Other,
                None,
                "eth0 in netns /run/netns/p1: no address 198.18.1.7/24",
            ))
        });
        let v = assert_error(&out, 101);
        assert!(
            v["msg"]
                .as_str()
                .unwrap()
                .starts_with("interface check failed"),
            "{v}"
        );
        let (out, _) = invoke(&add_env("CHECK"), CONF_110, |_| {
            Ok(err(
                ErrorKind::NotFound,
                Some("container_id"),
                "no attachment",
            ))
        });
        assert_error(&out, 3);
        let (out, _) = invoke(&add_env("CHECK"), CONF_110, |_| {
            Ok(err(ErrorKind::Invalid, Some("ifname"), "bad"))
        });
        assert_error(&out, 102);
    }

    #[test]
    fn check_fails_when_prev_result_differs() {
        for (prev, details) in [
            (r#"{"ips":[{"address":"198.18.1.9/24"}]}"#, "prevResult.ips"),
            (
                r#"{"interfaces":[{"name":"eth0","mac":"02:00:00:00:00:99"}]}"#,
                "prevResult.interfaces",
            ),
        ] {
            let conf = format!(
                r#"{{"cniVersion":"1.1.0","name":"pods","type":"vswitch","prevResult":{prev}}}"#
            );
            let (out, _) = invoke(&add_env("CHECK"), &conf, |_| Ok(Response::Port(port())));
            let v = assert_error(&out, 101);
            assert_eq!(v["details"], details);
        }
    }

    #[test]
    fn status() {
        let (out, seen) = invoke(&[("CNI_COMMAND", "STATUS")], CONF_110, |_| {
            Ok(Response::Node(node()))
        });
        assert_eq!(
            out,
            Outcome {
                stdout: String::new(),
                success: true
            }
        );
        assert_eq!(seen, vec![Request::NodeShow]);
        for e in [
            CallError::Unreachable("cannot connect".into()),
            CallError::Timeout("no answer".into()),
            CallError::Failed("permission denied".into()),
        ] {
            let (out, _) = invoke(&[("CNI_COMMAND", "STATUS")], CONF_110, |_| Err(e.clone()));
            assert_error(&out, 50);
        }
    }

    #[test]
    fn status_and_gc_need_1_1_0() {
        for cmd in ["STATUS", "GC"] {
            let conf = r#"{"cniVersion":"1.0.0","name":"pods","type":"vswitch",
                           "cni.dev/valid-attachments":[]}"#;
            let (out, seen) = invoke(&[("CNI_COMMAND", cmd)], conf, never);
            let v = assert_error(&out, 1);
            assert_eq!(v["cniVersion"], "1.0.0");
            assert!(v["msg"].as_str().unwrap().starts_with(cmd), "{v}");
            assert!(seen.is_empty());
        }
    }

    #[test]
    fn gc_sends_the_valid_attachments() {
        let conf = r#"{"cniVersion":"1.1.0","name":"pods","type":"vswitch",
            "cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]}"#;
        let (out, seen) = invoke(&[("CNI_COMMAND", "GC")], conf, |_| Ok(Response::Done));
        assert_eq!(
            out,
            Outcome {
                stdout: String::new(),
                success: true
            }
        );
        assert_eq!(
            seen,
            vec![Request::CniGc {
                valid: vec![CniKey {
                    container_id: "c1".into(),
                    ifname: "eth0".into()
                }]
            }]
        );
        // No list at all: refuse rather than remove everything.
        let (out, seen) = invoke(&[("CNI_COMMAND", "GC")], CONF_110, never);
        let v = assert_error(&out, 7);
        assert_eq!(v["details"], "cni.dev/valid-attachments");
        assert!(seen.is_empty());
    }

    #[test]
    fn version() {
        for (stdin, asked) in [
            (r#"{"cniVersion":"0.4.0"}"#, "0.4.0"),
            (
                r#"{"cniVersion":"1.0.0","name":"x","type":"vswitch"}"#,
                "1.0.0",
            ),
            (r#"{"cniVersion":"0.2.0"}"#, "1.1.0"),
            ("", "1.1.0"),
        ] {
            let (out, seen) = invoke(&[("CNI_COMMAND", "VERSION")], stdin, never);
            assert!(out.success);
            assert!(seen.is_empty());
            assert_eq!(
                json_of(&out),
                json!({"cniVersion": asked, "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]})
            );
        }
    }

    #[test]
    fn input_errors_never_reach_the_daemon() {
        let no_netns: Vec<_> = add_env("ADD")
            .into_iter()
            .filter(|(k, _)| *k != "CNI_NETNS")
            .collect();
        type Vars = Vec<(&'static str, &'static str)>;
        let cases: Vec<(Vars, &str, u32, &str)> = vec![
            (no_netns, CONF_110, 4, "1.1.0"),
            (vec![], CONF_110, 4, "1.1.0"),
            (
                add_env("ADD"),
                r#"{"cniVersion":"0.3.1","name":"n","type":"vswitch"}"#,
                1,
                "1.1.0",
            ),
            (add_env("ADD"), "{not json", 6, "1.1.0"),
            (
                add_env("ADD"),
                r#"{"cniVersion":"1.0.0","name":"n"}"#,
                7,
                "1.0.0",
            ),
            (
                add_env("ADD"),
                r#"{"cniVersion":"0.4.0","name":"n","type":"vswitch","ipam":{"type":"dhcp"}}"#,
                2,
                "0.4.0",
            ),
            (
                vec![
                    ("CNI_COMMAND", "ADD"),
                    ("CNI_CONTAINERID", "c1"),
                    ("CNI_NETNS", "/var/run/netns/p1"),
                    ("CNI_IFNAME", "eth0"),
                    ("CNI_ARGS", "K8S_POD_NAME"),
                ],
                CONF_110,
                6,
                "1.1.0",
            ),
        ];
        for (vars, stdin, code, version) in cases {
            let (out, seen) = invoke(&vars, stdin, never);
            let v = assert_error(&out, code);
            assert_eq!(v["cniVersion"], version, "{v}");
            assert!(seen.is_empty());
        }
    }

    #[test]
    fn unreadable_stdin_is_code_5() {
        let out = run(
            |k| (k == "CNI_COMMAND").then(|| "STATUS".to_string()),
            Err(std::io::Error::other("boom")),
            |_| never,
        );
        assert_error(&out, 5);
    }
}
