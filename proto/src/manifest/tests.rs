//! The YAML conversion: the tutorial's Service exactly, multi-document files, a Service as
//! `kubectl get -o yaml` prints it (status, annotations, managedFields), and each refused
//! input with its whole message.

use super::*;
use crate::ServiceKey;

/// The tutorial's service.yaml, byte for byte (shared/tutorial.md).
const TUTORIAL: &str = include_str!("../../../examples/service.yaml");

fn one(text: &str) -> Object {
    let mut docs = parse(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(docs.len(), 1);
    docs.remove(0).object
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn the_tutorial_service() {
    let want = Object::Service(ServiceSpec {
        name: "nginx-service".into(),
        namespace: "default".into(),
        vip: None,
        ports: vec!["80:80/tcp".into()],
        selector: [("app".to_string(), "nginx".to_string())].into(),
        endpoints: vec![],
        affinity: None,
    });
    assert_eq!(one(TUTORIAL), want);
    let docs = parse(TUTORIAL).unwrap();
    assert_eq!(docs[0].index, 1);
    assert_eq!(docs[0].label(), "Service nginx-service");
}

#[test]
fn multi_document_with_namespace_named_ports_and_affinity() {
    let text = "---
apiVersion: v1
kind: Namespace
metadata:
  name: team-a
  labels:
    team: a
---
# a comment between documents
apiVersion: v1
kind: Service
metadata:
  name: dns
  namespace: team-a
spec:
  type: ClusterIP
  clusterIP: 198.19.96.53
  selector: {app: dns}
  sessionAffinity: ClientIP
  sessionAffinityConfig:
    clientIP:
      timeoutSeconds: 60
  ports:
  - name: dns
    port: 53
    targetPort: 5353
    protocol: UDP
  - name: dns-tcp
    port: 53
---
";
    let docs = parse(text).unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(
        docs[0].object,
        Object::Namespace(NamespaceSpec {
            name: "team-a".into(),
            labels: [("team".to_string(), "a".to_string())].into(),
        })
    );
    let Object::Service(s) = &docs[1].object else {
        panic!("not a service");
    };
    assert_eq!(docs[1].index, 2);
    assert_eq!(s.namespace, "team-a");
    assert_eq!(s.vip.as_deref(), Some("198.19.96.53"));
    assert_eq!(s.ports, ["dns:53:5353/udp", "dns-tcp:53:53/tcp"]);
    assert_eq!(s.affinity.as_deref(), Some("client-ip:60"));
    assert_eq!(
        docs[1].object.key(),
        crate::ObjectKey::Service(ServiceKey {
            name: "dns".into(),
            namespace: "team-a".into()
        })
    );
    // ClientIP without a timeout: Kubernetes' default.
    let s = TUTORIAL.replace("spec:\n", "spec:\n  sessionAffinity: ClientIP\n");
    let Object::Service(s) = one(&s) else {
        panic!()
    };
    assert_eq!(s.affinity.as_deref(), Some("client-ip:10800"));
}

#[test]
fn what_a_cluster_prints_is_accepted_and_the_rest_ignored() {
    let text = r#"apiVersion: v1
kind: Service
metadata:
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: |
      {"apiVersion":"v1","kind":"Service","metadata":{"annotations":{},"name":"nginx-service","namespace":"default"},"spec":{"ports":[{"port":80,"protocol":"TCP","targetPort":80}],"selector":{"app":"nginx"}}}
  creationTimestamp: "2024-05-02T10:11:12Z"
  labels:
    app: nginx
  managedFields:
  - apiVersion: v1
    fieldsType: FieldsV1
    fieldsV1:
      f:spec:
        f:ports:
          .: {}
    manager: kubectl-client-side-apply
    operation: Update
    time: "2024-05-02T10:11:12Z"
  name: nginx-service
  namespace: default
  resourceVersion: "12345"
  uid: 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0
spec:
  clusterIP: 198.19.96.20
  clusterIPs:
  - 198.19.96.20
  internalTrafficPolicy: Cluster
  ipFamilies:
  - IPv4
  ipFamilyPolicy: SingleStack
  ports:
  - port: 80
    protocol: TCP
    targetPort: 80
  selector:
    app: nginx
  sessionAffinity: None
  type: ClusterIP
status:
  loadBalancer: {}
"#;
    let Object::Service(s) = one(text) else {
        panic!("not a service")
    };
    assert_eq!(s.name, "nginx-service");
    assert_eq!(s.vip.as_deref(), Some("198.19.96.20"));
    assert_eq!(s.ports, ["80:80/tcp"]);
    assert_eq!(s.affinity, None);
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-b\n  uid: x\n  \
              resourceVersion: \"1\"\nspec:\n  finalizers: [kubernetes]\nstatus:\n  phase: Active\n";
    assert_eq!(
        one(ns),
        Object::Namespace(NamespaceSpec {
            name: "team-b".into(),
            labels: Default::default()
        })
    );
}

#[test]
fn target_port_defaults_to_port() {
    let text = TUTORIAL.replace("      targetPort: 80\n", "");
    let Object::Service(s) = one(&text) else {
        panic!()
    };
    assert_eq!(s.ports, ["80:80/tcp"]);
    let text = TUTORIAL.replace("targetPort: 80", "targetPort: 8080");
    let Object::Service(s) = one(&text) else {
        panic!()
    };
    assert_eq!(s.ports, ["80:8080/tcp"]);
}

/// A second document after a good Namespace, so that the index is checked too.
fn second(doc: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ok\n---\n{doc}")
}

#[test]
fn each_refused_input_names_the_document_and_the_field() {
    let svc = |from: &str, to: &str| {
        let t = TUTORIAL.replace(from, to);
        assert_ne!(t, TUTORIAL, "{from} not in the tutorial");
        second(&t)
    };
    let d = "document 2 (Service nginx-service)";
    let cases: Vec<(String, String)> = vec![
        (
            svc(
                "    - protocol: TCP\n      port: 80\n      targetPort: 80\n",
                "    []\n",
            ),
            format!("{d}: spec.ports: a Service needs at least one port"),
        ),
        (
            svc(
                "  ports:\n    - protocol: TCP\n      port: 80\n      targetPort: 80\n",
                "",
            ),
            format!("{d}: spec.ports: a Service needs at least one port"),
        ),
        (
            svc("port: 80", "port: 70000"),
            format!("{d}: spec.ports[0].port: must be 1-65535 (got 70000)"),
        ),
        (
            svc("port: 80", "port: 0"),
            format!("{d}: spec.ports[0].port: must be 1-65535 (got 0)"),
        ),
        (
            svc("targetPort: 80", "targetPort: -1"),
            format!("{d}: spec.ports[0].targetPort: must be 1-65535 (got -1)"),
        ),
        (
            svc("protocol: TCP", "protocol: SCTP"),
            format!("{d}: spec.ports[0].protocol: SCTP is not supported (TCP or UDP)"),
        ),
        (
            svc("protocol: TCP", "protocol: tcp"),
            format!("{d}: spec.ports[0].protocol: `tcp` is not a protocol (TCP or UDP)"),
        ),
        (
            svc("targetPort: 80", "targetPort: http"),
            format!(
                "{d}: spec.ports[0].targetPort: named targetPort `http` is not supported yet \
                 (give the port number)"
            ),
        ),
        (
            svc("spec:\n", "spec:\n  type: NodePort\n"),
            format!("{d}: spec.type: NodePort is not supported (only ClusterIP)"),
        ),
        (
            svc("spec:\n", "spec:\n  type: LoadBalancer\n"),
            format!("{d}: spec.type: LoadBalancer is not supported (only ClusterIP)"),
        ),
        (
            svc("spec:\n", "spec:\n  type: ExternalName\n"),
            format!("{d}: spec.type: ExternalName is not supported (only ClusterIP)"),
        ),
        (
            svc("spec:\n", "spec:\n  clusterIP: None\n"),
            format!(
                "{d}: spec.clusterIP: headless Services (clusterIP: None) are not supported yet"
            ),
        ),
        (
            svc("spec:\n", "spec:\n  clusterIP: 198.19.96\n"),
            format!("{d}: spec.clusterIP: `198.19.96` is not an IPv4 address"),
        ),
        (
            svc("  selector:\n    app: nginx\n", ""),
            format!(
                "{d}: spec.selector: a Service without a selector is not supported \
                 (its endpoints are the pods it selects)"
            ),
        ),
        (
            svc("spec:\n", "spec:\n  sessionAffinity: Cookie\n"),
            format!(
                "{d}: spec.sessionAffinity: `Cookie` is not a session affinity (ClientIP or None)"
            ),
        ),
        (
            svc(
                "spec:\n",
                "spec:\n  sessionAffinity: ClientIP\n  sessionAffinityConfig:\n    \
                 clientIP:\n      timeoutSeconds: 100000\n",
            ),
            format!(
                "{d}: spec.sessionAffinityConfig.clientIP.timeoutSeconds: must be 1-86400 \
                 (got 100000)"
            ),
        ),
        // A wrong type names the field (k8s-openapi's message).
        (
            svc("port: 80", "port: eighty"),
            format!("{d}: spec.ports[0].port: invalid type: string \"eighty\", expected i32"),
        ),
        (
            svc("  selector:\n    app: nginx\n", "  selector: [app]\n"),
            format!("{d}: spec.selector: invalid type: sequence, expected a map"),
        ),
        (
            svc("apiVersion: v1", "apiVersion: apps/v1"),
            format!("{d}: apiVersion: `apps/v1` is not the apiVersion of a Service (expected v1)"),
        ),
        (
            svc("name: nginx-service", "name: Nginx"),
            "document 2 (Service Nginx): metadata.name: `Nginx` must be a DNS label: lowercase \
             letters, digits and '-', starting and ending with a letter or digit"
                .into(),
        ),
        (
            second("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n"),
            "document 2 (Deployment web): kind: `Deployment` is not supported (Service, Namespace)"
                .into(),
        ),
        (
            second("apiVersion: v1\nmetadata:\n  name: web\n"),
            "document 2: kind: missing".into(),
        ),
        (
            second("kind: Service\nmetadata:\n  name: web\n"),
            "document 2 (Service web): apiVersion: missing".into(),
        ),
        (
            second(
                "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  \
                 name: deny-all\nspec:\n  podSelector: {}\n",
            ),
            "document 2 (NetworkPolicy deny-all): kind: NetworkPolicy is not supported yet \
             (a later version enforces it)"
                .into(),
        ),
        (
            second("apiVersion: v1\nkind: Namespace\nmetadata:\n  labels: {a: b}\n"),
            "document 2: metadata.name: missing".into(),
        ),
        (
            second(
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  labels: {\"a b\": c}\n",
            ),
            "document 2 (Namespace x): metadata.labels: label key `a b` is not a valid \
             Kubernetes label key"
                .into(),
        ),
        (
            second("- 1\n- 2\n"),
            "document 2: not a Kubernetes object (a mapping with apiVersion, kind and metadata)"
                .into(),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(err(&text), want, "for\n{text}");
    }
}

#[test]
fn several_ports_need_names_and_no_duplicates() {
    let two = |a: &str, b: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: s}}\nspec:\n  selector: {{a: b}}\n  \
             ports:\n  - {a}\n  - {b}\n"
        )
    };
    assert_eq!(
        err(&two("{port: 80, name: a}", "{port: 81}")),
        "document 1 (Service s): spec.ports[1].name: each port of a Service with several \
         ports needs a name"
    );
    assert_eq!(
        err(&two("{port: 80, name: a}", "{port: 80, name: b}")),
        "document 1 (Service s): spec.ports[1]: port 80/TCP is given twice"
    );
    assert_eq!(
        err(&two("{port: 80, name: a}", "{port: 81, name: a}")),
        "document 1 (Service s): spec.ports[1].name: port name `a` is given twice"
    );
    assert_eq!(
        err(&two("{port: 80, name: Web}", "{port: 81, name: b}")),
        "document 1 (Service s): spec.ports[0].name: port name `Web` must be 1-15 lowercase \
         letters, digits and '-' with at least one letter"
    );
    // 80/TCP and 80/UDP may live side by side.
    assert!(parse(&two(
        "{port: 53, name: a, protocol: UDP}",
        "{port: 53, name: b}"
    ))
    .is_ok());
}

#[test]
fn bad_yaml_and_empty_input() {
    let e = parse("apiVersion: v1\nkind: [\n").unwrap_err();
    assert_eq!((e.document, e.object.as_deref()), (0, None));
    assert!(e.to_string().starts_with("YAML: "), "{e}");
    assert_eq!(err(""), "YAML: no objects in the input");
    assert_eq!(err("---\n---\n"), "YAML: no objects in the input");
}
