//! `vswitchctl top`: a live view of the node's rates, refreshed every `--interval`
//! (1 s): per port and per peer packets/s and bytes/s both ways, drops per second by
//! reason, and conntrack occupancy. Each refresh is one `stats` and one `peer list`
//! request; rates are the counters' differences over the time between two answers.
//!
//! On a terminal it draws with ratatui (`q`, Esc or Ctrl-C quits); when stdout is not a
//! terminal it prints plain lines per refresh instead (`--count N` bounds either).

use crate::Failure;
use clap::Args;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};
use vswitch_proto::{client, PeerInfo, Request, Response, StatsReport};

#[derive(Debug, Args)]
pub(crate) struct TopArgs {
    /// Seconds between refreshes (0.1 to 60)
    #[arg(long, value_name = "SECS", default_value_t = 1.0,
          value_parser = interval)]
    pub(crate) interval: f64,
    /// Stop after N refreshes [default: until `q`, or forever without a terminal]
    #[arg(long, value_name = "N")]
    pub(crate) count: Option<u64>,
}

fn interval(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if (0.1..=60.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{s}: between 0.1 and 60 seconds"))
    }
}

/// The counters of one refresh.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    pub(crate) at: Option<Instant>,
    pub(crate) stats: StatsReport,
    pub(crate) peers: Vec<PeerInfo>,
}

/// Per second, both ways.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Rates {
    pub(crate) name: String,
    pub(crate) rx_pps: f64,
    pub(crate) rx_bps: f64,
    pub(crate) tx_pps: f64,
    pub(crate) tx_bps: f64,
    pub(crate) drops: f64,
}

/// What one refresh shows.
#[derive(Debug, Clone, Default)]
pub(crate) struct View {
    pub(crate) ports: Vec<Rates>,
    pub(crate) peers: Vec<Rates>,
    /// Drops per second by reason (those that moved).
    pub(crate) drops: Vec<(String, f64)>,
    pub(crate) ct_entries: u64,
    pub(crate) ct_max: u64,
    pub(crate) ct_evicted: u64,
}

fn rate(now: u64, before: Option<u64>, secs: f64) -> f64 {
    match before {
        Some(b) if secs > 0.0 => now.saturating_sub(b) as f64 / secs,
        _ => 0.0,
    }
}

/// The rates between `prev` and `cur` (zeros where `prev` has no counter yet).
pub(crate) fn view(prev: &Sample, cur: &Sample) -> View {
    let secs = match (prev.at, cur.at) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let old_ports: BTreeMap<(&str, &str), _> = prev
        .stats
        .ports
        .iter()
        .map(|p| ((p.namespace.as_str(), p.name.as_str()), p))
        .collect();
    let ports = cur
        .stats
        .ports
        .iter()
        .map(|p| {
            let o = old_ports.get(&(p.namespace.as_str(), p.name.as_str()));
            Rates {
                name: format!("{}/{}", p.namespace, p.name),
                rx_pps: rate(p.rx_packets, o.map(|o| o.rx_packets), secs),
                rx_bps: rate(p.rx_bytes, o.map(|o| o.rx_bytes), secs),
                tx_pps: rate(p.tx_packets, o.map(|o| o.tx_packets), secs),
                tx_bps: rate(p.tx_bytes, o.map(|o| o.tx_bytes), secs),
                drops: rate(p.rx_dropped, o.map(|o| o.rx_dropped), secs),
            }
        })
        .collect();
    let old_peers: BTreeMap<&str, &PeerInfo> =
        prev.peers.iter().map(|p| (p.node.as_str(), p)).collect();
    let peers = cur
        .peers
        .iter()
        .map(|p| {
            let o = old_peers.get(p.node.as_str());
            Rates {
                name: p.node.clone(),
                rx_pps: rate(p.rx_packets, o.map(|o| o.rx_packets), secs),
                rx_bps: rate(p.rx_bytes, o.map(|o| o.rx_bytes), secs),
                tx_pps: rate(p.tx_packets, o.map(|o| o.tx_packets), secs),
                tx_bps: rate(p.tx_bytes, o.map(|o| o.tx_bytes), secs),
                drops: 0.0,
            }
        })
        .collect();
    let drops = cur
        .stats
        .drops
        .iter()
        .map(|(k, v)| (k.clone(), rate(*v, prev.stats.drops.get(k).copied(), secs)))
        .filter(|(_, r)| *r > 0.0)
        .collect();
    View {
        ports,
        peers,
        drops,
        ct_entries: cur.stats.conntrack.entries,
        ct_max: cur.stats.conntrack.max,
        ct_evicted: cur.stats.conntrack.evicted,
    }
}

