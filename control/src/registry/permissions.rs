//! A service's whitelist: which accounts (or organization paths) may see it and connect to
//! it. Only the service's owning project manages it. Adding an entry that exists is a
//! no-op; removing one that does not is too.
//!
//! A service holds at most `[quotas] permission` entries (default 500): an add that would
//! pass it is refused whole (EndPoint.3049) and changes nothing. Every node keeps every
//! entry in memory (and in its store), so without a bound one provider could fill etcd.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::{Registry, now};
use crate::command::{NewPermissions, PermissionEdit, PermissionNote, PermissionRemoval};
use crate::error::{ErrorCode, Rejection};
use crate::model::index::Key;
use crate::model::{
    Mutation, Permission, PermissionId, PermissionType, Record, Service, ServiceId, Tenant,
    TenantView,
};

fn owned<'m>(v: TenantView<'m>, service: &ServiceId) -> Result<&'m Service, Rejection> {
    v.service(service)
        .ok_or_else(|| Rejection::not_found("endpoint service"))
}

/// Refuse adding `added` entries to a service that has `existing`, if it would then hold
/// more than `quota`. Adding none always passes (a quota lowered below what a service holds
/// leaves its entries, and its removals, alone).
fn within_quota(quota: usize, existing: usize, added: usize) -> Result<(), Rejection> {
    if added == 0 || existing.saturating_add(added) <= quota {
        return Ok(());
    }
    Err(Rejection::new(
        ErrorCode::PermissionsFull,
        format!(
            "The maximum number of whitelist records has been reached: a service holds at \
             most {quota}; this one holds {existing}, and the request adds {added}."
        ),
    ))
}

fn entry(
    service: &ServiceId,
    permission: String,
    ptype: PermissionType,
    description: String,
) -> Permission {
    Permission {
        id: PermissionId::random(),
        service_id: service.clone(),
        permission,
        permission_type: ptype,
        description,
        created_at: now(),
    }
}

impl Registry {
    /// Add or remove whitelist entries by permission string; returns the request's list and
    /// type, as the API echoes them.
    ///
    /// # Errors
    /// EndPoint.0005, 3049 (the service's quota; then nothing is added).
    pub fn permission_action(
        &self,
        t: &Tenant,
        service: &ServiceId,
        cmd: PermissionEdit,
    ) -> Result<(Vec<String>, PermissionType), Rejection> {
        let quota = self.quotas().permission;
        self.write_as(t, |v| {
            let svc = owned(v, service)?;
            let existing: HashMap<&str, &Permission> = v
                .model()
                .permissions_of(svc.id.as_str())
                .map(|p| (p.permission.as_str(), p))
                .collect();
            let muts: Vec<Mutation> = if cmd.add {
                let added: BTreeSet<&String> = cmd
                    .permissions
                    .iter()
                    .filter(|p| !existing.contains_key(p.as_str()))
                    .collect();
                within_quota(quota, existing.len(), added.len())?;
                added
                    .into_iter()
                    .map(|p| {
                        let e = entry(&svc.id, p.clone(), cmd.permission_type, String::new());
                        Mutation::Put(Record::Permission(e))
                    })
                    .collect()
            } else {
                cmd.permissions
                    .iter()
                    .filter_map(|p| existing.get(p.as_str()))
                    .map(|p| Mutation::Delete(Key::Permission(p.id.clone())))
                    .collect()
            };
            Ok((muts, (cmd.permissions.clone(), cmd.permission_type)))
        })
    }

    /// Add whitelist entries with descriptions; returns the ones created.
    ///
    /// # Errors
    /// EndPoint.0005, 3049 (the service's quota; then nothing is added).
    pub fn permissions_batch_create(
        &self,
        t: &Tenant,
        service: &ServiceId,
        cmd: NewPermissions,
    ) -> Result<Vec<Permission>, Rejection> {
        let quota = self.quotas().permission;
        self.write_as(t, |v| {
            // Cloned: the rule runs again if another node commits first.
            let cmd = cmd.clone();
            let svc = owned(v, service)?;
            let existing: HashSet<&str> = v
                .model()
                .permissions_of(svc.id.as_str())
                .map(|p| p.permission.as_str())
                .collect();
            let mut seen = HashSet::new();
            let created: Vec<Permission> = cmd
                .entries
                .into_iter()
                .filter(|(p, _)| !existing.contains(p.as_str()) && seen.insert(p.clone()))
                .map(|(p, d)| entry(&svc.id, p, cmd.permission_type, d))
                .collect();
            within_quota(quota, existing.len(), created.len())?;
            let muts = created
                .iter()
                .cloned()
                .map(|p| Mutation::Put(Record::Permission(p)))
                .collect();
            Ok((muts, created))
        })
    }

