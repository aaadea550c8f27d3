//! The conntrack hand-over: the flow table encoded when the daemon stops for a planned
//! restart or an upgrade (and every second while it runs), and decoded when it starts, so
//! established flows (and the SNAT ports they hold) carry on where they were. Encoding and
//! decoding work on any `Write` and `Read`; the daemon keeps the bytes in a file (written
//! to a temporary file, synced and renamed, so a crash never leaves a half file under the
//! real name).
//!
//! The format is a small versioned binary (little-endian):
//!
//! ```text
//!  "VPCEPCT2"  u64 wall-clock seconds (Unix) when written
//!             u32 attachment count, then each attachment's VPC id (u16 length + UTF-8)
//!  u64 flow count, then per flow:
//!    original key   src u32, dst u32, sport u16, dport u16, vpc u16, proto u8
//!    original entry rewrite (src u32, dst u32, sport u16, dport u16), out vpc u16,
//!                   next-hop MAC [6], state u8, idle seconds u32
//!    reply entry    next-hop MAC [6] (the client's), state u8, idle seconds u32
//!    client ISN     u32 (flows with client identity: the PROXY v2 shift's origin)
//! ```
//!
//! A version 1 hand-over (`VPCEPCT1`, the same without the client ISN; no flow had client
//! identity then) still loads, so an upgrade keeps its flows.
//!
//! Attachments are recorded by VPC id, not by index: a flow whose VPCs are no longer
//! attached is left out on load, and the others are renumbered to the new attachment
//! order. Loaded flows carry generation stamp 0, so each is re-checked against the tables
//! of the new process at its first packet: a connection rejected while the daemon was down
//! stops there. Idle time is kept, and the time the daemon was down is added to it: a flow
//! that timed out meanwhile is not loaded. (The new tracker's clock starts at zero, so
//! the idle time a loaded flow had is not carried further: it gets a fresh timer.)
//!
//! A hand-over that cannot be read (another version, a header cut short) loads nothing and
//! says why; one cut among its records loads the flows before the cut. It never keeps the
//! daemon from starting.

use std::io::{self, Read, Write};

use super::{ConnTrack, FlowInit, Rewrite};
use crate::flow::{Attachment, FlowKey};
use crate::wire::ethernet::MacAddr;

const MAGIC: &[u8; 8] = b"VPCEPCT2";
/// The previous version: no client ISN.
const MAGIC_V1: &[u8; 8] = b"VPCEPCT1";
/// Longest VPC id a hand-over holds.
const MAX_ID_LEN: usize = 256;
/// Most attachments a hand-over holds.
const MAX_ATTACHMENTS: u32 = 65_535;

/// What one flow of a hand-over holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Record {
    pub(super) key: FlowKey,
    pub(super) rewrite: Rewrite,
    pub(super) out_vpc: Attachment,
    pub(super) backend_mac: MacAddr,
    pub(super) state: u8,
    pub(super) idle: u32,
    pub(super) client_mac: MacAddr,
    pub(super) reply_state: u8,
    pub(super) reply_idle: u32,
    pub(super) client_isn: u32,
}

impl Record {
    /// The record of `f` at tracker second `now_secs` (its times as idle seconds).
    pub(super) fn of(f: &FlowInit, now_secs: u32) -> Self {
        Self {
            key: f.key,
            rewrite: f.rewrite,
            out_vpc: f.out_vpc,
            backend_mac: f.backend_mac,
            state: f.state,
            idle: now_secs.saturating_sub(f.last_seen[0]),
            client_mac: f.client_mac,
            reply_state: f.reply_state,
            reply_idle: now_secs.saturating_sub(f.last_seen[1]),
            client_isn: f.client_isn,
        }
    }

