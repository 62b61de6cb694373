//! One IP network (`10.0.0.0/8`, `::1`) and its parser.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

/// Why a string is not an IP network; every variant names the rejected input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IpNetError {
    /// Nothing to parse (an empty list entry is skipped by [`crate::IpList`], never passed here).
    #[error("empty IP address or network")]
    Empty,
    /// The part before `/` is not an IPv4 or IPv6 address.
    #[error("invalid IP address or network {input:?}: not an IPv4 or IPv6 address")]
    Address {
        /// The rejected entry.
        input: String,
    },
    /// The part after `/` is not a number within the family's width.
    #[error("invalid IP network {input:?}: prefix length must be 0 to {max}")]
    Prefix {
        /// The rejected entry.
        input: String,
        /// 32 for IPv4, 128 for IPv6.
        max: u8,
    },
}

/// An IPv4 or IPv6 network: an address and a prefix length.
///
/// Parsed from `1.2.3.4` (a /32), `10.0.0.0/8`, `::1` (a /128) or `2001:db8::/32`. Host bits
/// beyond the prefix are accepted and cleared, so `10.1.2.3/8` is `10.0.0.0/8`: operators write
/// "my address/24" often enough that refusing it would only annoy, and the meaning is clear.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Builds a network, clearing host bits; fails if `prefix` exceeds the family's width.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, IpNetError> {
        let max = max_prefix(addr);
        if prefix > max {
            return Err(IpNetError::Prefix {
                input: format!("{addr}/{prefix}"),
                max,
            });
        }
        Ok(Self {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    /// The network address (host bits cleared).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is inside this network.
    ///
    /// An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`, what a dual-stack listener reports for an
    /// IPv4 client) matches IPv4 networks as the IPv4 address it carries; it still matches IPv6
    /// networks such as `::ffff:0:0/96` as itself.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(ip, self.prefix) == self.addr
            }
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6
                .to_ipv4_mapped()
                .is_some_and(|v4| mask(IpAddr::V4(v4), self.prefix) == self.addr),
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    // checked_shl: a shift by the full width (prefix 0) would overflow; the mask is then 0.
    match addr {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

impl FromStr for IpNet {
    type Err = IpNetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(IpNetError::Empty);
        }
        let (addr_part, prefix_part) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr_part.parse().map_err(|_| IpNetError::Address {
            input: s.to_owned(),
        })?;
        let max = max_prefix(addr);
        let prefix = match prefix_part {
            None => max,
            Some(p) => {
                // u8::from_str accepts "+8"; only plain digits are a prefix length.
                let digits_only =
                    !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit());
                match p.parse::<u8>() {
                    Ok(n) if digits_only && n <= max => n,
                    _ => {
                        return Err(IpNetError::Prefix {
                            input: s.to_owned(),
                            max,
                        });
                    }
                }
            }
        };
        Self::new(addr, prefix)
    }
}

impl fmt::Display for IpNet {
    /// Prints a single host without a prefix (`1.2.3.4`, `::1`), otherwise `addr/prefix`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix == max_prefix(self.addr) {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

impl Serialize for IpNet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = IpNet;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an IP address or network such as \"10.0.0.0/8\" or \"::1\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IpNet, E> {
                v.trim().parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}
