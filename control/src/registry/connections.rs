//! Connections, as the provider sees them: accepting or rejecting an endpoint of its
//! service, and describing it. Only the service's owning project may do either; a rejected
//! connection may be accepted again.

use super::{Registry, now};
use crate::command::{ConnectionNotes, Decision};
use crate::error::{ErrorCode, Rejection};
use crate::model::{Endpoint, EndpointId, Mutation, Record, ServiceId, Tenant, TenantView};

fn not_a_connection() -> Rejection {
    Rejection::new(
        ErrorCode::NotAConnection,
        "The endpoint does not belong to the endpoint service.",
    )
}

/// The endpoint `id` if it is a connection of the tenant's service `service`.
fn connection<'m>(
    v: TenantView<'m>,
    service: &ServiceId,
    id: &EndpointId,
) -> Result<&'m Endpoint, Rejection> {
    let svc = v
        .service(service)
        .ok_or_else(|| Rejection::not_found("endpoint service"))?;
    v.model()
        .endpoints
        .get(id)
        .filter(|e| e.service_id == svc.id)
        .ok_or_else(not_a_connection)
}

impl Registry {
    /// Accept (`receive`) or reject one endpoint's connection.
    ///
    /// # Errors
    /// EndPoint.0005 (not the owner), 2013 (not a connection of this service).
    pub fn decide_connection(
        &self,
        t: &Tenant,
        service: &ServiceId,
        cmd: Decision,
    ) -> Result<Vec<Endpoint>, Rejection> {
        self.write_as(t, |v| {
            let mut ep = connection(v, service, &cmd.endpoint_id)?.clone();
            ep.status = cmd.status;
            ep.updated_at = now();
            Ok((vec![Mutation::Put(Record::Endpoint(ep.clone()))], vec![ep]))
        })
    }

    /// Set the provider's description of connections.
    ///
    /// # Errors
    /// EndPoint.0005, 2013.
    pub fn describe_connections(
        &self,
        t: &Tenant,
        service: &ServiceId,
        cmd: ConnectionNotes,
    ) -> Result<Vec<Endpoint>, Rejection> {
        self.write_as(t, |v| {
            // Cloned: the rule runs again if another node commits first.
            let cmd = cmd.clone();
            let eps = cmd
                .0
                .into_iter()
                .map(|(id, d)| {
                    let mut ep = connection(v, service, &id)?.clone();
                    ep.connection_description = d;
                    ep.updated_at = now();
                    Ok(ep)
                })
                .collect::<Result<Vec<_>, Rejection>>()?;
            let muts = eps
                .iter()
                .cloned()
                .map(|e| Mutation::Put(Record::Endpoint(e)))
                .collect();
            Ok((muts, eps))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ConnectionStatus;
    use crate::registry::testing::*;

    #[test]
    fn only_the_owner_decides_and_only_for_its_own_connections() {
        let r = registry();
        let p = tenant("p");
        let u = tenant("u");
        let svc = service(&r, &p, true, &[&u]);
        let other = service(&r, &tenant("q"), true, &[&u]);
        let (vpc, sub) = network(&r, &u, "10.1.0.0/16");
        let ep = endpoint(&r, &u, endpoint_body(&svc.id, &vpc, &sub)).unwrap();
        assert_eq!(ep.status, ConnectionStatus::PendingAcceptance);
        let decide = |t: &Tenant, s: &ServiceId, st| {
            r.decide_connection(
                t,
                s,
                Decision {
                    endpoint_id: ep.id.clone(),
                    status: st,
                },
            )
        };
        assert_eq!(
            decide(&u, &svc.id, ConnectionStatus::Accepted)
                .unwrap_err()
                .code,
            ErrorCode::NotFound,
            "the user does not manage the service"
        );
        assert_eq!(
            decide(&tenant("q"), &other.id, ConnectionStatus::Accepted)
                .unwrap_err()
                .code,
            ErrorCode::NotAConnection
        );
        for st in [
            ConnectionStatus::Accepted,
            ConnectionStatus::Rejected,
            ConnectionStatus::Accepted,
        ] {
            assert_eq!(decide(&p, &svc.id, st).unwrap()[0].status, st);
            assert_eq!(r.read().endpoints[&ep.id].status, st);
        }
        let notes = ConnectionNotes(vec![(ep.id.clone(), "ok by ops".into())]);
        r.describe_connections(&p, &svc.id, notes).unwrap();
        assert_eq!(
            r.read().endpoints[&ep.id].connection_description,
            "ok by ops"
        );
        let unknown = ConnectionNotes(vec![
            (ep.id.clone(), "a".into()),
            ("nope".into(), "b".into()),
        ]);
        assert_eq!(
            r.describe_connections(&p, &svc.id, unknown)
                .unwrap_err()
                .code,
            ErrorCode::NotAConnection
        );
        assert_eq!(
            r.read().endpoints[&ep.id].connection_description,
            "ok by ops",
            "a refused batch changes nothing"
        );
    }
}
