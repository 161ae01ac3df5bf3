//! What the runtime hands the plugin: the `CNI_*` environment variables and the network
//! configuration on stdin, parsed and validated into [`Env`] and [`NetConf`].

use crate::error::{CniError, Code};
use crate::result::Dns;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::time::Duration;
use vswitch_proto::CniKey;

/// The CNI spec versions this plugin speaks; results are written in the version asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CniVersion {
    /// 0.4.0: results carry `ips[].version`; CHECK exists, STATUS and GC do not.
    V0_4_0,
    /// 1.0.0: no `ips[].version`.
    V1_0_0,
    /// 1.1.0: interfaces carry `mtu`; STATUS and GC exist.
    V1_1_0,
}

impl CniVersion {
    /// The newest version, answered when the runtime does not say.
    pub const LATEST: CniVersion = CniVersion::V1_1_0;
    /// Every supported version, oldest first (VERSION's `supportedVersions`).
    pub const SUPPORTED: [CniVersion; 3] =
        [CniVersion::V0_4_0, CniVersion::V1_0_0, CniVersion::V1_1_0];

    /// Parses `"0.4.0"`, `"1.0.0"` or `"1.1.0"`.
    pub fn parse(s: &str) -> Option<CniVersion> {
        Self::SUPPORTED.into_iter().find(|v| v.as_str() == s)
    }

    /// The version string.
    pub fn as_str(self) -> &'static str {
        match self {
            CniVersion::V0_4_0 => "0.4.0",
            CniVersion::V1_0_0 => "1.0.0",
            CniVersion::V1_1_0 => "1.1.0",
        }
    }

    fn supported_list() -> String {
        Self::SUPPORTED.map(CniVersion::as_str).join(", ")
    }
}

/// `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach a container.
    Add,
    /// Detach a container (idempotent).
    Del,
    /// Verify an attachment.
    Check,
    /// Is the plugin ready for ADD? (1.1.0)
    Status,
    /// Which spec versions are supported.
    Version,
    /// Remove attachments not listed as valid. (1.1.0)
    Gc,
}

impl Command {
    const ALL: [Command; 6] = [
        Command::Add,
        Command::Del,
        Command::Check,
        Command::Status,
        Command::Version,
        Command::Gc,
    ];

    fn parse(s: &str) -> Option<Command> {
        Self::ALL.into_iter().find(|c| c.name() == s)
    }

    /// The command as `CNI_COMMAND` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Version => "VERSION",
            Command::Gc => "GC",
        }
    }

    /// The oldest spec version in which the runtime may send this command.
    pub fn since(self) -> CniVersion {
        match self {
            Command::Status | Command::Gc => CniVersion::V1_1_0,
            _ => CniVersion::V0_4_0,
        }
    }
}

/// The container an ADD, DEL or CHECK is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_NETNS` (optional on DEL only).
    pub netns: Option<String>,
}

impl Target {
    /// The attachment key the daemon stores.
    pub fn key(&self) -> CniKey {
        CniKey {
            container_id: self.container_id.clone(),
            ifname: self.ifname.clone(),
        }
    }
}

/// The `CNI_*` environment, validated for the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// The container, for ADD, DEL and CHECK; `None` for the other commands.
    pub target: Option<Target>,
    /// `CNI_ARGS`, unparsed (see [`CniArgs::parse`]); empty when unset.
    pub args: String,
}

