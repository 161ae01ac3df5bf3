//! Prometheus metrics (issue 14): a node with two pods runs `vswitchd --metrics-addr
//! 127.0.0.1:PORT` inside its namespace, and a real Prometheus (Debian's `prometheus`),
//! started by the test in the same namespace with a generated configuration (scraping every
//! second, its TSDB in the testbed's temp dir), scrapes it. A pod sends frames with forged
//! sources and fetches a file from the other pod's nginx; Prometheus' HTTP API must then
//! report the spoof drops (`vswitch_drop_count_total{reason="spoofed_ip",direction="from_pod"}`)
//! and both pods' byte counters with the values `vswitchctl stats` reports. `promtool check
//! metrics` must accept the endpoint's text, and the daemon must refuse a non-loopback
//! `--metrics-addr` without `--metrics-allow-remote`.
//!
//! Prometheus is a background process of the testbed: killed when the test ends, on failure
//! and panic too, and its data removed with the temp dir.

use serde_json::Value;
use std::fs;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};
use vswitch_e2e::testbed::which;
use vswitch_e2e::{run_with_timeout, Node, NodeOpts, OutputExt, Testbed};

/// The metrics endpoint inside the node's namespace.
const METRICS_ADDR: &str = "127.0.0.1:9419";
/// Prometheus' web address inside the node's namespace.
const PROM_ADDR: &str = "127.0.0.1:9090";
/// How long Prometheus may take to start, and then to report the expected values.
const WAIT: Duration = Duration::from_secs(20);
/// The file the client fetches from the server's nginx.
const BLOB_BYTES: usize = 1 << 20;

#[test]
fn prometheus_scrapes_drops_and_port_bytes() {
    let Some(tb) = Testbed::new("metrics") else {
        return;
    };
    for prog in ["prometheus", "promtool"] {
        assert!(
            which(prog).is_some(),
            "{prog} is not installed: run `make deps` (Debian package prometheus)"
        );
    }
    let opts = NodeOpts::default()
        .without_underlay()
        .arg("--metrics-addr")
        .arg(METRICS_ADDR);
    let node = tb.add_node(1, opts);
    let client = tb.add_pod(&node, "client", &[]);
    let server = tb.add_pod(&node, "server", &[]);
    let _nginx = tb.start_nginx(&server);
    let html = tb.dir().join("nginx-server").join("html");
    fs::write(html.join("blob"), vec![0x5au8; BLOB_BYTES]).expect("writing the blob");

    let _prom = start_prometheus(&tb, &node);

    // Forged sources from the client: counted as spoofed_* drops from the pod.
    let pktgen = tb.bin("vswitch-pktgen").display().to_string();
    let dst = format!("{}:0", server.ip);
    let args = [
        "attack",
        "forged",
        "--dst",
        &dst,
        "--count",
        "60",
        "--duration",
        "2",
    ];
    let out = client.exec_timeout(Duration::from_secs(10), &pktgen, &args);
    assert!(out.status.success(), "pktgen: {}", out.describe());
    // A transfer between the pods.
    let url = format!("http://{}/blob", server.ip);
    let got = client.wget(&url);
    assert!(got.status.success(), "wget {url}: {}", got.describe());
    assert_eq!(got.stdout.len(), BLOB_BYTES, "the blob arrived whole");

    // Prometheus reports what `stats` reports, once it scraped after the traffic.
    let drop_q = r#"vswitch_drop_count_total{reason="spoofed_ip",direction="from_pod"}"#;
    let bytes_q = |port: &str, dir: &str| {
        format!(
            r#"vswitch_port_bytes_total{{namespace="default",port="{port}",direction="{dir}"}}"#
        )
    };
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = node.stats();
        let port = |name: &str, field: &str| {
            stats["ports"]
                .as_array()
                .and_then(|a| a.iter().find(|p| p["name"] == name))
                .and_then(|p| p[field].as_u64())
                .unwrap_or_else(|| panic!("no {name}.{field} in stats: {stats}"))
        };
        let want = [
            (
                drop_q.to_string(),
                stats["drops"]["spoofed_ip"].as_u64().unwrap(),
            ),
            (bytes_q("server", "rx"), port("server", "rx_bytes")),
            (bytes_q("client", "tx"), port("client", "tx_bytes")),
        ];
        let got: Vec<Option<u64>> = want.iter().map(|(q, _)| query(&node, q)).collect();
        let matching = want.iter().zip(&got).all(|((_, w), g)| Some(*w) == *g);
        if matching {
            let [(_, drops), (_, server_rx), (_, client_tx)] = &want;
            assert!(*drops > 0, "no spoofed_ip drops counted");
            assert!(
                *server_rx >= BLOB_BYTES as u64 && *client_tx >= BLOB_BYTES as u64,
                "the transfer is not in the byte counters: {want:?}"
            );
            println!("Prometheus agrees with stats: {want:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not report stats' values within {WAIT:?}: want {want:?}, got {got:?}\n\
             targets: {}",
            prom_get(&node, "/api/v1/targets").unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(250));
    }

    // The endpoint's text passes promtool's checks.
    let text = fetch(&node, &format!("http://{METRICS_ADDR}/metrics"))
        .expect("GET /metrics from inside the node");
    let path = tb.dir().join("metrics.txt");
    fs::write(&path, &text).expect("writing the scrape");
    let script = format!("promtool check metrics < '{}'", path.display());
    let check =
        run_with_timeout(Command::new("sh").args(["-c", &script]), WAIT).expect("running promtool");
    assert!(
        check.status.success(),
        "promtool check metrics: {}\n{text}",
        check.describe()
    );

    // A non-loopback address needs --metrics-allow-remote: a clear error, non-zero exit.
    let scratch = tb.dir().join("remote").display().to_string();
    let vswitchd = tb.bin("vswitchd").display().to_string();
    let out = node.exec(
        &vswitchd,
        &[
            "--node",
            "remote",
            "--pod-cidr",
            "198.18.9.0/24",
            "--socket",
            &format!("{scratch}/s.sock"),
            "--state-dir",
            &scratch,
            "--metrics-addr",
            "198.19.0.1:9419",
        ],
    );
    let err = out.stderr_str();
    assert!(
        !out.status.success()
            && err.contains("--metrics-addr")
            && err.contains("--metrics-allow-remote"),
        "a remote --metrics-addr was not refused: {}",
        out.describe()
    );
}

