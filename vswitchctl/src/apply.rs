//! `apply -f` and `delete -f`: the file (or stdin for `-`) is read and converted whole by
//! [`vswitch_proto::manifest`] before anything is sent, so one bad document means nothing is
//! applied (exit 2, naming the document and the field). The daemon's answers are printed
//! like kubectl's (`service/nginx-service created`, `service "nginx-service" deleted`), and
//! a daemon error about `objects[I].FIELD` is told as the document it came from. And
//! `namespace list`, the namespaces `apply` stored.

use crate::output::{labels, pretty, table, Format};
use crate::Failure;
use std::io::Read;
use vswitch_proto::manifest::{self, Document};
use vswitch_proto::{Action, ErrorBody, NamespaceInfo, ObjectKey, ObjectResult, Request};

/// Reads `file` (`-`: stdin) and converts it.
pub(crate) fn documents(file: &str) -> Result<Vec<Document>, Failure> {
    let mut text = String::new();
    let read = if file == "-" {
        std::io::stdin().read_to_string(&mut text).map(drop)
    } else {
        std::fs::read_to_string(file).map(|t| text = t)
    };
    read.map_err(|e| {
        Failure::Usage(format!(
            "-f: cannot read {}: {e}",
            if file == "-" { "stdin" } else { file }
        ))
    })?;
    manifest::parse(&text).map_err(Failure::Manifest)
}

/// The request of `apply` (`delete: false`) or `delete` for the documents.
pub(crate) fn request(docs: &[Document], delete: bool) -> Request {
    let objects = docs.iter().map(|d| d.object.clone());
    if delete {
        Request::Delete {
            objects: objects.map(|o| o.key()).collect(),
        }
    } else {
        Request::Apply {
            objects: objects.collect(),
        }
    }
}

/// kubectl's resource name of a kind: `service`, `namespace`.
fn resource(key: &ObjectKey) -> &'static str {
    match key {
        ObjectKey::Service(_) => "service",
        ObjectKey::Namespace { .. } => "namespace",
    }
}

/// What `apply`/`delete` print: one line per object (or the results as JSON). Objects
/// `delete` did not find make it fail (exit 1) after the others are printed, with kubectl's
/// message for each: `services "x" not found`.
pub(crate) fn results(results: &[ObjectResult], f: Format) -> Result<String, Failure> {
    let mut out = String::new();
    let mut missing = Vec::new();
    for r in results {
        let (res, name) = (resource(&r.object), r.object.name());
        match r.action {
            Action::NotFound => missing.push(format!("{res}s \"{name}\" not found")),
            Action::Deleted => out.push_str(&format!("{res} \"{name}\" deleted\n")),
            a => out.push_str(&format!("{res}/{name} {}\n", a.as_str())),
        }
    }
    if f == Format::Json {
        out = serde_json::to_string_pretty(results).expect("results serialize") + "\n";
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(Failure::NotFound {
            printed: out,
            message: missing.join("\nerror: "),
        })
    }
}

/// A daemon error about `objects[I].FIELD`, told as the document object I came from:
/// `document 2 (Service web): spec.clusterIP: ...`.
pub(crate) fn daemon_error(mut e: ErrorBody, docs: &[Document]) -> ErrorBody {
    let Some(field) = e.field.as_deref() else {
        return e;
    };
    let place = field
        .strip_prefix("objects[")
        .and_then(|r| r.split_once("]."))
        .and_then(|(i, rest)| Some((docs.get(i.parse::<usize>().ok()?)?, rest)));
    if let Some((doc, rest)) = place {
        let label = doc.label();
        let message = e
            .message
            .strip_prefix(&format!("{label}: "))
            .unwrap_or(&e.message)
            .to_string();
        e.field = Some(format!("document {} ({label}): {rest}", doc.index));
        e.message = message;
    }
    e
}

