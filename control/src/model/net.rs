//! Address types of the model that `ipnet` and `std::net` do not give as-is: an IPv4 block
//! parsed the way the API has always taken it, an endpoint's source-whitelist entry that
//! renders exactly as it was given, a port's MAC address, and the store's spelling of an
//! absent gateway.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Parse an IPv4 block: `a.b.c.d/len`, or a bare address as a /32. Host bits are cleared, so
/// `10.0.0.1/16` is `10.0.0.0/16` (the rule the API has always applied to VPCs and subnets).
pub fn parse_ipv4_block(s: &str) -> Option<Ipv4Net> {
    let net = match s.split_once('/') {
        Some(_) => s.parse::<Ipv4Net>().ok()?,
        None => Ipv4Net::from(s.parse::<Ipv4Addr>().ok()?),
    };
    Some(net.trunc())
}

/// One entry of an endpoint's source whitelist: an IPv4 block, remembered with the spelling
/// it was given (`192.0.2.7` stays `192.0.2.7`, `192.0.2.0/24` stays `192.0.2.0/24`), since
/// the API echoes whitelists back verbatim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SourceCidr {
    net: Ipv4Net,
    bare: bool,
}

impl SourceCidr {
    /// The block (a bare address is a /32).
    pub fn net(&self) -> Ipv4Net {
        self.net
    }
}

/// Why a whitelist entry did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IPv4 address or CIDR")]
pub struct SourceCidrError(String);

impl FromStr for SourceCidr {
    type Err = SourceCidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SourceCidrError(s.to_string());
        if s.contains('/') {
            let net = s.parse::<Ipv4Net>().map_err(|_| bad())?;
            Ok(Self { net, bare: false })
        } else {
            let addr = s.parse::<Ipv4Addr>().map_err(|_| bad())?;
            Ok(Self {
                net: Ipv4Net::from(addr),
                bare: true,
            })
        }
    }
}

impl TryFrom<String> for SourceCidr {
    type Error = SourceCidrError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<SourceCidr> for String {
    fn from(c: SourceCidr) -> Self {
        c.to_string()
    }
}

impl fmt::Display for SourceCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.bare {
            write!(f, "{}", self.net.addr())
        } else {
            write!(f, "{}", self.net)
        }
    }
}

/// A port's MAC address: unicast (the group bit clear) and not all zeros, written as six
/// pairs of hex digits separated by `:` (either case in; lower case out).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MacAddress([u8; 6]);

impl MacAddress {
    /// The six bytes.
    pub fn octets(self) -> [u8; 6] {
        self.0
    }

    /// A random address with OpenStack's `fa:16:3e` prefix (unicast, locally
    /// administered), for a port created without one.
    pub fn random() -> Self {
        let [a, b, c] = rand::random::<[u8; 3]>();
        Self([0xfa, 0x16, 0x3e, a, b, c])
    }
}

/// Why a MAC address did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a unicast MAC address (six hex pairs separated by ':')")]
pub struct MacAddressError(String);

impl FromStr for MacAddress {
    type Err = MacAddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || MacAddressError(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() || out[0] & 1 == 1 || out == [0; 6] {
            return Err(bad());
        }
        Ok(Self(out))
    }
}

impl TryFrom<String> for MacAddress {
    type Error = MacAddressError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<MacAddress> for String {
    fn from(m: MacAddress) -> Self {
        m.to_string()
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// Serde for an optional address stored and shown as a string, `""` meaning none (how an
/// IPv6 subnet without a gateway has always been stored).
pub mod empty_is_none {
    use super::{Deserialize, IpAddr};

    /// Write `None` as `""`.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: serde::Serializer>(v: &Option<IpAddr>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(a) => s.collect_str(a),
            None => s.serialize_str(""),
        }
    }

    /// Read `""` (or null) as `None`.
    ///
    /// # Errors
    /// Anything else that is not an address.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        match s.as_deref() {
            None | Some("") => Ok(None),
            Some(a) => a.parse().map(Some).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitelist_entries_keep_their_spelling() {
        for s in ["192.0.2.7", "192.0.2.0/24", "10.0.0.5/8", "0.0.0.0/0"] {
            let c: SourceCidr = s.parse().unwrap();
            assert_eq!(c.to_string(), s);
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<SourceCidr>(&json).unwrap(), c);
        }
        assert_eq!(
            "192.0.2.7"
                .parse::<SourceCidr>()
                .unwrap()
                .net()
                .prefix_len(),
            32
        );
        for bad in ["10.0.0.0/33", "x", "", "10.0.0/8", "2001:db8::/32"] {
            assert!(bad.parse::<SourceCidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn mac_addresses_are_unicast_six_hex_pairs() {
        let m: MacAddress = "FA:16:3e:00:0A:ff".parse().unwrap();
        assert_eq!(m.to_string(), "fa:16:3e:00:0a:ff");
        assert_eq!(m.octets(), [0xfa, 0x16, 0x3e, 0, 0x0a, 0xff]);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#""fa:16:3e:00:0a:ff""#);
        assert_eq!(serde_json::from_str::<MacAddress>(&json).unwrap(), m);
        for bad in [
            "",
            "fa:16:3e:00:0a",
            "fa:16:3e:00:0a:ff:01",
            "fa:16:3e:0:a:ff",
            "fa-16-3e-00-0a-ff",
            "fa:16:3e:00:0a:+f",
            "fa:16:3e:00:0a:gg",
            "01:00:5e:00:00:01",
            "ff:ff:ff:ff:ff:ff",
            "00:00:00:00:00:00",
        ] {
            assert!(bad.parse::<MacAddress>().is_err(), "{bad}");
            assert!(serde_json::from_str::<MacAddress>(&format!("{bad:?}")).is_err());
        }
        for _ in 0..16 {
            let r = MacAddress::random();
            assert_eq!(r.to_string().parse::<MacAddress>().unwrap(), r);
            assert_eq!(&r.octets()[..3], &[0xfa, 0x16, 0x3e]);
        }
    }

    #[test]
    fn blocks_clear_host_bits_and_take_bare_addresses() {
        assert_eq!(
            parse_ipv4_block("10.0.0.1/16").unwrap().to_string(),
            "10.0.0.0/16"
        );
        assert_eq!(
            parse_ipv4_block("10.0.0.1").unwrap().to_string(),
            "10.0.0.1/32"
        );
        assert!(parse_ipv4_block("10.0.0.0/40").is_none());
        assert!(parse_ipv4_block("fd00::/8").is_none());
    }
}
