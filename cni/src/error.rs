//! CNI errors: the spec's error object (`{"cniVersion", "code", "msg", "details"}` on stdout,
//! non-zero exit) and the codes this plugin uses. docs/cni.md lists them for operators.

use serde::Serialize;

/// The error codes vswitch-cni returns. 1-99 are the spec's well-known codes, 100 and up are
/// this plugin's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 1: the configuration's `cniVersion` is not one this plugin speaks (or the verb is not
    /// allowed in that version, e.g. STATUS or GC before 1.1.0).
    IncompatibleVersion,
    /// 2: a field of the network configuration is valid CNI but not supported here.
    UnsupportedField,
    /// 3: the container (attachment) is unknown or does not exist.
    UnknownContainer,
    /// 4: a required `CNI_*` environment variable is missing or invalid.
    InvalidEnv,
    /// 5: I/O failure (reading stdin, or the daemon's socket failed in a way waiting will not
    /// fix, or the daemon answered something undecodable).
    Io,
    /// 6: stdin or `CNI_ARGS` could not be decoded.
    Decode,
    /// 7: the network configuration is decodable but invalid.
    InvalidConfig,
    /// 11: try again later (vswitchd is not reachable, did not answer in time, or reported a
    /// temporary failure).
    TryAgainLater,
    /// 50: STATUS: the plugin is not available (vswitchd does not answer).
    NotAvailable,
    /// 100: the node's pod address pool is used up.
    AddressesExhausted,
    /// 101: CHECK found the pod's interface, address or route not as attached.
    CheckFailed,
    /// 102: vswitchd rejected the request (the details name the field).
    Rejected,
}

impl Code {
    /// The number on the wire.
    pub fn as_u32(self) -> u32 {
        match self {
            Code::IncompatibleVersion => 1,
            Code::UnsupportedField => 2,
            Code::UnknownContainer => 3,
            Code::InvalidEnv => 4,
            Code::Io => 5,
            Code::Decode => 6,
            Code::InvalidConfig => 7,
            Code::TryAgainLater => 11,
            Code::NotAvailable => 50,
            Code::AddressesExhausted => 100,
            Code::CheckFailed => 101,
            Code::Rejected => 102,
        }
    }
}

/// A failed CNI command: what the runtime gets on stdout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg} (CNI error {})", .code.as_u32())]
pub struct CniError {
    /// The error code.
    pub code: Code,
    /// What went wrong, in a sentence.
    pub msg: String,
    /// More detail: the offending field, variable or daemon answer (may be empty).
    pub details: String,
}

/// The error object as the spec lays it out.
#[derive(Serialize)]
struct ErrorJson<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: &'a str,
    code: u32,
    msg: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    details: &'a str,
}

impl CniError {
    /// An error with `code` and `msg`, no details.
    pub fn new(code: Code, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// The same error with `details`.
    pub fn details(mut self, details: impl Into<String>) -> CniError {
        self.details = details.into();
        self
    }

    /// The spec's error object, in CNI version `cni_version`. `details` is left out when empty
    /// (it is optional in every supported version).
    pub fn to_json(&self, cni_version: &str) -> String {
        serde_json::to_string(&ErrorJson {
            cni_version,
            code: self.code.as_u32(),
            msg: &self.msg,
            details: &self.details,
        })
        .expect("an error object always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn codes_are_the_documented_numbers() {
        let all = [
            (Code::IncompatibleVersion, 1),
            (Code::UnsupportedField, 2),
            (Code::UnknownContainer, 3),
            (Code::InvalidEnv, 4),
            (Code::Io, 5),
            (Code::Decode, 6),
            (Code::InvalidConfig, 7),
            (Code::TryAgainLater, 11),
            (Code::NotAvailable, 50),
            (Code::AddressesExhausted, 100),
            (Code::CheckFailed, 101),
            (Code::Rejected, 102),
        ];
        for (code, n) in all {
            assert_eq!(code.as_u32(), n, "{code:?}");
        }
    }

    #[test]
    fn json_has_the_spec_fields() {
        let e = CniError::new(Code::InvalidEnv, "CNI_NETNS is not set").details("CNI_NETNS");
        let v: Value = serde_json::from_str(&e.to_json("1.1.0")).unwrap();
        assert_eq!(
            v,
            json!({
                "cniVersion": "1.1.0",
                "code": 4,
                "msg": "CNI_NETNS is not set",
                "details": "CNI_NETNS"
            })
        );
    }

    #[test]
    fn empty_details_are_left_out() {
        let e = CniError::new(Code::NotAvailable, "vswitchd does not answer");
        assert_eq!(
            e.to_json("0.4.0"),
            r#"{"cniVersion":"0.4.0","code":50,"msg":"vswitchd does not answer"}"#
        );
    }

    #[test]
    fn json_escapes_messages() {
        let e = CniError::new(Code::Rejected, "bad \"name\"\nnext line").details("name");
        let v: Value = serde_json::from_str(&e.to_json("1.0.0")).unwrap();
        assert_eq!(v["msg"], "bad \"name\"\nnext line");
        assert_eq!(v["code"], 102);
    }

    #[test]
    fn display_names_the_code() {
        let e = CniError::new(Code::AddressesExhausted, "no free address");
        assert_eq!(e.to_string(), "no free address (CNI error 100)");
    }
}
