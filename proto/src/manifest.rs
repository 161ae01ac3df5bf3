//! Kubernetes YAML (`vswitchctl apply -f`, `delete -f`) into request values: the text is
//! split into documents (`---`), each read as a Kubernetes object with `k8s-openapi`'s
//! types, and turned into an [`Object`] (a [`ServiceSpec`] or a [`NamespaceSpec`]) that
//! the daemon validates again, as it does every request.
//!
//! Contract:
//! - Pure: no I/O, no clock. The whole text is converted before anything is returned, so a
//!   caller sends all of it or nothing.
//! - Kinds: v1 `Service` (type ClusterIP), v1 `Namespace`. `networking.k8s.io/v1
//!   NetworkPolicy` is recognised and refused as not supported yet; any other kind, or a
//!   known kind with another `apiVersion`, is an error.
//! - What a copied manifest carries that does not apply here (`status`, annotations,
//!   `managedFields`, `uid`, `resourceVersion`, `creationTimestamp`, ...) is ignored; a
//!   field with the wrong type, and every Service feature vswitch lacks (NodePort,
//!   LoadBalancer, ExternalName, headless, SCTP, named target ports, external IPs), is an
//!   error.
//! - Every error ([`ManifestError`]) names the document (its 1-based index among the
//!   non-empty documents, and its kind and name when they could be read) and the field in
//!   Kubernetes' spelling: `document 2 (Service web): spec.ports[0].port: must be 1-65535`.
//! - Checks that need the node's state (the clusterIP inside the service CIDR and free) are
//!   the daemon's; the values are checked with [`crate::validate`] like any request.
//!
//! Compiled with the `manifest` feature only (k8s-openapi is a large crate; the daemon and
//! the CNI plugin do not need it).

use crate::validate::{self, DEFAULT_AFFINITY_SECONDS, MAX_AFFINITY_SECONDS};
use crate::{NamespaceSpec, Object, ServiceSpec};
use k8s_openapi::api::core::v1::{Namespace, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;
use std::fmt;

/// One converted document.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Its 1-based index among the file's non-empty documents.
    pub index: usize,
    /// The object it holds.
    pub object: Object,
}

impl Document {
    /// `Service nginx-service`, as errors and messages name it.
    pub fn label(&self) -> String {
        let key = self.object.key();
        format!("{} {}", key.kind(), key.name())
    }
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// The document's 1-based index; 0 when the YAML as a whole could not be read.
    pub document: usize,
    /// `KIND NAME` when they could be read.
    pub object: Option<String>,
    /// The field in Kubernetes' spelling (`spec.ports[0].port`); empty when it is no one
    /// field's fault.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.document == 0 {
            f.write_str("YAML")?;
        } else {
            write!(f, "document {}", self.document)?;
        }
        if let Some(o) = &self.object {
            write!(f, " ({o})")?;
        }
        f.write_str(": ")?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ManifestError {}

/// The error of one document being converted: its field and message, placed by [`parse`].
type FieldError = (String, String);

fn fe(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    (field.into(), message.into())
}

/// Converts a YAML text of one or more documents into objects, in order. Empty documents
/// are skipped.
pub fn parse(text: &str) -> Result<Vec<Document>, ManifestError> {
    let values: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| ManifestError {
        document: 0,
        object: None,
        field: String::new(),
        message: e.to_string(),
    })?;
    let mut docs = Vec::new();
    for (i, value) in values.into_iter().enumerate() {
        if value.is_null() {
            continue;
        }
        let index = i + 1;
        let label = object_label(&value);
        let object = document(value).map_err(|(field, message)| ManifestError {
            document: index,
            object: label.clone(),
            field,
            message,
        })?;
        docs.push(Document { index, object });
    }
    if docs.is_empty() {
        return Err(ManifestError {
            document: 0,
            object: None,
            field: String::new(),
            message: "no objects in the input".into(),
        });
    }
    Ok(docs)
}

/// `KIND NAME` of a document, when both are strings.
fn object_label(v: &Value) -> Option<String> {
    let kind = v.get("kind")?.as_str()?;
    let name = v.get("metadata")?.get("name")?.as_str()?;
    Some(format!("{kind} {name}"))
}

