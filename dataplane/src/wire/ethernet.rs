//! Ethernet II frames (IEEE 802.3 with an EtherType). No 802.1Q tags: a tagged frame has
//! EtherType 0x8100 and is classified as unsupported by the pipeline.

use super::{Field, ParseError, read_u16, write_u16};

/// A MAC address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: Self = Self([0xff; 6]);

    /// True for a group (multicast or broadcast) address.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl core::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl core::str::FromStr for MacAddr {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or(ParseError::Truncated)?;
            *byte = u8::from_str_radix(part, 16).map_err(|_| ParseError::BadLength)?;
        }
        if parts.next().is_some() {
            return Err(ParseError::BadLength);
        }
        Ok(Self(out))
    }
}

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;

mod field {
    use super::Field;
    pub(super) const DST: Field = 0..6;
    pub(super) const SRC: Field = 6..12;
    pub(super) const ETHERTYPE: usize = 12;
}

/// Length of the Ethernet II header.
pub const HEADER_LEN: usize = 14;

/// A read/write view of an Ethernet II frame.
#[derive(Debug)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wrap `buf` after checking that it holds a whole header.
    ///
    /// # Errors
    /// [`ParseError::Truncated`] if the buffer is shorter than 14 bytes.
    pub fn new_checked(buf: T) -> Result<Self, ParseError> {
        if buf.as_ref().len() < HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        Ok(Self { buf })
    }

    /// Wrap a buffer this crate built; accessors panic if it is shorter than the header.
    pub fn new_unchecked(buf: T) -> Self {
        Self { buf }
    }

    /// Destination MAC.
    pub fn dst(&self) -> MacAddr {
        MacAddr(mac_at(self.buf.as_ref(), field::DST))
    }

    /// Source MAC.
    pub fn src(&self) -> MacAddr {
        MacAddr(mac_at(self.buf.as_ref(), field::SRC))
    }

    /// The EtherType.
    pub fn ethertype(&self) -> u16 {
        read_u16(self.buf.as_ref(), field::ETHERTYPE)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Write the destination MAC.
    pub fn set_dst(&mut self, mac: MacAddr) {
        self.buf.as_mut()[field::DST].copy_from_slice(&mac.0);
    }

    /// Write the source MAC.
    pub fn set_src(&mut self, mac: MacAddr) {
        self.buf.as_mut()[field::SRC].copy_from_slice(&mac.0);
    }

    /// Write the EtherType.
    pub fn set_ethertype(&mut self, ethertype: u16) {
        write_u16(self.buf.as_mut(), field::ETHERTYPE, ethertype);
    }
}

fn mac_at(buf: &[u8], range: Field) -> [u8; 6] {
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&buf[range]);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_build() {
        let mut frame = [0u8; 14];
        frame[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        frame[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        frame[12..14].copy_from_slice(&[0x08, 0x06]);
        let mut eth = EthernetFrame::new_checked(&mut frame[..]).unwrap();
        assert_eq!(eth.dst(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(eth.src(), MacAddr([2, 0, 0, 0, 0, 2]));
        assert_eq!(eth.ethertype(), ETHERTYPE_ARP);
        eth.set_dst(MacAddr::BROADCAST);
        assert!(eth.dst().is_multicast());
        assert!(EthernetFrame::new_checked(&frame[..13]).is_err());
    }

    #[test]
    fn mac_text_round_trip() {
        let mac: MacAddr = "02:00:5e:10:00:0a".parse().unwrap();
        assert_eq!(mac.to_string(), "02:00:5e:10:00:0a");
        assert!("02:00".parse::<MacAddr>().is_err());
        assert!("02:00:5e:10:00:0a:01".parse::<MacAddr>().is_err());
        assert!("zz:00:5e:10:00:0a".parse::<MacAddr>().is_err());
    }
}
