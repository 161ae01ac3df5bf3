//! ADD's result and VERSION's answer, written in the CNI version the runtime asked for.
//!
//! | version | differences |
//! |---|---|
//! | 0.4.0 | `ips[].version` (`"4"`) is required |
//! | 1.0.0 | no `ips[].version` |
//! | 1.1.0 | `interfaces[].mtu` (also `socketPath`, `pciID`: not used by a TAP) |

use crate::config::CniVersion;
use serde::Serialize;
use vswitch_proto::PortInfo;

/// The result's `dns` section. Empty today unless the network configuration has a `dns`
/// section; vswitchd will supply the cluster DNS (nameservers, search) once Services land,
/// through [`AddResult::from_port`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Dns {
    /// Nameserver addresses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// The local domain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Search domains.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Resolver options.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    /// Fills what `self` lacks from `fallback` (field by field).
    pub fn or(self, fallback: Dns) -> Dns {
        Dns {
            nameservers: if self.nameservers.is_empty() {
                fallback.nameservers
            } else {
                self.nameservers
            },
            domain: self.domain.or(fallback.domain),
            search: if self.search.is_empty() {
                fallback.search
            } else {
                self.search
            },
            options: if self.options.is_empty() {
                fallback.options
            } else {
                self.options
            },
        }
    }
}

/// One attachment's result, independent of the CNI version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddResult {
    /// The interface name inside the pod.
    pub ifname: String,
    /// Its MAC.
    pub mac: String,
    /// Its MTU.
    pub mtu: u32,
    /// `CNI_NETNS`.
    pub sandbox: String,
    /// `IP/PLEN`.
    pub address: String,
    /// The node's gateway (the default route's next hop).
    pub gateway: String,
    /// The `dns` section.
    pub dns: Dns,
}

#[derive(Serialize)]
struct Interface<'a> {
    name: &'a str,
    mac: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    mtu: Option<u32>,
    sandbox: &'a str,
}

#[derive(Serialize)]
struct IpConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'static str>,
    address: &'a str,
    gateway: &'a str,
    interface: usize,
}

#[derive(Serialize)]
struct Route<'a> {
    dst: &'static str,
    gw: &'a str,
}

