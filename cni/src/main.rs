//! The `vswitch-cni` binary: the process around [`vswitch_cni::plugin::run`] (environment,
//! stdin, stdout, exit status). The contract is in the library's documentation.

#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::process::ExitCode;

/// The largest network configuration read from stdin.
const MAX_STDIN: u64 = 4 << 20;

fn read_stdin() -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin().take(MAX_STDIN + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_STDIN {
        return Err(std::io::Error::other(format!(
            "the network configuration is larger than {MAX_STDIN} bytes"
        )));
    }
    Ok(buf)
}

fn main() -> ExitCode {
    let outcome = vswitch_cni::plugin::run(
        |k| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned()),
        read_stdin(),
        |conf| vswitch_cni::daemon::Socket::new(&conf.socket, conf.timeout),
    );
    if !outcome.stdout.is_empty() {
        let mut out = std::io::stdout().lock();
        // Nothing useful can be done if stdout is gone: the exit status still tells.
        let _ = writeln!(out, "{}", outcome.stdout).and_then(|()| out.flush());
    }
    if outcome.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
