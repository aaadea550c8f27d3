//! Tags' rules: tag actions on a tenant's service or endpoint, the tag list of a resource
//! type, resources by tag, and an endpoint's lifetime as its reserved tags show it.
//!
//! A tag action changes only the tenant's own resource (another tenant's answers as absent)
//! and is one commit: every tag of the action applies, or none. `create` adds tags, an
//! existing key taking the new value; `delete` removes keys (with a value, only if it
//! matches), and deleting a key the resource does not have is not an error. The resource
//! keeps at most [`crate::command::MAX_TAGS`] of its own tags.
//!
//! On an endpoint, [`DURATION_TAG`] extends the lifetime ([`set_lifetime`]) and deleting it
//! removes the expiry; [`EXPIRES_TAG`] is kept at the expiry and cannot be written.

use std::collections::{BTreeMap, BTreeSet};

use super::{Registry, now};
use crate::command::{
    DURATION_TAG, EXPIRES_TAG, RESERVED_PREFIX, ResourceFilter, ResourceType, TagEdit, check_count,
    parse_duration_tag,
};
use crate::error::{ErrorCode, Rejection};
use crate::model::{
    Endpoint, EndpointId, Mutation, Record, ServiceId, Tag, Tenant, TenantView, format_time,
};

/// One resource as the tag API shows it.
#[derive(Clone, Copy, Debug)]
pub struct TaggedResource<'m> {
    /// Its id.
    pub id: &'m str,
    /// Its name: a service's full name, an endpoint's id (endpoints have no name).
    pub name: &'m str,
    /// Its tags.
    pub tags: &'m [Tag],
    /// When it was created (the order of the answers).
    pub created_at: i64,
}

/// The tenant's resources of type `rt`, oldest first (then by id).
pub fn resources<'m>(v: TenantView<'m>, rt: ResourceType) -> Vec<TaggedResource<'m>> {
    let mut out: Vec<TaggedResource<'m>> = match rt {
        ResourceType::EndpointService => v
            .services()
            .map(|s| TaggedResource {
                id: s.id.as_str(),
                name: &s.full_name,
                tags: &s.tags,
                created_at: s.created_at,
            })
            .collect(),
        ResourceType::Endpoint => v
            .endpoints()
            .map(|e| TaggedResource {
                id: e.id.as_str(),
                name: e.id.as_str(),
                tags: &e.tags,
                created_at: e.created_at,
            })
            .collect(),
    };
    out.sort_by(|a, b| (a.created_at, a.id).cmp(&(b.created_at, b.id)));
    out
}

/// Every tag key on the tenant's resources of type `rt`, with its values: keys and values
/// sorted, each once.
pub fn tag_list(v: TenantView<'_>, rt: ResourceType) -> BTreeMap<&str, BTreeSet<&str>> {
    let mut keys: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for r in resources(v, rt) {
        for t in r.tags {
            keys.entry(&t.key).or_default().insert(&t.value);
        }
    }
    keys
}

/// The tenant's resources of type `rt` that match `f`: the page `f` asks for (none for a
/// count) and the total.
pub fn resources_where<'m>(
    v: TenantView<'m>,
    rt: ResourceType,
    f: &ResourceFilter,
) -> (Vec<TaggedResource<'m>>, usize) {
    let all: Vec<_> = resources(v, rt)
        .into_iter()
        .filter(|r| f.matches(r.id, r.name, r.tags))
        .collect();
    let total = all.len();
    if f.count_only {
        return (Vec::new(), total);
    }
    (
        all.into_iter().skip(f.offset).take(f.limit).collect(),
        total,
    )
}