/// kubectl's AGE: seconds under 2 minutes, minutes under 2 hours, hours under 2 days,
/// then days.
pub fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// `namespace list`, like `kubectl get ns --show-labels`: NAME LABELS AGE (`now` in seconds
/// since the epoch).
pub fn namespaces(ns: &[NamespaceInfo], f: Format, now: u64) -> String {
    match f {
        Format::Json => pretty(serde_json::to_string_pretty(ns)),
        _ => table(
            &["NAME", "LABELS", "AGE"],
            &ns.iter()
                .map(|n| {
                    vec![
                        n.name.clone(),
                        labels(&n.labels),
                        age(now.saturating_sub(n.created_unix)),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vswitch_proto::{ErrorKind, ServiceKey};

    const TWO: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n---\n\
                       apiVersion: v1\nkind: Service\nmetadata: {name: web}\n\
                       spec: {selector: {app: web}, ports: [{port: 80}]}\n";

    fn key(name: &str) -> ObjectKey {
        ObjectKey::Service(ServiceKey {
            name: name.into(),
            namespace: "default".into(),
        })
    }

    #[test]
    fn lines_like_kubectl() {
        let rs = [
            (key("web"), Action::Created),
            (key("api"), Action::Configured),
            (
                ObjectKey::Namespace {
                    name: "team-a".into(),
                },
                Action::Unchanged,
            ),
        ]
        .map(|(object, action)| ObjectResult { object, action });
        assert_eq!(
            results(&rs, Format::Table).unwrap(),
            "service/web created\nservice/api configured\nnamespace/team-a unchanged\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&results(&rs, Format::Json).unwrap()).unwrap();
        assert_eq!(json[0]["action"], "created");
        assert_eq!(json[2]["object"]["kind"], "Namespace");
        let rs = [
            (key("web"), Action::Deleted),
            (key("gone"), Action::NotFound),
            (
                ObjectKey::Namespace {
                    name: "team-a".into(),
                },
                Action::NotFound,
            ),
        ]
        .map(|(object, action)| ObjectResult { object, action });
        match results(&rs, Format::Table).unwrap_err() {
            Failure::NotFound { printed, message } => {
                assert_eq!(printed, "service \"web\" deleted\n");
                assert_eq!(
                    message,
                    "services \"gone\" not found\nerror: namespaces \"team-a\" not found"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn daemon_errors_name_the_document() {
        let docs = manifest::parse(TWO).unwrap();
        let e = ErrorBody {
            kind: ErrorKind::Exists,
            field: Some("objects[1].spec.clusterIP".into()),
            message: "Service web: 198.19.96.20 is already the VIP of service default/x".into(),
        };
        assert_eq!(
            daemon_error(e, &docs).to_string(),
            "document 2 (Service web): spec.clusterIP: 198.19.96.20 is already the VIP of \
             service default/x"
        );
        let e = ErrorBody {
            kind: ErrorKind::Other,
            field: Some("objects[7].spec".into()),
            message: "m".into(),
        };
        assert_eq!(daemon_error(e.clone(), &docs), e);
        assert_eq!(
            request(&docs, true),
            Request::Delete {
                objects: vec![
                    ObjectKey::Namespace {
                        name: "team-a".into()
                    },
                    key("web")
                ]
            }
        );
    }

    #[test]
    fn namespace_list_like_kubectl_show_labels() {
        let ns = vec![NamespaceInfo {
            name: "team-a".into(),
            labels: [
                (
                    "kubernetes.io/metadata.name".to_string(),
                    "team-a".to_string(),
                ),
                ("team".to_string(), "a".to_string()),
            ]
            .into(),
            created_unix: 1000,
        }];
        assert_eq!(
            namespaces(&ns, Format::Table, 1000 + 3 * 3600),
            "NAME    LABELS                                     AGE\n\
             team-a  kubernetes.io/metadata.name=team-a,team=a  3h\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&namespaces(&ns, Format::Json, 0)).unwrap();
        assert_eq!(json[0]["labels"]["team"], "a");
        assert_eq!(json[0]["created_unix"], 1000);
        assert_eq!(
            [5, 119, 120, 7199, 7200, 172_799, 172_800].map(age),
            ["5s", "119s", "2m", "119m", "2h", "47h", "2d"]
        );
    }
}