impl Env {
    /// Reads the environment through `get` (`std::env::var` in the binary) and checks that
    /// the variables the command needs are set and well-formed (code 4 naming them if not).
    /// `CNI_PATH` is not required: this plugin delegates to no other plugin.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
        let var = |k: &str| get(k).filter(|v| !v.is_empty());
        let command = match var("CNI_COMMAND") {
            None => {
                return Err(CniError::new(Code::InvalidEnv, "CNI_COMMAND is not set")
                    .details("CNI_COMMAND"))
            }
            Some(c) => Command::parse(&c).ok_or_else(|| {
                CniError::new(
                    Code::InvalidEnv,
                    format!("CNI_COMMAND `{c}` is not one of ADD, DEL, CHECK, STATUS, VERSION, GC"),
                )
                .details("CNI_COMMAND")
            })?,
        };
        let target = match command {
            Command::Add | Command::Check | Command::Del => {
                let (id, netns, ifname) =
                    (var("CNI_CONTAINERID"), var("CNI_NETNS"), var("CNI_IFNAME"));
                let mut missing = Vec::new();
                if id.is_none() {
                    missing.push("CNI_CONTAINERID");
                }
                if netns.is_none() && command != Command::Del {
                    missing.push("CNI_NETNS");
                }
                if ifname.is_none() {
                    missing.push("CNI_IFNAME");
                }
                if !missing.is_empty() {
                    let names = missing.join(", ");
                    return Err(CniError::new(
                        Code::InvalidEnv,
                        format!(
                            "{} needs {names}, which {} not set",
                            command.name(),
                            plural(&missing)
                        ),
                    )
                    .details(names));
                }
                let (container_id, ifname) = (id.unwrap_or_default(), ifname.unwrap_or_default());
                check_container_id(&container_id)?;
                check_ifname(&ifname)?;
                Some(Target {
                    container_id,
                    ifname,
                    netns,
                })
            }
            Command::Status | Command::Version | Command::Gc => None,
        };
        Ok(Env {
            command,
            target,
            args: get("CNI_ARGS").unwrap_or_default(),
        })
    }
}

fn plural(names: &[&str]) -> &'static str {
    if names.len() == 1 {
        "is"
    } else {
        "are"
    }
}

/// The spec's container id: an alphanumeric, then alphanumerics, `_`, `.` or `-`.
fn check_container_id(id: &str) -> Result<(), CniError> {
    let ok = id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CniError::new(
            Code::InvalidEnv,
            format!(
                "CNI_CONTAINERID `{id}` must start with a letter or digit and contain only \
                 letters, digits, '_', '.' and '-'"
            ),
        )
        .details("CNI_CONTAINERID"))
    }
}

/// The spec's interface name: 1-15 bytes, not `.`/`..`, no `/`, `:` or whitespace.
fn check_ifname(name: &str) -> Result<(), CniError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(CniError::new(
            Code::InvalidEnv,
            format!(
                "CNI_IFNAME `{name}` is not a valid interface name (1-15 bytes, not `.` or `..`, \
                 no '/', ':' or whitespace)"
            ),
        )
        .details("CNI_IFNAME"))
    }
}

/// What this plugin takes from `CNI_ARGS` (`K=V;K=V`); other keys are ignored, as if
/// `IgnoreUnknown=1` were always set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    /// `K8S_POD_NAME`: the port is named after the pod.
    pub pod_name: Option<String>,
    /// `K8S_POD_NAMESPACE`.
    pub pod_namespace: Option<String>,
}

impl CniArgs {
    /// Parses `K=V;K=V` (empty items are skipped). An item without `=` is a decoding error
    /// (code 6). Empty values count as absent.
    pub fn parse(s: &str) -> Result<CniArgs, CniError> {
        let mut args = CniArgs::default();
        for item in s.split(';').filter(|i| !i.trim().is_empty()) {
            let (k, v) = item.split_once('=').ok_or_else(|| {
                CniError::new(Code::Decode, format!("CNI_ARGS: `{item}` is not KEY=VALUE"))
                    .details("CNI_ARGS")
            })?;
            let v = (!v.is_empty()).then(|| v.to_string());
            match k.trim() {
                "K8S_POD_NAME" => args.pod_name = v,
                "K8S_POD_NAMESPACE" => args.pod_namespace = v,
                _ => {} // IgnoreUnknown, K8S_POD_UID, K8S_POD_INFRA_CONTAINER_ID, ...
            }
        }
        Ok(args)
    }
}

/// What CHECK compares against: the parts of `prevResult` this plugin created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrevResult {
    /// `ips[].address` (`IP/PLEN`).
    pub addresses: Vec<String>,
    /// `interfaces[]` as (name, mac).
    pub interfaces: Vec<(String, Option<String>)>,
}

/// The default `timeoutSeconds`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest `timeoutSeconds` accepted.
const MAX_TIMEOUT_SECS: f64 = 600.0;