    /// The flow this record holds, on attachments `vpcs` (the client's, then the one it
    /// leaves on) of this tracker, at its second `now_secs`: generation stamp 0, so its
    /// first packet checks it against this process's tables (and finds its meter slot).
    pub(super) fn flow(&self, [vpc, out_vpc]: [Attachment; 2], now_secs: u32) -> FlowInit {
        FlowInit {
            key: FlowKey { vpc, ..self.key },
            rewrite: self.rewrite,
            out_vpc,
            backend_mac: self.backend_mac,
            client_mac: self.client_mac,
            state: self.state,
            reply_state: self.reply_state,
            generation: 0,
            last_seen: [
                now_secs.saturating_sub(self.idle),
                now_secs.saturating_sub(self.reply_idle),
            ],
            client_isn: self.client_isn,
            meter: 0,
        }
    }
}

/// Encode every flow of `ct` into `out`. `attachments` are the VPC ids of the attachments, indexed by [`Attachment`]; `now_secs` is
/// the tracker's present (see [`ConnTrack::secs`]) and `wall_secs` the wall clock's (Unix
/// seconds), from which the next start measures the downtime. Returns how many flows were
/// written.
///
/// # Errors
/// `out` failed, or an attachment id or count is beyond what the format holds.
pub fn encode(
    ct: &ConnTrack,
    attachments: &[String],
    now_secs: u32,
    wall_secs: u64,
    out: impl Write,
) -> io::Result<usize> {
    let records: Vec<Record> = ct
        .flows()
        .into_iter()
        .map(|f| Record::of(&f, now_secs))
        .collect();
    let mut out = out;
    out.write_all(MAGIC)?;
    out.write_all(&wall_secs.to_le_bytes())?;
    let count = u32::try_from(attachments.len())
        .ok()
        .filter(|n| *n <= MAX_ATTACHMENTS)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "too many attachments"))?;
    out.write_all(&count.to_le_bytes())?;
    for id in attachments {
        let len = u16::try_from(id.len())
            .ok()
            .filter(|n| usize::from(*n) <= MAX_ID_LEN)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "VPC id too long"))?;
        out.write_all(&len.to_le_bytes())?;
        out.write_all(id.as_bytes())?;
    }
    out.write_all(&(records.len() as u64).to_le_bytes())?;
    for r in &records {
        write_record(&mut out, r)?;
    }
    out.flush()?;
    Ok(records.len())
}

/// Decode the hand-over in `input` into `ct`, mapping the recorded attachments to `attachments`
/// (the VPC ids of the new attachment order); flows of VPCs no longer attached, and flows
/// that no longer fit the tracker, or whose idle time plus the downtime (from the saved
/// wall clock to `wall_secs`) reached their timeout, are left out. `now_secs` is the new
/// tracker's present. Returns the original keys of the flows loaded, for the pipelines'
/// expiry sweeps.
///
/// # Errors
/// `input` failed, is of another format, or its header is cut: nothing was loaded. Input
/// cut among its records is no error: the flows before the cut are loaded
/// and their keys returned with the error in [`Loaded::cut_short`], so every flow in the
/// tracker is in an expiry sweep.
pub fn decode(
    ct: &ConnTrack,
    attachments: &[String],
    now_secs: u32,
    wall_secs: u64,
    input: impl Read,
) -> io::Result<Loaded> {
    let mut input = input;
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic)?;
    let v1 = &magic == MAGIC_V1;
    if &magic != MAGIC && !v1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a vpcep conntrack snapshot (or another version)",
        ));
    }
    let saved_at = read_u64(&mut input)?;
    // A clock that went backwards counts as no downtime.
    let down = u32::try_from(wall_secs.saturating_sub(saved_at)).unwrap_or(u32::MAX);
    let count = read_u32(&mut input)?;
    if count > MAX_ATTACHMENTS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "attachment count",
        ));
    }
    let mut map = Vec::new();
    for _ in 0..count {
        let len = usize::from(read_u16(&mut input)?);
        if len > MAX_ID_LEN {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "VPC id length"));
        }
        let mut id = vec![0u8; len];
        input.read_exact(&mut id)?;
        let now = attachments
            .iter()
            .position(|a| a.as_bytes() == id.as_slice())
            .and_then(|i| u16::try_from(i).ok())
            .map(Attachment);
        map.push(now);
    }
    let remap = |v: Attachment| map.get(v.index()).copied().flatten();
    let flows = read_u64(&mut input)?;
    let mut loaded = Vec::new();
    for _ in 0..flows {
        let r = match read_record(&mut input, v1) {
            Ok(r) => r,
            Err(e) => {
                return Ok(Loaded {
                    keys: loaded,
                    cut_short: Some(e),
                });
            }
        };
        let (Some(vpc), Some(out_vpc)) = (remap(r.key.vpc), remap(r.out_vpc)) else {
            continue;
        };
        let key = FlowKey { vpc, ..r.key };
        let idle = r.idle.min(r.reply_idle).saturating_add(down);
        if u64::from(idle) >= ct.timeout_secs(key.proto, r.state) {
            continue; // timed out while the daemon was down
        }
        if ct.try_reserve(vpc).is_err() {
            continue; // the VPC's share or the node is full: this flow ends here
        }
        let flow = r.flow([vpc, out_vpc], now_secs);
        if ct
            .insert_flow(&flow, [(r.rewrite.src, r.rewrite.sport)])
            .is_err()
        {
            ct.release(vpc);
            continue;
        }
        loaded.push(key);
    }
    Ok(Loaded {
        keys: loaded,
        cut_short: None,
    })
}

