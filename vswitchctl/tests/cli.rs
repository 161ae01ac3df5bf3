//! Runs the built `vswitchctl` against a tiny fake daemon on a temporary Unix socket, and checks
//! the contract scripts rely on: stdout formats, stderr messages and exit codes.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vswitch_proto::{
    decode_request, encode_response, ErrorBody, PortInfo, PortKey, PortStatus, Request, Response,
};

/// A socket path unique to this test, removed on drop.
struct SocketPath(PathBuf);

impl SocketPath {
    fn new(test: &str) -> SocketPath {
        let p = std::env::temp_dir().join(format!("vswitchctl-{}-{test}.sock", std::process::id()));
        let _ = std::fs::remove_file(&p);
        SocketPath(p)
    }
}

impl Drop for SocketPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Starts a fake daemon answering each request with `answer(request)`; returns the requests
/// it has seen. The thread lives until the test process exits.
fn fake_daemon(
    path: &Path,
    answer: impl Fn(&Request) -> Response + Send + 'static,
) -> Arc<Mutex<Vec<Request>>> {
    let listener = UnixListener::bind(path).expect("bind fake daemon socket");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut line = Vec::new();
            if BufReader::new(&stream)
                .read_until(b'\n', &mut line)
                .is_err()
            {
                continue;
            }
            let resp = match decode_request(&line) {
                Ok(req) => {
                    let resp = answer(&req);
                    log.lock().unwrap().push(req);
                    resp
                }
                Err(e) => e.to_response(),
            };
            let _ = stream.write_all(encode_response(&resp).as_bytes());
        }
    });
    seen
}

/// A file under the temporary directory unique to this test, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(test: &str, text: &str) -> TempFile {
        let p = std::env::temp_dir().join(format!("vswitchctl-{}-{test}.yaml", std::process::id()));
        std::fs::write(&p, text).expect("write the manifest");
        TempFile(p)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn vswitchctl(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vswitchctl"));
    cmd.args(args).env_remove("VSWITCH_SOCKET");
    cmd
}

