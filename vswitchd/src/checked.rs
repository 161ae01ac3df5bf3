//! Request values checked by [`vswitch_proto::validate`] (the one implementation of the shape
//! checks, shared with vswitchctl and vswitch-cni), returned as the datapath's types.

use vswitch_datapath::{ratelimit, Ipv4Cidr, Mac, RateLimit};
use vswitch_proto::validate::{self, Invalid};

/// A network `A.B.C.D/N` (no host bits) as a datapath prefix.
pub fn cidr(field: &'static str, s: &str) -> Result<Ipv4Cidr, Invalid> {
    let net = validate::cidr(field, s)?;
    // validate::cidr only returns prefix lengths of at most 32, all Ipv4Cidr::new accepts.
    Ipv4Cidr::new(net.network(), net.prefix_len())
        .ok_or_else(|| Invalid::new(field, format!("`{s}` has a prefix length above 32")))
}

/// A unicast MAC address.
pub fn mac(field: &'static str, s: &str) -> Result<Mac, Invalid> {
    validate::mac(field, s).map(Mac)
}

// proto's parser and the datapath's bucket agree on what a limit may be.
const _: () = assert!(validate::MAX_RATE == ratelimit::MAX_RATE);
const _: () = assert!(validate::MAX_BURST == ratelimit::MAX_BURST);

/// A rate limit `PPS[/BURST]` as the datapath's [`RateLimit`].
pub fn rate_limit(field: &'static str, s: &str) -> Result<RateLimit, Invalid> {
    let r = validate::rate_limit(field, s)?;
    Ok(RateLimit {
        per_sec: r.per_sec,
        burst: r.burst,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_convert_and_errors_name_the_field() {
        let c = cidr("pod_cidr", "198.18.1.0/24").unwrap();
        assert_eq!(c.to_string(), "198.18.1.0/24");
        assert_eq!(
            cidr("pod_cidr", "198.18.1.1/24").unwrap_err().field,
            "pod_cidr"
        );
        assert_eq!(
            mac("vtep_mac", "0a:58:c6:12:01:00").unwrap(),
            Mac([0x0a, 0x58, 0xc6, 0x12, 0x01, 0x00])
        );
        assert_eq!(mac("mac", "zz").unwrap_err().field, "mac");
        assert_eq!(rate_limit("arp_limit", "0").unwrap(), RateLimit::UNLIMITED);
        assert_eq!(
            rate_limit("arp_limit", "100/200").unwrap(),
            RateLimit::ARP_DEFAULT
        );
        assert_eq!(
            rate_limit("arp_limit", "10/0").unwrap_err().field,
            "arp_limit"
        );
    }
}