fn document(value: Value) -> Result<Object, FieldError> {
    if !value.is_object() {
        return Err(fe(
            "",
            "not a Kubernetes object (a mapping with apiVersion, kind and metadata)",
        ));
    }
    let string = |f: &str| match value.get(f) {
        None => Err(fe(f, "missing")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(fe(f, "must be a string")),
    };
    let kind = string("kind")?;
    let api_version = string("apiVersion")?;
    let expected = match kind.as_str() {
        "Service" | "Namespace" => "v1",
        "NetworkPolicy" => "networking.k8s.io/v1",
        other => {
            return Err(fe(
                "kind",
                format!("`{other}` is not supported (Service, Namespace)"),
            ))
        }
    };
    if api_version != expected {
        return Err(fe(
            "apiVersion",
            format!("`{api_version}` is not the apiVersion of a {kind} (expected {expected})"),
        ));
    }
    match kind.as_str() {
        "Service" => service(typed(value)?),
        "Namespace" => namespace(typed(value)?),
        _ => Err(fe(
            "kind",
            "NetworkPolicy is not supported yet (a later version enforces it)",
        )),
    }
}

/// Deserializes a document into a k8s-openapi type; a wrong field type names the field.
fn typed<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        fe(field, e.into_inner().to_string())
    })
}

/// `metadata.name`, present.
fn name_of(name: Option<String>) -> Result<String, FieldError> {
    name.ok_or_else(|| fe("metadata.name", "missing"))
}

fn invalid(field: &str) -> impl Fn(validate::Invalid) -> FieldError + '_ {
    move |e| fe(field, e.message)
}

fn namespace(ns: Namespace) -> Result<Object, FieldError> {
    let name = name_of(ns.metadata.name)?;
    validate::dns_label("name", &name).map_err(invalid("metadata.name"))?;
    let labels = ns.metadata.labels.unwrap_or_default();
    for (k, v) in &labels {
        validate::label("labels", k, v).map_err(invalid("metadata.labels"))?;
    }
    Ok(Object::Namespace(NamespaceSpec { name, labels }))
}

fn service(svc: Service) -> Result<Object, FieldError> {
    let name = name_of(svc.metadata.name)?;
    validate::service_name("name", &name).map_err(invalid("metadata.name"))?;
    let namespace = svc.metadata.namespace.unwrap_or_else(|| "default".into());
    validate::dns_label("namespace", &namespace).map_err(invalid("metadata.namespace"))?;
    let spec = svc.spec.ok_or_else(|| fe("spec", "missing"))?;
    match spec.type_.as_deref() {
        None | Some("ClusterIP") => {}
        Some(t @ ("NodePort" | "LoadBalancer" | "ExternalName")) => {
            return Err(fe(
                "spec.type",
                format!("{t} is not supported (only ClusterIP)"),
            ))
        }
        Some(t) => {
            return Err(fe(
                "spec.type",
                format!("`{t}` is not a Service type (ClusterIP)"),
            ))
        }
    }
    if spec.external_ips.as_ref().is_some_and(|v| !v.is_empty()) {
        return Err(fe("spec.externalIPs", "external IPs are not supported"));
    }
    let vip = cluster_ip(spec.cluster_ip, spec.cluster_ips)?;
    let selector = spec.selector.unwrap_or_default();
    if selector.is_empty() {
        return Err(fe(
            "spec.selector",
            "a Service without a selector is not supported (its endpoints are the pods it selects)",
        ));
    }
    for (k, v) in &selector {
        validate::label("selector", k, v).map_err(invalid("spec.selector"))?;
    }
    let ports = spec.ports.unwrap_or_default();
    if ports.is_empty() {
        return Err(fe("spec.ports", "a Service needs at least one port"));
    }
    let mut specs: Vec<String> = Vec::new();
    let mut seen: Vec<(i32, &str, &str)> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let (spec, proto) = port(i, p)?;
        let name = p.name.as_deref().unwrap_or("");
        if seen.iter().any(|(n, pr, _)| *n == p.port && *pr == proto) {
            return Err(fe(
                format!("spec.ports[{i}]"),
                format!("port {}/{proto} is given twice", p.port),
            ));
        }
        if !name.is_empty() && seen.iter().any(|(_, _, n)| *n == name) {
            return Err(fe(
                format!("spec.ports[{i}].name"),
                format!("port name `{name}` is given twice"),
            ));
        }
        if ports.len() > 1 && name.is_empty() {
            return Err(fe(
                format!("spec.ports[{i}].name"),
                "each port of a Service with several ports needs a name",
            ));
        }
        seen.push((p.port, proto, name));
        specs.push(spec);
    }
    let affinity = affinity(
        spec.session_affinity.as_deref(),
        spec.session_affinity_config
            .and_then(|c| c.client_ip)
            .and_then(|c| c.timeout_seconds),
    )?;
    Ok(Object::Service(ServiceSpec {
        name,
        namespace,
        vip,
        ports: specs,
        selector,
        endpoints: Vec::new(),
        affinity,
    }))
}

