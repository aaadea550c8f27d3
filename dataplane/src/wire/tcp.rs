//! TCP headers (RFC 9293). `new_checked` guarantees a 20-byte header and a data offset
//! between 5 and the segment length.

use super::{ParseError, read_u16, read_u32, write_u16, write_u32};

/// FIN flag.
pub const FIN: u8 = 0x01;
/// SYN flag.
pub const SYN: u8 = 0x02;
/// RST flag.
pub const RST: u8 = 0x04;
/// ACK flag.
pub const ACK: u8 = 0x10;
/// URG flag: the urgent pointer is significant.
pub const URG: u8 = 0x20;

/// Option kind: end of the option list.
pub const OPT_EOL: u8 = 0;
/// Option kind: no-operation (padding).
pub const OPT_NOP: u8 = 1;
/// Option kind: maximum segment size (length 4).
pub const OPT_MSS: u8 = 2;
/// Option kind: SACK blocks (length 2 + 8 per block).
pub const OPT_SACK: u8 = 5;

/// Length of the longest TCP header (data offset 15).
pub const MAX_HEADER_LEN: usize = 60;

mod field {
    pub(super) const SRC_PORT: usize = 0;
    pub(super) const DST_PORT: usize = 2;
    pub(super) const SEQ: usize = 4;
    pub(super) const ACK: usize = 8;
    pub(super) const DATA_OFF: usize = 12;
    pub(super) const FLAGS: usize = 13;
    pub(super) const CHECKSUM: usize = 16;
    pub(super) const URG_PTR: usize = 18;
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

    /// Sequence number.
    pub fn seq(&self) -> u32 {
        read_u32(self.buf.as_ref(), field::SEQ)
    }

    /// Acknowledgment number.
    pub fn ack(&self) -> u32 {
        read_u32(self.buf.as_ref(), field::ACK)
    }

    /// Header length in bytes (data offset * 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buf.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The options: every `(offset, kind, length)` from the first option up to an end of
    /// list, where `offset` counts from the start of the TCP header. A kind without a length
    /// byte (EOL, NOP) has length 1; a malformed length (below 2 or past the header) ends the
    /// walk, as it does in the Linux parser.
    pub fn options(&self) -> Options<'_> {
        let b = self.buf.as_ref();
        Options {
            header: &b[..self.header_len().min(b.len())],
            at: MIN_HEADER_LEN,
        }
    }

    /// The flag bits of byte 13 (CWR ECE URG ACK PSH RST SYN FIN).
    pub fn flags(&self) -> u8 {
        self.buf.as_ref()[field::FLAGS]
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buf.as_ref(), field::CHECKSUM)
    }

    /// The urgent pointer (an offset from the sequence number; significant with URG).
    pub fn urg_ptr(&self) -> u16 {
        read_u16(self.buf.as_ref(), field::URG_PTR)
    }

    /// The MSS option's value and the offset of that value, if the header has a
    /// well-formed one (kind 2, length 4).
    pub fn mss(&self) -> Option<(u16, usize)> {
        let o = self.options().find(|o| o.kind == OPT_MSS && o.len == 4)?;
        Some((read_u16(self.buf.as_ref(), o.at + 2), o.at + 2))
    }

    /// The edges of the SACK option's blocks (left, right, left, ...) with the offset of
    /// each, if the header has a well-formed one (length 2 + 8 per block); at most four
    /// blocks fit a header.
    pub fn sack_edges(&self) -> impl Iterator<Item = (u32, usize)> + '_ {
        let o = self
            .options()
            .find(|o| o.kind == OPT_SACK && o.len >= 10 && (o.len - 2) % 8 == 0);
        let range = o.map_or(0..0, |o| o.at + 2..o.at + o.len);
        range
            .step_by(4)
            .map(|at| (read_u32(self.buf.as_ref(), at), at))
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

    /// Write the sequence number.
    pub fn set_seq(&mut self, seq: u32) {
        write_u32(self.buf.as_mut(), field::SEQ, seq);
    }

    /// Write the acknowledgment number.
    pub fn set_ack(&mut self, ack: u32) {
        write_u32(self.buf.as_mut(), field::ACK, ack);
    }

    /// Write the data offset for a header of `len` bytes (a multiple of 4, 20 to 60); the
    /// reserved bits keep their value.
    pub fn set_header_len(&mut self, len: usize) {
        let b = self.buf.as_mut();
        let words = u8::try_from(len / 4).unwrap_or(15).min(15);
        b[field::DATA_OFF] = (words << 4) | (b[field::DATA_OFF] & 0x0f);
    }

    /// Write a 32-bit value inside the options, at an offset [`TcpPacket::sack_edges`]
    /// returned.
    pub fn set_option_u32(&mut self, at: usize, value: u32) {
        write_u32(self.buf.as_mut(), at, value);
    }

    /// Write a 16-bit value inside the options, at an offset [`TcpPacket::mss`] returned.
    pub fn set_option_u16(&mut self, at: usize, value: u16) {
        write_u16(self.buf.as_mut(), at, value);
    }

    /// The option bytes from offset `at` (of an option [`TcpPacket::options`] found, or of
    /// room opened for a new one), for writing.
    pub fn option_bytes_mut(&mut self, at: usize, len: usize) -> &mut [u8] {
        &mut self.buf.as_mut()[at..at + len]
    }

    /// Write the flag bits of byte 13.
    pub fn set_flags(&mut self, flags: u8) {
        self.buf.as_mut()[field::FLAGS] = flags;
    }

    /// Write the urgent pointer.
    pub fn set_urg_ptr(&mut self, ptr: u16) {
        write_u16(self.buf.as_mut(), field::URG_PTR, ptr);
    }

    /// Write the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buf.as_mut(), field::CHECKSUM, value);
    }
}

/// One TCP option as [`TcpPacket::options`] walks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpOption {
    /// Offset of the kind byte from the start of the TCP header.
    pub at: usize,
    /// The option kind.
    pub kind: u8,
    /// The option's whole length (kind and length bytes included).
    pub len: usize,
}

/// The iterator of [`TcpPacket::options`].
#[derive(Clone, Debug)]
pub struct Options<'a> {
    header: &'a [u8],
    at: usize,
}

impl Iterator for Options<'_> {
    type Item = TcpOption;

    fn next(&mut self) -> Option<TcpOption> {
        let at = self.at;
        let kind = *self.header.get(at)?;
        let len = match kind {
            OPT_EOL | OPT_NOP => 1,
            _ => usize::from(*self.header.get(at + 1)?),
        };
        if len == 0 || (kind != OPT_EOL && kind != OPT_NOP && len < 2) {
            self.at = self.header.len();
            return None;
        }
        if at + len > self.header.len() {
            self.at = self.header.len();
            return None;
        }
        self.at = if kind == OPT_EOL {
            self.header.len()
        } else {
            at + len
        };
        Some(TcpOption { at, kind, len })
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
