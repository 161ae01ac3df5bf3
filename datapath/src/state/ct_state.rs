//! Connection states and their timeouts, netfilter's TCP states simplified (no window
//! tracking) with kube-proxy's values where it sets them: TCP SYN sent 30 s, SYN received
//! 60 s, established 24 h, half-closed (one FIN) 60 s, closed (both FINs or a RST) 10 s,
//! picked up mid-stream 30 s until the endpoint answers; UDP 30 s, 180 s once the endpoint
//! has answered. A connection is *assured* (never evicted) once it carried traffic both ways:
//! TCP established, UDP answered.

use crate::wire::l4::{L4Proto, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use serde::{Deserialize, Serialize};

/// Connection states (saved by name, snake_case, in conntrack snapshots).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum State {
    /// TCP: the client's SYN, unanswered.
    SynSent,
    /// TCP: the endpoint's SYN-ACK, the handshake's last ACK not seen yet.
    SynRecv,
    /// TCP: the handshake completed.
    Established,
    /// A FIN from the client; the endpoint's side still open.
    FinOrig,
    /// A FIN from the endpoint; the client's side still open.
    FinReply,
    /// TCP: both FINs or a RST seen.
    Close,
    /// Created from a TCP packet other than a SYN (after a flush or expiry, mid-stream).
    Loose,
    /// UDP: not answered yet.
    UdpUnreplied,
    /// UDP: the endpoint answered.
    UdpReplied,
}

const SEC: u64 = 1000;

impl State {
    /// The state's name as saved and listed (`syn_sent`, `established`, ...).
    pub fn name(self) -> &'static str {
        match self {
            State::SynSent => "syn_sent",
            State::SynRecv => "syn_recv",
            State::Established => "established",
            State::FinOrig => "fin_orig",
            State::FinReply => "fin_reply",
            State::Close => "close",
            State::Loose => "loose",
            State::UdpUnreplied => "udp_unreplied",
            State::UdpReplied => "udp_replied",
        }
    }

    pub(crate) const ALL: [State; 9] = [
        State::SynSent,
        State::SynRecv,
        State::Established,
        State::FinOrig,
        State::FinReply,
        State::Close,
        State::Loose,
        State::UdpUnreplied,
        State::UdpReplied,
    ];

    pub(crate) fn from_u8(v: u8) -> State {
        State::ALL
            .get(usize::from(v))
            .copied()
            .unwrap_or(State::Close)
    }

    /// Idle timeout in ms.
    pub(crate) fn timeout_ms(self) -> u64 {
        match self {
            State::SynSent | State::Loose | State::UdpUnreplied => 30 * SEC,
            State::SynRecv | State::FinOrig | State::FinReply => 60 * SEC,
            State::Established => 24 * 3600 * SEC,
            State::Close => 10 * SEC,
            State::UdpReplied => 180 * SEC,
        }
    }

    /// The state of a new connection whose first packet has TCP `flags`.
    pub(crate) fn initial(proto: L4Proto, flags: u8) -> State {
        match proto {
            L4Proto::Udp => State::UdpUnreplied,
            L4Proto::Tcp if flags & TCP_RST != 0 => State::Close,
            L4Proto::Tcp if flags & (TCP_SYN | TCP_ACK) == TCP_SYN => State::SynSent,
            L4Proto::Tcp => State::Loose,
        }
    }

    /// The state after a packet in direction `reply` with TCP `flags`.
    pub(crate) fn next(self, reply: bool, flags: u8) -> State {
        use State::*;
        match self {
            UdpUnreplied | UdpReplied => return if reply { UdpReplied } else { self },
            _ if flags & TCP_RST != 0 => return Close,
            _ => {}
        }
        if flags & TCP_FIN != 0 {
            return match (self, reply) {
                (FinOrig, true) | (FinReply, false) | (Close, _) => Close,
                (FinOrig | FinReply, _) => self,
                (_, false) => FinOrig,
                (_, true) => FinReply,
            };
        }
        match (self, reply) {
            (SynSent, true) if flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK => SynRecv,
            (SynRecv, false) if flags & (TCP_SYN | TCP_ACK) == TCP_ACK => Established,
            (Loose, true) => Established,
            _ => self,
        }
    }

    /// True once the connection has carried traffic both ways (it is then never evicted).
    pub(crate) fn assures(self) -> bool {
        matches!(self, State::Established | State::UdpReplied)
    }

    /// The protocol whose connections can be in this state.
    pub(crate) fn proto(self) -> L4Proto {
        match self {
            State::UdpUnreplied | State::UdpReplied => L4Proto::Udp,
            _ => L4Proto::Tcp,
        }
    }

    /// Whether a connection in this state may be assured: always (`Some(true)`) once both
    /// ways carried traffic, never (`Some(false)`) before, either (`None`) while closing
    /// (from an established connection or from a handshake).
    pub(crate) fn assured_in(self) -> Option<bool> {
        match self {
            State::Established | State::UdpReplied => Some(true),
            State::SynSent | State::SynRecv | State::Loose | State::UdpUnreplied => Some(false),
            State::FinOrig | State::FinReply | State::Close => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::cast_possible_truncation)] // tests may panic
