//! `vswitchctl apply -f` / `delete -f` end to end, on one node: the tutorial's service.yaml
//! (with a Namespace in front of it) gives `nginx-service` an allocated VIP that a busybox
//! pod reaches by name; the VIP and the namespace survive a daemon restart, after which the
//! same file is `unchanged`; `delete -f` removes both. The conversion's and the state's
//! refusals are unit-tested (proto's `manifest`, vswitchd's `node/state/apply`).

use std::fs;
use vswitch_e2e::{NodeOpts, OutputExt, Testbed};

/// A Namespace, then the tutorial's service.yaml as it is.
const NAMESPACE: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: team-a
  labels:
    team: a
---
";
const SERVICE_YAML: &str = include_str!("../../../examples/service.yaml");

#[test]
fn apply_the_tutorial_service_then_delete_it() {
    let Some(tb) = Testbed::new("apply_the_tutorial_service_then_delete_it") else {
        return;
    };
    let node = tb.add_node(1, NodeOpts::default());
    let nginx = tb.add_pod(&node, "nginx-server", &[("app", "nginx")]);
    let client = tb.add_pod(&node, "busybox-client", &[]);
    let _server = tb.start_nginx(&nginx);
    let file = tb.dir().join("service.yaml");
    fs::write(&file, format!("{NAMESPACE}{SERVICE_YAML}")).expect("writing service.yaml");
    let file = file.to_str().expect("a UTF-8 path");

    let out = node.ctl_ok(&["apply", "-f", file]);
    assert_eq!(
        out,
        "namespace/team-a created\nservice/nginx-service created\n"
    );
    let svc = node.service("nginx-service");
    let vip = svc["vip"].as_str().expect("a VIP").to_string();
    // Allocated above the lower band of 198.19.96.0/20 (256 addresses).
    assert_eq!(vip, "198.19.97.0", "{svc}");
    assert_eq!(node.endpoints("nginx-service"), vec![nginx.ip.to_string()]);
    let page = client.wget("http://nginx-service/");
    assert!(
        page.status.success() && page.stdout_str().contains("Welcome to nginx"),
        "wget nginx-service: {}",
        page.describe()
    );

    // Persisted: after a restart the VIP and the namespace are the same, so the file is
    // unchanged.
    tb.restart_daemon(&node);
    assert_eq!(node.service("nginx-service")["vip"], vip.as_str());
    let ns = node.ctl_json(&["namespace", "list"]);
    assert_eq!(ns[0]["name"], "team-a", "{ns}");
    assert_eq!(
        ns[0]["labels"]["kubernetes.io/metadata.name"], "team-a",
        "{ns}"
    );
    assert_eq!(ns[0]["labels"]["team"], "a", "{ns}");
    let out = node.ctl_ok(&["apply", "-f", file]);
    assert_eq!(
        out,
        "namespace/team-a unchanged\nservice/nginx-service unchanged\n"
    );

    let out = node.ctl_ok(&["delete", "-f", file]);
    assert_eq!(
        out,
        "namespace \"team-a\" deleted\nservice \"nginx-service\" deleted\n"
    );
    let list = node.ctl_ok(&["service", "list"]);
    assert!(!list.contains("nginx-service"), "{list}");
    assert!(node.services().is_empty());
    // Deleting again: each object is reported missing, exit 1.
    let again = node.ctl(&["delete", "-f", file]);
    assert_eq!(again.status.code(), Some(1), "{}", again.describe());
    assert_eq!(
        again.stderr_str(),
        "error: namespaces \"team-a\" not found\nerror: services \"nginx-service\" not found\n"
    );
}
