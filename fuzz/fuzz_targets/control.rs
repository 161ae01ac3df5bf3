//! Arbitrary bytes as what a client writes to vswitchd's control socket. The bytes are cut
//! into lines as the daemon's framing cuts them (`\n`, at most `MAX_MESSAGE_LEN` bytes,
//! whitespace-only lines skipped) and each line goes through `decode_request` (size limit,
//! version check, request decode); a decoded request's names and service ports go through
//! the shape checks (`vswitch_proto::validate`, which `vswitchd` runs on every request).
//!
//! Checks: nothing panics; a JSON object whose `version` is a number other than
//! `PROTOCOL_VERSION` is a version error, one without a numeric `version` a field error, and
//! both answers name the `version` field; a field error's answer names its field; every
//! decoding error's answer is an `invalid` error that encodes and decodes as one line; a
//! decoded request encodes to one line that decodes back to the same request; a validation
//! error has a message that names the value it refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vswitch_proto::{
    decode_request, decode_response, encode_request, encode_response, validate, ErrorKind, Object,
    ProtoError, Request, Response, MAX_MESSAGE_LEN, PROTOCOL_VERSION,
};

fuzz_target!(|data: &[u8]| {
    for line in data.split_inclusive(|b| *b == b'\n') {
        if line.len() > MAX_MESSAGE_LEN || line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        one_line(line);
    }
});

fn one_line(line: &[u8]) {
    let decoded = decode_request(line);
    let json = serde_json::from_slice::<serde_json::Value>(line).ok();
    let object = json.as_ref().is_some_and(|v| v.is_object());
    let version = json
        .as_ref()
        .and_then(|v| v.get("version").and_then(|v| v.as_u64()));
    match &decoded {
        Err(e) => {
            if version.is_some_and(|v| v != u64::from(PROTOCOL_VERSION)) {
                assert!(matches!(e, ProtoError::Version { .. }), "{e:?}");
            }
            if object && version.is_none() {
                assert!(
                    matches!(e, ProtoError::Field { field, .. } if field == "version"),
                    "an object without a numeric version: {e:?}"
                );
            }
            let resp = e.to_response();
            let Response::Error(body) = &resp else {
                panic!("a decoding error answered {resp:?}");
            };
            assert_eq!(body.kind, ErrorKind::Invalid);
            assert!(!body.message.is_empty());
            match e {
                ProtoError::Version { .. } => assert_eq!(body.field.as_deref(), Some("version")),
                ProtoError::Field { field, .. } => {
                    assert!(!field.is_empty());
                    assert_eq!(body.field.as_deref(), Some(field.as_str()));
                }
                ProtoError::Malformed(_) | ProtoError::TooLong => assert!(body.field.is_none()),
            }
            let wire = encode_response(&resp);
            assert_eq!(wire.matches('\n').count(), 1, "{wire:?}");
            assert_eq!(decode_response(wire.as_bytes()).expect("own answer"), resp);
        }
        Ok(req) => {
            assert_eq!(version, Some(u64::from(PROTOCOL_VERSION)));
            let wire = encode_request(req);
            assert_eq!(wire.matches('\n').count(), 1, "{wire:?}");
            assert_eq!(&decode_request(wire.as_bytes()).expect("own request"), req);
            check_names(req);
        }
    }
}

/// Runs the shape checks vswitchd runs on `req`, with the fields it names.
fn check_names(req: &Request) {
    let mut checks: Vec<(&str, Result<(), validate::Invalid>)> = Vec::new();
    match req {
        Request::PortAdd(s) => {
            checks.push((&s.name, validate::k8s_name("name", &s.name)));
            checks.push((&s.namespace, validate::k8s_name("namespace", &s.namespace)));
            checks.push((&s.ifname, validate::ifname("ifname", &s.ifname)));
            for (k, v) in &s.labels {
                checks.push((k, validate::label("label", k, v)));
            }
        }
        Request::PortDel(k) => {
            checks.push((&k.name, validate::k8s_name("name", &k.name)));
        }
        Request::PeerAdd(s) => checks.push((&s.node, validate::node_name("node", &s.node))),
        Request::PeerDel { node } => checks.push((node, validate::node_name("node", node))),
        Request::CniAdd(a) | Request::CniCheck(a) => {
            checks.push((&a.ifname, validate::ifname("ifname", &a.ifname)));
            if let Some(n) = &a.pod_name {
                checks.push((n, validate::k8s_name("pod_name", n)));
            }
        }
        Request::CniDel(k) => checks.push((&k.ifname, validate::ifname("ifname", &k.ifname))),
        Request::CniGc { valid } => {
            for k in valid {
                checks.push((&k.ifname, validate::ifname("ifname", &k.ifname)));
            }
        }
        Request::ServiceAdd(s) => {
            for (k, v) in &s.selector {
                checks.push((k, validate::label("selector", k, v)));
            }
            for p in &s.ports {
                checks.push((p, validate::service_port(p).map(drop)));
            }
        }
        Request::Apply { objects } => {
            for o in objects {
                match o {
                    Object::Service(s) => {
                        for (k, v) in &s.selector {
                            checks.push((k, validate::label("selector", k, v)));
                        }
                        for p in &s.ports {
                            checks.push((p, validate::service_port(p).map(drop)));
                        }
                    }
                    Object::Namespace(n) => {
                        checks.push((&n.name, validate::dns_label("name", &n.name)));
                        for (k, v) in &n.labels {
                            checks.push((k, validate::label("labels", k, v)));
                        }
                    }
                }
            }
        }
        // The filter's errors name the word that is wrong, not the whole value: only no panic.
        Request::Capture(c) => drop(validate::capture_spec(c)),
        Request::Trace(t) => drop(validate::trace_spec(t)),
        Request::ConntrackList(q) | Request::ConntrackFlush(q) => {
            for v in [&q.service, &q.pod].into_iter().flatten() {
                drop(validate::namespaced("pod", v));
            }
        }
        Request::LogLevel { level } => checks.push((level, validate::log_filter(level))),
        Request::Observe(o) => drop(vswitch_proto::observe::check(o)),
        Request::ServiceDel(_)
        | Request::Delete { .. }
        | Request::NamespaceList
        | Request::NodeShow
        | Request::NodeList
        | Request::PortList
        | Request::PortListAll
        | Request::PeerList
        | Request::ServiceList
        | Request::Stats { .. } => {}
    }
    for (value, result) in checks {
        if let Err(validate::Invalid { message: msg, .. }) = result {
            assert!(
                msg.contains(&format!("`{value}`")),
                "the error for `{value}` does not name it: {msg}"
            );
        }
    }
}