    /// Remove whitelist entries by id; returns the ones removed.
    ///
    /// # Errors
    /// EndPoint.0005, 3036 (not an entry of this service; then nothing is removed).
    pub fn permissions_batch_delete(
        &self,
        t: &Tenant,
        service: &ServiceId,
        cmd: PermissionRemoval,
    ) -> Result<Vec<Permission>, Rejection> {
        self.write_as(t, |v| {
            let svc = owned(v, service)?;
            let removed = cmd
                .0
                .iter()
                .map(|pid| {
                    v.model()
                        .permissions
                        .get(pid)
                        .filter(|p| p.service_id == svc.id)
                        .cloned()
                        .ok_or_else(|| {
                            Rejection::new(
                                ErrorCode::InvalidPermissions,
                                format!("Invalid permissions: {pid} is not a permission of this service."),
                            )
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let muts = removed
                .iter()
                .map(|p| Mutation::Delete(Key::Permission(p.id.clone())))
                .collect();
            Ok((muts, removed))
        })
    }

    /// Change a whitelist entry's description.
    ///
    /// # Errors
    /// EndPoint.0005, 3036.
    pub fn describe_permission(
        &self,
        t: &Tenant,
        service: &ServiceId,
        id: &PermissionId,
        cmd: PermissionNote,
    ) -> Result<Permission, Rejection> {
        self.write_as(t, |v| {
            // Cloned: the rule runs again if another node commits first.
            let cmd = cmd.clone();
            let svc = owned(v, service)?;
            let mut p = v
                .model()
                .permissions
                .get(id)
                .filter(|p| p.service_id == svc.id)
                .cloned()
                .ok_or_else(|| {
                    Rejection::new(
                        ErrorCode::InvalidPermissions,
                        "Invalid permissions: no such permission of this service.",
                    )
                })?;
            p.description = cmd.0;
            Ok((vec![Mutation::Put(Record::Permission(p.clone()))], p))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::testing::*;

    fn edit(add: bool, list: &[&str]) -> PermissionEdit {
        PermissionEdit {
            add,
            permission_type: PermissionType::DomainId,
            permissions: list.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_whitelist_decides_who_sees_a_service() {
        let r = registry();
        let p = tenant("p");
        let u = tenant("u");
        let svc = service(&r, &p, true, &[]);
        let sees = |t: &Tenant| r.read().tenant(t).visible_service(&svc.id).is_some();
        assert!(sees(&p) && !sees(&u));
        r.permission_action(
            &p,
            &svc.id,
            edit(true, &["iam:domain::du", "iam:domain::du"]),
        )
        .unwrap();
        assert!(sees(&u));
        assert_eq!(r.read().permissions.len(), 1, "added once");
        assert_eq!(
            r.permission_action(&u, &svc.id, edit(false, &["iam:domain::du"]))
                .unwrap_err()
                .code,
            ErrorCode::NotFound,
            "only the owner manages the whitelist"
        );
        r.permission_action(
            &p,
            &svc.id,
            edit(false, &["iam:domain::du", "iam:domain::zz"]),
        )
        .unwrap();
        assert!(!sees(&u));
        r.permission_action(&p, &svc.id, edit(true, &["*"]))
            .unwrap();
        assert!(sees(&u) && sees(&tenant("anyone")));
    }

    #[test]
    fn batches_create_delete_and_describe() {
        let r = registry();
        let p = tenant("p");
        let svc = service(&r, &p, true, &[]);
        let create = NewPermissions {
            permission_type: PermissionType::DomainId,
            entries: vec![
                ("iam:domain::a".into(), "first".into()),
                ("iam:domain::b".into(), String::new()),
                ("iam:domain::a".into(), "again".into()),
            ],
        };
        let made = r.permissions_batch_create(&p, &svc.id, create).unwrap();
        assert_eq!(made.len(), 2);
        let a = made[0].id.clone();
        let d = r
            .describe_permission(&p, &svc.id, &a, PermissionNote("new".into()))
            .unwrap();
        assert_eq!(d.description, "new");
        let bad = PermissionRemoval(vec![a.clone(), "nope".into()]);
        assert_eq!(
            r.permissions_batch_delete(&p, &svc.id, bad)
                .unwrap_err()
                .code,
            ErrorCode::InvalidPermissions
        );
        assert_eq!(
            r.read().permissions.len(),
            2,
            "a refused batch removes nothing"
        );
        let gone = r
            .permissions_batch_delete(&p, &svc.id, PermissionRemoval(vec![a]))
            .unwrap();
        assert_eq!(gone[0].permission, "iam:domain::a");
        assert_eq!(r.read().permissions.len(), 1);
    }

    #[test]
    fn the_whitelist_quota_refuses_a_whole_call() {
        let r = registry_with(crate::registry::Quotas {
            permission: 3,
            ..crate::registry::Quotas::default()
        });
        let p = tenant("p");
        let svc = service(&r, &p, true, &[]);
        r.permission_action(&p, &svc.id, edit(true, &["iam:domain::a", "iam:domain::b"]))
            .unwrap();
        let over = r
            .permission_action(&p, &svc.id, edit(true, &["iam:domain::c", "iam:domain::d"]))
            .unwrap_err();
        assert_eq!(over.code, ErrorCode::PermissionsFull);
        let batch = NewPermissions {
            permission_type: PermissionType::DomainId,
            entries: vec![
                ("iam:domain::c".into(), String::new()),
                ("*".into(), String::new()),
            ],
        };
        assert_eq!(
            r.permissions_batch_create(&p, &svc.id, batch)
                .unwrap_err()
                .code,
            ErrorCode::PermissionsFull
        );
        assert_eq!(r.read().permissions.len(), 2, "a refused call adds nothing");
        // Entries that exist add nothing; the last free place is taken.
        r.permission_action(&p, &svc.id, edit(true, &["iam:domain::a", "iam:domain::c"]))
            .unwrap();
        assert_eq!(r.read().permissions.len(), 3);
        r.permission_action(&p, &svc.id, edit(true, &["iam:domain::a"]))
            .unwrap();
    }

    #[test]
    fn the_visibility_index_agrees_with_the_entries() {
        let r = registry();
        let p = tenant("p");
        let svc = service(&r, &p, true, &[]);
        let in_org = |name: &str, path: &str| Tenant {
            org_path: Some(path.into()),
            ..tenant(name)
        };
        let people = [
            tenant("p"),
            tenant("u"),
            tenant("v"),
            in_org("w", "o-1/r-1/ou-a/ou-b"),
            in_org("x", "o-2/r-1"),
        ];
        let check = |what: &str| {
            let m = r.read();
            let s = m.services.get(&svc.id).unwrap();
            for who in &people {
                let scan = s.domain_id == who.domain_id
                    || m.permissions_of(s.id.as_str()).any(|e| e.admits(who));
                assert_eq!(m.visible(s, who), scan, "{what}: {}", who.domain_id);
            }
        };
        check("no entry");
        r.permission_action(
            &p,
            &svc.id,
            edit(true, &["iam:domain::du", "iam:domain::dv"]),
        )
        .unwrap();
        check("two accounts");
        let org = PermissionEdit {
            add: true,
            permission_type: PermissionType::OrgPath,
            permissions: vec!["organizations:orgPath::o-1/r-1/ou-a".into()],
        };
        r.permission_action(&p, &svc.id, org.clone()).unwrap();
        check("an organisation unit");
        r.permission_action(&p, &svc.id, edit(true, &["*", "iam:domain::*"]))
            .unwrap();
        check("everyone, twice");
        r.permission_action(&p, &svc.id, edit(false, &["*"]))
            .unwrap();
        check("everyone, once");
        r.permission_action(
            &p,
            &svc.id,
            edit(false, &["iam:domain::*", "iam:domain::du"]),
        )
        .unwrap();
        check("one account and the unit");
        r.permission_action(&p, &svc.id, PermissionEdit { add: false, ..org })
            .unwrap();
        r.permission_action(&p, &svc.id, edit(false, &["iam:domain::dv"]))
            .unwrap();
        check("none left");
    }
}
