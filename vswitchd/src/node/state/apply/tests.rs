//! `apply`/`delete` in the node state without root: creation with an allocated VIP that a
//! re-apply keeps, unchanged and configured detection, all-or-nothing rollback, the errors'
//! fields in Kubernetes' spelling, deletion with not-found objects, and the namespace store.

use super::*;
use crate::state::ServiceRecord;
use std::net::Ipv4Addr;
use vswitch_datapath::NodeConfig;
use vswitch_proto::ServiceKey;

/// Node 198.18.1.0/24, service CIDR 198.19.96.0/20, cluster DNS 198.19.96.10.
fn state() -> NodeState {
    let mut cfg = NodeConfig::for_subnet(
        crate::checked::cidr("pod_cidr", "198.18.1.0/24").unwrap(),
        1450,
    );
    cfg.service_cidr = Some(crate::checked::cidr("service_cidr", "198.19.96.0/20").unwrap());
    cfg.dns_ip = Some("198.19.96.10".parse().unwrap());
    NodeState::new(cfg, "node1".into(), None, None)
}

/// The tutorial's nginx-service as `apply` receives it.
fn nginx(vip: Option<&str>) -> ServiceSpec {
    ServiceSpec {
        name: "nginx-service".into(),
        namespace: "default".into(),
        vip: vip.map(str::to_string),
        ports: vec!["80:80/tcp".into()],
        selector: [("app".to_string(), "nginx".to_string())].into(),
        endpoints: vec![],
        affinity: None,
    }
}

fn ns(name: &str, labels: &[(&str, &str)]) -> Object {
    Object::Namespace(NamespaceSpec {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    })
}

fn key(name: &str) -> ServiceKey {
    ServiceKey {
        name: name.into(),
        namespace: "default".into(),
    }
}

fn actions(r: &[ObjectResult]) -> Vec<(String, Action)> {
    r.iter()
        .map(|o| (format!("{}/{}", o.object.kind(), o.object.name()), o.action))
        .collect()
}

fn apply(st: &mut NodeState, objects: Vec<Object>) -> Vec<(String, Action)> {
    let (r, _) = st.apply_objects(objects, 1000).unwrap();
    actions(&r)
}

/// The error of an apply that must be refused.
fn refused(st: &mut NodeState, objects: Vec<Object>) -> ApplyError {
    match st.apply_objects(objects, 5) {
        Err(e) => e,
        Ok((r, _)) => panic!("applied: {:?}", actions(&r)),
    }
}

fn vip_of(st: &NodeState, name: &str) -> Ipv4Addr {
    st.services[&key(name)].vip
}

#[test]
fn create_then_unchanged_then_configured_keeping_the_allocated_vip() {
    let mut st = state();
    let a = |action| vec![("Service/nginx-service".to_string(), action)];
    assert_eq!(
        apply(&mut st, vec![Object::Service(nginx(None))]),
        a(Action::Created)
    );
    // Above the lower band (256 addresses of a /20) left for VIPs given explicitly.
    assert_eq!(vip_of(&st, "nginx-service"), Ipv4Addr::new(198, 19, 97, 0));
    let (r, undos) = st
        .apply_objects(vec![Object::Service(nginx(None))], 1000)
        .unwrap();
    assert_eq!(actions(&r), a(Action::Unchanged));
    assert!(undos.is_empty(), "nothing to undo, nothing to save");
    // Giving the VIP it has is the same object.
    let same = nginx(Some("198.19.97.0"));
    assert_eq!(
        apply(&mut st, vec![Object::Service(same)]),
        a(Action::Unchanged)
    );
    let mut changed = nginx(None);
    changed.ports = vec!["80:8080/tcp".into()];
    let before = st.services[&key("nginx-service")].clone();
    let (r, undos) = st
        .apply_objects(vec![Object::Service(changed)], 1000)
        .unwrap();
    assert_eq!(actions(&r), a(Action::Configured));
    let now = &st.services[&key("nginx-service")];
    assert_eq!((now.vip, now.ports[0].target_port), (before.vip, 8080));
    st.rollback_all(undos);
    assert_eq!(st.services[&key("nginx-service")], before);
}

#[test]
fn allocation_skips_used_vips_and_the_dns_address() {
    let mut st = state();
    for name in ["a", "b"] {
        let mut s = nginx(None);
        s.name = name.into();
        apply(&mut st, vec![Object::Service(s)]);
    }
    assert_eq!(vip_of(&st, "a"), Ipv4Addr::new(198, 19, 97, 0));
    assert_eq!(vip_of(&st, "b"), Ipv4Addr::new(198, 19, 97, 1));
    // A /27 service CIDR: the band is 16 addresses; the DNS address is never handed out.
    let mut cfg = NodeConfig::for_subnet(crate::checked::cidr("c", "198.18.1.0/24").unwrap(), 1450);
    cfg.service_cidr = Some(crate::checked::cidr("c", "198.19.96.0/27").unwrap());
    cfg.dns_ip = Some("198.19.96.17".parse().unwrap());
    let mut st = NodeState::new(cfg, "node1".into(), None, None);
    let mut got = Vec::new();
    for i in 0..29 {
        let mut s = nginx(None);
        s.name = format!("s{i}");
        apply(&mut st, vec![Object::Service(s)]);
        got.push(vip_of(&st, &format!("s{i}")).octets()[3]);
    }
    let want: Vec<u8> = (18..=30).chain(1..=16).collect();
    assert_eq!(got, want);
    let mut s = nginx(None);
    s.name = "one-too-many".into();
    let e = refused(&mut st, vec![Object::Service(s)]);
    assert_eq!(e.kind, ErrorKind::Exhausted);
    assert_eq!(e.field, "objects[0].spec.clusterIP");
}

