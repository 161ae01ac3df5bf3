//! The `CNI_*` environment: which command, the container it is about, and `CNI_ARGS`.

use super::Command;
use crate::error::{CniError, Code};
use vswitch_proto::validate::{self, Invalid};
use vswitch_proto::CniKey;

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
                validate::container_id("CNI_CONTAINERID", &container_id).map_err(invalid_env)?;
                validate::ifname("CNI_IFNAME", &ifname).map_err(invalid_env)?;
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

/// A variable that failed its shape check: code 4, `details` naming it.
fn invalid_env(e: Invalid) -> CniError {
    let field = e.field;
    CniError::new(Code::InvalidEnv, e.to_string()).details(field)
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