/// `1234567` as `1.2M`, for columns.
pub(crate) fn si(v: f64) -> String {
    let (v, unit) = if v >= 1e9 {
        (v / 1e9, "G")
    } else if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        return format!("{v:.0}");
    };
    format!("{v:.1}{unit}")
}

/// One refresh's counters.
fn sample(socket: &Path, timeout: Duration) -> Result<Sample, Failure> {
    let call = |req: &Request| -> Result<Response, Failure> {
        match client::call(socket, req, timeout).map_err(Failure::Client)? {
            Response::Error(e) => Err(Failure::Daemon(e)),
            r => Ok(r),
        }
    };
    let stats = match call(&Request::Stats {
        port: None,
        namespace: None,
    })? {
        Response::Stats(s) => s,
        other => return Err(unexpected(&other)),
    };
    let peers = match call(&Request::PeerList)? {
        Response::Peers(p) => p,
        other => return Err(unexpected(&other)),
    };
    Ok(Sample {
        at: Some(Instant::now()),
        stats,
        peers,
    })
}

fn unexpected(r: &Response) -> Failure {
    Failure::Other(anyhow::anyhow!(
        "unexpected answer from vswitchd: {}",
        vswitch_proto::encode_response(r).trim_end()
    ))
}

/// The plain lines of one refresh (stdout not a terminal).
pub(crate) fn plain(v: &View, now_unix_ms: u64) -> String {
    let mut s = format!(
        "{} conntrack {}/{} evicted {}\n",
        vswitch_proto::observe::rfc3339_ms(now_unix_ms),
        v.ct_entries,
        v.ct_max,
        v.ct_evicted
    );
    for (kind, rows) in [("port", &v.ports), ("peer", &v.peers)] {
        for r in rows {
            s += &format!(
                "{kind} {} rx {} pkt/s {}B/s tx {} pkt/s {}B/s drop {}/s\n",
                r.name,
                si(r.rx_pps),
                si(r.rx_bps),
                si(r.tx_pps),
                si(r.tx_bps),
                si(r.drops)
            );
        }
    }
    for (reason, r) in &v.drops {
        s += &format!("drop {reason} {}/s\n", si(*r));
    }
    s
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs `top` until `q`, `--count` refreshes, or an error.
pub(crate) fn run(a: &TopArgs, socket: &Path, timeout: Duration) -> Result<(), Failure> {
    let every = Duration::from_secs_f64(a.interval);
    let mut prev = sample(socket, timeout)?;
    if !std::io::stdout().is_terminal() {
        let mut n = 0;
        loop {
            std::thread::sleep(every);
            let cur = sample(socket, timeout)?;
            let text = plain(&view(&prev, &cur), unix_ms());
            let mut o = std::io::stdout().lock();
            if o.write_all(text.as_bytes())
                .and_then(|()| o.flush())
                .is_err()
            {
                return Ok(()); // the reader went away
            }
            prev = cur;
            n += 1;
            if a.count.is_some_and(|c| n >= c) {
                return Ok(());
            }
        }
    }
    let mut term = ratatui::try_init()
        .map_err(|e| Failure::Other(anyhow::Error::new(e).context("setting up the terminal")))?;
    let result = tui(&mut term, a, socket, timeout, every, &mut prev);
    ratatui::restore();
    result
}

fn tui(
    term: &mut ratatui::DefaultTerminal,
    a: &TopArgs,
    socket: &Path,
    timeout: Duration,
    every: Duration,
    prev: &mut Sample,
) -> Result<(), Failure> {
    use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
    let io = |e: std::io::Error| Failure::Other(anyhow::Error::new(e).context("terminal"));
    let mut shown = View::default();
    let mut n = 0u64;
    let mut next = Instant::now();
    loop {
        if Instant::now() >= next {
            let cur = sample(socket, timeout)?;
            shown = view(prev, &cur);
            *prev = cur;
            next = Instant::now() + every;
            term.draw(|f| draw(f, &shown, every)).map_err(io)?;
            if a.count.is_some_and(|c| n >= c) {
                return Ok(());
            }
            n += 1;
        }
        let wait = next.saturating_duration_since(Instant::now());
        if event::poll(wait).map_err(io)? {
            match event::read().map_err(io)? {
                Event::Key(k) if k.kind == KeyEventKind::Press => match k.code {
                    KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                    KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                        return Ok(())
                    }
                    _ => {}
                },
                Event::Resize(..) => {
                    term.draw(|f| draw(f, &shown, every)).map_err(io)?;
                }
                _ => {}
            }
        }
    }
}