/// What [`decode`] took from a hand-over.
#[derive(Debug)]
pub struct Loaded {
    /// The original keys of the flows loaded, for the pipelines' expiry sweeps
    /// ([`crate::pipeline::Pipeline::adopt`]).
    pub keys: Vec<FlowKey>,
    /// Why the records ended early (a file cut short): the flows before are loaded.
    pub cut_short: Option<io::Error>,
}

pub(super) fn write_record(out: &mut impl Write, r: &Record) -> io::Result<()> {
    let k = &r.key;
    out.write_all(&k.src.to_le_bytes())?;
    out.write_all(&k.dst.to_le_bytes())?;
    out.write_all(&k.sport.to_le_bytes())?;
    out.write_all(&k.dport.to_le_bytes())?;
    out.write_all(&k.vpc.0.to_le_bytes())?;
    out.write_all(&[k.proto])?;
    let w = &r.rewrite;
    out.write_all(&w.src.to_le_bytes())?;
    out.write_all(&w.dst.to_le_bytes())?;
    out.write_all(&w.sport.to_le_bytes())?;
    out.write_all(&w.dport.to_le_bytes())?;
    out.write_all(&r.out_vpc.0.to_le_bytes())?;
    out.write_all(&r.backend_mac.0)?;
    out.write_all(&[r.state])?;
    out.write_all(&r.idle.to_le_bytes())?;
    out.write_all(&r.client_mac.0)?;
    out.write_all(&[r.reply_state])?;
    out.write_all(&r.reply_idle.to_le_bytes())?;
    out.write_all(&r.client_isn.to_le_bytes())
}

/// A flow key (15 bytes).
pub(super) fn read_key(input: &mut impl Read) -> io::Result<FlowKey> {
    Ok(FlowKey {
        src: read_u32(input)?,
        dst: read_u32(input)?,
        sport: read_u16(input)?,
        dport: read_u16(input)?,
        vpc: Attachment(read_u16(input)?),
        proto: read_u8(input)?,
    })
}

/// One flow; `v1`: of a version 1 snapshot (no client ISN).
pub(super) fn read_record(input: &mut impl Read, v1: bool) -> io::Result<Record> {
    let key = read_key(input)?;
    let rewrite = Rewrite {
        src: read_u32(input)?,
        dst: read_u32(input)?,
        sport: read_u16(input)?,
        dport: read_u16(input)?,
    };
    Ok(Record {
        key,
        rewrite,
        out_vpc: Attachment(read_u16(input)?),
        backend_mac: read_mac(input)?,
        state: read_u8(input)?,
        idle: read_u32(input)?,
        client_mac: read_mac(input)?,
        reply_state: read_u8(input)?,
        reply_idle: read_u32(input)?,
        client_isn: if v1 { 0 } else { read_u32(input)? },
    })
}

