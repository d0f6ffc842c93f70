//! Small typed values that appear in the configuration: CIDR source ranges, routing targets
//! and the transfer/queue policy enums. Each parses from the exact string an operator writes
//! in the TOML file. Listen specs are the transport's own type
//! ([`crate::transport::ListenSpec`], re-exported by the config module).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Deserialize;

/// An IP network (`127.0.0.1/32`, `10.0.0.0/8`, `::1/128`; a plain IP means a single host).
/// Host bits below the prefix are cleared on parse, as `ip route` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub network: IpAddr,
    pub prefix_len: u8,
}

/// Why a CIDR did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("`{0}` is not an IP address")]
    BadAddress(String),
    #[error("prefix length `{0}` is not a number")]
    BadPrefix(String),
    #[error("prefix length {len} is longer than {max} bits")]
    PrefixTooLong { len: u8, max: u8 },
}

impl Cidr {
    /// Whether `ip` is inside this network. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what
    /// a dual-stack socket reports for IPv4 peers) match the IPv4 network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask_u32(self.prefix_len);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask_u128(self.prefix_len);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

fn mask_u32(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0)
}

fn mask_u128(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ip, len) = match s.split_once('/') {
            Some((ip, len)) => (ip, Some(len)),
            None => (s, None),
        };
        let ip = ip
            .parse::<IpAddr>()
            .map_err(|_| CidrError::BadAddress(ip.to_string()))?
            .to_canonical();
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix_len = match len {
            None => max,
            Some(len) => len
                .parse::<u8>()
                .map_err(|_| CidrError::BadPrefix(len.to_string()))?,
        };
        if prefix_len > max {
            return Err(CidrError::PrefixTooLong {
                len: prefix_len,
                max,
            });
        }
        let network = match ip {
            IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & mask_u32(prefix_len)).into()),
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & mask_u128(prefix_len)).into()),
        };
        Ok(Cidr {
            network,
            prefix_len,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// A routing target as written in the config (`overflow = "ivr:survey"`) and in the control
/// API (DESIGN §2). Names refer to configured entries; `Number` is a dialled number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// `agent:<id>`
    Agent(String),
    /// `queue:<name>`
    Queue(String),
    /// `ivr:<name>`
    Ivr(String),
    /// `external:<name>` (a configured external number)
    External(String),
    /// `number:<digits>` (an ad-hoc external number)
    Number(String),
}

/// Why a target reference did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetParseError {
    #[error("expected KIND:NAME with KIND one of agent, queue, ivr, external, number")]
    MissingKind,
    #[error("unknown target kind `{0}` (expected agent, queue, ivr, external or number)")]
    UnknownKind(String),
    #[error("empty name after `{0}:`")]
    EmptyName(String),
}

impl FromStr for Target {
    type Err = TargetParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, name) = s.split_once(':').ok_or(TargetParseError::MissingKind)?;
        if name.is_empty() {
            return Err(TargetParseError::EmptyName(kind.to_string()));
        }
        let name = name.to_string();
        Ok(match kind {
            "agent" => Target::Agent(name),
            "queue" => Target::Queue(name),
            "ivr" => Target::Ivr(name),
            "external" => Target::External(name),
            "number" => Target::Number(name),
            _ => return Err(TargetParseError::UnknownKind(kind.to_string())),
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Agent(n) => write!(f, "agent:{n}"),
            Target::Queue(n) => write!(f, "queue:{n}"),
            Target::Ivr(n) => write!(f, "ivr:{n}"),
            Target::External(n) => write!(f, "external:{n}"),
            Target::Number(n) => write!(f, "number:{n}"),
        }
    }
}

/// The four contact-centre transfer types (DESIGN §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferType {
    Success,
    Release,
    Conversation,
    Hangup,
}

impl TransferType {
    pub const ALL: [TransferType; 4] = [
        TransferType::Success,
        TransferType::Release,
        TransferType::Conversation,
        TransferType::Hangup,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TransferType::Success => "success",
            TransferType::Release => "release",
            TransferType::Conversation => "conversation",
            TransferType::Hangup => "hangup",
        }
    }
}

impl fmt::Display for TransferType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown transfer type name (e.g. in a Refer-To `transfer=` parameter).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown transfer type `{0}` (expected success, release, conversation or hangup)")]
pub struct UnknownTransferType(pub String);

impl FromStr for TransferType {
    type Err = UnknownTransferType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TransferType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownTransferType(s.to_string()))
    }
}

/// What happens when the agent hangs up during a conversation transfer before the target
/// answers (DESIGN §3 rule 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AgentHangupPolicy {
    /// The attempt goes on as a release transfer to the same target.
    #[default]
    Continue,
    /// The attempt is cancelled; the customer's call ends with the agent's leg.
    Cancel,
}

/// Queue admission when no agent with the skill is logged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WhenNoAgents {
    /// Refuse admission (INVITE: 480 with a Warning; release transfer: the agent keeps the call).
    #[default]
    Refuse,
    /// Admit and wait up to `max_wait_s` for an agent to log in.
    Wait,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_contains() {
        let lo: Cidr = "127.0.0.1/32".parse().unwrap();
        assert!(lo.contains("127.0.0.1".parse().unwrap()));
        assert!(!lo.contains("127.0.0.2".parse().unwrap()));
        // A dual-stack socket reports IPv4 peers as mapped addresses.
        assert!(lo.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!lo.contains("::1".parse().unwrap()));

        let net: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(net.to_string(), "10.0.0.0/8");
        assert!(net.contains("10.200.0.1".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));

        let any: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains("192.0.2.1".parse().unwrap()));

        let v6: Cidr = "::1".parse().unwrap();
        assert_eq!(v6.prefix_len, 128);
        assert!(v6.contains("::1".parse().unwrap()));
        let v6net: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6net.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6net.contains("2001:db9::1".parse().unwrap()));

        assert_eq!(
            "127.0.0.1/33".parse::<Cidr>(),
            Err(CidrError::PrefixTooLong { len: 33, max: 32 })
        );
        assert!(matches!(
            "localhost/32".parse::<Cidr>(),
            Err(CidrError::BadAddress(_))
        ));
        assert!(matches!(
            "::1/x".parse::<Cidr>(),
            Err(CidrError::BadPrefix(_))
        ));
    }

    #[test]
    fn targets_round_trip() {
        for s in [
            "agent:1001",
            "queue:sales",
            "ivr:survey",
            "external:partner",
            "number:0049301234567",
        ] {
            assert_eq!(s.parse::<Target>().unwrap().to_string(), s);
        }
        assert_eq!(
            "sales".parse::<Target>(),
            Err(TargetParseError::MissingKind)
        );
        assert_eq!(
            "team:x".parse::<Target>(),
            Err(TargetParseError::UnknownKind("team".into()))
        );
        assert_eq!(
            "queue:".parse::<Target>(),
            Err(TargetParseError::EmptyName("queue".into()))
        );
    }

    #[test]
    fn transfer_type_names() {
        for t in TransferType::ALL {
            assert_eq!(t.as_str().parse::<TransferType>().unwrap(), t);
        }
        assert_eq!(
            "Release".parse::<TransferType>().unwrap(),
            TransferType::Release
        );
        assert!("blind".parse::<TransferType>().is_err());
    }
}