/// Starts Prometheus in `node`'s namespace, scraping the node's daemon every second, and
/// waits until it is ready.
fn start_prometheus(tb: &Testbed, node: &Node) -> vswitch_e2e::Bg {
    let dir = tb.dir().join("prometheus");
    fs::create_dir_all(&dir).expect("creating Prometheus' directory");
    let config = dir.join("prometheus.yml");
    fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: {}-vswitchd\n    static_configs:\n      \
             - targets: ['{METRICS_ADDR}']\n",
            tb.prefix()
        ),
    )
    .expect("writing prometheus.yml");
    let args = [
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", dir.join("data").display()),
        format!("--web.listen-address={PROM_ADDR}"),
        "--log.level=warn".to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let bg = tb.spawn_in(&node.netns, "prometheus", "prometheus", &args);
    let deadline = Instant::now() + WAIT;
    while prom_get(node, "/-/ready").is_none() {
        assert!(
            bg.is_running(),
            "prometheus exited; its output:\n{}",
            bg.output()
        );
        assert!(
            Instant::now() < deadline,
            "prometheus was not ready within {WAIT:?}; its output:\n{}",
            bg.output()
        );
        thread::sleep(Duration::from_millis(200));
    }
    bg
}

/// The value of instant query `q` (one series), if Prometheus has it.
fn query(node: &Node, q: &str) -> Option<u64> {
    let body = prom_get(node, &format!("/api/v1/query?query={}", encode(q)))?;
    let v: Value = serde_json::from_str(&body).ok()?;
    let result = v["data"]["result"].as_array()?;
    match result.as_slice() {
        [one] => one["value"][1]
            .as_str()?
            .parse::<f64>()
            .ok()
            .map(|f| f as u64),
        _ => None,
    }
}

