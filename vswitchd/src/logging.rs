//! The daemon's logs: a tracing subscriber on stderr, as text (default) or one JSON object
//! per line (`--log-format json`), whose filter `vswitchctl log-level` replaces at run
//! time (`tracing_subscriber::reload`). The starting filter is `VSWITCH_LOG`, else `info`.

use std::sync::{Mutex, OnceLock};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (tracing-subscriber's json format).
    Json,
}

struct Control {
    handle: reload::Handle<EnvFilter, Registry>,
    /// The directive in force (EnvFilter's Display is not the text it was given).
    current: Mutex<String>,
}

static CONTROL: OnceLock<Control> = OnceLock::new();

/// Parses a filter directive (`debug`, `info,vswitchd::node=debug`, ...); the error names
/// the directive.
pub fn parse_filter(level: &str) -> Result<EnvFilter, String> {
    vswitch_proto::validate::log_filter(level).map_err(|e| e.message)?;
    EnvFilter::builder()
        .with_regex(false)
        .parse(level)
        .map_err(|e| format!("`{level}` is not a log filter: {e}"))
}

/// The layers for `format` writing to `w`, under a reloadable filter: what [`init`]
/// installs (the tests build it on a buffer).
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    w: W,
    ansi: bool,
) -> (
    impl tracing::Subscriber + Send + Sync,
    reload::Handle<EnvFilter, Registry>,
)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(w);
    let fmt = match format {
        LogFormat::Text => fmt.with_ansi(ansi).boxed(),
        LogFormat::Json => fmt.json().with_ansi(false).boxed(),
    };
    (Registry::default().with(filter).with(fmt), handle)
}

use tracing_subscriber::Layer as _;

/// Installs the global subscriber on stderr.
pub fn init(format: LogFormat) {
    let env = std::env::var("VSWITCH_LOG").ok();
    let (filter, text) = match env.as_deref().map(parse_filter) {
        Some(Ok(f)) => (f, env.unwrap_or_default()),
        _ => (EnvFilter::new("info"), "info".to_string()),
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (sub, handle) = subscriber(format, filter, std::io::stderr, ansi);
    sub.init();
    let _ = CONTROL.set(Control {
        handle,
        current: Mutex::new(text),
    });
}

/// `log-level`: replaces the filter; returns the one it replaced.
pub fn set_level(level: &str) -> Result<String, String> {
    let filter = parse_filter(level)?;
    let c = CONTROL
        .get()
        .ok_or_else(|| "the log filter cannot be changed (no subscriber)".to_string())?;
    c.handle
        .reload(filter)
        .map_err(|e| format!("reloading the log filter: {e}"))?;
    let mut cur = c.current.lock().unwrap_or_else(|e| e.into_inner());
    Ok(std::mem::replace(&mut *cur, level.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    #[test]
    fn a_bad_filter_is_named() {
        for bad in ["", "loud", "info,vswitchd=loud", "=debug"] {
            let e = parse_filter(bad).unwrap_err();
            assert!(e.contains(&format!("`{bad}`")), "{e}");
        }
        for good in [
            "debug",
            "info,vswitchd::node=debug",
            "warn",
            "vswitchd=trace",
        ] {
            parse_filter(good).unwrap();
        }
    }

    #[test]
    fn json_lines_parse_and_the_filter_reloads() {
        let buf = Buf::default();
        let (sub, handle) = subscriber(
            LogFormat::Json,
            parse_filter("info").unwrap(),
            buf.clone(),
            false,
        );
        tracing::subscriber::with_default(sub, || {
            tracing::info!(port = "a", "attached");
            tracing::debug!("hidden");
            handle.reload(parse_filter("debug").unwrap()).unwrap();
            tracing::debug!(n = 3, "shown");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["fields"]["message"], "attached");
        assert_eq!(lines[0]["fields"]["port"], "a");
        assert_eq!(lines[1]["fields"]["message"], "shown");
        assert_eq!(lines[1]["fields"]["n"], 3);
    }
}