fn run_at(socket: &Path, args: &[&str]) -> Output {
    let mut cmd = vswitchctl(&["--socket", socket.to_str().unwrap()]);
    cmd.args(args).output().expect("run vswitchctl")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn sample_port(name: &str, ip: &str) -> PortInfo {
    PortInfo {
        name: name.into(),
        namespace: "default".into(),
        ip: ip.into(),
        prefix_len: 24,
        mac: "0a:58:c6:12:01:02".into(),
        node: "node1".into(),
        status: PortStatus::Running,
        netns: format!("/var/run/netns/{name}"),
        ifname: "eth0".into(),
        gateway: "198.18.1.1".into(),
        mtu: 1450,
        labels: [("app".to_string(), name.to_string())].into(),
        container_id: None,
        runtime_name: None,
        runtime_namespace: None,
        dns: None,
    }
}

#[test]
fn port_list_json_is_an_array_of_ports() {
    let sock = SocketPath::new("list-json");
    let seen = fake_daemon(&sock.0, |_| {
        Response::Ports(vec![
            sample_port("nginx-server", "198.18.1.2"),
            sample_port("busybox", "198.18.1.3"),
        ])
    });
    let out = run_at(&sock.0, &["port", "list", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let arr = v.as_array().expect("a JSON array");
    assert_eq!(arr.len(), 2);
    // Sorted by namespace/name, with the proto field names.
    assert_eq!(arr[0]["name"], "busybox");
    assert_eq!(arr[1]["ip"], "198.18.1.2");
    assert_eq!(arr[1]["prefix_len"], 24);
    assert_eq!(arr[1]["labels"]["app"], "nginx-server");
    assert_eq!(*seen.lock().unwrap(), vec![Request::PortList]);
}

#[test]
fn port_list_table_uses_vswitch_socket_env() {
    let sock = SocketPath::new("list-table");
    fake_daemon(&sock.0, |_| {
        Response::Ports(vec![sample_port("nginx-server", "198.18.1.2")])
    });
    let out = vswitchctl(&["port", "list"])
        .env("VSWITCH_SOCKET", &sock.0)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "NAME          NAMESPACE  IP          MAC                NODE   STATUS\n\
         nginx-server  default    198.18.1.2  0a:58:c6:12:01:02  node1  Running\n"
    );
}

#[test]
fn port_add_and_del_print_confirmations() {
    let sock = SocketPath::new("add-del");
    let seen = fake_daemon(&sock.0, |req| match req {
        Request::PortAdd(spec) => Response::Port(sample_port(&spec.name, "198.18.1.2")),
        _ => Response::Done,
    });
    let out = run_at(
        &sock.0,
        &[
            "port",
            "add",
            "nginx-server",
            "--netns",
            "nginx",
            "--label",
            "app=nginx",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "port default/nginx-server added: 198.18.1.2/24 0a:58:c6:12:01:02\n"
    );
    let out = run_at(&sock.0, &["port", "del", "x", "--namespace", "web"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "port web/x deleted\n");
    let seen = seen.lock().unwrap();
    match &seen[0] {
        Request::PortAdd(spec) => assert_eq!(spec.labels["app"], "nginx"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        seen[1],
        Request::PortDel(PortKey {
            name: "x".into(),
            namespace: "web".into()
        })
    );
}

#[test]
fn daemon_error_exits_1_and_names_the_field() {
    let sock = SocketPath::new("daemon-error");
    fake_daemon(&sock.0, |_| {
        Response::Error(ErrorBody {
            kind: Default::default(),
            field: Some("netns".into()),
            message: "no network namespace `nope`".into(),
        })
    });
    let out = run_at(&sock.0, &["port", "add", "bb", "--netns", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "error: netns: no network namespace `nope`\n");
    assert!(out.stdout.is_empty());
}

#[test]
fn malformed_mac_exits_2_before_connecting() {
    let sock = SocketPath::new("bad-mac");
    // A listener that never accepts: a connection attempt would still be queued in its backlog.
    let listener = UnixListener::bind(&sock.0).unwrap();
    let out = run_at(
        &sock.0,
        &["port", "add", "bb", "--netns", "n", "--mac", "0a:58:zz"],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: mac: malformed MAC address `0a:58:zz`"),
        "{err}"
    );
    listener.set_nonblocking(true).unwrap();
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("vswitchctl connected anyway: {other:?}"),
    }
}

#[test]
fn missing_socket_exits_1_with_hint() {
    let sock = SocketPath::new("missing");
    let out = run_at(&sock.0, &["node", "show"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let want = format!(
        "error: cannot connect to vswitchd at {}: ",
        sock.0.display()
    );
    assert!(err.starts_with(&want), "{err}");
    assert!(err.trim_end().ends_with("(is vswitchd running?)"), "{err}");
}

#[test]
fn silent_daemon_times_out() {
    let sock = SocketPath::new("silent");
    let _listener = UnixListener::bind(&sock.0).unwrap(); // never answers
    let start = Instant::now();
    let out = run_at(&sock.0, &["--timeout", "1", "peer", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        stderr(&out).starts_with("error: talking to vswitchd: "),
        "{}",
        stderr(&out)
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = vswitchctl(&["port", "frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = vswitchctl(&[
        "peer",
        "add",
        "n2",
        "--underlay",
        "n2.lan",
        "--pod-cidr",
        "10.1.0.0/24",
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: underlay: "),
        "{}",
        stderr(&out)
    );
}

fn sample_service() -> vswitch_proto::ServiceInfo {
    vswitch_proto::ServiceInfo {
        name: "nginx-service".into(),
        namespace: "default".into(),
        vip: "198.19.96.20".into(),
        ports: vec![vswitch_proto::ServicePortInfo {
            name: "http".into(),
            port: 80,
            target_port: 8080,
            protocol: "tcp".into(),
        }],
        selector: [("app".to_string(), "nginx".to_string())].into(),
        endpoints: vec![],
        affinity_seconds: None,
        dns_names: vec!["nginx-service.default.svc.cluster.local".into()],
    }
}

#[test]
fn service_commands_against_a_daemon() {
    let sock = SocketPath::new("service");
    let seen = fake_daemon(&sock.0, |req| match req {
        Request::ServiceAdd(spec) if spec.vip.as_deref() == Some("198.19.0.9") => {
            Response::Error(ErrorBody {
                kind: vswitch_proto::ErrorKind::Invalid,
                field: Some("vip".into()),
                message: "198.19.0.9 is outside the service CIDR 198.19.96.0/20".into(),
            })
        }
        Request::ServiceAdd(_) => Response::Service(sample_service()),
        Request::ServiceList => Response::Services(vec![sample_service()]),
        _ => Response::Done,
    });
    let add = |vip: &str| {
        run_at(
            &sock.0,
            &[
                "service",
                "add",
                "nginx-service",
                "--vip",
                vip,
                "--port",
                "http:80:8080",
                "--selector",
                "app=nginx",
            ],
        )
    };
    let out = add("198.19.96.20");
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "service default/nginx-service added: vip 198.19.96.20 ports http:80->8080/TCP \
         endpoints <none>\n"
    );
    let out = add("198.19.0.9");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: vip: 198.19.0.9 is outside the service CIDR 198.19.96.0/20\n"
    );
    let out = run_at(&sock.0, &["service", "list"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "NAME           NAMESPACE  VIP           PORTS              ENDPOINTS\n\
         nginx-service  default    198.19.96.20  http:80->8080/TCP  <none>\n"
    );
    let out = run_at(&sock.0, &["-o", "json", "service", "list"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(v[0]["ports"][0]["target_port"], 8080);
    let out = run_at(&sock.0, &["service", "del", "nginx-service"]);
    assert_eq!(stdout(&out), "service default/nginx-service deleted\n");
    // A malformed port spec never reaches the daemon.
    let n = seen.lock().unwrap().len();
    let out = run_at(
        &sock.0,
        &[
            "service",
            "add",
            "s",
            "--vip",
            "198.19.96.21",
            "--port",
            "80/sctp",
            "--selector",
            "a=b",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: port: "),
        "{}",
        stderr(&out)
    );
    assert_eq!(seen.lock().unwrap().len(), n);
}

/// The tutorial's service.yaml.
const SERVICE_YAML: &str = include_str!("../../examples/service.yaml");

#[test]
fn apply_of_a_bad_file_exits_2_naming_the_document_without_a_daemon() {
    let bad = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n---\n{}",
        SERVICE_YAML.replace("port: 80", "port: 70000")
    );
    let file = TempFile::new("bad", &bad);
    // No daemon listens on this socket: the file is refused before any connection.
    let sock = SocketPath::new("apply-bad");
    for verb in ["apply", "delete"] {
        let out = run_at(&sock.0, &[verb, "-f", file.0.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{verb}");
        assert_eq!(
            stderr(&out),
            "error: document 2 (Service nginx-service): spec.ports[0].port: must be 1-65535 \
             (got 70000)\n"
        );
        assert!(out.stdout.is_empty());
    }
    let out = run_at(&sock.0, &["apply", "-f", "/nonexistent/service.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: -f: cannot read /nonexistent/service.yaml: "),
        "{}",
        stderr(&out)
    );
}

#[test]
fn apply_and_delete_from_stdin_against_a_daemon() {
    use vswitch_proto::{Action, ObjectKey, ObjectResult, ServiceKey};
    let sock = SocketPath::new("apply");
    let svc = ObjectKey::Service(ServiceKey {
        name: "nginx-service".into(),
        namespace: "default".into(),
    });
    let seen = fake_daemon(&sock.0, move |req| match req {
        Request::Apply { objects } if objects.len() == 1 => Response::Objects(vec![ObjectResult {
            object: objects[0].key(),
            action: Action::Created,
        }]),
        Request::Apply { .. } => Response::Error(ErrorBody {
            kind: vswitch_proto::ErrorKind::Exists,
            field: Some("objects[1].spec.clusterIP".into()),
            message: "Service nginx-service: 198.19.96.20 is already the VIP of service \
                      default/web"
                .into(),
        }),
        Request::Delete { objects } => Response::Objects(
            objects
                .iter()
                .map(|o| ObjectResult {
                    object: o.clone(),
                    action: if o.name() == "nginx-service" {
                        Action::Deleted
                    } else {
                        Action::NotFound
                    },
                })
                .collect(),
        ),
        _ => Response::Done,
    });
    let with_stdin = |args: &[&str], text: &str| {
        let mut cmd = vswitchctl(&["--socket", sock.0.to_str().unwrap()]);
        let mut child = cmd
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = with_stdin(&["apply", "-f", "-"], SERVICE_YAML);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "service/nginx-service created\n");
    // The daemon's error about an object is told as its document.
    let two =
        format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n---\n{SERVICE_YAML}");
    let out = with_stdin(&["apply", "-f", "-"], &two);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: document 2 (Service nginx-service): spec.clusterIP: 198.19.96.20 is already \
         the VIP of service default/web\n"
    );
    let out = with_stdin(&["delete", "-f", "-"], &two);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "service \"nginx-service\" deleted\n");
    assert_eq!(stderr(&out), "error: namespaces \"team-a\" not found\n");
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.last().unwrap(),
        &Request::Delete {
            objects: vec![
                ObjectKey::Namespace {
                    name: "team-a".into()
                },
                svc
            ]
        }
    );
}