/// GET `path` of Prometheus' web address, from inside the node.
fn prom_get(node: &Node, path: &str) -> Option<String> {
    fetch(node, &format!("http://{PROM_ADDR}{path}"))
}

/// `busybox wget -qO- URL` inside the node; `None` when it fails.
fn fetch(node: &Node, url: &str) -> Option<String> {
    let out = node.exec("busybox", &["wget", "-q", "-O-", url]);
    out.status.success().then(|| out.stdout_str())
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A tmux session, killed when dropped (on failure and panic too).
struct Tmux(String);

impl Tmux {
    fn run(args: &[&str]) -> std::process::Output {
        run_with_timeout(Command::new("tmux").args(args), Duration::from_secs(10))
            .expect("running tmux")
    }

    /// What the session's pane shows now.
    fn screen(&self) -> String {
        Tmux::run(&["capture-pane", "-p", "-t", &self.0]).stdout_str()
    }

    fn alive(&self) -> bool {
        Tmux::run(&["has-session", "-t", &self.0]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Tmux::run(&["kill-session", "-t", &self.0]);
    }
}

/// Issue 14, acceptance 5: `vswitchctl top` in a terminal (tmux, 200x50) shows the rates
/// of a running transfer (an iperf3 of 8 s between two pods) and quits on `q`; without a
/// terminal it prints plain lines, `--count` of them.
#[test]
fn top_shows_the_rates_of_a_transfer_and_quits_on_q() {
    let Some(tb) = Testbed::new("top") else {
        return;
    };
    assert!(
        which("tmux").is_some(),
        "tmux is not installed: run `make deps`"
    );
    let node = tb.add_node(1, NodeOpts::default().without_underlay());
    let client = tb.add_pod(&node, "client", &[]);
    let server = tb.add_pod(&node, "server", &[]);
    let _iperf_server = server.spawn("iperf3-server", "iperf3", &["-s", "-1", "-p", "5201"]);
    server.wait_listening(5201);
    let dst = server.ip.to_string();
    let _iperf = client.spawn(
        "iperf3-client",
        "iperf3",
        &["-c", &dst, "-p", "5201", "-t", "8", "-b", "200M"],
    );
    let ctl = tb.bin("vswitchctl").display().to_string();
    let socket = node.socket.display().to_string();
    let session = Tmux(format!("{}-top", tb.prefix()));
    let cmdline = format!("{ctl} --socket {socket} top");
    let started = Tmux::run(&[
        "new-session",
        "-d",
        "-s",
        &session.0,
        "-x",
        "200",
        "-y",
        "50",
        &cmdline,
    ]);
    assert!(started.status.success(), "tmux: {}", started.describe());
    // The client's row shows megabytes per second received from it (the transfer).
    let is_busy = |screen: &str| {
        screen.lines().any(|l| {
            l.contains("default/client")
                && l.split_whitespace()
                    .any(|w| w.ends_with('M') || w.ends_with('G'))
        })
    };
    let screen = vswitch_e2e::wait_for("top showing the transfer", Duration::from_secs(8), || {
        let s = session.screen();
        if is_busy(&s) && s.contains("conntrack") && s.contains("Peers") {
            Ok(s)
        } else {
            Err(s)
        }
    });
    println!("{screen}");
    assert!(session.alive(), "top ended by itself");
    let q = Tmux::run(&["send-keys", "-t", &session.0, "q"]);
    assert!(q.status.success(), "tmux send-keys: {}", q.describe());
    vswitch_e2e::wait_for("top quitting on q", Duration::from_secs(5), || {
        if session.alive() {
            Err(session.screen())
        } else {
            Ok(())
        }
    });

    // Without a terminal: plain lines, --count refreshes.
    let text = node.ctl_ok(&["top", "--count", "2", "--interval", "0.5"]);
    assert_eq!(
        text.lines().filter(|l| l.contains(" conntrack ")).count(),
        2,
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("port default/client rx ")),
        "{text}"
    );
}