pub(super) fn read_u8(input: &mut impl Read) -> io::Result<u8> {
    let mut b = [0u8; 1];
    input.read_exact(&mut b)?;
    Ok(b[0])
}

pub(super) fn read_u16(input: &mut impl Read) -> io::Result<u16> {
    let mut b = [0u8; 2];
    input.read_exact(&mut b)?;
    Ok(u16::from_le_bytes(b))
}

pub(super) fn read_u32(input: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    input.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

pub(super) fn read_u64(input: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    input.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

pub(super) fn read_mac(input: &mut impl Read) -> io::Result<MacAddr> {
    let mut b = [0u8; 6];
    input.read_exact(&mut b)?;
    Ok(MacAddr(b))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::config::Config;
    use crate::conntrack::state;
    use crate::pipeline::{Pipeline, Shared};

    /// A tracker of 100 flows over three attachments, no per-VPC share.
    fn tracker(epoch: Instant) -> ConnTrack {
        let config = Config {
            attachments: vec![MacAddr::default(); 3],
            conntrack_capacity: 100.try_into().unwrap(),
            conntrack_vpc_percent: 100,
            ..Config::default()
        };
        ConnTrack::new(&config, epoch)
    }

    fn flow(ct: &ConnTrack, vpc: u16, client_port: u16, now: u32) -> FlowKey {
        let key = FlowKey {
            src: 0x0a00_0005,
            dst: 0x0a00_00c8,
            sport: client_port,
            dport: 8080,
            vpc: Attachment(vpc),
            proto: 6,
        };
        let rw = Rewrite {
            src: 0xc613_8001,
            dst: 0x0a00_000a,
            sport: 2000 + client_port,
            dport: 80,
        };
        assert!(ct.try_reserve(Attachment(vpc)).is_ok());
        let flow = FlowInit {
            key,
            rewrite: rw,
            out_vpc: Attachment(2),
            backend_mac: MacAddr([2, 0, 0, 0, 0, 0x10]),
            client_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            state: state::ESTABLISHED,
            // Odd client ports carry client identity (a PROXY v2 flow and its ISN).
            reply_state: state::SEEN
                | if client_port % 2 == 1 {
                    state::PROXY
                } else {
                    0
                },
            generation: 9,
            last_seen: [now, now],
            client_isn: u32::from(client_port) * 1000,
            meter: 0,
        };
        assert_eq!(
            ct.insert_flow(&flow, [(rw.src, rw.sport)]),
            Ok((rw.src, rw.sport))
        );
        key
    }

    #[test]
    fn flows_survive_a_round_trip_renumbered_and_re_checked() {
        let epoch = Instant::now();
        let ct = tracker(epoch);
        let a = flow(&ct, 0, 40000, 100);
        let b = flow(&ct, 1, 40001, 95);
        let mut bytes = Vec::new();
        let old = ["vpc-a".to_string(), "vpc-b".into(), "vpc-p".into()];
        assert_eq!(encode(&ct, &old, 110, 1_000_000, &mut bytes).unwrap(), 2);

        // The new process attaches vpc-p first and no longer vpc-a.
        let ct2 = tracker(epoch + Duration::from_secs(200));
        let new = ["vpc-p".to_string(), "vpc-b".into()];
        let loaded = decode(&ct2, &new, 5, 1_000_060, &bytes[..]).unwrap();
        assert!(loaded.cut_short.is_none());
        let loaded = loaded.keys;
        assert_eq!(loaded.len(), 1, "the flow of vpc-a is left out");
        assert_eq!(ct2.len(), 1);
        let key = FlowKey {
            vpc: Attachment(1),
            ..b
        };
        assert_eq!(loaded[0], key);
        let e = ct2.get(&key).unwrap();
        assert_eq!(
            e.out_vpc,
            Attachment(0),
            "the provider attachment is renumbered"
        );
        assert_eq!(e.state(), state::ESTABLISHED);
        assert!(
            !e.checked_at(9),
            "re-checked against the new tables at its next packet"
        );
        assert_eq!(
            e.last_seen(),
            0,
            "idle 15 s before, 5 s into the new tracker: saturates"
        );
        let r = ct2.get(&e.peer_key(6)).unwrap();
        assert_eq!(r.dir, crate::conntrack::Direction::Reply);
        assert_eq!(r.out_vpc, Attachment(1));
        assert_eq!(r.dst_mac, MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(r.state(), state::SEEN | state::PROXY);
        assert_eq!((e.identity, r.identity), (state::PROXY, state::PROXY));
        assert_eq!(
            e.client_isn(),
            40_001_000,
            "the PROXY v2 shift's origin is kept"
        );
        let _ = a;
    }

    #[test]
    fn flows_that_timed_out_while_the_daemon_was_down_are_not_loaded() {
        let epoch = Instant::now();
        let ct = tracker(epoch);
        flow(&ct, 0, 40000, 100); // established: 350 s timeout
        let mut bytes = Vec::new();
        let ids = ["a".to_string(), "b".into(), "p".into()];
        encode(&ct, &ids, 100, 5_000, &mut bytes).unwrap();
        let fresh = || tracker(Instant::now());
        let ct2 = fresh();
        assert_eq!(
            decode(&ct2, &ids, 0, 5_349, &bytes[..]).unwrap().keys.len(),
            1,
            "349 s down"
        );
        let ct3 = fresh();
        assert!(
            decode(&ct3, &ids, 0, 5_350, &bytes[..])
                .unwrap()
                .keys
                .is_empty(),
            "350 s down"
        );
        assert!(ct3.is_empty());
    }

    #[test]
    fn a_hand_over_cut_among_its_records_keeps_the_flows_before_and_they_expire() {
        let epoch = Instant::now();
        let ct = tracker(epoch);
        for port in [40000, 40002, 40004] {
            flow(&ct, 0, port, 100);
        }
        let mut bytes = Vec::new();
        let ids = ["a".to_string(), "b".into(), "p".into()];
        encode(&ct, &ids, 100, 5_000, &mut bytes).unwrap();
        bytes.truncate(bytes.len() - 5);

        let config = Config {
            attachments: vec![MacAddr::default(); 3],
            conntrack_capacity: 100.try_into().unwrap(),
            conntrack_vpc_percent: 100,
            ..Config::default()
        };
        let shared = Shared::new(&config, epoch);
        let loaded = decode(&shared.conntrack, &ids, 0, 5_000, &bytes[..]).unwrap();
        assert!(loaded.cut_short.is_some(), "the cut is reported");
        assert_eq!(loaded.keys.len(), 2, "the two whole records");
        assert_eq!(shared.conntrack.len(), 2);
        // Every flow loaded is in a sweep: after the established timeout none is left.
        let mut p = Pipeline::new(config, shared.clone());
        p.adopt(loaded.keys);
        assert_eq!(p.expire(epoch + Duration::from_secs(351), 64), 2);
        assert!(shared.conntrack.is_empty());
    }

    #[test]
    fn a_bad_hand_over_loads_nothing_and_says_why() {
        let ct = tracker(Instant::now());
        assert!(decode(&ct, &[], 0, 0, &b""[..]).is_err(), "empty");
        assert!(
            decode(&ct, &[], 0, 0, &b"VPCEPCT9garbage"[..]).is_err(),
            "another version"
        );
        let mut long_id = b"VPCEPCT1".to_vec();
        long_id.extend_from_slice(&[0; 8]); // written at
        long_id.extend_from_slice(&1u32.to_le_bytes()); // one attachment
        long_id.extend_from_slice(&u16::MAX.to_le_bytes()); // whose id is too long
        assert!(
            decode(&ct, &[], 0, 0, &long_id[..]).is_err(),
            "an id longer than allowed"
        );
        assert!(ct.is_empty());
    }
}
