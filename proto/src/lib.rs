//! vswitch-proto: the control protocol between `vswitchd` and its clients
//! (`vswitchctl`, `vswitch-cni`).
//!
//! Contract:
//! - Transport is a Unix stream socket. Each message is one JSON object on one line
//!   (newline-delimited JSON), at most [`MAX_MESSAGE_LEN`] bytes including the newline.
//! - Every request carries [`PROTOCOL_VERSION`] in `version`; a daemon answers a request of an
//!   unknown version with an error naming the `version` field instead of guessing.
//! - One request gets exactly one response, on the same connection, in order; the one
//!   exceptions are `capture`, whose accepted answer is followed by a stream of binary records
//!   ([`capture`]), and `observe --follow`, whose answer is followed by JSON lines of new
//!   flow events ([`observe`]).
//! - Addresses, MACs and CIDRs travel as strings: the daemon parses them and an error names
//!   the field that was wrong ([`ErrorBody::field`]), so every client reports the same message.
//! - Unknown fields in requests are ignored (forward compatibility: an older daemon serves a
//!   newer client's request minus what it does not know); an unknown `op`, a missing field
//!   and a missing or non-numeric `version` are errors naming the field.
//! - A line longer than [`MAX_MESSAGE_LEN`] is answered with an error naming the limit and the
//!   daemon closes the connection (the rest of the line cannot be re-synchronised).
//!
//! This crate performs no I/O except in [`client`], a small blocking client with timeouts.
//! [`validate`] is the one implementation of the shape checks of request values (names,
//! addresses, CIDRs, MACs, Service ports, endpoints, affinity), pure functions that return the
//! parsed value; the daemon, the CLI and the CNI plugin all call it. [`manifest`] (feature
//! `manifest`, for the CLI and the fuzz target) turns Kubernetes YAML into [`Object`]s for
//! `apply`/`delete`; the daemon never sees YAML, only those plain request values.

#![forbid(unsafe_code)]

pub mod capture;
pub mod client;
pub mod inspect;
#[cfg(feature = "manifest")]
pub mod manifest;
pub mod observe;
mod types;
pub mod validate;

pub use types::*;

/// Version of the protocol spoken by this build. Bumped on incompatible changes.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest message (one line, newline included) either side accepts.
pub const MAX_MESSAGE_LEN: usize = 1 << 20;

/// Default path of the daemon's control socket.
pub const DEFAULT_SOCKET: &str = "/run/vswitch/vswitchd.sock";

/// Errors decoding or encoding a protocol message.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The line is not valid JSON of the expected shape.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The peer speaks a version this build does not.
    #[error("unsupported protocol version {got} (this build speaks {PROTOCOL_VERSION})")]
    Version {
        /// The version the peer sent.
        got: u32,
    },
    /// A field of the request is missing, has the wrong type, or (`op`) an unknown value.
    #[error("{field}: {message}")]
    Field {
        /// The request field.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The message exceeds [`MAX_MESSAGE_LEN`].
    #[error("message longer than {MAX_MESSAGE_LEN} bytes (the limit of one request line)")]
    TooLong,
}

impl ProtoError {
    /// The response a daemon sends back for this decoding error.
    pub fn to_response(&self) -> Response {
        let (field, message) = match self {
            ProtoError::Version { .. } => (Some("version".to_string()), self.to_string()),
            ProtoError::Field { field, message } => (Some(field.clone()), message.clone()),
            _ => (None, self.to_string()),
        };
        Response::Error(ErrorBody {
            kind: ErrorKind::Invalid,
            field,
            message,
        })
    }
}

/// Encodes a request as one line (with the trailing newline).
pub fn encode_request(req: &Request) -> String {
    let env = RequestEnvelope {
        version: PROTOCOL_VERSION,
        request: req.clone(),
    };
    let mut s = serde_json::to_string(&env).expect("requests always serialize");
    s.push('\n');
    s
}

