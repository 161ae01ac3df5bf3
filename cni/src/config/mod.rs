//! What the runtime hands the plugin: the `CNI_*` environment variables ([`env`]: [`Env`],
//! checked with the shape checks of [`vswitch_proto::validate`] that vswitchd runs too) and
//! the network configuration on stdin ([`netconf`]: [`NetConf`]), parsed and validated. This
//! file holds what both speak of: the spec versions and the commands.

mod env;
mod netconf;
#[cfg(test)]
mod tests;

pub use env::{CniArgs, Env, Target};
pub use netconf::{reply_version, NetConf, PrevResult, DEFAULT_TIMEOUT};

/// The CNI spec versions this plugin speaks; results are written in the version asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CniVersion {
    /// 0.4.0: results carry `ips[].version`; CHECK exists, STATUS and GC do not.
    V0_4_0,
    /// 1.0.0: no `ips[].version`.
    V1_0_0,
    /// 1.1.0: interfaces carry `mtu`; STATUS and GC exist.
    V1_1_0,
}

impl CniVersion {
    /// The newest version, answered when the runtime does not say.
    pub const LATEST: CniVersion = CniVersion::V1_1_0;
    /// Every supported version, oldest first (VERSION's `supportedVersions`).
    pub const SUPPORTED: [CniVersion; 3] =
        [CniVersion::V0_4_0, CniVersion::V1_0_0, CniVersion::V1_1_0];

    /// Parses `"0.4.0"`, `"1.0.0"` or `"1.1.0"`.
    pub fn parse(s: &str) -> Option<CniVersion> {
        Self::SUPPORTED.into_iter().find(|v| v.as_str() == s)
    }

    /// The version string.
    pub fn as_str(self) -> &'static str {
        match self {
            CniVersion::V0_4_0 => "0.4.0",
            CniVersion::V1_0_0 => "1.0.0",
            CniVersion::V1_1_0 => "1.1.0",
        }
    }

    fn supported_list() -> String {
        Self::SUPPORTED.map(CniVersion::as_str).join(", ")
    }
}

/// `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach a container.
    Add,
    /// Detach a container (idempotent).
    Del,
    /// Verify an attachment.
    Check,
    /// Is the plugin ready for ADD? (1.1.0)
    Status,
    /// Which spec versions are supported.
    Version,
    /// Remove attachments not listed as valid. (1.1.0)
    Gc,
}

impl Command {
    const ALL: [Command; 6] = [
        Command::Add,
        Command::Del,
        Command::Check,
        Command::Status,
        Command::Version,
        Command::Gc,
    ];

    fn parse(s: &str) -> Option<Command> {
        Self::ALL.into_iter().find(|c| c.name() == s)
    }

    /// The command as `CNI_COMMAND` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Version => "VERSION",
            Command::Gc => "GC",
        }
    }

    /// The oldest spec version in which the runtime may send this command.
    pub fn since(self) -> CniVersion {
        match self {
            Command::Status | Command::Gc => CniVersion::V1_1_0,
            _ => CniVersion::V0_4_0,
        }
    }
}
