//! The private DNS resolvers: one per attachment with a `dns_ip`, answering from inside
//! that VPC (see [`server`] for the socket side).
//!
//! Each is authoritative for the region's endpoint zone (`vpcep.<region>.internal`):
//! - an A query for a name of the VPC's own accepted endpoints with `enable_dns` gets its
//!   address (the names are in the published tables, per attachment, so two VPCs with the
//!   same CIDR each see only their own, and a name goes with the generation that drops it:
//!   after a reject, a delete or a detach);
//! - any other name in the zone is NXDOMAIN, and another type for an existing name is an
//!   empty NOERROR answer;
//! - a name outside the zone is forwarded to the configured upstream resolvers, or REFUSED
//!   when there are none.
//!
//! The wire format is hickory-proto's; nothing here parses DNS by hand.

pub mod server;

use std::net::Ipv4Addr;

use dataplane::Attachment;
use dataplane::tables::Tables;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};

/// What to do with one DNS message from a client.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// Send these bytes back.
    Answer(Vec<u8>),
    /// Not for the zone and an upstream is configured: forward the query as it is.
    Forward,
    /// Not a query at all (a response, or too short for an id): say nothing.
    Ignore,
}

/// What a resolver answers with.
#[derive(Clone, Debug)]
pub struct Zone {
    /// The zone, lower case, no final dot.
    pub name: String,
    /// TTL of the A records.
    pub ttl: u32,
    /// Names outside the zone are forwarded (else REFUSED).
    pub forwards: bool,
}

fn encode(m: &Message) -> Reply {
    m.to_vec().map_or(Reply::Ignore, Reply::Answer)
}

/// The error answer to a message that carried at least an id.
fn error(query: &[u8], code: ResponseCode) -> Reply {
    if query.len() < 2 {
        return Reply::Ignore;
    }
    let id = u16::from_be_bytes([query[0], query[1]]);
    encode(&Message::error_msg(id, OpCode::Query, code))
}

/// Answer `query`, which arrived from a client of attachment `vpc`, from `tables`.
pub fn answer(query: &[u8], vpc: Attachment, tables: &Tables, zone: &Zone) -> Reply {
    let Ok(req) = Message::from_vec(query) else {
        return error(query, ResponseCode::FormErr);
    };
    if req.metadata.message_type != MessageType::Query {
        return Reply::Ignore;
    }
    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = zone.forwards;
    if req.metadata.op_code != OpCode::Query {
        resp.metadata.response_code = ResponseCode::NotImp;
        return encode(&resp);
    }
    let [q] = req.queries.as_slice() else {
        resp.metadata.response_code = ResponseCode::FormErr;
        return encode(&resp);
    };
    resp.add_query(q.clone());
    let name = q.name().to_lowercase().to_ascii();
    let name = name.strip_suffix('.').unwrap_or(&name);
    let in_zone = name == zone.name
        || name
            .strip_suffix(zone.name.as_str())
            .is_some_and(|head| head.ends_with('.'));
    if !in_zone {
        if zone.forwards {
            return Reply::Forward;
        }
        resp.metadata.response_code = ResponseCode::Refused;
        return encode(&resp);
    }
    resp.metadata.authoritative = true;
    match tables.dns_name(vpc, name) {
        Some(ip) => {
            if q.query_type() == RecordType::A && q.query_class() == DNSClass::IN {
                resp.add_answer(Record::from_rdata(
                    q.name().clone(),
                    zone.ttl,
                    RData::A(A(ip)),
                ));
            }
        }
        // The apex exists (it holds the names); anything else under it does not.
        None if name == zone.name => {}
        None => resp.metadata.response_code = ResponseCode::NXDomain,
    }
    encode(&resp)
}

