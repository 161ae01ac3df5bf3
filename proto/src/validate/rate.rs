//! Rate limits: `PPS[/BURST]`, the daemon's `--arp-limit` and `--broadcast-limit`.

use super::Invalid;

/// Highest rate a limit may have, frames per second (the datapath's bucket works in
/// nanoseconds; vswitchd's `checked` asserts that the two constants agree).
pub const MAX_RATE: u32 = 1_000_000;
/// Highest burst a limit may have, frames.
pub const MAX_BURST: u32 = 1_000_000;

/// A parsed rate limit: `per_sec` frames per second, `burst` back to back; `per_sec == 0`
/// (with `burst == 1`) means no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateSpec {
    /// Frames per second (0: no limit).
    pub per_sec: u32,
    /// Frames accepted back to back (at least 1).
    pub burst: u32,
}

/// Parses `PPS[/BURST]` (`0` = unlimited; BURST defaults to twice PPS, at most
/// [`MAX_BURST`]); PPS is at most [`MAX_RATE`], BURST at least 1.
pub fn rate_limit(field: &'static str, s: &str) -> Result<RateSpec, Invalid> {
    let num = |v: &str, what: &str, max: u32| -> Result<u32, Invalid> {
        let n: u32 = v.trim().parse().map_err(|_| {
            Invalid::new(field, format!("`{s}`: {what} `{v}` is not a whole number"))
        })?;
        if n > max {
            return Err(Invalid::new(
                field,
                format!("`{s}`: {what} {n} is over {max}"),
            ));
        }
        Ok(n)
    };
    let (rate, burst) = match s.split_once('/') {
        Some((r, b)) => (r, Some(b)),
        None => (s, None),
    };
    let per_sec = num(rate, "rate", MAX_RATE)?;
    if per_sec == 0 {
        if burst.is_some() {
            return Err(Invalid::new(
                field,
                format!("`{s}`: a burst makes no sense without a rate (0 = off)"),
            ));
        }
        return Ok(RateSpec {
            per_sec: 0,
            burst: 1,
        });
    }
    let burst = match burst {
        Some(b) => num(b, "burst", MAX_BURST)?,
        None => per_sec.saturating_mul(2).min(MAX_BURST),
    };
    if burst == 0 {
        return Err(Invalid::new(
            field,
            format!("`{s}`: the burst must be at least 1"),
        ));
    }
    Ok(RateSpec { per_sec, burst })
}
