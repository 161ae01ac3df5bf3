//! Running commands with a deadline.
//!
//! Every command a test runs is bounded in time: [`run_with_timeout`] kills the command's whole
//! process group when the deadline passes, so a hung `ping`, `wget` or `vswitchctl` fails the
//! test instead of hanging the suite.

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The default deadline of a command run inside a pod or node.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// How long to wait for output pipes after the command ended (a grandchild that escaped the
/// process group may hold them open).
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// Runs `cmd` (stdin closed, stdout and stderr captured) in its own process group and waits at
/// most `timeout`. On timeout the group gets SIGKILL, the status is the kill signal and stderr
/// ends with a `[harness] killed after ...` line.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> std::io::Result<Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn()?;
    let pid = child.id() as libc::pid_t;
    let stdout = read_in_background(child.stdout.take());
    let stderr = read_in_background(child.stderr.take());

    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            kill_group(pid, libc::SIGKILL);
            break child.wait()?;
        }
        thread::sleep(Duration::from_millis(5));
    };
    // Whatever the command left behind in its group goes too.
    kill_group(pid, libc::SIGKILL);
    let stdout = stdout.recv_timeout(PIPE_GRACE).unwrap_or_default();
    let mut stderr = stderr.recv_timeout(PIPE_GRACE).unwrap_or_default();
    if timed_out {
        stderr.extend_from_slice(
            format!("\n[harness] killed after {:.1} s\n", timeout.as_secs_f64()).as_bytes(),
        );
    }
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

fn read_in_background(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
    }
    rx
}

/// Sends `sig` to the process group `pgid` (errors ignored: the group may be gone; a signal
/// number that is no signal sends nothing).
pub fn kill_group(pgid: libc::pid_t, sig: libc::c_int) {
    if pgid > 0 {
        if let Ok(sig) = Signal::try_from(sig) {
            let _ = killpg(Pid::from_raw(pgid), sig);
        }
    }
}

/// Sends `sig` to the process `pid` (errors ignored: it may be gone; a signal number that is
/// no signal sends nothing).
pub fn kill_pid(pid: libc::pid_t, sig: libc::c_int) {
    if pid > 0 {
        if let Ok(sig) = Signal::try_from(sig) {
            let _ = kill(Pid::from_raw(pid), sig);
        }
    }
}

/// True when a process with this pid exists.
pub fn pid_alive(pid: libc::pid_t) -> bool {
    // Signal "0" (None) only checks for existence and permission.
    pid > 0 && kill(Pid::from_raw(pid), None).is_ok()
}

/// Readable accessors and assertions on a command's [`Output`].
pub trait OutputExt {
    /// Stdout as (lossy) UTF-8.
    fn stdout_str(&self) -> String;
    /// Stderr as (lossy) UTF-8.
    fn stderr_str(&self) -> String;
    /// The exit code, or `None` when a signal ended the command.
    fn code(&self) -> Option<i32>;
    /// A one-paragraph description for assertion messages.
    fn describe(&self) -> String;
}

impl OutputExt for Output {
    fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    fn code(&self) -> Option<i32> {
        self.status.code()
    }

    fn describe(&self) -> String {
        format!(
            "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            describe_status(&self.status),
            self.stdout_str().trim_end(),
            self.stderr_str().trim_end()
        )
    }
}

fn describe_status(status: &ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "unknown status".to_string(),
    }
}

/// Renders a command line for messages: `prog arg arg`.
pub fn render(prog: &str, args: &[&str]) -> String {
    std::iter::once(prog)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let out = run_with_timeout(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(out.stdout_str(), "out\n");
        assert_eq!(out.stderr_str(), "err\n");
        assert_eq!(out.code(), Some(3));
    }

    #[test]
    fn kills_on_timeout_including_grandchildren() {
        let start = Instant::now();
        let out = run_with_timeout(
            Command::new("sh").args(["-c", "sleep 30 & sleep 30"]),
            Duration::from_millis(300),
        )
        .unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert!(!out.status.success());
        assert_eq!(out.status.signal(), Some(libc::SIGKILL));
        assert!(out.stderr_str().contains("killed after"));
    }
}