fn draw(f: &mut ratatui::Frame, v: &View, every: Duration) {
    use ratatui::layout::{Constraint, Layout};
    use ratatui::style::{Modifier, Style};
    use ratatui::widgets::{Block, Borders, Paragraph, Row, Table};
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let pct = if v.ct_max > 0 {
        v.ct_entries as f64 * 100.0 / v.ct_max as f64
    } else {
        0.0
    };
    let header = Paragraph::new(format!(
        "vswitch top  every {:.1}s  conntrack {}/{} ({pct:.1}%)  evicted {}   q: quit",
        every.as_secs_f64(),
        v.ct_entries,
        v.ct_max,
        v.ct_evicted
    ))
    .style(bold);
    let rates_table = |title: &str, first: &str, rows: &[Rates], with_drops: bool| {
        let mut head = vec![first.to_string()];
        head.extend(["RX PKT/S", "RX B/S", "TX PKT/S", "TX B/S"].map(String::from));
        if with_drops {
            head.push("DROP/S".to_string());
        }
        let rows: Vec<Row> = rows
            .iter()
            .map(|r| {
                let mut cells = vec![
                    r.name.clone(),
                    si(r.rx_pps),
                    si(r.rx_bps),
                    si(r.tx_pps),
                    si(r.tx_bps),
                ];
                if with_drops {
                    cells.push(si(r.drops));
                }
                Row::new(cells)
            })
            .collect();
        let mut widths = vec![Constraint::Length(36)];
        widths.extend(std::iter::repeat_n(Constraint::Length(10), head.len() - 1));
        Table::new(rows, widths)
            .header(Row::new(head).style(bold))
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(title.to_string()),
            )
    };
    let drops: Vec<Row> = v
        .drops
        .iter()
        .map(|(r, n)| Row::new(vec![r.clone(), si(*n)]))
        .collect();
    let drops = Table::new(drops, [Constraint::Length(36), Constraint::Length(10)])
        .header(Row::new(vec!["REASON", "DROP/S"]).style(bold))
        .block(Block::default().borders(Borders::ALL).title("Drops"));
    let [top, ports, peers, bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(v.ports.len() as u16 + 3),
        Constraint::Length(v.peers.len() as u16 + 3),
        Constraint::Min(3),
    ])
    .areas(f.area());
    f.render_widget(header, top);
    f.render_widget(rates_table("Ports", "POD", &v.ports, true), ports);
    f.render_widget(rates_table("Peers", "NODE", &v.peers, false), peers);
    f.render_widget(drops, bottom);
}

#[cfg(test)]
mod tests {
    use super::*;
    use vswitch_proto::PortStats;

    #[test]
    fn rates_are_differences_over_the_interval() {
        let t0 = Instant::now();
        let port = |rx: u64| PortStats {
            name: "a".into(),
            namespace: "default".into(),
            rx_packets: rx,
            rx_bytes: rx * 100,
            tx_packets: 0,
            tx_bytes: 0,
            rx_dropped: 0,
        };
        let mut prev = Sample {
            at: Some(t0),
            ..Sample::default()
        };
        prev.stats.ports.push(port(10));
        prev.stats.drops.insert("spoofed_ip".into(), 1);
        let mut cur = Sample {
            at: Some(t0 + Duration::from_secs(2)),
            ..Sample::default()
        };
        cur.stats.ports.push(port(30));
        cur.stats.drops.insert("spoofed_ip".into(), 5);
        cur.stats.drops.insert("malformed".into(), 0);
        cur.stats.conntrack.entries = 3;
        cur.stats.conntrack.max = 100;
        let v = view(&prev, &cur);
        assert_eq!(v.ports[0].rx_pps, 10.0);
        assert_eq!(v.ports[0].rx_bps, 1000.0);
        assert_eq!(v.drops, vec![("spoofed_ip".to_string(), 2.0)]);
        let text = plain(&v, 0);
        assert!(text.contains("conntrack 3/100"), "{text}");
        assert!(
            text.contains("port default/a rx 10 pkt/s 1.0kB/s"),
            "{text}"
        );
        assert!(text.contains("drop spoofed_ip 2/s"), "{text}");
    }

    #[test]
    fn si_units() {
        assert_eq!(si(999.0), "999");
        assert_eq!(si(1500.0), "1.5k");
        assert_eq!(si(2_500_000.0), "2.5M");
        assert_eq!(si(3.2e9), "3.2G");
    }
}