mod tests {
    use super::*;
    use State::*;

    const SA: u8 = TCP_SYN | TCP_ACK;

    #[test]
    fn names_are_the_saved_names() {
        for s in State::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
        }
    }

    #[test]
    fn tcp_handshake_and_teardown() {
        assert_eq!(State::initial(L4Proto::Tcp, TCP_SYN), SynSent);
        assert_eq!(State::initial(L4Proto::Tcp, TCP_ACK), Loose);
        assert_eq!(State::initial(L4Proto::Tcp, TCP_RST | TCP_ACK), Close);
        assert_eq!(SynSent.next(false, TCP_SYN), SynSent, "retransmitted SYN");
        assert_eq!(SynSent.next(true, TCP_ACK), SynSent, "not a SYN-ACK");
        assert_eq!(SynSent.next(true, SA), SynRecv);
        assert_eq!(SynRecv.next(true, SA), SynRecv);
        assert_eq!(SynRecv.next(false, TCP_ACK), Established);
        assert_eq!(Established.next(false, TCP_ACK | TCP_FIN), FinOrig);
        assert_eq!(FinOrig.next(false, TCP_ACK | TCP_FIN), FinOrig);
        assert_eq!(FinOrig.next(true, TCP_ACK), FinOrig);
        assert_eq!(FinOrig.next(true, TCP_ACK | TCP_FIN), Close);
        assert_eq!(Established.next(true, TCP_FIN), FinReply);
        assert_eq!(FinReply.next(false, TCP_FIN), Close);
        assert_eq!(Loose.next(false, TCP_ACK), Loose);
        assert_eq!(Loose.next(true, TCP_ACK), Established);
        for s in State::ALL
            .into_iter()
            .filter(|s| !matches!(s, UdpUnreplied | UdpReplied))
        {
            assert_eq!(s.next(true, TCP_RST), Close, "{s:?}");
            assert_eq!(s.next(false, TCP_RST | TCP_ACK), Close, "{s:?}");
        }
        assert!(Established.assures() && UdpReplied.assures());
        assert!(!SynRecv.assures() && !Loose.assures() && !UdpUnreplied.assures());
    }

    #[test]
    fn udp_is_replied_once_answered() {
        assert_eq!(State::initial(L4Proto::Udp, 0), UdpUnreplied);
        assert_eq!(
            UdpUnreplied.next(false, 0xff),
            UdpUnreplied,
            "flags mean nothing"
        );
        assert_eq!(UdpUnreplied.next(true, 0), UdpReplied);
        assert_eq!(UdpReplied.next(false, 0), UdpReplied);
    }

    #[test]
    fn state_bytes_round_trip() {
        for s in State::ALL {
            assert_eq!(State::from_u8(s as u8), s);
        }
        assert_eq!(State::from_u8(200), Close);
    }
}
