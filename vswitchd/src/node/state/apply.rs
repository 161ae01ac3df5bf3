//! `apply` and `delete` of Kubernetes-shaped objects (Services, Namespaces) in the pure node
//! state, and the namespace store.
//!
//! - `apply` is create-or-update, all or nothing: the objects are applied in order, each one
//!   created, replacing the object of its name (`configured`), or left alone when the result
//!   would be equal (`unchanged`). When one is refused every change before it is undone and
//!   the error names the object (`objects[I]`) and the field in Kubernetes' spelling
//!   (`spec.clusterIP`, `spec.ports`, ...).
//! - A Service without a VIP keeps the one it has, or gets a free one
//!   ([`NodeState::allocate_vip`]); a VIP given for an existing Service must be the one it
//!   has (Kubernetes' `spec.clusterIP` is immutable too).
//! - A namespace's labels always include `kubernetes.io/metadata.name: NAME`, as Kubernetes
//!   sets it; it keeps the time it was first applied.
//! - `delete` removes each named object that exists and reports the others `not_found`;
//!   deleting a namespace removes its record only (what is in it stays: there is no
//!   cascade).

use super::{NodeState, Reject, Undo};
use crate::state::NamespaceRecord;
use vswitch_proto::{
    validate, Action, ErrorKind, NamespaceInfo, NamespaceSpec, Object, ObjectKey, ObjectResult,
    ServiceSpec,
};

/// The label Kubernetes gives every namespace, with its name.
pub const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// An `apply` refused: everything was rolled back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApplyError {
    pub kind: ErrorKind,
    /// `objects[I].FIELD`, the field in Kubernetes' spelling.
    pub field: String,
    pub msg: String,
}

impl ApplyError {
    /// The error answer on the wire.
    pub fn into_response(self) -> vswitch_proto::Response {
        vswitch_proto::Response::Error(vswitch_proto::ErrorBody {
            kind: self.kind,
            field: Some(self.field),
            message: self.msg,
        })
    }
}

/// A request field of a Service or Namespace in Kubernetes' spelling.
fn k8s_field(kind: &str, field: Option<&str>) -> &'static str {
    match (kind, field) {
        (_, Some("name")) => "metadata.name",
        ("Service", Some("namespace")) => "metadata.namespace",
        ("Service", Some("vip")) => "spec.clusterIP",
        ("Service", Some("port")) => "spec.ports",
        ("Service", Some("selector")) => "spec.selector",
        ("Service", Some("affinity")) => "spec.sessionAffinityConfig",
        ("Namespace", Some("labels")) => "metadata.labels",
        _ => "spec",
    }
}

impl NodeState {
    /// Applies `objects` in order (all or nothing); `now` (seconds since the epoch) is the
    /// creation time of new namespaces. What happened to each object, and how to undo it all.
    pub fn apply_objects(
        &mut self,
        objects: Vec<Object>,
        now: u64,
    ) -> Result<(Vec<ObjectResult>, Vec<Undo>), ApplyError> {
        let mut results = Vec::new();
        let mut undos = Vec::new();
        for (i, object) in objects.into_iter().enumerate() {
            let key = object.key();
            let applied = match object {
                Object::Service(spec) => self.apply_service(spec),
                Object::Namespace(spec) => self.apply_namespace(spec, now),
            };
            match applied {
                Ok((action, undo)) => {
                    results.push(ObjectResult {
                        object: key,
                        action,
                    });
                    undos.extend(undo);
                }
                Err(r) => {
                    self.rollback_all(undos);
                    let field = k8s_field(key.kind(), r.field);
                    return Err(ApplyError {
                        kind: r.kind,
                        field: format!("objects[{i}].{field}"),
                        msg: format!("{} {}: {}", key.kind(), key.name(), r.msg),
                    });
                }
            }
        }
        Ok((results, undos))
    }