/// The network configuration (stdin), validated.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// `cniVersion`: results and errors are written in it.
    pub cni_version: CniVersion,
    /// `name`: the network's name.
    pub name: String,
    /// `type`: the plugin's executable name (not checked: the runtime chose us by it).
    pub plugin_type: String,
    /// `socket`: vswitchd's control socket.
    pub socket: PathBuf,
    /// `timeoutSeconds`: the longest one call to vswitchd may take.
    pub timeout: Duration,
    /// `dns`: copied into ADD's result (like the reference bridge plugin does).
    pub dns: Dns,
    /// `prevResult`, when the runtime passed one (CHECK; ignored otherwise).
    pub prev_result: Option<PrevResult>,
    /// `cni.dev/valid-attachments` (or the older `cni.dev/attachments`), for GC.
    pub valid_attachments: Option<Vec<CniKey>>,
}

fn invalid(field: &str, msg: impl Into<String>) -> CniError {
    CniError::new(Code::InvalidConfig, msg).details(field.to_string())
}

fn opt_string(obj: &Map<String, Value>, field: &str) -> Result<Option<String>, CniError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(invalid(
            field,
            format!("network configuration: `{field}` must be a string, not {other}"),
        )),
    }
}

fn required_string(obj: &Map<String, Value>, field: &str) -> Result<String, CniError> {
    opt_string(obj, field)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            invalid(
                field,
                format!("network configuration: `{field}` is required (a non-empty string)"),
            )
        })
}

fn string_list(v: &Value, field: &str) -> Result<Vec<String>, CniError> {
    let bad = || {
        invalid(
            field,
            format!("network configuration: `{field}` must be a list of strings"),
        )
    };
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string).ok_or_else(bad))
            .collect(),
        _ => Err(bad()),
    }
}

/// The version errors are reported in: the configuration's `cniVersion` when stdin has a
/// supported one, else the newest. Never fails (used before the configuration is validated).
pub fn reply_version(stdin: &[u8]) -> CniVersion {
    serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().and_then(CniVersion::parse))
        .unwrap_or(CniVersion::LATEST)
}

impl NetConf {
    /// Parses and validates the configuration. Not JSON, or not an object: code 6. Missing or
    /// unsupported `cniVersion`: code 1. A known field of the wrong type or value: code 7. An
    /// `ipam` section: code 2 (vswitchd allocates addresses itself). Unknown fields are ignored.
    pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
        let value: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                Code::Decode,
                format!("network configuration on stdin is not valid JSON: {e}"),
            )
        })?;
        let Value::Object(obj) = value else {
            return Err(CniError::new(
                Code::Decode,
                "network configuration on stdin must be a JSON object",
            ));
        };
        let cni_version = match opt_string(&obj, "cniVersion")? {
            None => {
                return Err(CniError::new(
                    Code::IncompatibleVersion,
                    format!(
                        "network configuration has no cniVersion (which means 0.1.0); \
                         supported versions: {}",
                        CniVersion::supported_list()
                    ),
                )
                .details("cniVersion"))
            }
            Some(s) => CniVersion::parse(&s).ok_or_else(|| {
                CniError::new(
                    Code::IncompatibleVersion,
                    format!(
                        "cniVersion {s} is not supported; supported versions: {}",
                        CniVersion::supported_list()
                    ),
                )
                .details("cniVersion")
            })?,
        };
        let name = required_string(&obj, "name")?;
        let plugin_type = required_string(&obj, "type")?;
        let socket = match opt_string(&obj, "socket")? {
            None => PathBuf::from(vswitch_proto::DEFAULT_SOCKET),
            Some(s) if s.is_empty() => {
                return Err(invalid(
                    "socket",
                    "network configuration: `socket` is empty",
                ))
            }
            Some(s) => PathBuf::from(s),
        };
        let timeout = match obj.get("timeoutSeconds") {
            None | Some(Value::Null) => DEFAULT_TIMEOUT,
            Some(v) => match v.as_f64() {
                Some(secs) if secs > 0.0 && secs <= MAX_TIMEOUT_SECS => {
                    Duration::from_secs_f64(secs)
                }
                _ => {
                    return Err(invalid(
                        "timeoutSeconds",
                        format!(
                            "network configuration: `timeoutSeconds` must be a number of seconds \
                             above 0 and at most {MAX_TIMEOUT_SECS}, not {v}"
                        ),
                    ))
                }
            },
        };
        if let Some(ipam) = obj.get("ipam") {
            let empty = ipam.is_null() || ipam.as_object().is_some_and(Map::is_empty);
            if !empty {
                return Err(CniError::new(
                    Code::UnsupportedField,
                    format!(
                        "unsupported field `ipam`: {ipam}; vswitchd allocates pod addresses \
                         itself, remove the ipam section"
                    ),
                )
                .details("ipam"));
            }
        }
        let dns = match obj.get("dns") {
            None | Some(Value::Null) => Dns::default(),
            Some(Value::Object(d)) => Dns {
                nameservers: string_list(
                    d.get("nameservers").unwrap_or(&Value::Null),
                    "dns.nameservers",
                )?,
                domain: opt_string(d, "domain")
                    .map_err(|_| {
                        invalid(
                            "dns.domain",
                            "network configuration: `dns.domain` must be a string",
                        )
                    })?
                    .filter(|s| !s.is_empty()),
                search: string_list(d.get("search").unwrap_or(&Value::Null), "dns.search")?,
                options: string_list(d.get("options").unwrap_or(&Value::Null), "dns.options")?,
            },
            Some(other) => {
                return Err(invalid(
                    "dns",
                    format!("network configuration: `dns` must be an object, not {other}"),
                ))
            }
        };
        let prev_result = obj.get("prevResult").and_then(prev_result);
        let attachments = obj
            .get("cni.dev/valid-attachments")
            .map(|v| ("cni.dev/valid-attachments", v))
            .or_else(|| {
                obj.get("cni.dev/attachments")
                    .map(|v| ("cni.dev/attachments", v))
            });
        let valid_attachments = match attachments {
            None | Some((_, Value::Null)) => None,
            Some((field, v)) => Some(parse_attachments(field, v)?),
        };
        Ok(NetConf {
            cni_version,
            name,
            plugin_type,
            socket,
            timeout,
            dns,
            prev_result,
            valid_attachments,
        })
    }
}

