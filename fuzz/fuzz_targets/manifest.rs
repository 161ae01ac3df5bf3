//! Arbitrary text as the YAML file of `vswitchctl apply -f`, through
//! `vswitch_proto::manifest::parse` (the YAML reader, k8s-openapi's types and the conversion
//! into request values).
//!
//! Checks: nothing panics; an error is told as `YAML: ...` or `document N ...` with N a
//! document of the input; a success holds at least one object, in increasing document
//! order, whose values pass the checks the daemon runs on them (the Service ports, the
//! selector and namespace labels), and the `apply` request built from it encodes to one
//! line that decodes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vswitch_proto::manifest::parse;
use vswitch_proto::{decode_request, encode_request, validate, Object, Request};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(text) {
        Err(e) => {
            let shown = e.to_string();
            if e.document == 0 {
                assert!(shown.starts_with("YAML: "), "{shown}");
            } else {
                assert!(
                    shown.starts_with(&format!("document {}", e.document)),
                    "{shown}"
                );
            }
            assert!(!e.message.is_empty(), "{shown}");
        }
        Ok(docs) => {
            assert!(!docs.is_empty());
            assert!(docs.windows(2).all(|w| w[0].index < w[1].index));
            for d in &docs {
                match &d.object {
                    Object::Service(s) => {
                        assert!(!s.ports.is_empty());
                        for p in &s.ports {
                            validate::service_port(p).expect("a converted port spec parses");
                        }
                        for (k, v) in &s.selector {
                            validate::label("selector", k, v).expect("a checked selector");
                        }
                        if let Some(a) = &s.affinity {
                            validate::affinity(a).expect("a converted affinity parses");
                        }
                        validate::service_name("name", &s.name).expect("a checked name");
                    }
                    Object::Namespace(n) => {
                        validate::dns_label("name", &n.name).expect("a checked name");
                        for (k, v) in &n.labels {
                            validate::label("labels", k, v).expect("checked labels");
                        }
                    }
                }
            }
            let req = Request::Apply {
                objects: docs.into_iter().map(|d| d.object).collect(),
            };
            let line = encode_request(&req);
            assert_eq!(line.matches('\n').count(), 1);
            assert_eq!(decode_request(line.as_bytes()).expect("own request"), req);
        }
    }
});
