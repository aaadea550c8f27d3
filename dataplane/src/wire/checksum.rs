//! The Internet checksum: the RFC 1071 one's-complement sum and the RFC 1624 incremental
//! update. This is the only checksum arithmetic in the crate.
//!
//! All values are handled in network byte order read as big-endian `u16` words, so the
//! arithmetic is the same on every host (RFC 1071 section 2(B): the sum is byte-order
//! independent as long as both sides of an update use the same order).
//!
//! RFC 1624 equation 3: `HC' = ~(~HC + ~m + m')`, which unlike equation 2 never produces
//! `-0` (0x0000) from a non-zero sum when the old checksum was correct.

/// Fold a 32-bit accumulator into 16 bits with end-around carry.
#[inline]
pub fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    // The two folds leave at most 16 significant bits.
    #[allow(clippy::cast_possible_truncation)]
    let folded = sum as u16;
    folded
}

/// The one's-complement sum of `data` as big-endian 16-bit words (an odd last byte is padded
/// with zero), added to `initial`. Not complemented.
pub fn sum(initial: u32, data: &[u8]) -> u32 {
    let mut acc = u64::from(initial);
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        acc += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    while acc > 0xffff_ffff {
        acc = (acc & 0xffff_ffff) + (acc >> 32);
    }
    #[allow(clippy::cast_possible_truncation)]
    let acc = acc as u32;
    acc
}

/// The RFC 1071 checksum of `data`: the complement of its folded sum.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(0, data))
}

/// RFC 1624 incremental update of checksum `hc` when one 16-bit word changes from `old` to
/// `new`.
#[inline]
pub fn update16(hc: u16, old: u16, new: u16) -> u16 {
    let s = u32::from(!hc) + u32::from(!old) + u32::from(new);
    !fold(s)
}

/// RFC 1624 incremental update when a 32-bit field (an IPv4 address) changes.
#[inline]
pub fn update32(hc: u16, old: u32, new: u32) -> u16 {
    #[allow(clippy::cast_possible_truncation)]
    let s = u32::from(!hc)
        + u32::from(!((old >> 16) as u16))
        + u32::from(!(old as u16))
        + ((new >> 16) & 0xffff)
        + (new & 0xffff);
    !fold(s)
}

/// The pseudo-header sum (RFC 793 / RFC 768) for an IPv4 transport segment.
pub fn pseudo_header_sum(src: u32, dst: u32, protocol: u8, len: u16) -> u32 {
    (src >> 16)
        + (src & 0xffff)
        + (dst >> 16)
        + (dst & 0xffff)
        + u32::from(protocol)
        + u32::from(len)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(0, &data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(sum(0, &[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
    }

    #[test]
    fn rfc1624_example_never_yields_negative_zero() {
        // RFC 1624 section 4: the other octets sum to 0xcd7a, m = 0x5555 -> m' = 0x3285.
        // HC = ~(0xcd7a + 0x5555) = 0xdd2f; the right HC' is ~(0xcd7a + 0x3285) = 0x0000,
        // which equation 3 gives (equation 2 would give 0xffff).
        assert_eq!(update16(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    /// Equal, except that all-zero data has two valid encodings of its checksum.
    fn assert_same_checksum(data: &[u8], incremental: u16, full: u16) -> Result<(), TestCaseError> {
        if data.iter().all(|b| *b == 0) {
            prop_assert!(incremental == 0 || incremental == 0xffff);
        } else {
            prop_assert_eq!(incremental, full);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn incremental_equals_full_recompute(
            mut data in proptest::collection::vec(any::<u8>(), 4..128),
            at in 0usize..64,
            word in any::<u16>(),
        ) {
            if data.len() % 2 == 1 { data.push(0); }
            let at = (at * 2) % (data.len() - 2);
            let before = checksum(&data);
            let old = u16::from_be_bytes([data[at], data[at + 1]]);
            data[at..at + 2].copy_from_slice(&word.to_be_bytes());
            let after = checksum(&data);
            let incremental = update16(before, old, word);
            assert_same_checksum(&data, incremental, after)?;
        }

        #[test]
        fn incremental32_equals_full_recompute(
            mut data in proptest::collection::vec(any::<u8>(), 8..128),
            at in 0usize..64,
            new in any::<u32>(),
        ) {
            if data.len() % 2 == 1 { data.push(0); }
            let at = (at * 2) % (data.len() - 4);
            let before = checksum(&data);
            let old = u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
            data[at..at + 4].copy_from_slice(&new.to_be_bytes());
            let after = checksum(&data);
            let incremental = update32(before, old, new);
            assert_same_checksum(&data, incremental, after)?;
        }
    }
}