#[derive(Serialize)]
struct ResultJson<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: &'static str,
    interfaces: [Interface<'a>; 1],
    ips: [IpConfig<'a>; 1],
    routes: [Route<'a>; 1],
    dns: &'a Dns,
}

impl AddResult {
    /// The result for the port vswitchd attached in `sandbox` (`CNI_NETNS`). `conf_dns` is the
    /// network configuration's `dns`; where the daemon reports DNS settings for the port in a
    /// later protocol version, they take precedence here.
    pub fn from_port(port: &PortInfo, sandbox: &str, conf_dns: Dns) -> AddResult {
        AddResult {
            ifname: port.ifname.clone(),
            mac: port.mac.clone(),
            mtu: port.mtu,
            sandbox: sandbox.to_string(),
            address: format!("{}/{}", port.ip, port.prefix_len),
            gateway: port.gateway.clone(),
            // The daemon's settings (cluster DNS, search path) first; the configuration's
            // `dns` fills only what the daemon leaves out.
            dns: port
                .dns
                .as_ref()
                .map(|d| Dns {
                    nameservers: d.nameservers.clone(),
                    domain: None,
                    search: d.search.clone(),
                    options: d.options.clone(),
                })
                .unwrap_or_default()
                .or(conf_dns),
        }
    }

    /// The result object in `version`, as one line of JSON.
    pub fn to_json(&self, version: CniVersion) -> String {
        let json = ResultJson {
            cni_version: version.as_str(),
            interfaces: [Interface {
                name: &self.ifname,
                mac: &self.mac,
                mtu: (version >= CniVersion::V1_1_0).then_some(self.mtu),
                sandbox: &self.sandbox,
            }],
            ips: [IpConfig {
                version: (version == CniVersion::V0_4_0).then_some("4"),
                address: &self.address,
                gateway: &self.gateway,
                interface: 0,
            }],
            routes: [Route {
                dst: "0.0.0.0/0",
                gw: &self.gateway,
            }],
            dns: &self.dns,
        };
        serde_json::to_string(&json).expect("a result always serializes")
    }
}

/// VERSION's answer: `asked` (the configuration's `cniVersion`, when supported) or the newest.
pub fn version_json(asked: CniVersion) -> String {
    #[derive(Serialize)]
    struct VersionJson {
        #[serde(rename = "cniVersion")]
        cni_version: &'static str,
        #[serde(rename = "supportedVersions")]
        supported_versions: [&'static str; 3],
    }
    serde_json::to_string(&VersionJson {
        cni_version: asked.as_str(),
        supported_versions: CniVersion::SUPPORTED.map(CniVersion::as_str),
    })
    .expect("a version answer always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use vswitch_proto::PortStatus;

    fn port() -> PortInfo {
        PortInfo {
            name: "nginx".into(),
            namespace: "default".into(),
            ip: "198.18.1.2".into(),
            prefix_len: 24,
            mac: "02:00:c6:12:01:02".into(),
            node: "node1".into(),
            status: PortStatus::Running,
            netns: "/run/netns/p1".into(),
            ifname: "eth0".into(),
            gateway: "198.18.1.1".into(),
            mtu: 1450,
            labels: BTreeMap::new(),
            container_id: Some("c1".into()),
            runtime_name: None,
            runtime_namespace: None,
            dns: None,
        }
    }

    fn result() -> AddResult {
        AddResult::from_port(&port(), "/var/run/netns/p1", Dns::default())
    }

    #[test]
    fn from_port() {
        assert_eq!(
            result(),
            AddResult {
                ifname: "eth0".into(),
                mac: "02:00:c6:12:01:02".into(),
                mtu: 1450,
                sandbox: "/var/run/netns/p1".into(),
                address: "198.18.1.2/24".into(),
                gateway: "198.18.1.1".into(),
                dns: Dns::default(),
            }
        );
    }

    #[test]
    fn the_daemons_dns_comes_first_and_the_configuration_fills_the_rest() {
        let mut p = port();
        p.dns = Some(vswitch_proto::PodDns {
            nameservers: vec!["198.19.96.10".into()],
            search: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
                "cluster.local".into(),
            ],
            options: vec!["ndots:5".into()],
        });
        let conf = Dns {
            nameservers: vec!["198.18.0.53".into()],
            domain: Some("example.internal".into()),
            ..Dns::default()
        };
        let r = AddResult::from_port(&p, "/var/run/netns/p1", conf);
        assert_eq!(r.dns.nameservers, ["198.19.96.10"]);
        assert_eq!(r.dns.search[0], "default.svc.cluster.local");
        assert_eq!(r.dns.options, ["ndots:5"]);
        assert_eq!(r.dns.domain.as_deref(), Some("example.internal"));
        let json = r.to_json(CniVersion::V1_1_0);
        assert!(json.contains(r#""nameservers":["198.19.96.10"]"#), "{json}");
    }

    #[test]
    fn v0_4_0_has_ip_versions_and_no_mtu() {
        assert_eq!(
            result().to_json(CniVersion::V0_4_0),
            concat!(
                r#"{"cniVersion":"0.4.0","#,
                r#""interfaces":[{"name":"eth0","mac":"02:00:c6:12:01:02","sandbox":"/var/run/netns/p1"}],"#,
                r#""ips":[{"version":"4","address":"198.18.1.2/24","gateway":"198.18.1.1","interface":0}],"#,
                r#""routes":[{"dst":"0.0.0.0/0","gw":"198.18.1.1"}],"#,
                r#""dns":{}}"#
            )
        );
    }

    #[test]
    fn v1_0_0_has_no_ip_versions_and_no_mtu() {
        assert_eq!(
            result().to_json(CniVersion::V1_0_0),
            concat!(
                r#"{"cniVersion":"1.0.0","#,
                r#""interfaces":[{"name":"eth0","mac":"02:00:c6:12:01:02","sandbox":"/var/run/netns/p1"}],"#,
                r#""ips":[{"address":"198.18.1.2/24","gateway":"198.18.1.1","interface":0}],"#,
                r#""routes":[{"dst":"0.0.0.0/0","gw":"198.18.1.1"}],"#,
                r#""dns":{}}"#
            )
        );
    }

    #[test]
    fn v1_1_0_has_the_mtu() {
        assert_eq!(
            result().to_json(CniVersion::V1_1_0),
            concat!(
                r#"{"cniVersion":"1.1.0","#,
                r#""interfaces":[{"name":"eth0","mac":"02:00:c6:12:01:02","mtu":1450,"sandbox":"/var/run/netns/p1"}],"#,
                r#""ips":[{"address":"198.18.1.2/24","gateway":"198.18.1.1","interface":0}],"#,
                r#""routes":[{"dst":"0.0.0.0/0","gw":"198.18.1.1"}],"#,
                r#""dns":{}}"#
            )
        );
    }

    #[test]
    fn dns_from_the_configuration() {
        let dns = Dns {
            nameservers: vec!["198.19.96.10".into()],
            domain: None,
            search: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
            ],
            options: vec![],
        };
        let r = AddResult::from_port(&port(), "/var/run/netns/p1", dns);
        let v: serde_json::Value = serde_json::from_str(&r.to_json(CniVersion::V1_1_0)).unwrap();
        assert_eq!(
            v["dns"],
            serde_json::json!({
                "nameservers": ["198.19.96.10"],
                "search": ["default.svc.cluster.local", "svc.cluster.local"]
            })
        );
    }

    #[test]
    fn dns_or_fills_field_by_field() {
        let a = Dns {
            nameservers: vec!["198.19.96.10".into()],
            ..Dns::default()
        };
        let b = Dns {
            nameservers: vec!["198.19.96.11".into()],
            domain: Some("cluster.local".into()),
            ..Dns::default()
        };
        let c = a.or(b);
        assert_eq!(c.nameservers, vec!["198.19.96.10".to_string()]);
        assert_eq!(c.domain.as_deref(), Some("cluster.local"));
    }

    #[test]
    fn version_answers() {
        assert_eq!(
            version_json(CniVersion::V1_1_0),
            r#"{"cniVersion":"1.1.0","supportedVersions":["0.4.0","1.0.0","1.1.0"]}"#
        );
        assert_eq!(
            version_json(CniVersion::V0_4_0),
            r#"{"cniVersion":"0.4.0","supportedVersions":["0.4.0","1.0.0","1.1.0"]}"#
        );
    }
}
