//! Self-tests of the testbed harness that need no daemon: the underlay between two nodes works,
//! and everything the testbed created is gone after it is dropped, also after a panic.

use std::path::{Path, PathBuf};
use std::time::Duration;
use vswitch_e2e::{ip_ok, netns_exists, NodeOpts, OutputExt, Testbed};

/// What a testbed created, to check that it is gone afterwards.
struct Footprint {
    netns: Vec<String>,
    dir: PathBuf,
    etc: PathBuf,
    pid: u32,
}

impl Footprint {
    fn assert_gone(&self) {
        for ns in &self.netns {
            assert!(!netns_exists(ns), "netns {ns} survived the testbed");
        }
        assert!(!self.dir.exists(), "{} survived", self.dir.display());
        assert!(!self.etc.exists(), "{} survived", self.etc.display());
        assert!(
            !Path::new(&format!("/proc/{}", self.pid)).exists()
                || std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
                    .is_ok_and(|s| s.contains(") Z ")),
            "background process {} survived",
            self.pid
        );
    }
}

/// Builds two nodes on the underlay, a pod-like netns with a resolv.conf and a background
/// process, checks them, and returns what to look for afterwards.
fn build(tb: &Testbed) -> Footprint {
    let n1 = tb.add_node(1, NodeOpts::no_daemon());
    let n2 = tb.add_node(2, NodeOpts::no_daemon());
    for name in [&n1.netns, &n2.netns] {
        assert!(netns_exists(name));
        assert!(name.starts_with(tb.prefix()));
    }
    let ul = n1.underlay_if.clone().expect("node 1 has an underlay");
    assert!(ul.len() <= 15, "interface name {ul} too long");
    assert_eq!(n2.underlay, Some("198.19.0.2".parse().unwrap()));

    // The underlay carries traffic between the nodes (allow a moment for carrier).
    let mut last = None;
    for _ in 0..5 {
        let out = n1.exec("ping", &["-c", "1", "-W", "2", "198.19.0.2"]);
        if out.status.success() {
            last = None;
            break;
        }
        last = Some(out.describe());
    }
    assert!(last.is_none(), "node1 cannot ping node2: {}", last.unwrap());
    let out = n2.exec("ping", &["-c", "1", "-W", "2", "198.19.0.1"]);
    assert!(out.status.success(), "node2 -> node1: {}", out.describe());

    // A pod-like netns with a resolver and a background process.
    let pod_ns = tb.create_netns(&tb.pod_netns_name("client"));
    ip_ok(&["-n", &pod_ns, "addr", "add", "198.18.1.9/32", "dev", "lo"]);
    tb.set_resolv_conf_netns(&pod_ns, "nameserver 198.19.96.10\n");
    let out = vswitch_e2e::exec_in(
        &pod_ns,
        Duration::from_secs(5),
        "cat",
        &["/etc/resolv.conf"],
    );
    assert_eq!(
        out.stdout_str(),
        "nameserver 198.19.96.10\n",
        "{}",
        out.describe()
    );
    let etc = Path::new("/etc/netns").join(&pod_ns);
    let bg = tb.spawn_in(&pod_ns, "sleeper", "sleep", &["60"]);
    assert!(bg.is_running());
    let pid = bg.pid;
    std::mem::forget(bg); // the testbed itself must kill it

    Footprint {
        netns: vec![
            n1.netns.clone(),
            n2.netns.clone(),
            format!("{}hub", tb.prefix()),
            pod_ns,
        ],
        dir: tb.dir().to_path_buf(),
        etc,
        pid,
    }
}

#[test]
fn underlay_connects_nodes_and_drop_removes_everything() {
    let Some(tb) = Testbed::new("underlay_connects_nodes_and_drop_removes_everything") else {
        return;
    };
    let fp = build(&tb);
    drop(tb);
    fp.assert_gone();
}

#[test]
fn resolv_conf_is_seen_by_the_pod_and_removed() {
    let Some(tb) = Testbed::new("resolv_conf_is_seen_by_the_pod_and_removed") else {
        return;
    };
    let ns = tb.create_netns(&tb.pod_netns_name("dns"));
    // Written behind the harness's back: still removed, by prefix.
    let dir = Path::new("/etc/netns").join(&ns);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("resolv.conf"), "nameserver 198.19.96.10\n").unwrap();
    let out = vswitch_e2e::exec_in(&ns, Duration::from_secs(5), "cat", &["/etc/resolv.conf"]);
    assert_eq!(
        out.stdout_str(),
        "nameserver 198.19.96.10\n",
        "{}",
        out.describe()
    );
    drop(tb);
    assert!(!dir.exists());
    assert!(!netns_exists(&ns));
}

#[test]
fn panic_inside_a_test_still_cleans_up() {
    let fp = std::sync::Mutex::new(None);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let Some(tb) = Testbed::new("panic_inside_a_test_still_cleans_up") else {
            return;
        };
        *fp.lock().unwrap() = Some(build(&tb));
        panic!("deliberate panic with a live testbed");
    }));
    if let Some(fp) = fp.into_inner().unwrap() {
        assert!(result.is_err(), "the closure should have panicked");
        fp.assert_gone();
    }
}

#[test]
fn prefixes_are_unique_and_names_fit_ifnamsiz() {
    let tbs: Vec<Testbed> = (0..8)
        .filter_map(|i| Testbed::new(&format!("prefixes_{i}")))
        .collect();
    let mut prefixes: Vec<&str> = tbs.iter().map(|t| t.prefix()).collect();
    prefixes.sort();
    prefixes.dedup();
    assert_eq!(prefixes.len(), tbs.len(), "duplicate prefixes");
    for p in prefixes {
        // Longest link name the harness makes: <prefix>u<N> with N <= 254; bridge <prefix>br.
        assert!(format!("{p}u254").len() <= 15, "{p} too long");
    }
}

#[test]
fn commands_are_bounded() {
    let Some(tb) = Testbed::new("commands_are_bounded") else {
        return;
    };
    let ns = tb.create_netns(&tb.pod_netns_name("slow"));
    let start = std::time::Instant::now();
    let out = vswitch_e2e::exec_in(&ns, Duration::from_millis(500), "sleep", &["30"]);
    assert!(!out.status.success());
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(out.stderr_str().contains("killed after"));
}