/// The address in the first A record of a response (tests and tools).
pub fn first_a(response: &[u8]) -> Option<Ipv4Addr> {
    let m = Message::from_vec(response).ok()?;
    m.answers.iter().find_map(|r| match r.data {
        RData::A(A(ip)) => Some(ip),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use dataplane::tables::Ipv4Cidr;
    use dataplane::tables::sharded::Change;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    use super::*;

    const ZONE: &str = "vpcep.r.internal";

    fn tables() -> Tables {
        let snat: Ipv4Cidr = "198.19.128.0/17".parse().unwrap();
        Tables::new(snat).with_dns([
            Change::Put(
                (Attachment(0), Arc::from("10-0-0-7.vpcep.r.internal")),
                0x0a00_0007,
            ),
            Change::Put(
                (Attachment(1), Arc::from("10-0-0-8.vpcep.r.internal")),
                0x0a00_0008,
            ),
        ])
    }

    fn zone(forwards: bool) -> Zone {
        Zone {
            name: ZONE.into(),
            ttl: 60,
            forwards,
        }
    }

    fn ask(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    fn reply(query: &[u8], vpc: u16, forwards: bool) -> Message {
        match answer(query, Attachment(vpc), &tables(), &zone(forwards)) {
            Reply::Answer(b) => Message::from_vec(&b).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_vpc_sees_only_its_own_names() {
        let q = ask("10-0-0-7.vpcep.r.internal.", RecordType::A);
        let r = reply(&q, 0, false);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.metadata.authoritative);
        assert_eq!(r.metadata.id, Message::from_vec(&q).unwrap().metadata.id);
        assert_eq!(
            first_a(&r.to_vec().unwrap()),
            Some(Ipv4Addr::new(10, 0, 0, 7))
        );
        assert_eq!(r.answers[0].ttl, 60);
        // The same name from the other VPC: it does not exist there.
        let r = reply(&q, 1, false);
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert!(r.answers.is_empty());
        // Case does not matter.
        let r = reply(&ask("10-0-0-7.VPCEP.r.Internal.", RecordType::A), 0, false);
        assert_eq!(
            first_a(&r.to_vec().unwrap()),
            Some(Ipv4Addr::new(10, 0, 0, 7))
        );
    }

    #[test]
    fn the_zone_is_authoritative_and_the_rest_refused_or_forwarded() {
        let aaaa = reply(
            &ask("10-0-0-7.vpcep.r.internal.", RecordType::AAAA),
            0,
            false,
        );
        assert_eq!(aaaa.metadata.response_code, ResponseCode::NoError);
        assert!(aaaa.answers.is_empty());
        let apex = reply(&ask("vpcep.r.internal.", RecordType::A), 0, false);
        assert_eq!(apex.metadata.response_code, ResponseCode::NoError);
        let other = ask("example.com.", RecordType::A);
        let r = reply(&other, 0, false);
        assert_eq!(r.metadata.response_code, ResponseCode::Refused);
        assert!(!r.metadata.authoritative);
        assert_eq!(
            answer(&other, Attachment(0), &tables(), &zone(true)),
            Reply::Forward
        );
        // A suffix that is not a label boundary is not in the zone.
        let r = reply(&ask("xvpcep.r.internal.", RecordType::A), 0, false);
        assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    }

    proptest::proptest! {
        /// Whatever a tenant sends, the resolver answers with a well-formed message with
        /// the same id, or says nothing; it never panics.
        #[test]
        fn any_bytes_get_a_parseable_answer_or_none(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)
        ) {
            for forwards in [false, true] {
                if let Reply::Answer(b) = answer(&bytes, Attachment(0), &tables(), &zone(forwards)) {
                    let m = Message::from_vec(&b).unwrap();
                    proptest::prop_assert_eq!(m.metadata.id, u16::from_be_bytes([bytes[0], bytes[1]]));
                    proptest::prop_assert_eq!(m.metadata.message_type, MessageType::Response);
                }
            }
        }
    }

    #[test]
    fn bad_messages_get_formerr_or_nothing() {
        assert_eq!(
            answer(&[1], Attachment(0), &tables(), &zone(false)),
            Reply::Ignore
        );
        let r = match answer(&[0xab, 0xcd, 0xff], Attachment(0), &tables(), &zone(false)) {
            Reply::Answer(b) => Message::from_vec(&b).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (r.metadata.id, r.metadata.response_code),
            (0xabcd, ResponseCode::FormErr)
        );
        // A response is never answered (no loops between resolvers).
        let mut m = Message::response(7, OpCode::Query);
        m.add_query(Query::query(Name::from_ascii("a.").unwrap(), RecordType::A));
        assert_eq!(
            answer(&m.to_vec().unwrap(), Attachment(0), &tables(), &zone(false)),
            Reply::Ignore
        );
        // Two questions.
        let mut m = Message::query();
        for n in ["a.", "b."] {
            m.add_query(Query::query(Name::from_ascii(n).unwrap(), RecordType::A));
        }
        let r = reply(&m.to_vec().unwrap(), 0, false);
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    }
}