    /// Creates, replaces or leaves alone one Service.
    fn apply_service(&mut self, spec: ServiceSpec) -> Result<(Action, Option<Undo>), Reject> {
        let key = Self::service_key(&spec)?;
        let old = self.services.get(&key);
        let vip = match (&spec.vip, old) {
            (Some(s), Some(old)) => {
                let vip = self.given_vip(s, &key)?;
                if vip != old.vip {
                    return Err(super::reject(
                        "vip",
                        format!(
                            "service {}/{} has VIP {}; it cannot change to {vip} (delete the \
                             service first)",
                            key.namespace, key.name, old.vip
                        ),
                    ));
                }
                vip
            }
            (Some(s), None) => self.given_vip(s, &key)?,
            (None, Some(old)) => old.vip,
            (None, None) => self.allocate_vip()?,
        };
        let rec = self.service_record(spec, vip)?;
        match self.services.insert(key.clone(), rec) {
            None => Ok((Action::Created, Some(Undo::ServiceAdded { key }))),
            Some(old) if self.services[&key] == old => Ok((Action::Unchanged, None)),
            Some(old) => Ok((Action::Configured, Some(Undo::ServiceRemoved { rec: old }))),
        }
    }

    /// Creates, replaces or leaves alone one namespace.
    fn apply_namespace(
        &mut self,
        spec: NamespaceSpec,
        now: u64,
    ) -> Result<(Action, Option<Undo>), Reject> {
        validate::dns_label("name", &spec.name).map_err(super::invalid)?;
        let mut labels = spec.labels;
        for (k, v) in &labels {
            validate::label("labels", k, v).map_err(super::invalid)?;
        }
        labels.insert(NAME_LABEL.to_string(), spec.name.clone());
        let created_unix = self
            .namespaces
            .get(&spec.name)
            .map_or(now, |n| n.created_unix);
        let rec = NamespaceRecord {
            name: spec.name.clone(),
            labels,
            created_unix,
            from_datastore: self.datastore,
        };
        let old = self.namespaces.insert(spec.name.clone(), rec);
        let action = match &old {
            None => Action::Created,
            Some(o) if *o == self.namespaces[&spec.name] => return Ok((Action::Unchanged, None)),
            Some(_) => Action::Configured,
        };
        Ok((
            action,
            Some(Undo::NamespaceSet {
                name: spec.name,
                old,
            }),
        ))
    }

    /// Removes each object of `keys` that exists; the others are `not_found`. What happened
    /// to each, and how to undo the removals.
    pub fn delete_objects(&mut self, keys: Vec<ObjectKey>) -> (Vec<ObjectResult>, Vec<Undo>) {
        let mut results = Vec::new();
        let mut undos = Vec::new();
        for key in keys {
            let undo = match &key {
                ObjectKey::Service(k) => self.remove_service(k).ok(),
                ObjectKey::Namespace { name } => self
                    .namespaces
                    .remove(name)
                    .map(|rec| Undo::NamespaceRemoved { rec }),
            };
            let action = if undo.is_some() {
                Action::Deleted
            } else {
                Action::NotFound
            };
            undos.extend(undo);
            results.push(ObjectResult {
                object: key,
                action,
            });
        }
        (results, undos)
    }

    /// What `namespace list` shows.
    pub fn namespace_infos(&self) -> Vec<NamespaceInfo> {
        self.namespaces
            .values()
            .map(|n| NamespaceInfo {
                name: n.name.clone(),
                labels: n.labels.clone(),
                created_unix: n.created_unix,
            })
            .collect()
    }

    /// Keeps the persisted namespaces whose name is still valid; the others are returned
    /// with the reason, for the caller to warn about.
    pub fn recover_namespaces(&mut self, recs: Vec<NamespaceRecord>) -> Vec<(String, String)> {
        let mut dropped = Vec::new();
        for mut rec in recs {
            if let Err(e) = validate::dns_label("name", &rec.name) {
                dropped.push((rec.name, e.message));
                continue;
            }
            rec.labels.insert(NAME_LABEL.to_string(), rec.name.clone());
            self.namespaces.insert(rec.name.clone(), rec);
        }
        dropped
    }
}

#[cfg(test)]
mod tests;