/// Reads what CHECK needs from `prevResult`, leniently: a chained plugin may have written
/// more than this plugin knows, and anything unreadable is simply not compared.
fn prev_result(v: &Value) -> Option<PrevResult> {
    let obj = v.as_object()?;
    let addresses = obj
        .get("ips")
        .and_then(Value::as_array)
        .map(|ips| {
            ips.iter()
                .filter_map(|ip| ip.get("address")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let interfaces = obj
        .get("interfaces")
        .and_then(Value::as_array)
        .map(|ifs| {
            ifs.iter()
                .filter_map(|i| {
                    let name = i.get("name")?.as_str()?.to_string();
                    let mac = i.get("mac").and_then(Value::as_str).map(str::to_string);
                    Some((name, mac))
                })
                .collect()
        })
        .unwrap_or_default();
    Some(PrevResult {
        addresses,
        interfaces,
    })
}

fn parse_attachments(field: &str, v: &Value) -> Result<Vec<CniKey>, CniError> {
    let bad = |what: String| {
        invalid(
            field,
            format!("network configuration: `{field}` must be a list of {{\"containerID\", \"ifname\"}} objects: {what}"),
        )
    };
    let items = v.as_array().ok_or_else(|| bad(format!("got {v}")))?;
    items
        .iter()
        .map(|item| {
            let get = |k: &str| {
                item.get(k)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
            };
            match (get("containerID"), get("ifname")) {
                (Some(container_id), Some(ifname)) => Ok(CniKey {
                    container_id,
                    ifname,
                }),
                _ => Err(bad(format!("entry {item} lacks containerID or ifname"))),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> Result<Env, CniError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::from_lookup(|k| map.get(k).cloned())
    }

    const ADD_ENV: [(&str, &str); 5] = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/var/run/netns/p1"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
    ];

    #[test]
    fn versions() {
        for (s, v) in [
            ("0.4.0", CniVersion::V0_4_0),
            ("1.0.0", CniVersion::V1_0_0),
            ("1.1.0", CniVersion::V1_1_0),
        ] {
            assert_eq!(CniVersion::parse(s), Some(v));
            assert_eq!(v.as_str(), s);
        }
        for s in ["0.3.1", "0.1.0", "1.2.0", "", "1.1"] {
            assert_eq!(CniVersion::parse(s), None, "{s}");
        }
        assert!(CniVersion::V0_4_0 < CniVersion::V1_1_0);
        assert_eq!(Command::Status.since(), CniVersion::V1_1_0);
        assert_eq!(Command::Gc.since(), CniVersion::V1_1_0);
        assert_eq!(Command::Check.since(), CniVersion::V0_4_0);
    }

    #[test]
    fn add_env() {
        let e = env(&ADD_ENV).unwrap();
        assert_eq!(e.command, Command::Add);
        assert_eq!(
            e.target,
            Some(Target {
                container_id: "abc123".into(),
                ifname: "eth0".into(),
                netns: Some("/var/run/netns/p1".into()),
            })
        );
        assert_eq!(e.args, "");
    }

    #[test]
    fn every_command_parses() {
        for (s, c) in [
            ("ADD", Command::Add),
            ("DEL", Command::Del),
            ("CHECK", Command::Check),
            ("STATUS", Command::Status),
            ("VERSION", Command::Version),
            ("GC", Command::Gc),
        ] {
            let mut vars = ADD_ENV.to_vec();
            vars[0] = ("CNI_COMMAND", s);
            assert_eq!(env(&vars).unwrap().command, c);
        }
        // STATUS, VERSION and GC need nothing but the command.
        for s in ["STATUS", "VERSION", "GC"] {
            let e = env(&[("CNI_COMMAND", s)]).unwrap();
            assert_eq!(e.target, None);
        }
    }

    #[test]
    fn missing_command_is_code_4() {
        let e = env(&[]).unwrap_err();
        assert_eq!(e.code, Code::InvalidEnv);
        assert_eq!(e.details, "CNI_COMMAND");
        let e = env(&[("CNI_COMMAND", "")]).unwrap_err();
        assert_eq!(e.code, Code::InvalidEnv);
        let e = env(&[("CNI_COMMAND", "add")]).unwrap_err();
        assert_eq!(e.code, Code::InvalidEnv);
        assert!(e.msg.contains("`add`"), "{}", e.msg);
    }

    #[test]
    fn missing_netns_on_add_is_code_4_naming_it() {
        let vars: Vec<_> = ADD_ENV
            .iter()
            .copied()
            .filter(|(k, _)| *k != "CNI_NETNS")
            .collect();
        let e = env(&vars).unwrap_err();
        assert_eq!(e.code, Code::InvalidEnv);
        assert_eq!(e.details, "CNI_NETNS");
        assert!(e.msg.contains("CNI_NETNS"), "{}", e.msg);
        // Empty counts as missing.
        let mut vars = ADD_ENV.to_vec();
        vars[2] = ("CNI_NETNS", "");
        assert_eq!(env(&vars).unwrap_err().details, "CNI_NETNS");
    }

    #[test]
    fn all_missing_variables_are_named() {
        let e = env(&[("CNI_COMMAND", "CHECK")]).unwrap_err();
        assert_eq!(e.code, Code::InvalidEnv);
        assert_eq!(e.details, "CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME");
    }

    #[test]
    fn del_does_not_need_netns() {
        let e = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap();
        assert_eq!(e.target.unwrap().netns, None);
        let e = env(&[("CNI_COMMAND", "DEL"), ("CNI_IFNAME", "eth0")]).unwrap_err();
        assert_eq!(e.details, "CNI_CONTAINERID");
    }

    #[test]
    fn bad_container_id_and_ifname_are_code_4() {
        for id in ["-abc", "a b", "a/b", "_x"] {
            let mut vars = ADD_ENV.to_vec();
            vars[1] = ("CNI_CONTAINERID", id);
            let e = env(&vars).unwrap_err();
            assert_eq!(
                (e.code, e.details.as_str()),
                (Code::InvalidEnv, "CNI_CONTAINERID"),
                "{id}"
            );
        }
        for name in [".", "..", "a/b", "a:b", "a b", "sixteen-chars-xx"] {
            let mut vars = ADD_ENV.to_vec();
            vars[3] = ("CNI_IFNAME", name);
            let e = env(&vars).unwrap_err();
            assert_eq!(
                (e.code, e.details.as_str()),
                (Code::InvalidEnv, "CNI_IFNAME"),
                "{name}"
            );
        }
        let mut vars = ADD_ENV.to_vec();
        vars[1] = ("CNI_CONTAINERID", "A1.b_c-d");
        vars[3] = ("CNI_IFNAME", "net1");
        assert!(env(&vars).is_ok());
    }

    #[test]
    fn cni_args() {
        let a = CniArgs::parse(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=web;K8S_POD_NAME=nginx-7d9;\
             K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=1-2-3;",
        )
        .unwrap();
        assert_eq!(a.pod_name.as_deref(), Some("nginx-7d9"));
        assert_eq!(a.pod_namespace.as_deref(), Some("web"));
        assert_eq!(CniArgs::parse("").unwrap(), CniArgs::default());
        assert_eq!(CniArgs::parse("FOO=bar").unwrap(), CniArgs::default());
        assert_eq!(CniArgs::parse("K8S_POD_NAME=").unwrap().pod_name, None);
        // A value may itself contain '='.
        assert_eq!(
            CniArgs::parse("K8S_POD_NAME=a=b")
                .unwrap()
                .pod_name
                .as_deref(),
            Some("a=b")
        );
        let e = CniArgs::parse("K8S_POD_NAME=x;garbage").unwrap_err();
        assert_eq!(e.code, Code::Decode);
        assert_eq!(e.details, "CNI_ARGS");
    }

    fn conf(json: &str) -> Result<NetConf, CniError> {
        NetConf::parse(json.as_bytes())
    }

    #[test]
    fn minimal_config_gets_defaults_in_every_version() {
        for v in ["0.4.0", "1.0.0", "1.1.0"] {
            let c = conf(&format!(
                r#"{{"cniVersion":"{v}","name":"k8s-pod-network","type":"vswitch"}}"#
            ))
            .unwrap();
            assert_eq!(c.cni_version.as_str(), v);
            assert_eq!(c.name, "k8s-pod-network");
            assert_eq!(c.plugin_type, "vswitch");
            assert_eq!(c.socket, PathBuf::from(vswitch_proto::DEFAULT_SOCKET));
            assert_eq!(c.timeout, DEFAULT_TIMEOUT);
            assert_eq!(c.dns, Dns::default());
            assert_eq!(c.prev_result, None);
            assert_eq!(c.valid_attachments, None);
        }
    }

    #[test]
    fn every_field() {
        let c = conf(
            r#"{
                "cniVersion": "1.1.0",
                "name": "pods",
                "type": "vswitch-cni",
                "socket": "/tmp/x/vswitchd.sock",
                "timeoutSeconds": 2.5,
                "dns": {"nameservers": ["198.19.96.10"], "domain": "cluster.local",
                        "search": ["default.svc.cluster.local"], "options": ["ndots:5"]},
                "prevResult": {"cniVersion": "1.1.0",
                               "interfaces": [{"name": "eth0", "mac": "02:00:c6:12:01:02",
                                               "sandbox": "/var/run/netns/p"}],
                               "ips": [{"address": "198.18.1.2/24", "gateway": "198.18.1.1",
                                        "interface": 0}]},
                "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"},
                                              {"containerID": "c2", "ifname": "net1"}],
                "capabilities": {"portMappings": true},
                "runtimeConfig": {"portMappings": []},
                "args": {"cni": {"labels": []}},
                "disableCheck": false,
                "somethingNew": {"x": 1}
            }"#,
        )
        .unwrap();
        assert_eq!(c.plugin_type, "vswitch-cni");
        assert_eq!(c.socket, PathBuf::from("/tmp/x/vswitchd.sock"));
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(
            c.dns,
            Dns {
                nameservers: vec!["198.19.96.10".into()],
                domain: Some("cluster.local".into()),
                search: vec!["default.svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            }
        );
        assert_eq!(
            c.prev_result,
            Some(PrevResult {
                addresses: vec!["198.18.1.2/24".into()],
                interfaces: vec![("eth0".into(), Some("02:00:c6:12:01:02".into()))],
            })
        );
        assert_eq!(
            c.valid_attachments,
            Some(vec![
                CniKey {
                    container_id: "c1".into(),
                    ifname: "eth0".into()
                },
                CniKey {
                    container_id: "c2".into(),
                    ifname: "net1".into()
                },
            ])
        );
    }

    #[test]
    fn integer_timeout_and_old_attachments_key() {
        let c = conf(
            r#"{"cniVersion":"1.1.0","name":"n","type":"vswitch","timeoutSeconds":3,
                "cni.dev/attachments":[]}"#,
        )
        .unwrap();
        assert_eq!(c.timeout, Duration::from_secs(3));
        assert_eq!(c.valid_attachments, Some(vec![]));
    }

    #[test]
    fn malformed_json_is_code_6() {
        for bad in [
            "",
            "{",
            "not json",
            r#"{"cniVersion":"1.1.0",}"#,
            "[1,2]",
            "\"x\"",
        ] {
            let e = conf(bad).unwrap_err();
            assert_eq!(e.code, Code::Decode, "{bad:?}");
        }
    }

    #[test]
    fn version_problems_are_code_1() {
        for bad in [
            r#"{"name":"n","type":"vswitch"}"#,
            r#"{"cniVersion":"0.3.1","name":"n","type":"vswitch"}"#,
            r#"{"cniVersion":"2.0.0","name":"n","type":"vswitch"}"#,
        ] {
            let e = conf(bad).unwrap_err();
            assert_eq!(e.code, Code::IncompatibleVersion, "{bad}");
            assert_eq!(e.details, "cniVersion");
            assert!(e.msg.contains("0.4.0, 1.0.0, 1.1.0"), "{}", e.msg);
        }
    }

    #[test]
    fn invalid_fields_are_code_7_naming_them() {
        for (bad, field) in [
            (
                r#"{"cniVersion":1,"name":"n","type":"vswitch"}"#,
                "cniVersion",
            ),
            (r#"{"cniVersion":"1.0.0","type":"vswitch"}"#, "name"),
            (
                r#"{"cniVersion":"1.0.0","name":"","type":"vswitch"}"#,
                "name",
            ),
            (r#"{"cniVersion":"1.0.0","name":"n"}"#, "type"),
            (
                r#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","socket":7}"#,
                "socket",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","socket":""}"#,
                "socket",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","timeoutSeconds":0}"#,
                "timeoutSeconds",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","timeoutSeconds":-1}"#,
                "timeoutSeconds",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","timeoutSeconds":"5"}"#,
                "timeoutSeconds",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","timeoutSeconds":100000}"#,
                "timeoutSeconds",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","dns":[]}"#,
                "dns",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","dns":{"nameservers":"x"}}"#,
                "dns.nameservers",
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"vswitch","cni.dev/valid-attachments":{}}"#,
                "cni.dev/valid-attachments",
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"vswitch","cni.dev/valid-attachments":[{"containerID":"c"}]}"#,
                "cni.dev/valid-attachments",
            ),
        ] {
            let e = conf(bad).unwrap_err();
            assert_eq!(
                (e.code, e.details.as_str()),
                (Code::InvalidConfig, field),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn an_ipam_section_is_code_2() {
        let e = conf(
            r#"{"cniVersion":"1.0.0","name":"n","type":"vswitch",
                "ipam":{"type":"host-local","subnet":"198.18.1.0/24"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.code, Code::UnsupportedField);
        assert_eq!(e.details, "ipam");
        assert!(e.msg.contains("host-local"), "{}", e.msg);
        // An empty one is harmless.
        assert!(conf(r#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","ipam":{}}"#).is_ok());
    }

    #[test]
    fn unreadable_prev_result_is_not_compared() {
        let c =
            conf(r#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","prevResult":"x"}"#).unwrap();
        assert_eq!(c.prev_result, None);
        let c = conf(
            r#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","prevResult":{"ips":[{"x":1}]}}"#,
        )
        .unwrap();
        assert_eq!(c.prev_result, Some(PrevResult::default()));
    }

    #[test]
    fn reply_version_is_lenient() {
        assert_eq!(
            reply_version(br#"{"cniVersion":"0.4.0"}"#),
            CniVersion::V0_4_0
        );
        assert_eq!(
            reply_version(br#"{"cniVersion":"0.3.1"}"#),
            CniVersion::LATEST
        );
        assert_eq!(reply_version(b"garbage"), CniVersion::LATEST);
        assert_eq!(reply_version(b""), CniVersion::LATEST);
    }
}