/// Decodes one request line (trailing newline optional).
pub fn decode_request(line: &[u8]) -> Result<Request, ProtoError> {
    if line.len() > MAX_MESSAGE_LEN {
        return Err(ProtoError::TooLong);
    }
    // Check the version before the body, so a newer client gets a version error rather
    // than a confusing shape error.
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| ProtoError::Malformed(e.to_string()))?;
    if !value.is_object() {
        return Err(ProtoError::Malformed(
            "a request is one JSON object on one line".into(),
        ));
    }
    let field = |field: &str, message: String| ProtoError::Field {
        field: field.to_string(),
        message,
    };
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
        Some(v) => {
            return Err(ProtoError::Version {
                got: u32::try_from(v).unwrap_or(u32::MAX),
            })
        }
        None => {
            return Err(field(
                "version",
                format!("missing or not a whole number (this build speaks {PROTOCOL_VERSION})"),
            ))
        }
    }
    let Some(op) = value.get("op").and_then(|v| v.as_str()).map(str::to_string) else {
        return Err(field("op", "missing or not a string".into()));
    };
    let trials = (LOCATE_WORK / line.len().max(1)).clamp(4, LOCATE_MAX_TRIALS);
    // From a reference: the value is kept for `locate_error`, without a copy.
    let env = <RequestEnvelope as serde::Deserialize>::deserialize(&value).map_err(|e| {
        let msg = e.to_string();
        if msg.starts_with(&format!("unknown variant `{op}`")) {
            field("op", msg.replacen("unknown variant", "unknown op", 1))
        } else if let Some(name) = missing_field(&msg) {
            field(name, "missing".into())
        } else if let Some(path) = locate_error(&value, &msg, trials) {
            field(&path, msg)
        } else {
            ProtoError::Malformed(msg)
        }
    })?;
    Ok(env.request)
}

/// The field of a `missing field `NAME`` error.
fn missing_field(msg: &str) -> Option<&str> {
    msg.strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
}

/// Keys that select a variant (`op`, an object's `kind`) or are the envelope's: removing one
/// changes any error, so they are never taken for the culprit.
const TAG_KEYS: [&str; 3] = ["version", "op", "kind"];

/// At most this many trial decodes to find a bad value's path...
const LOCATE_MAX_TRIALS: usize = 48;
/// ... and fewer for a long request: about this many bytes decoded in all (a 1 MiB request
/// gets 4 trials, so a bad one costs the control thread a few decodes, not dozens).
const LOCATE_WORK: usize = 4 << 20;

/// The path (`name`, `objects[2].ports[0]`) of the value that makes `value` fail to decode
/// with `msg`, found by taking values out one at a time, at most `trials` decodes.
///
/// serde loses the path of an error inside a flattened, internally tagged enum (the request,
/// an object of `apply`): `serde_path_to_error` answers `.` for them. serde reports the first
/// bad value in the input's order, so a value is the culprit when removing it makes the
/// request decode, or turns the error into its own `missing field` (a required field), or
/// (an array element) into another error. `None` when no culprit is found within the
/// trials; the deepest culprit found so far otherwise.
fn locate_error(value: &serde_json::Value, msg: &str, mut trials: usize) -> Option<String> {
    use serde_json::Value;
    let mut at: Vec<Result<String, usize>> = Vec::new();
    'descend: loop {
        let mut node = value;
        for step in &at {
            node = match step {
                Ok(k) => &node[k.as_str()],
                Err(i) => &node[*i],
            };
        }
        let children: Vec<Result<String, usize>> = match node {
            Value::Object(m) => m
                .keys()
                .filter(|k| !TAG_KEYS.contains(&k.as_str()))
                .map(|k| Ok(k.clone()))
                .collect(),
            Value::Array(a) => (0..a.len()).map(Err).collect(),
            _ => break,
        };
        for child in children {
            if trials == 0 {
                break 'descend;
            }
            trials -= 1;
            let mut trial = value.clone();
            let mut parent = &mut trial;
            for step in &at {
                parent = match step {
                    Ok(k) => &mut parent[k.as_str()],
                    Err(i) => &mut parent[*i],
                };
            }
            match (&child, parent) {
                (Ok(k), Value::Object(m)) => drop(m.remove(k)),
                (Err(i), Value::Array(a)) => drop(a.remove(*i)),
                _ => unreachable!("the child of that node"),
            }
            let culprit = match serde_json::from_value::<RequestEnvelope>(trial) {
                Ok(_) => true,
                Err(e) => {
                    let m = e.to_string();
                    match &child {
                        Ok(k) => missing_field(&m) == Some(k.as_str()),
                        Err(_) => m != msg,
                    }
                }
            };
            if culprit {
                at.push(child);
                continue 'descend;
            }
        }
        break;
    }
    if at.is_empty() {
        return None;
    }
    let mut path = String::new();
    for step in at {
        match step {
            Ok(k) if path.is_empty() => path = k,
            Ok(k) => path = format!("{path}.{k}"),
            Err(i) => path = format!("{path}[{i}]"),
        }
    }
    Some(path)
}

