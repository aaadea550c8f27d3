//! IPv4 headers (RFC 791).
//!
//! `new_checked` guarantees: at least 20 bytes, version 4, IHL of at least 5, a header that
//! fits the buffer, and a total length between the header length and the buffer length. The
//! buffer may be longer than the total length (Ethernet padding); [`Ipv4Packet::payload`]
//! stops at the total length.

use core::net::Ipv4Addr;

use super::{ParseError, checksum, read_u16, read_u32, write_u16, write_u32};

/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

mod field {
    pub(super) const VER_IHL: usize = 0;
    pub(super) const TOTAL_LEN: usize = 2;
    pub(super) const FLAGS_FRAG: usize = 6;
    pub(super) const TTL: usize = 8;
    pub(super) const PROTOCOL: usize = 9;
    pub(super) const CHECKSUM: usize = 10;
    pub(super) const SRC_ADDR: usize = 12;
    pub(super) const DST_ADDR: usize = 16;
}

/// Length of an IPv4 header without options.
pub const MIN_HEADER_LEN: usize = 20;

/// A read/write view of an IPv4 packet.
#[derive(Debug)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wrap a buffer this crate sized, or a header the pipeline already checked;
    /// accessors panic on a short buffer.
    pub fn new_unchecked(buf: T) -> Self {
        Self { buf }
    }

    /// Wrap `buf`, checking every length an accessor relies on (see the module doc).
    ///
    /// # Errors
    /// [`ParseError::Truncated`], [`ParseError::Version`] or [`ParseError::BadLength`].
    pub fn new_checked(buf: T) -> Result<Self, ParseError> {
        let b = buf.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        if b[field::VER_IHL] >> 4 != 4 {
            return Err(ParseError::Version);
        }
        let header_len = usize::from(b[field::VER_IHL] & 0x0f) * 4;
        if header_len < MIN_HEADER_LEN {
            return Err(ParseError::BadLength);
        }
        let total = usize::from(read_u16(b, field::TOTAL_LEN));
        if header_len > b.len() || total > b.len() {
            return Err(ParseError::Truncated);
        }
        if total < header_len {
            return Err(ParseError::BadLength);
        }
        Ok(Self { buf })
    }

    /// Header length in bytes (IHL * 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buf.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// Total length field.
    pub fn total_len(&self) -> u16 {
        read_u16(self.buf.as_ref(), field::TOTAL_LEN)
    }

    /// True if this is a fragment: more-fragments set or a non-zero offset.
    pub fn is_fragment(&self) -> bool {
        read_u16(self.buf.as_ref(), field::FLAGS_FRAG) & 0x3fff != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buf.as_ref()[field::TTL]
    }

    /// Protocol number.
    pub fn protocol(&self) -> u8 {
        self.buf.as_ref()[field::PROTOCOL]
    }

    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buf.as_ref(), field::CHECKSUM)
    }

    /// True if the header checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        let b = self.buf.as_ref();
        checksum::fold(checksum::sum(0, &b[..self.header_len()])) == 0xffff
    }

    /// Source address as a host-order integer.
    pub fn src_u32(&self) -> u32 {
        read_u32(self.buf.as_ref(), field::SRC_ADDR)
    }

    /// Destination address as a host-order integer.
    pub fn dst_u32(&self) -> u32 {
        read_u32(self.buf.as_ref(), field::DST_ADDR)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.src_u32())
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.dst_u32())
    }

    /// The bytes after the header, up to the total length.
    pub fn payload(&self) -> &[u8] {
        let b = self.buf.as_ref();
        &b[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Write the total length field (a rewrite that grows or shrinks the packet).
    pub fn set_total_len(&mut self, len: u16) {
        write_u16(self.buf.as_mut(), field::TOTAL_LEN, len);
    }

    /// Write the TTL.
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buf.as_mut()[field::TTL] = ttl;
    }

    /// Write the header checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buf.as_mut(), field::CHECKSUM, value);
    }

    /// Write the source address.
    pub fn set_src_u32(&mut self, addr: u32) {
        write_u32(self.buf.as_mut(), field::SRC_ADDR, addr);
    }

    /// Write the destination address.
    pub fn set_dst_u32(&mut self, addr: u32) {
        write_u32(self.buf.as_mut(), field::DST_ADDR, addr);
    }

    /// The bytes after the header, up to the total length, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        let end = usize::from(self.total_len());
        &mut self.buf.as_mut()[start..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let builder =
            etherparse::PacketBuilder::ipv4([192, 0, 2, 1], [198, 51, 100, 2], 64).udp(1000, 2000);
        let mut out = Vec::new();
        builder.write(&mut out, b"hi").unwrap();
        out
    }

    #[test]
    fn parse_builder_output() {
        let bytes = sample();
        let ip = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(ip.header_len(), 20);
        assert_eq!(ip.total_len(), 30);
        assert_eq!(ip.src_addr(), Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(ip.dst_addr(), Ipv4Addr::new(198, 51, 100, 2));
        assert_eq!(ip.protocol(), PROTO_UDP);
        assert_eq!(ip.ttl(), 64);
        assert!(!ip.is_fragment());
        assert!(ip.verify_checksum());
        assert_eq!(ip.payload().len(), 10);
    }

    #[test]
    fn rejects_bad_headers() {
        let bytes = sample();
        assert_eq!(
            Ipv4Packet::new_checked(&bytes[..19]).unwrap_err(),
            ParseError::Truncated
        );
        let mut v6 = bytes.clone();
        v6[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&v6[..]).unwrap_err(),
            ParseError::Version
        );
        let mut ihl = bytes.clone();
        ihl[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&ihl[..]).unwrap_err(),
            ParseError::BadLength
        );
        let mut long = bytes.clone();
        long[3] = 31;
        assert_eq!(
            Ipv4Packet::new_checked(&long[..]).unwrap_err(),
            ParseError::Truncated
        );
        let mut short = bytes.clone();
        short[2] = 0;
        short[3] = 19;
        assert_eq!(
            Ipv4Packet::new_checked(&short[..]).unwrap_err(),
            ParseError::BadLength
        );
        let mut bad_sum = bytes;
        bad_sum[10] ^= 1;
        assert!(
            !Ipv4Packet::new_checked(&bad_sum[..])
                .unwrap()
                .verify_checksum()
        );
    }
}
