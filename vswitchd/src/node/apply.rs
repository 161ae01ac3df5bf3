//! `apply`, `delete` and `namespace list`, the effects: the requests on top of the pure
//! state (`node/state/apply.rs`: create-or-update, all or nothing, VIP allocation, the
//! namespace store), saving the state once per request and installing the snapshot (whose
//! UDP conntrack flush covers the endpoints a replaced or deleted Service no longer has),
//! as `service add`/`service del` do.

use super::{save_failed, Inner, Node, Reject};
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::info;
use vswitch_proto::{Action, Object, ObjectKey, ObjectResult, Response};

/// Logs what `verb` (`apply`, `delete`) changed.
pub(super) fn log(verb: &str, results: &[ObjectResult]) {
    for r in results
        .iter()
        .filter(|r| !matches!(r.action, Action::Unchanged | Action::NotFound))
    {
        info!(
            kind = r.object.kind(),
            name = r.object.name(),
            action = r.action.as_str(),
            "{verb}"
        );
    }
}

impl Node {
    /// `apply`: every object or none; saved once, then installed.
    pub(super) fn apply(&self, inner: &mut Inner, objects: Vec<Object>) -> Response {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (results, undos) = match inner.apply_objects(objects, now) {
            Ok(done) => done,
            Err(e) => return e.into_response(),
        };
        if !undos.is_empty() {
            if let Err(e) = self.persist(inner) {
                inner.rollback_all(undos);
                return save_failed(e).into_response();
            }
            self.install(inner);
        }
        log("apply", &results);
        Response::Objects(results)
    }

    /// `delete`: removes what exists (saved once, then installed); what does not is
    /// `not_found` in the answer.
    pub(super) fn delete(
        &self,
        inner: &mut Inner,
        keys: Vec<ObjectKey>,
    ) -> Result<Response, Reject> {
        let (results, undos) = inner.delete_objects(keys);
        if !undos.is_empty() {
            if let Err(e) = self.persist(inner) {
                inner.rollback_all(undos);
                return Err(save_failed(e));
            }
            self.install(inner);
        }
        log("delete", &results);
        Ok(Response::Objects(results))
    }
}
