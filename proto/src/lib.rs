//! vswitch-proto: the control protocol between `vswitchd` and its clients
//! (`vswitchctl`, `vswitch-cni`).
//!
//! Contract:
//! - Transport is a Unix stream socket. Each message is one JSON object on one line
//!   (newline-delimited JSON), at most [`MAX_MESSAGE_LEN`] bytes including the newline.
//! - Every request carries [`PROTOCOL_VERSION`] in `version`; a daemon answers a request of an
//!   unknown version with an error naming the `version` field instead of guessing.
//! - One request gets exactly one response, on the same connection, in order.
//! - Addresses, MACs and CIDRs travel as strings: the daemon parses them and an error names
//!   the field that was wrong ([`ErrorBody::field`]), so every client reports the same message.
//! - Unknown fields in requests are ignored (forward compatibility); unknown `op`s are errors.
//!
//! This crate performs no I/O except in [`client`], a small blocking client with timeouts.
//! [`validate`] holds the daemon's shape checks of names, pure functions of one value.

#![forbid(unsafe_code)]

pub mod client;
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
    /// The message exceeds [`MAX_MESSAGE_LEN`].
    #[error("message longer than {MAX_MESSAGE_LEN} bytes")]
    TooLong,
}

impl ProtoError {
    /// The response a daemon sends back for this decoding error.
    pub fn to_response(&self) -> Response {
        let field = match self {
            ProtoError::Version { .. } => Some("version".to_string()),
            _ => None,
        };
        Response::Error(ErrorBody {
            kind: ErrorKind::Invalid,
            field,
            message: self.to_string(),
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
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
        Some(v) => {
            return Err(ProtoError::Version {
                got: u32::try_from(v).unwrap_or(u32::MAX),
            })
        }
        None => {
            return Err(ProtoError::Malformed(
                "missing or non-numeric field `version`".into(),
            ))
        }
    }
    let env: RequestEnvelope =
        serde_json::from_value(value).map_err(|e| ProtoError::Malformed(e.to_string()))?;
    Ok(env.request)
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
    fn unit_ops_round_trip() {
        for req in [Request::NodeShow, Request::PortList, Request::PeerList] {
            let line = encode_request(&req);
            assert_eq!(decode_request(line.as_bytes()).unwrap(), req);
        }
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
        assert!(matches!(
            decode_request(b"hello there"),
            Err(ProtoError::Malformed(_))
        ));
        assert!(matches!(
            decode_request(br#"{"version":1,"op":"fly_away"}"#),
            Err(ProtoError::Malformed(_))
        ));
        assert!(matches!(
            decode_request(br#"{"op":"node_show"}"#),
            Err(ProtoError::Malformed(_))
        ));
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
