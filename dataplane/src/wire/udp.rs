//! UDP headers (RFC 768). `new_checked` guarantees an 8-byte header and a length field
//! between 8 and the datagram's buffer. Over IPv4 a zero checksum means "none" and must stay
//! zero; a computed zero is sent as 0xffff (RFC 768).

use super::{ParseError, read_u16, write_u16};

mod field {
    pub(super) const SRC_PORT: usize = 0;
    pub(super) const DST_PORT: usize = 2;
    pub(super) const LENGTH: usize = 4;
    pub(super) const CHECKSUM: usize = 6;
}

/// Offset of the checksum field from the start of the UDP header (what a vnet
/// header's `csum_offset` names).
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM;

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// A read/write view of a UDP datagram.
#[derive(Debug)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wrap `buf` (the IP payload), checking the header and the length field.
    ///
    /// # Errors
    /// [`ParseError::Truncated`] or [`ParseError::BadLength`].
    pub fn new_checked(buf: T) -> Result<Self, ParseError> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        let len = usize::from(read_u16(b, field::LENGTH));
        if len < HEADER_LEN {
            return Err(ParseError::BadLength);
        }
        if len > b.len() {
            return Err(ParseError::Truncated);
        }
        Ok(Self { buf })
    }

    /// Wrap a segment whose header was already checked (the pipeline parses each header
    /// once with `new_checked`); accessors panic if it is shorter than the header.
    pub fn new_unchecked(buf: T) -> Self {
        Self { buf }
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        read_u16(self.buf.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        read_u16(self.buf.as_ref(), field::DST_PORT)
    }

    /// Length field.
    pub fn len(&self) -> u16 {
        read_u16(self.buf.as_ref(), field::LENGTH)
    }

    /// True if the length field says there is no payload.
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) == HEADER_LEN
    }

    /// Checksum field (0: none).
    pub fn checksum(&self) -> u16 {
        read_u16(self.buf.as_ref(), field::CHECKSUM)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Write the source port.
    pub fn set_src_port(&mut self, port: u16) {
        write_u16(self.buf.as_mut(), field::SRC_PORT, port);
    }

    /// Write the destination port.
    pub fn set_dst_port(&mut self, port: u16) {
        write_u16(self.buf.as_mut(), field::DST_PORT, port);
    }

    /// Write the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buf.as_mut(), field::CHECKSUM, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_builder_output() {
        let mut out = Vec::new();
        etherparse::PacketBuilder::ipv4([192, 0, 2, 1], [198, 51, 100, 2], 64)
            .udp(5353, 53)
            .write(&mut out, b"abc")
            .unwrap();
        let udp = UdpPacket::new_checked(&out[20..]).unwrap();
        assert_eq!((udp.src_port(), udp.dst_port(), udp.len()), (5353, 53, 11));
        assert!(!udp.is_empty());
        assert_ne!(udp.checksum(), 0);
        let mut bad = out[20..].to_vec();
        bad[5] = 7;
        assert_eq!(
            UdpPacket::new_checked(&bad[..]).unwrap_err(),
            ParseError::BadLength
        );
        bad[5] = 12;
        assert_eq!(
            UdpPacket::new_checked(&bad[..]).unwrap_err(),
            ParseError::Truncated
        );
    }
}
