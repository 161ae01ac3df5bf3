//! The network configuration on stdin: `cniVersion`, `name`, `type`, `socket`,
//! `timeoutSeconds`, `dns`, `prevResult` and the valid attachments for GC.

use super::CniVersion;
use crate::error::{CniError, Code};
use crate::result::Dns;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::time::Duration;
use vswitch_proto::CniKey;

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