#[test]
fn a_refused_object_undoes_the_whole_apply_and_names_its_field() {
    let mut st = state();
    apply(&mut st, vec![Object::Service(nginx(Some("198.19.96.20")))]);
    let before = (st.services.clone(), st.namespaces.clone());
    let mut other = nginx(Some("198.19.96.20"));
    other.name = "other".into();
    let mut changed = nginx(None);
    changed.ports = vec!["81/tcp".into()];
    let objects = vec![
        ns("team-a", &[]),
        Object::Service(changed),
        Object::Service(other),
    ];
    let e = refused(&mut st, objects);
    assert_eq!(
        (e.kind, e.field.as_str(), e.msg.as_str()),
        (
            ErrorKind::Exists,
            "objects[2].spec.clusterIP",
            "Service other: 198.19.96.20 is already the VIP of service default/nginx-service"
        )
    );
    assert_eq!((st.services.clone(), st.namespaces.clone()), before);
    let cases: Vec<(ServiceSpec, &str, &str)> = vec![
        (
            nginx(Some("198.19.112.1")),
            "objects[0].spec.clusterIP",
            "Service nginx-service: 198.19.112.1 is outside the service CIDR 198.19.96.0/20",
        ),
        (
            nginx(Some("198.19.96.21")),
            "objects[0].spec.clusterIP",
            "Service nginx-service: service default/nginx-service has VIP 198.19.96.20; it \
             cannot change to 198.19.96.21 (delete the service first)",
        ),
        (
            {
                let mut s = nginx(Some("198.19.96.10"));
                s.name = "dns".into();
                s
            },
            "objects[0].spec.clusterIP",
            "Service dns: 198.19.96.10 is the cluster DNS address",
        ),
        (
            {
                let mut s = nginx(None);
                s.ports = vec![];
                s
            },
            "objects[0].spec.ports",
            "Service nginx-service: a service needs at least one --port",
        ),
        (
            {
                let mut s = nginx(None);
                s.ports = vec!["0/tcp".into()];
                s
            },
            "objects[0].spec.ports",
            "Service nginx-service: `0/tcp`: port `0` is out of range (1-65535)",
        ),
    ];
    for (spec, field, msg) in cases {
        let e = refused(&mut st, vec![Object::Service(spec)]);
        assert_eq!((e.field.as_str(), e.msg.as_str()), (field, msg));
        assert_eq!((st.services.clone(), st.namespaces.clone()), before);
    }
    let e = refused(&mut st, vec![ns("team-a", &[]), ns("Team-B", &[])]);
    assert_eq!(e.field, "objects[1].metadata.name");
    assert!(st.namespaces.is_empty());
}

#[test]
fn namespaces_carry_their_name_label_and_keep_their_creation_time() {
    let mut st = state();
    let (r, _) = st
        .apply_objects(vec![ns("team-a", &[("team", "a")])], 100)
        .unwrap();
    assert_eq!(
        actions(&r),
        vec![("Namespace/team-a".to_string(), Action::Created)]
    );
    let info = &st.namespace_infos()[0];
    assert_eq!(info.created_unix, 100);
    assert_eq!(
        info.labels,
        [
            (
                "kubernetes.io/metadata.name".to_string(),
                "team-a".to_string()
            ),
            ("team".to_string(), "a".to_string())
        ]
        .into()
    );
    // The name label is Kubernetes': one given with another value is overwritten.
    let same = ns("team-a", &[("team", "a"), (NAME_LABEL, "team-a")]);
    let (r, undos) = st.apply_objects(vec![same], 200).unwrap();
    assert_eq!(r[0].action, Action::Unchanged);
    assert!(undos.is_empty());
    let (r, undos) = st
        .apply_objects(vec![ns("team-a", &[("team", "b")])], 300)
        .unwrap();
    assert_eq!(r[0].action, Action::Configured);
    assert_eq!(st.namespaces["team-a"].created_unix, 100);
    assert_eq!(st.namespaces["team-a"].labels["team"], "b");
    st.rollback_all(undos);
    assert_eq!(st.namespaces["team-a"].labels["team"], "a");
    // Persisted and recovered.
    let saved = st.persisted().namespaces;
    let mut fresh = state();
    assert!(fresh.recover_namespaces(saved).is_empty());
    assert_eq!(fresh.namespace_infos(), st.namespace_infos());
}

#[test]
fn delete_removes_what_exists_and_reports_the_rest() {
    let mut st = state();
    apply(
        &mut st,
        vec![ns("team-a", &[]), Object::Service(nginx(None))],
    );
    let before: Vec<ServiceRecord> = st.services.values().cloned().collect();
    let keys = vec![
        ObjectKey::Service(key("missing")),
        ObjectKey::Service(key("nginx-service")),
        ObjectKey::Namespace {
            name: "team-a".into(),
        },
    ];
    let (r, undos) = st.delete_objects(keys);
    assert_eq!(
        actions(&r),
        vec![
            ("Service/missing".to_string(), Action::NotFound),
            ("Service/nginx-service".to_string(), Action::Deleted),
            ("Namespace/team-a".to_string(), Action::Deleted),
        ]
    );
    assert!(st.services.is_empty() && st.namespaces.is_empty());
    st.rollback_all(undos);
    assert_eq!(st.services.values().cloned().collect::<Vec<_>>(), before);
    assert!(st.namespaces.contains_key("team-a"));
}