/// Set an endpoint's lifetime at `at`: `Some(d)` extends it by `d` seconds, added to what
/// is left or, once it expired (or it had none), to `at`, and unfreezes it; `None` removes
/// the expiry. [`DURATION_TAG`] (the last extension) and [`EXPIRES_TAG`] follow.
pub fn set_lifetime(ep: &mut Endpoint, d: Option<i64>, at: i64) {
    ep.tags
        .retain(|t| t.key != DURATION_TAG && t.key != EXPIRES_TAG);
    match d {
        Some(d) => {
            let base = ep
                .expires_at
                .filter(|x| *x > at && !ep.frozen)
                .unwrap_or(at);
            let until = base.saturating_add(d);
            ep.expires_at = Some(until);
            ep.frozen = false;
            ep.tags.push(Tag {
                key: DURATION_TAG.into(),
                value: d.to_string(),
            });
            ep.tags.push(Tag {
                key: EXPIRES_TAG.into(),
                value: format_time(until),
            });
        }
        None => {
            ep.expires_at = None;
            ep.frozen = false;
        }
    }
}

/// Apply `edit` to `tags` (the resource's own and reserved ones); returns the lifetime
/// change the reserved duration tag asks for (`Some(None)`: remove the expiry).
fn apply(
    tags: &mut Vec<Tag>,
    edit: TagEdit,
    rt: ResourceType,
) -> Result<Option<Option<i64>>, Rejection> {
    let reserved = |key: &str| {
        Rejection::new(
            ErrorCode::TagInvalid,
            format!(
                "Tag keys and values should meet relevant requirements: {key:?} is reserved{}.",
                if rt == ResourceType::Endpoint && key != DURATION_TAG {
                    format!(" (set {DURATION_TAG} to extend the lifetime)")
                } else {
                    String::new()
                }
            ),
        )
    };
    let mut lifetime = None;
    match edit {
        TagEdit::Create(new) => {
            for t in new {
                if rt == ResourceType::Endpoint && t.key == DURATION_TAG {
                    lifetime = Some(Some(parse_duration_tag(&t.value)?));
                } else if t.key.starts_with(RESERVED_PREFIX) {
                    return Err(reserved(&t.key));
                } else if let Some(old) = tags.iter_mut().find(|o| o.key == t.key) {
                    old.value = t.value;
                } else {
                    tags.push(t);
                }
            }
            check_count(tags)?;
        }
        TagEdit::Delete(keys) => {
            for (key, value) in keys {
                if rt == ResourceType::Endpoint && key == DURATION_TAG {
                    lifetime = Some(None);
                } else if key.starts_with(RESERVED_PREFIX) {
                    return Err(reserved(&key));
                } else {
                    tags.retain(|t| t.key != key || value.as_ref().is_some_and(|v| *v != t.value));
                }
            }
        }
    }
    Ok(lifetime)
}

