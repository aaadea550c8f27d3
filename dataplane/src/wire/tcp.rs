//! TCP headers (RFC 9293). `new_checked` guarantees a 20-byte header and a data offset
//! between 5 and the segment length.

use super::{ParseError, read_u16, write_u16};

/// FIN flag.
pub const FIN: u8 = 0x01;
/// SYN flag.
pub const SYN: u8 = 0x02;
/// RST flag.
pub const RST: u8 = 0x04;
/// ACK flag.
pub const ACK: u8 = 0x10;

mod field {
    pub(super) const SRC_PORT: usize = 0;
    pub(super) const DST_PORT: usize = 2;
    pub(super) const DATA_OFF: usize = 12;
    pub(super) const FLAGS: usize = 13;
    pub(super) const CHECKSUM: usize = 16;
}

/// Offset of the checksum field from the start of the TCP header (what a vnet
/// header's `csum_offset` names).
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM;

/// Length of a TCP header without options.
pub const MIN_HEADER_LEN: usize = 20;

/// A read/write view of a TCP segment.
#[derive(Debug)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wrap `buf` (the IP payload), checking the header length.
    ///
    /// # Errors
    /// [`ParseError::Truncated`] or [`ParseError::BadLength`].
    pub fn new_checked(buf: T) -> Result<Self, ParseError> {
        let b = buf.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        let off = usize::from(b[field::DATA_OFF] >> 4) * 4;
        if off < MIN_HEADER_LEN {
            return Err(ParseError::BadLength);
        }
        if off > b.len() {
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

    /// The flag bits of byte 13 (CWR ECE URG ACK PSH RST SYN FIN).
    pub fn flags(&self) -> u8 {
        self.buf.as_ref()[field::FLAGS]
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buf.as_ref(), field::CHECKSUM)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
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
            .tcp(40000, 80, 1, 65535)
            .syn()
            .write(&mut out, &[])
            .unwrap();
        let tcp = TcpPacket::new_checked(&out[20..]).unwrap();
        assert_eq!(tcp.src_port(), 40000);
        assert_eq!(tcp.dst_port(), 80);
        assert_eq!(tcp.flags() & (SYN | ACK), SYN);
        let mut bad = out[20..].to_vec();
        bad[12] = 0x40;
        assert_eq!(
            TcpPacket::new_checked(&bad[..]).unwrap_err(),
            ParseError::BadLength
        );
        bad[12] = 0xf0;
        assert_eq!(
            TcpPacket::new_checked(&bad[..]).unwrap_err(),
            ParseError::Truncated
        );
        assert!(TcpPacket::new_checked(&out[20..39]).is_err());
    }
}
