//! Processes the testbed runs and stops: background servers ([`Bg`], nginx in a pod) and the
//! helpers the daemons share with them (dying with the test process, SIGTERM then SIGKILL).

use super::host::{exec_in, which};
use super::{Pod, Shared, Testbed};
use crate::cmd::{self, OutputExt};
use nix::sys::signal::Signal;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// A running background process, owned by the testbed's resources.
pub(super) struct BgProc {
    pub(super) label: String,
    pub(super) child: Child,
}

/// A background process (a server): killed when dropped, or when the testbed is.
pub struct Bg {
    sh: Arc<Shared>,
    id: u64,
    /// Its pid.
    pub pid: u32,
    /// Its label (used in log file names).
    pub label: String,
    /// Its stdout and stderr.
    pub log: PathBuf,
}

impl Drop for Bg {
    fn drop(&mut self) {
        self.sh.stop_bg(self.id);
    }
}

impl Bg {
    /// True while the process runs.
    pub fn is_running(&self) -> bool {
        let mut res = self.sh.res();
        match res.bg.get_mut(&self.id) {
            Some(p) => matches!(p.child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Its output so far.
    pub fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Shared {
    fn stop_bg(&self, id: u64) {
        let proc = self.res().bg.remove(&id);
        if let Some(mut p) = proc {
            terminate(&mut p.child, Duration::from_secs(2));
        }
    }
}

impl Testbed {
    /// Runs `prog args` in background in netns `netns`, output to a log in the temp dir; the
    /// process is killed when the returned guard (or the testbed) is dropped. Call it from the
    /// test's own thread: the process gets SIGTERM when the thread that spawned it ends.
    pub fn spawn_in(&self, netns: &str, label: &str, prog: &str, args: &[&str]) -> Bg {
        spawn_bg(&self.sh, netns, label, prog, args)
    }

    /// Starts nginx in `pod` (its own config, logs and page in the temp dir; `listen 80`,
    /// page "Welcome to nginx!") and waits until it serves from inside the pod.
    pub fn start_nginx(&self, pod: &Pod) -> Bg {
        self.start_nginx_in(&pod.netns, &pod.name)
    }

    /// [`Testbed::start_nginx`] in network namespace `netns` (a pod the testbed did not
    /// attach, e.g. one the CNI plugin did); `name` names its directory, page and log.
    pub fn start_nginx_in(&self, netns: &str, name: &str) -> Bg {
        if which("nginx").is_none() {
            panic!("nginx is not installed: run `make deps`");
        }
        let dir = self.sh.dir.join(format!("nginx-{name}"));
        let html = dir.join("html");
        fs::create_dir_all(dir.join("tmp")).expect("creating the nginx dir");
        fs::create_dir_all(&html).expect("creating the nginx html dir");
        fs::write(html.join("index.html"), nginx_page(name)).expect("writing the page");
        let d = dir.display();
        let conf = format!(
            "user root;\n\
             worker_processes 1;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n\
             \x20   access_log {d}/access.log;\n\
             \x20   client_body_temp_path {d}/tmp/body;\n\
             \x20   proxy_temp_path {d}/tmp/proxy;\n\
             \x20   default_type text/html;\n\
             \x20   server {{\n\
             \x20       listen 80;\n\
             \x20       server_name _;\n\
             \x20       root {d}/html;\n\
             \x20       index index.html;\n\
             \x20   }}\n\
             }}\n"
        );
        let conf_path = dir.join("nginx.conf");
        fs::write(&conf_path, conf).expect("writing nginx.conf");
        let conf_s = conf_path.display().to_string();
        let err_s = dir.join("error.log").display().to_string();
        let prefix_s = format!("{d}/");
        let bg = self.spawn_in(
            netns,
            &format!("nginx-{name}"),
            "nginx",
            &[
                "-p",
                &prefix_s,
                "-e",
                &err_s,
                "-c",
                &conf_s,
                "-g",
                "daemon off;",
            ],
        );
        self.sh
            .res()
            .logs
            .push((format!("nginx error.log of {name}"), dir.join("error.log")));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = exec_in(
                netns,
                Duration::from_secs(3),
                "busybox",
                &["wget", "-q", "-O-", "http://127.0.0.1/"],
            );
            if out.status.success() && out.stdout_str().contains("Welcome to nginx") {
                return bg;
            }
            if !bg.is_running() || Instant::now() >= deadline {
                panic!(
                    "nginx in {name} ({netns}) did not come up (running: {}): {}\n\
                     nginx output:\n{}\nerror.log:\n{}",
                    bg.is_running(),
                    out.describe(),
                    bg.output(),
                    fs::read_to_string(&err_s).unwrap_or_default()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

pub(super) fn spawn_bg(
    sh: &Arc<Shared>,
    netns: &str,
    label: &str,
    prog: &str,
    args: &[&str],
) -> Bg {
    let mut res = sh.res();
    let id = res.next_bg;
    res.next_bg += 1;
    let log = sh.dir.join(format!("bg{id}-{label}.log"));
    let file = fs::File::create(&log).expect("creating a background log");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns, prog])
        .args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("dup log fd"))
        .stderr(file);
    die_with_parent(&mut cmd);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {}: {e}", cmd::render(prog, args)));
    let pid = child.id();
    res.bg.insert(
        id,
        BgProc {
            label: label.to_string(),
            child,
        },
    );
    res.logs.push((format!("{label} in {netns}"), log.clone()));
    Bg {
        sh: sh.clone(),
        id,
        pid,
        label: label.to_string(),
        log,
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status when it exited by
/// itself within the grace period.
pub(super) fn terminate(child: &mut Child, grace: Duration) -> Option<std::process::ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    cmd::kill_pid(child.id() as libc::pid_t, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Sets PR_SET_PDEATHSIG so that a child outliving a killed test process gets SIGTERM.
pub(super) fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only calls prctl(2) (through nix,
    // which allocates nothing), which is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
            Ok(())
        });
    }
}

fn nginx_page(pod: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n<body>\n\
         <h1>Welcome to nginx!</h1>\n<p>If you see this page, the nginx web server is \
         successfully installed and working.</p>\n<p>Served by pod {pod} through vswitch.</p>\n\
         </body>\n</html>\n"
    )
}
