//! A list of IP networks, or "everyone".

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::de::{self, Deserializer, SeqAccess};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};

use crate::{IpNet, IpNetError};

/// The entry that stands for every address.
const ANY: &str = "*";

/// A set of IP networks, or every address (`*`).
///
/// Two questions can be asked of it, because the same empty value means different things to
/// different settings (as in AgustinSRG's rtmp-server, where an empty `RTMP_PLAY_WHITELIST`
/// lets everyone play but an empty `CONCURRENT_LIMIT_WHITELIST` exempts nobody):
/// - [`contains`](Self::contains) is set membership: an empty list contains nobody. Use it for
///   exemption lists and deny lists.
/// - [`allows`](Self::allows) is allow-list semantics: an empty list means "no restriction
///   configured" and allows everyone. Use it for allow-lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpList {
    any: bool,
    nets: Vec<IpNet>,
}

impl IpList {
    /// The list that contains every address.
    pub fn any() -> Self {
        Self {
            any: true,
            nets: Vec::new(),
        }
    }

    /// The list that contains no address.
    pub fn empty() -> Self {
        Self::default()
    }

    /// A list of exactly these networks.
    pub fn from_nets(nets: Vec<IpNet>) -> Self {
        Self { any: false, nets }
    }

    /// Parses one entry per item (`"10.0.0.0/8"`, `"::1"`, or `"*"` for everyone); items are
    /// trimmed and blank items skipped. The error names the first bad entry.
    pub fn parse<I, S>(entries: I) -> Result<Self, IpNetError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list = Self::empty();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if entry.is_empty() {
                continue;
            }
            if entry == ANY {
                list.any = true;
            } else {
                list.nets.push(entry.parse()?);
            }
        }
        if list.any {
            // "*" swallows the rest; keeping them would only make Display misleading.
            list.nets.clear();
        }
        Ok(list)
    }

    /// Parses a comma- and/or whitespace-separated string, the form environment variables use
    /// (`RTMP_PLAY_WHITELIST=10.0.0.0/8,::1`). An empty string is the empty list.
    pub fn parse_str(s: &str) -> Result<Self, IpNetError> {
        Self::parse(s.split(|c: char| c == ',' || c.is_whitespace()))
    }

    /// Whether `ip` is in the list (an empty list contains nobody).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.any || self.nets.iter().any(|n| n.contains(ip))
    }

    /// Allow-list check: true if the list is empty (nothing configured) or contains `ip`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.is_empty() || self.contains(ip)
    }

    /// Whether the list is `*`.
    pub fn is_any(&self) -> bool {
        self.any
    }

    /// Whether the list has no entry at all (neither `*` nor a network).
    pub fn is_empty(&self) -> bool {
        !self.any && self.nets.is_empty()
    }

    /// The networks listed (empty for `*`).
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }
}

impl FromStr for IpList {
    type Err = IpNetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_str(s)
    }
}

impl fmt::Display for IpList {
    /// `*`, the comma-separated networks, or `(none)` for the empty list (which does not parse
    /// back; use [`Serialize`] for a round trip).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.any {
            return f.write_str(ANY);
        }
        if self.nets.is_empty() {
            return f.write_str("(none)");
        }
        for (i, n) in self.nets.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{n}")?;
        }
        Ok(())
    }
}

impl Serialize for IpList {
    /// A sequence of strings: `["*"]`, the networks, or `[]`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.any {
            let mut seq = serializer.serialize_seq(Some(1))?;
            seq.serialize_element(ANY)?;
            return seq.end();
        }
        let mut seq = serializer.serialize_seq(Some(self.nets.len()))?;
        for n in &self.nets {
            seq.serialize_element(n)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for IpList {
    /// Accepts a sequence of strings (`["10.0.0.0/8", "::1"]`) or one separated string
    /// (`"10.0.0.0/8, ::1"`), so YAML lists and environment-style values both work.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = IpList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a list of IP addresses/networks or \"*\", or one comma-separated string",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IpList, E> {
                IpList::parse_str(v).map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<IpList, A::Error> {
                // The hint comes from the input; cap it so a lying header cannot reserve much.
                let mut entries: Vec<String> =
                    Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(e) = seq.next_element::<String>()? {
                    entries.push(e);
                }
                IpList::parse(entries).map_err(de::Error::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}
