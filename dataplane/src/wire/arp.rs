//! ARP for IPv4 over Ethernet (RFC 826). Only hardware type 1 / protocol 0x0800 with
//! 6- and 4-byte addresses is accepted; anything else does not parse.

use core::net::Ipv4Addr;

use super::{ParseError, ethernet::MacAddr, read_u16, read_u32, write_u16, write_u32};

/// ARP request opcode.
pub const OP_REQUEST: u16 = 1;
/// ARP reply opcode.
pub const OP_REPLY: u16 = 2;

mod field {
    pub(super) const HTYPE: usize = 0;
    pub(super) const PTYPE: usize = 2;
    pub(super) const HLEN: usize = 4;
    pub(super) const PLEN: usize = 5;
    pub(super) const OPER: usize = 6;
    pub(super) const SHA: usize = 8;
    pub(super) const SPA: usize = 14;
    pub(super) const THA: usize = 18;
    pub(super) const TPA: usize = 24;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;

/// A read/write view of an Ethernet/IPv4 ARP packet.
#[derive(Debug)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wrap `buf` after checking the length and the fixed fields.
    ///
    /// # Errors
    /// [`ParseError::Truncated`] for fewer than 28 bytes, [`ParseError::Version`] for another
    /// hardware or protocol type or address length.
    pub fn new_checked(buf: T) -> Result<Self, ParseError> {
        let b = buf.as_ref();
        if b.len() < PACKET_LEN {
            return Err(ParseError::Truncated);
        }
        if read_u16(b, field::HTYPE) != 1
            || read_u16(b, field::PTYPE) != 0x0800
            || b[field::HLEN] != 6
            || b[field::PLEN] != 4
        {
            return Err(ParseError::Version);
        }
        Ok(Self { buf })
    }

    /// The opcode.
    pub fn operation(&self) -> u16 {
        read_u16(self.buf.as_ref(), field::OPER)
    }

    /// Sender hardware address.
    pub fn sender_mac(&self) -> MacAddr {
        MacAddr(mac_at(self.buf.as_ref(), field::SHA))
    }

    /// Sender protocol address.
    pub fn sender_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_u32(self.buf.as_ref(), field::SPA))
    }

    /// Target hardware address.
    pub fn target_mac(&self) -> MacAddr {
        MacAddr(mac_at(self.buf.as_ref(), field::THA))
    }

    /// Target protocol address.
    pub fn target_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_u32(self.buf.as_ref(), field::TPA))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Write a whole Ethernet/IPv4 ARP packet into `buf` (at least 28 bytes).
    ///
    /// # Panics
    /// If `buf` is shorter than [`PACKET_LEN`]; callers pass buffers they sized.
    pub fn emit(
        mut buf: T,
        operation: u16,
        sender: (MacAddr, Ipv4Addr),
        target: (MacAddr, Ipv4Addr),
    ) -> Self {
        let b = buf.as_mut();
        write_u16(b, field::HTYPE, 1);
        write_u16(b, field::PTYPE, 0x0800);
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
        write_u16(b, field::OPER, operation);
        b[field::SHA..field::SHA + 6].copy_from_slice(&sender.0.0);
        write_u32(b, field::SPA, u32::from(sender.1));
        b[field::THA..field::THA + 6].copy_from_slice(&target.0.0);
        write_u32(b, field::TPA, u32::from(target.1));
        Self { buf }
    }
}

fn mac_at(buf: &[u8], at: usize) -> [u8; 6] {
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&buf[at..at + 6]);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_then_parse() {
        let mut buf = [0u8; 28];
        let a = MacAddr([2, 0, 0, 0, 0, 1]);
        ArpPacket::emit(
            &mut buf[..],
            OP_REQUEST,
            (a, Ipv4Addr::new(192, 0, 2, 1)),
            (MacAddr::default(), Ipv4Addr::new(192, 0, 2, 2)),
        );
        let arp = ArpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(arp.operation(), OP_REQUEST);
        assert_eq!(arp.sender_mac(), a);
        assert_eq!(arp.sender_ip(), Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(arp.target_mac(), MacAddr::default());
        assert_eq!(arp.target_ip(), Ipv4Addr::new(192, 0, 2, 2));
        // Matches etherparse's reading of the same bytes.
        let theirs = etherparse::ArpPacketSlice::from_slice(&buf).unwrap();
        assert_eq!(theirs.sender_protocol_addr(), &[192, 0, 2, 1]);
        assert!(ArpPacket::new_checked(&buf[..27]).is_err());
        buf[5] = 16;
        assert_eq!(
            ArpPacket::new_checked(&buf[..]).unwrap_err(),
            ParseError::Version
        );
    }
}