/// The VIP asked for: `spec.clusterIP` (or the first of `spec.clusterIPs`), none to have one
/// allocated.
fn cluster_ip(ip: Option<String>, ips: Option<Vec<String>>) -> Result<Option<String>, FieldError> {
    let ips = ips.unwrap_or_default();
    if ips.len() > 1 {
        return Err(fe(
            "spec.clusterIPs",
            "dual-stack Services are not supported (one IPv4 clusterIP)",
        ));
    }
    let (field, ip) = match (ip.filter(|s| !s.is_empty()), ips.into_iter().next()) {
        (Some(a), Some(b)) if a != b => {
            return Err(fe(
                "spec.clusterIPs",
                format!("`{b}` differs from spec.clusterIP `{a}`"),
            ))
        }
        (Some(a), _) => ("spec.clusterIP", a),
        (None, Some(b)) if !b.is_empty() => ("spec.clusterIPs[0]", b),
        (None, _) => return Ok(None),
    };
    if ip == "None" {
        return Err(fe(
            field,
            "headless Services (clusterIP: None) are not supported yet",
        ));
    }
    validate::ipv4("vip", &ip).map_err(invalid(field))?;
    Ok(Some(ip))
}

/// One port as a `[NAME:]PORT:TARGETPORT/PROTO` spec, and its protocol.
fn port(i: usize, p: &ServicePort) -> Result<(String, &'static str), FieldError> {
    let f = |sub: &str| format!("spec.ports[{i}].{sub}");
    let number = |n: i32, sub: &str| {
        u16::try_from(n)
            .ok()
            .filter(|n| *n != 0)
            .ok_or_else(|| fe(f(sub), format!("must be 1-65535 (got {n})")))
    };
    let port = number(p.port, "port")?;
    let target = match &p.target_port {
        None => port,
        Some(IntOrString::Int(n)) => number(*n, "targetPort")?,
        Some(IntOrString::String(s)) => {
            return Err(fe(
                f("targetPort"),
                format!("named targetPort `{s}` is not supported yet (give the port number)"),
            ))
        }
    };
    let proto = match p.protocol.as_deref() {
        None | Some("TCP") => "tcp",
        Some("UDP") => "udp",
        Some("SCTP") => return Err(fe(f("protocol"), "SCTP is not supported (TCP or UDP)")),
        Some(o) => {
            return Err(fe(
                f("protocol"),
                format!("`{o}` is not a protocol (TCP or UDP)"),
            ))
        }
    };
    let spec = match p.name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => format!("{name}:{port}:{target}/{proto}"),
        None => format!("{port}:{target}/{proto}"),
    };
    // The daemon's own parser, so that what it reads is what was checked here; by now
    // only the name can be wrong.
    validate::service_port(&spec).map_err(|e| {
        let m = e.message;
        fe(
            f("name"),
            m.split_once(": ").map_or(m.clone(), |(_, r)| r.to_string()),
        )
    })?;
    Ok((spec, if proto == "tcp" { "TCP" } else { "UDP" }))
}

/// `client-ip:SECONDS` for `sessionAffinity: ClientIP`.
fn affinity(kind: Option<&str>, timeout: Option<i32>) -> Result<Option<String>, FieldError> {
    match kind {
        None | Some("None") => Ok(None),
        Some("ClientIP") => {
            let secs = match timeout {
                None => DEFAULT_AFFINITY_SECONDS,
                Some(t) => u32::try_from(t)
                    .ok()
                    .filter(|t| (1..=MAX_AFFINITY_SECONDS).contains(t))
                    .ok_or_else(|| {
                        fe(
                            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                            format!("must be 1-{MAX_AFFINITY_SECONDS} (got {t})"),
                        )
                    })?,
            };
            Ok(Some(format!("client-ip:{secs}")))
        }
        Some(o) => Err(fe(
            "spec.sessionAffinity",
            format!("`{o}` is not a session affinity (ClientIP or None)"),
        )),
    }
}

#[cfg(test)]
mod tests;