impl Registry {
    /// A tag action on the tenant's resource `id` of type `rt`.
    ///
    /// # Errors
    /// EndPoint.0005 (no such service), 2006 (no such endpoint), 3068 (a reserved key or a
    /// bad duration), 3069 (too many tags).
    pub fn tag_action(
        &self,
        t: &Tenant,
        rt: ResourceType,
        id: &str,
        edit: TagEdit,
    ) -> Result<(), Rejection> {
        self.write_as(t, |v| {
            let ts = now();
            let record = match rt {
                ResourceType::EndpointService => {
                    let mut svc = v
                        .service(&ServiceId::from(id))
                        .ok_or_else(|| Rejection::not_found("endpoint service"))?
                        .clone();
                    apply(&mut svc.tags, edit.clone(), rt)?;
                    svc.updated_at = ts;
                    Record::Service(svc)
                }
                ResourceType::Endpoint => {
                    let mut ep = v
                        .endpoint(&EndpointId::from(id))
                        .ok_or_else(|| {
                            Rejection::new(
                                ErrorCode::EndpointNotFound,
                                "The requested endpoint does not exist.",
                            )
                        })?
                        .clone();
                    if let Some(d) = apply(&mut ep.tags, edit.clone(), rt)? {
                        set_lifetime(&mut ep, d, ts);
                    }
                    ep.updated_at = ts;
                    Record::Endpoint(ep)
                }
            };
            Ok((vec![Mutation::Put(record)], ()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{MAX_TAGS, TagFilter};
    use crate::model::Service;
    use crate::registry::testing::*;
    use crate::store::MemStore;

    fn tag(k: &str, v: &str) -> Tag {
        Tag {
            key: k.into(),
            value: v.into(),
        }
    }

    fn create(tags: &[(&str, &str)]) -> TagEdit {
        TagEdit::Create(tags.iter().map(|(k, v)| tag(k, v)).collect())
    }

    #[test]
    fn actions_add_replace_and_delete_tags_of_the_tenants_own_resources() {
        let r = registry();
        let (p, x) = (tenant("p"), tenant("x"));
        let svc = service(&r, &p, true, &[]);
        let es = ResourceType::EndpointService;
        let id = svc.id.as_str();
        r.tag_action(&p, es, id, create(&[("env", "test"), ("team", "a")]))
            .unwrap();
        r.tag_action(&p, es, id, create(&[("env", "prod")]))
            .unwrap();
        assert_eq!(
            r.read().services[&svc.id].tags,
            [tag("env", "prod"), tag("team", "a")],
            "an existing key takes the new value"
        );
        // Delete with a value removes only a match; without, by key; absent keys are fine.
        let del = |k: &str, v: Option<&str>| TagEdit::Delete(vec![(k.into(), v.map(Into::into))]);
        r.tag_action(&p, es, id, del("env", Some("test"))).unwrap();
        assert_eq!(r.read().services[&svc.id].tags.len(), 2);
        r.tag_action(&p, es, id, del("env", None)).unwrap();
        r.tag_action(&p, es, id, del("nope", None)).unwrap();
        assert_eq!(r.read().services[&svc.id].tags, [tag("team", "a")]);
        // Another tenant: as if the service did not exist, and nothing changes.
        let rev = r.revision();
        let e = r.tag_action(&x, es, id, create(&[("k", "v")])).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
        let e = r
            .tag_action(&p, ResourceType::Endpoint, id, create(&[("k", "v")]))
            .unwrap_err();
        assert_eq!(
            e.code,
            ErrorCode::EndpointNotFound,
            "a service id is no endpoint"
        );
        assert_eq!(r.revision(), rev);
    }

    #[test]
    fn the_tag_limit_and_reserved_keys_refuse_the_whole_action() {
        let r = registry();
        let p = tenant("p");
        let svc = service(&r, &p, true, &[]);
        let es = ResourceType::EndpointService;
        for batch in 0..2 {
            let tags: Vec<(String, String)> = (0..10)
                .map(|i| (format!("k{batch}-{i}"), String::new()))
                .collect();
            let tags: Vec<(&str, &str)> =
                tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            r.tag_action(&p, es, svc.id.as_str(), create(&tags))
                .unwrap();
        }
        assert_eq!(r.read().services[&svc.id].tags.len(), MAX_TAGS);
        let rev = r.revision();
        let e = r
            .tag_action(
                &p,
                es,
                svc.id.as_str(),
                create(&[("k0-0", "x"), ("one-more", "")]),
            )
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::TooManyTags);
        for key in [DURATION_TAG, EXPIRES_TAG, "vpcep:other"] {
            let e = r
                .tag_action(&p, es, svc.id.as_str(), create(&[(key, "60")]))
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::TagInvalid, "{key} on a service");
        }
        assert_eq!(r.revision(), rev, "nothing was written");
        assert_eq!(r.read().services[&svc.id].tags[0], tag("k0-0", ""));
    }

    #[test]
    fn the_duration_tag_extends_an_endpoints_lifetime() {
        let r = registry();
        let (p, u) = (tenant("p"), tenant("u"));
        let svc = service(&r, &p, false, &[&u]);
        let (vpc, sub) = network(&r, &u, "10.1.0.0/16");
        let mut b = endpoint_body(&svc.id, &vpc, &sub);
        b.tags = Some(vec![tag(DURATION_TAG, "600"), tag("env", "a")]);
        let ep = endpoint(&r, &u, b).unwrap();
        let first = ep.expires_at.unwrap();
        assert!((first - now() - 600).abs() <= 2, "{first}");
        let shown: BTreeMap<_, _> = ep
            .tags
            .iter()
            .map(|t| (t.key.as_str(), t.value.as_str()))
            .collect();
        assert_eq!(shown[DURATION_TAG], "600");
        assert_eq!(shown[EXPIRES_TAG], format_time(first));
        assert_eq!(shown["env"], "a");
        // Extending adds to what is left.
        let e = ResourceType::Endpoint;
        r.tag_action(&u, e, ep.id.as_str(), create(&[(DURATION_TAG, "100")]))
            .unwrap();
        let now_ep = r.read().endpoints[&ep.id].clone();
        assert_eq!(now_ep.expires_at, Some(first + 100));
        assert!(
            now_ep
                .tags
                .contains(&tag(EXPIRES_TAG, &format_time(first + 100)))
        );
        // Once frozen, an extension counts from now and unfreezes.
        r.freeze_expired(first + 100).unwrap();
        assert!(r.read().endpoints[&ep.id].frozen);
        r.tag_action(&u, e, ep.id.as_str(), create(&[(DURATION_TAG, "50")]))
            .unwrap();
        let now_ep = r.read().endpoints[&ep.id].clone();
        assert!(!now_ep.frozen);
        assert!((now_ep.expires_at.unwrap() - now() - 50).abs() <= 2);
        // Bad durations and the read-only expiry are refused; deleting the duration ends the
        // expiry and both reserved tags go.
        for (k, v) in [
            (DURATION_TAG, "0"),
            (DURATION_TAG, "soon"),
            (EXPIRES_TAG, "x"),
        ] {
            let err = r
                .tag_action(&u, e, ep.id.as_str(), create(&[(k, v)]))
                .unwrap_err();
            assert_eq!(err.code, ErrorCode::TagInvalid, "{k}={v}");
        }
        r.tag_action(
            &u,
            e,
            ep.id.as_str(),
            TagEdit::Delete(vec![(DURATION_TAG.into(), None)]),
        )
        .unwrap();
        let now_ep = r.read().endpoints[&ep.id].clone();
        assert_eq!(
            (now_ep.expires_at, now_ep.tags),
            (None, vec![tag("env", "a")])
        );
        // The provider cannot tag the user's endpoint.
        let err = r
            .tag_action(&p, e, ep.id.as_str(), create(&[("k", "v")]))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::EndpointNotFound);
    }

    #[test]
    fn queries_filter_page_and_count_the_tenants_resources() {
        let r = registry();
        let (p, x) = (tenant("p"), tenant("x"));
        let es = ResourceType::EndpointService;
        let mut ids = Vec::new();
        for tags in [
            &[("env", "prod"), ("team", "a")][..],
            &[("env", "test")][..],
            &[("team", "b")][..],
            &[][..],
        ] {
            let (vpc, sub) = network(&r, &p, &format!("10.{}.0.0/16", 10 + ids.len()));
            let port = port(&r, &p, &sub, "VM", None);
            let svc = r
                .create_service(&p, service_body(&vpc, &port.id, true).try_into().unwrap())
                .unwrap();
            if !tags.is_empty() {
                r.tag_action(&p, es, svc.id.as_str(), create(tags)).unwrap();
            }
            ids.push(svc.id);
        }
        // Another tenant's tagged service is never seen.
        let other = service(&r, &x, true, &[]);
        r.tag_action(&x, es, other.id.as_str(), create(&[("env", "prod")]))
            .unwrap();
        let m = r.read();
        let v = m.tenant(&p);
        let f = |k: &str, vals: &[&str]| TagFilter {
            key: k.into(),
            values: vals.iter().map(|s| s.to_string()).collect(),
        };
        let base = ResourceFilter {
            in_enterprise_project: true,
            limit: 1000,
            ..ResourceFilter::default()
        };
        let found = |q: ResourceFilter| {
            let (page, total) = resources_where(v, es, &q);
            // Which resources (the order within one second of creation is by id).
            let mut got: Vec<usize> = page
                .iter()
                .map(|r| ids.iter().position(|i| i.as_str() == r.id).unwrap())
                .collect();
            got.sort_unstable();
            (got, total)
        };
        assert_eq!(found(base.clone()), (vec![0, 1, 2, 3], 4));
        let q = ResourceFilter {
            tags: vec![f("env", &[])],
            ..base.clone()
        };
        assert_eq!(found(q).0, [0, 1], "any value");
        let q = ResourceFilter {
            tags: vec![f("env", &["prod", "x"]), f("team", &[])],
            ..base.clone()
        };
        assert_eq!(found(q).0, [0], "keys AND, values OR");
        let q = ResourceFilter {
            tags_any: vec![f("env", &["test"]), f("team", &["b"])],
            ..base.clone()
        };
        assert_eq!(found(q).0, [1, 2]);
        let q = ResourceFilter {
            not_tags: vec![f("env", &[]), f("team", &[])],
            ..base.clone()
        };
        assert_eq!(found(q).0, [1, 2, 3], "not all of them");
        let q = ResourceFilter {
            not_tags_any: vec![f("env", &[]), f("team", &[])],
            ..base.clone()
        };
        assert_eq!(found(q).0, [3], "none of them");
        let q = ResourceFilter {
            without_any_tag: true,
            tags: vec![f("env", &[])],
            ..base.clone()
        };
        assert_eq!(found(q).0, [3], "the tag filters are ignored");
        let q = ResourceFilter {
            id: Some(ids[2].to_string()),
            ..base.clone()
        };
        assert_eq!(found(q).0, [2]);
        let part = ids[1].as_str()[..8].to_uppercase();
        let q = ResourceFilter {
            name: Some(part),
            ..base.clone()
        };
        assert_eq!(found(q).0, [1], "a case-insensitive part of the name");
        let q = ResourceFilter {
            in_enterprise_project: false,
            ..base.clone()
        };
        assert_eq!(found(q), (vec![], 0));
        // Paging cuts the list, not the total; a count has no list.
        let q = ResourceFilter {
            offset: 1,
            limit: 2,
            ..base.clone()
        };
        let all: Vec<&str> = resources(v, es).iter().map(|r| r.id).collect();
        let (page, total) = resources_where(v, es, &q);
        let page: Vec<&str> = page.iter().map(|r| r.id).collect();
        assert_eq!((page.as_slice(), total), (&all[1..3], 4));
        let q = ResourceFilter {
            count_only: true,
            ..base.clone()
        };
        assert_eq!(found(q), (vec![], 4));
        // The tag list: keys and values of the tenant's services only, sorted, once each.
        let list = tag_list(v, es);
        let list: Vec<(&str, Vec<&str>)> = list
            .into_iter()
            .map(|(k, vs)| (k, vs.into_iter().collect()))
            .collect();
        assert_eq!(
            list,
            [("env", vec!["prod", "test"]), ("team", vec!["a", "b"])]
        );
        assert!(tag_list(v, ResourceType::Endpoint).is_empty());
    }

    #[test]
    fn tags_survive_a_reload_and_old_records_load() {
        let store = std::sync::Arc::new(MemStore::default());
        let r = Registry::open(store.clone(), "r", super::super::Quotas::default()).unwrap();
        let p = tenant("p");
        let svc = service(&r, &p, true, &[]);
        r.tag_action(
            &p,
            ResourceType::EndpointService,
            svc.id.as_str(),
            create(&[("env", "prod")]),
        )
        .unwrap();
        let again = Registry::open(store, "r", super::super::Quotas::default()).unwrap();
        assert_eq!(again.read().services[&svc.id].tags, [tag("env", "prod")]);
        // A service record from before tag actions and `ip` existed.
        let old: Service = serde_json::from_str(
            r#"{"id":"s","project_id":"p","domain_id":"d","name":null,"full_name":"r.s",
                "vpc_id":"v","port_id":"x","server_type":"VM","approval_enabled":true,
                "ports":[],"tcp_proxy":"close","description":"",
                "tags":[{"key":"env"}],"status":"available","created_at":1,"updated_at":2}"#,
        )
        .unwrap();
        assert_eq!((old.tags, old.ip), (vec![tag("env", "")], None));
    }
}