/// Encodes a response as one line (with the trailing newline).
pub fn encode_response(resp: &Response) -> String {
    let mut s = serde_json::to_string(resp).expect("responses always serialize");
    s.push('\n');
    s
}

/// Decodes one response line.
pub fn decode_response(line: &[u8]) -> Result<Response, ProtoError> {
    if line.len() > MAX_MESSAGE_LEN {
        return Err(ProtoError::TooLong);
    }
    serde_json::from_slice(line).map_err(|e| ProtoError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip() {
        let req = Request::PortAdd(PortSpec {
            name: "nginx".into(),
            namespace: "default".into(),
            netns: "/var/run/netns/p1".into(),
            ip: Some("198.18.1.5/24".into()),
            mac: None,
            ifname: "eth0".into(),
            labels: [("app".to_string(), "nginx".to_string())].into(),
        });
        let line = encode_request(&req);
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1);
        assert_eq!(decode_request(line.as_bytes()).unwrap(), req);
    }

    #[test]
    fn port_status_is_the_same_string_on_the_wire_and_in_tables() {
        for (st, s) in [
            (PortStatus::Running, "Running"),
            (PortStatus::Detached, "Detached"),
        ] {
            assert_eq!(serde_json::to_string(&st).unwrap(), format!("\"{s}\""));
            assert_eq!(
                serde_json::from_str::<PortStatus>(&format!("\"{s}\"")).unwrap(),
                st
            );
            assert_eq!(st.to_string(), s);
        }
        assert!(serde_json::from_str::<PortStatus>("\"Lost\"").is_err());
    }

    #[test]
    fn unit_ops_round_trip() {
        for req in [Request::NodeShow, Request::PortList, Request::PeerList] {
            let line = encode_request(&req);
            assert_eq!(decode_request(line.as_bytes()).unwrap(), req);
        }
    }

    #[test]
    fn apply_and_delete_round_trip_tagged_by_kind() {
        let svc = ServiceSpec {
            name: "web".into(),
            namespace: "default".into(),
            vip: None,
            ports: vec!["80:80/tcp".into()],
            selector: [("app".to_string(), "web".to_string())].into(),
            endpoints: vec![],
            affinity: None,
        };
        let ns = NamespaceSpec {
            name: "team-a".into(),
            labels: Default::default(),
        };
        let req = Request::Apply {
            objects: vec![Object::Service(svc.clone()), Object::Namespace(ns.clone())],
        };
        let line = encode_request(&req);
        assert!(line.contains(r#""kind":"Service""#), "{line}");
        assert!(!line.contains("vip"), "an absent VIP is left out: {line}");
        assert_eq!(decode_request(line.as_bytes()).unwrap(), req);
        let req = Request::Delete {
            objects: vec![Object::Service(svc).key(), Object::Namespace(ns).key()],
        };
        assert_eq!(
            decode_request(encode_request(&req).as_bytes()).unwrap(),
            req
        );
        let resp = Response::Objects(vec![ObjectResult {
            object: ObjectKey::Namespace {
                name: "team-a".into(),
            },
            action: Action::NotFound,
        }]);
        let line = encode_response(&resp);
        assert!(line.contains(r#""action":"not_found""#), "{line}");
        assert_eq!(decode_response(line.as_bytes()).unwrap(), resp);
    }

    #[test]
    fn wrong_version_names_the_field() {
        let err = decode_request(br#"{"version":99,"op":"node_show"}"#).unwrap_err();
        assert!(matches!(err, ProtoError::Version { got: 99 }));
        match err.to_response() {
            Response::Error(e) => assert_eq!(e.field.as_deref(), Some("version")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn garbage_is_malformed() {
        for bad in [
            &b"hello there"[..],
            b"[1,2]",
            b"\"x\"",
            b"null",
            b"{\"version\":1",
        ] {
            assert!(
                matches!(decode_request(bad), Err(ProtoError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_type_error_names_its_field() {
        for (line, want_field, want_msg) in [
            (
                &br#"{"version":1,"op":"port_add","name":5,"netns":"x"}"#[..],
                "name",
                "invalid type: integer `5`, expected a string",
            ),
            (
                br#"{"version":1,"op":"port_add","name":"a","netns":"x","labels":{"app":7}}"#,
                "labels.app",
                "expected a string",
            ),
            (
                br#"{"op":"port_add","version":1,"netns":"x","name":"a","ip":[1]}"#,
                "ip",
                "expected a string",
            ),
            (
                br#"{"version":1,"op":"peer_del","node":{}}"#,
                "node",
                "invalid type: map",
            ),
            (
                br#"{"version":1,"op":"apply","objects":[{"kind":"Namespace","name":"a"},
                    {"kind":"Service","name":"web","ports":["80:80/tcp",5]}]}"#,
                "objects[1].ports[1]",
                "integer `5`",
            ),
            (
                br#"{"version":1,"op":"apply","objects":{"kind":"Namespace"}}"#,
                "objects",
                "expected a sequence",
            ),
        ] {
            let text = String::from_utf8_lossy(line);
            let err = decode_request(line).unwrap_err();
            let ProtoError::Field { field, message } = &err else {
                panic!("{text}: not a field error: {err:?}");
            };
            assert_eq!(field, want_field, "{text}: {message}");
            assert!(message.contains(want_msg), "{text}: {message}");
        }
        // A huge request is searched within a bounded number of decodes: still an answer.
        let mut big = br#"{"version":1,"op":"apply","objects":["#.to_vec();
        for _ in 0..20_000 {
            big.extend_from_slice(br#"{"kind":"Namespace","name":"a"},"#);
        }
        big.extend_from_slice(br#"{"kind":"Namespace","name":5}]}"#);
        assert!(big.len() < MAX_MESSAGE_LEN);
        let t = std::time::Instant::now();
        match decode_request(&big).unwrap_err() {
            ProtoError::Field { field, .. } => assert_eq!(field, "objects"),
            other => panic!("{other:?}"),
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            t.elapsed()
        );
    }

    /// The field a decoding error is about, from its answer.
    fn field_of(line: &[u8]) -> (Option<String>, String) {
        match decode_request(line).unwrap_err().to_response() {
            Response::Error(e) => (e.field, e.message),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn missing_version_op_and_fields_are_named() {
        for line in [
            &br#"{"op":"node_show"}"#[..],
            br#"{"version":"1","op":"node_show"}"#,
            br#"{"version":-1,"op":"node_show"}"#,
            br#"{"version":1.5,"op":"node_show"}"#,
        ] {
            assert_eq!(field_of(line).0.as_deref(), Some("version"), "{line:?}");
        }
        let (field, msg) = field_of(br#"{"version":1,"op":"fly_away"}"#);
        assert_eq!(field.as_deref(), Some("op"));
        assert!(msg.contains("unknown op `fly_away`"), "{msg}");
        assert!(msg.contains("node_show"), "lists the known ops: {msg}");
        for line in [&br#"{"version":1}"#[..], br#"{"version":1,"op":7}"#] {
            assert_eq!(field_of(line).0.as_deref(), Some("op"), "{line:?}");
        }
        let (field, msg) = field_of(br#"{"version":1,"op":"port_add","name":"x"}"#);
        assert_eq!((field.as_deref(), msg.as_str()), (Some("netns"), "missing"));
        let (field, _) = field_of(br#"{"version":1,"op":"peer_del"}"#);
        assert_eq!(field.as_deref(), Some("node"));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let req = decode_request(br#"{"version":1,"op":"port_list","colour":"blue"}"#).unwrap();
        assert_eq!(req, Request::PortList);
    }

    #[test]
    fn too_long_is_rejected() {
        let big = vec![b' '; MAX_MESSAGE_LEN + 1];
        assert!(matches!(decode_request(&big), Err(ProtoError::TooLong)));
    }

    #[test]
    fn response_round_trip() {
        let resp = Response::Error(ErrorBody {
            kind: ErrorKind::Invalid,
            field: Some("mac".into()),
            message: "malformed MAC address `zz`".into(),
        });
        let line = encode_response(&resp);
        assert_eq!(decode_response(line.as_bytes()).unwrap(), resp);
    }
}
