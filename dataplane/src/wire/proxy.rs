//! The PROXY protocol version 2 header (haproxy's `proxy-protocol.txt`, section 2.2), as
//! vpcep writes it at the start of a client-to-backend TCP stream (`tcp_proxy` =
//! `proxy_open` or `open`): binary, command PROXY, TCP over IPv4, and one TLV of the
//! custom range carrying the connection's marker id.
//!
//! ```text
//!  0                12     13     14          16
//!  signature (12)   0x21   0x11   length=23   src addr (4) dst addr (4)
//!  src port (2) dst port (2)   0xE0  0x0008  marker id (8, big-endian)
//! ```
//!
//! 39 bytes in all. Source: the client's address and port as the client sent them (its
//! VPC address); destination: the endpoint's address and the port the client dialled. The
//! TLV type [`TLV_MARKER_ID`] (0xE0, the first of `PP2_TYPE_MIN_CUSTOM`..`MAX_CUSTOM`) holds
//! the connection's `marker_id` (the user guide's packet ID) as a u64 in network order.

/// The 12-byte signature every v2 header starts with.
pub const SIGNATURE: [u8; 12] = [
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
];
/// Version 2, command PROXY.
pub const VERSION_PROXY: u8 = 0x21;
/// Address family AF_INET, transport STREAM.
pub const FAMILY_TCP4: u8 = 0x11;
/// The TLV type of the marker id: vpcep's, in the custom range 0xE0-0xEF.
pub const TLV_MARKER_ID: u8 = 0xe0;
/// The header's length: 16 fixed bytes, 12 of IPv4 addresses and ports, and the 11-byte
/// marker TLV.
pub const HEADER_LEN: usize = 16 + 12 + 3 + 8;

/// Who the stream is from and to, as the header tells the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addresses {
    /// The client's address (host order).
    pub src: u32,
    /// The endpoint's address (host order).
    pub dst: u32,
    /// The client's port.
    pub sport: u16,
    /// The port the client dialled.
    pub dport: u16,
}

/// The header for `addresses` and `marker_id`.
pub fn header(addresses: Addresses, marker_id: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..12].copy_from_slice(&SIGNATURE);
    h[12] = VERSION_PROXY;
    h[13] = FAMILY_TCP4;
    let rest = u16::try_from(HEADER_LEN - 16).unwrap_or(0);
    h[14..16].copy_from_slice(&rest.to_be_bytes());
    h[16..20].copy_from_slice(&addresses.src.to_be_bytes());
    h[20..24].copy_from_slice(&addresses.dst.to_be_bytes());
    h[24..26].copy_from_slice(&addresses.sport.to_be_bytes());
    h[26..28].copy_from_slice(&addresses.dport.to_be_bytes());
    h[28] = TLV_MARKER_ID;
    h[29..31].copy_from_slice(&8u16.to_be_bytes());
    h[31..39].copy_from_slice(&marker_id.to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use core::net::{Ipv4Addr, SocketAddr};

    use ppp::v2;

    use super::*;

    /// The `ppp` crate is the oracle: an independent parser reads what we write.
    #[test]
    fn an_independent_parser_reads_the_addresses_and_the_marker_tlv() {
        let a = Addresses {
            src: Ipv4Addr::new(10, 0, 0, 5).to_bits(),
            dst: Ipv4Addr::new(10, 0, 0, 200).to_bits(),
            sport: 40_000,
            dport: 9000,
        };
        let bytes = header(a, 0x0102_0304_0506_0708);
        let parsed = v2::Header::try_from(&bytes[..]).expect("a valid v2 header");
        assert_eq!(parsed.len(), HEADER_LEN);
        assert_eq!(parsed.command, v2::Command::Proxy);
        assert_eq!(parsed.protocol, v2::Protocol::Stream);
        match parsed.addresses {
            v2::Addresses::IPv4(ip) => {
                assert_eq!(
                    SocketAddr::from((ip.source_address, ip.source_port)),
                    "10.0.0.5:40000".parse().unwrap()
                );
                assert_eq!(
                    SocketAddr::from((ip.destination_address, ip.destination_port)),
                    "10.0.0.200:9000".parse().unwrap()
                );
            }
            other => panic!("not IPv4: {other:?}"),
        }
        let tlvs: Vec<_> = parsed.tlvs().collect::<Result<_, _>>().expect("TLVs");
        assert_eq!(tlvs.len(), 1);
        assert_eq!(tlvs[0].kind, TLV_MARKER_ID);
        assert_eq!(
            tlvs[0].value.as_ref(),
            &0x0102_0304_0506_0708u64.to_be_bytes()
        );
    }
}
