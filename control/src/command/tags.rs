//! Commands of the tag API (operations 26 and 28): tag actions on one resource and queries
//! of resources by tag, and the tag rules shared with the create bodies.
//!
//! Tags follow Huawei's tag rules: a key is 1 to 128 characters, a value 0 to 255; both use
//! letters and digits (any script), spaces and `_ . : = + - @` (values also `/`); a key does
//! not start or end with a space and does not start with `_sys_` (system tags). A resource
//! holds at most [`MAX_TAGS`] tags with unique keys, and one action carries at most
//! [`MAX_TAGS_PER_ACTION`].
//!
//! Keys under [`RESERVED_PREFIX`] are vpcep's: [`DURATION_TAG`] sets or extends an
//! endpoint's lifetime (the one field of the official SDK that can carry it) and
//! [`EXPIRES_TAG`] shows its expiry; they do not count towards [`MAX_TAGS`].

use std::collections::HashSet;

use super::MAX_TAGS;
use crate::error::{ErrorCode, Rejection, require};
use crate::model::Tag;
use crate::requests::{ResourceQueryBody, TagAction, TagValuesBody};

/// Most tags in one tag action, and most keys (and values per key) in one query filter.
pub const MAX_TAGS_PER_ACTION: usize = 10;
/// Keys vpcep gives a meaning to.
pub const RESERVED_PREFIX: &str = "vpcep:";
/// An endpoint tag whose value is a number of seconds: on create, the endpoint's lifetime;
/// in a `create` tag action, an extension by that much. Deleting it removes the expiry.
pub const DURATION_TAG: &str = "vpcep:duration";
/// The endpoint tag vpcep keeps at the expiry time (`YYYY-MM-DDTHH:MM:SSZ`); read-only.
pub const EXPIRES_TAG: &str = "vpcep:expires_at";
/// The one system tag key of resource queries; every resource is in enterprise project `0`.
pub const ENTERPRISE_PROJECT_TAG: &str = "_sys_enterprise_project_id";

/// The kind of resource a tag call names (`resource_type` of the path).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceType {
    /// `endpoint`.
    Endpoint,
    /// `endpoint_service`.
    EndpointService,
}

impl ResourceType {
    /// Parse the path's spelling.
    ///
    /// # Errors
    /// EndPoint.3070.
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        match s {
            "endpoint" => Ok(Self::Endpoint),
            "endpoint_service" => Ok(Self::EndpointService),
            _ => Err(Rejection::new(
                ErrorCode::InvalidResourceType,
                format!("Invalid resource type {s:?}: endpoint_service or endpoint."),
            )),
        }
    }
}

fn tag_invalid(why: String) -> Rejection {
    Rejection::new(
        ErrorCode::TagInvalid,
        format!("Tag keys and values should meet relevant requirements: {why}."),
    )
}

fn charset_ok(s: &str, extra: &str) -> bool {
    s.chars()
        .all(|c| c.is_alphanumeric() || c == ' ' || "_.:=+-@".contains(c) || extra.contains(c))
}

/// Check one tag's key and value (not the reserved keys' meaning).
///
/// # Errors
/// EndPoint.3066 (empty key), 3068 (length, characters, `_sys_`).
pub fn check_tag(t: &Tag) -> Result<(), Rejection> {
    if t.key.is_empty() {
        return Err(Rejection::new(
            ErrorCode::TagEmpty,
            "The tag cannot be empty.",
        ));
    }
    if t.key.chars().count() > 128 || t.value.chars().count() > 255 {
        return Err(tag_invalid(
            "a key is 1 to 128 characters, a value 0 to 255".into(),
        ));
    }
    if t.key.starts_with(' ') || t.key.ends_with(' ') || t.key.starts_with("_sys_") {
        return Err(tag_invalid(format!(
            "key {:?} starts or ends with a space, or with _sys_",
            t.key
        )));
    }
    if !charset_ok(&t.key, "") || !charset_ok(&t.value, "/") {
        return Err(tag_invalid(format!(
            "{:?}={:?}: letters, digits, spaces and _ . : = + - @ (values also /)",
            t.key, t.value
        )));
    }
    Ok(())
}

/// Check a list of tags as given: each valid, no key twice.
///
/// # Errors
/// EndPoint.3066 to 3068.
pub fn check_unique(tags: &[Tag]) -> Result<(), Rejection> {
    let mut keys = HashSet::new();
    for t in tags {
        check_tag(t)?;
        if !keys.insert(&t.key) {
            return Err(Rejection::new(
                ErrorCode::TagKeyDuplicated,
                format!("The tag key cannot be duplicated: {:?}.", t.key),
            ));
        }
    }
    Ok(())
}

/// Check the number of a resource's own tags (the reserved ones do not count).
///
/// # Errors
/// EndPoint.3069.
pub fn check_count(tags: &[Tag]) -> Result<(), Rejection> {
    let own = tags
        .iter()
        .filter(|t| !t.key.starts_with(RESERVED_PREFIX))
        .count();
    if own > MAX_TAGS {
        return Err(Rejection::new(
            ErrorCode::TooManyTags,
            format!("The maximum number of tags has been reached: at most {MAX_TAGS}."),
        ));
    }
    Ok(())
}

/// Parse a [`DURATION_TAG`] value: a positive number of seconds.
///
/// # Errors
/// EndPoint.3068.
pub fn parse_duration_tag(value: &str) -> Result<i64, Rejection> {
    value.parse::<i64>().ok().filter(|d| *d > 0).ok_or_else(|| {
        tag_invalid(format!(
            "{DURATION_TAG} is a positive number of seconds, not {value:?}"
        ))
    })
}

/// Split the tags of a create body into the resource's own tags and the lifetime the
/// [`DURATION_TAG`] asks for; refuse any other reserved key.
///
/// # Errors
/// As for [`check_unique`] and [`check_count`], and EndPoint.3068 for a reserved key.
pub fn split_create_tags(
    tags: Vec<Tag>,
    endpoint: bool,
) -> Result<(Vec<Tag>, Option<i64>), Rejection> {
    check_unique(&tags)?;
    let mut lifetime = None;
    let mut own = Vec::with_capacity(tags.len());
    for t in tags {
        if endpoint && t.key == DURATION_TAG {
            lifetime = Some(parse_duration_tag(&t.value)?);
        } else if t.key.starts_with(RESERVED_PREFIX) {
            return Err(tag_invalid(format!("{:?} is a reserved key", t.key)));
        } else {
            own.push(t);
        }
    }
    check_count(&own)?;
    Ok((own, lifetime))
}

/// A tag action on one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagEdit {
    /// Add these tags; an existing key takes the new value.
    Create(Vec<Tag>),
    /// Remove these keys; with a value, only if the resource's tag has that value.
    Delete(Vec<(String, Option<String>)>),
}

impl TryFrom<TagAction> for TagEdit {
    type Error = Rejection;

    fn try_from(b: TagAction) -> Result<Self, Rejection> {
        let action = require(b.action, "action")?;
        let tags = require(b.tags, "tags")?;
        if tags.is_empty() {
            return Err(Rejection::new(
                ErrorCode::TagEmpty,
                "The tag cannot be empty: tags holds no tag.",
            ));
        }
        if tags.len() > MAX_TAGS_PER_ACTION {
            return Err(Rejection::new(
                ErrorCode::TooManyTags,
                format!(
                    "The maximum number of tags has been reached: at most {MAX_TAGS_PER_ACTION} per action."
                ),
            ));
        }
        match action.as_str() {
            "create" => {
                let tags = tags
                    .into_iter()
                    .map(|t| {
                        Ok(Tag {
                            key: t.key.unwrap_or_default(),
                            value: require(t.value, "tags[].value")?,
                        })
                    })
                    .collect::<Result<Vec<_>, Rejection>>()?;
                check_unique(&tags)?;
                Ok(Self::Create(tags))
            }
            "delete" => {
                let checked: Vec<Tag> = tags
                    .iter()
                    .map(|t| Tag {
                        key: t.key.clone().unwrap_or_default(),
                        value: t.value.clone().unwrap_or_default(),
                    })
                    .collect();
                check_unique(&checked)?;
                Ok(Self::Delete(
                    tags.into_iter()
                        .map(|t| (t.key.unwrap_or_default(), t.value))
                        .collect(),
                ))
            }
            other => Err(Rejection::new(
                ErrorCode::InvalidAction,
                format!("Invalid action {other:?}: create or delete."),
            )),
        }
    }
}

/// One tag filter: the key, and the values any of which matches (none: any value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagFilter {
    /// Key.
    pub key: String,
    /// Values.
    pub values: Vec<String>,
}

impl TagFilter {
    /// True if `tags` has this key with one of the values.
    pub fn matches(&self, tags: &[Tag]) -> bool {
        tags.iter().any(|t| {
            t.key == self.key && (self.values.is_empty() || self.values.contains(&t.value))
        })
    }
}

/// A query of resources by tag (`resource_instances/action`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceFilter {
    /// Every one matches.
    pub tags: Vec<TagFilter>,
    /// At least one matches (when any).
    pub tags_any: Vec<TagFilter>,
    /// Not every one matches (when any).
    pub not_tags: Vec<TagFilter>,
    /// None matches.
    pub not_tags_any: Vec<TagFilter>,
    /// False if a `sys_tags` filter excludes enterprise project `0` (so every resource).
    pub in_enterprise_project: bool,
    /// Case-insensitive part of the resource name (`resource_name`; empty: exactly empty).
    pub name: Option<String>,
    /// Exactly this id (`resource_id`).
    pub id: Option<String>,
    /// Only resources without tags; the four tag filters are ignored.
    pub without_any_tag: bool,
    /// `count`: only the total.
    pub count_only: bool,
    /// Page size, 1 to 1000.
    pub limit: usize,
    /// Skipped resources.
    pub offset: usize,
}

impl ResourceFilter {
    /// True if a resource with `id`, `name` and `tags` matches.
    pub fn matches(&self, id: &str, name: &str, tags: &[Tag]) -> bool {
        let by_tags = if self.without_any_tag {
            tags.is_empty()
        } else {
            self.tags.iter().all(|f| f.matches(tags))
                && (self.tags_any.is_empty() || self.tags_any.iter().any(|f| f.matches(tags)))
                && (self.not_tags.is_empty() || !self.not_tags.iter().all(|f| f.matches(tags)))
                && !self.not_tags_any.iter().any(|f| f.matches(tags))
        };
        let by_name = self.name.as_deref().is_none_or(|n| {
            if n.is_empty() {
                name.is_empty()
            } else {
                name.to_lowercase().contains(&n.to_lowercase())
            }
        });
        by_tags
            && by_name
            && self.in_enterprise_project
            && self.id.as_deref().is_none_or(|i| i == id)
    }
}

/// Parse one list of tag filters: at most [`MAX_TAGS_PER_ACTION`] keys, unique, each with at
/// most as many unique values; keys and values trimmed of spaces and checked for length
/// only (as the API says of searches).
fn filters(list: Option<Vec<TagValuesBody>>, field: &str) -> Result<Vec<TagFilter>, Rejection> {
    let list = list.unwrap_or_default();
    if list.len() > MAX_TAGS_PER_ACTION {
        return Err(Rejection::param(format!(
            "{field}: at most {MAX_TAGS_PER_ACTION} keys"
        )));
    }
    let mut keys = HashSet::new();
    list.into_iter()
        .map(|f| {
            let key = require(f.key, &format!("{field}[].key"))?
                .trim_matches(' ')
                .to_string();
            let values = require(f.values, &format!("{field}[].values"))?;
            if key.is_empty() {
                return Err(Rejection::new(
                    ErrorCode::TagEmpty,
                    format!("The tag cannot be empty: a key of {field}."),
                ));
            }
            if key.chars().count() > 128 {
                return Err(tag_invalid(format!("a key of {field} is longer than 128")));
            }
            if !keys.insert(key.clone()) {
                return Err(Rejection::new(
                    ErrorCode::TagKeyDuplicated,
                    format!("The tag key cannot be duplicated: {key:?} in {field}."),
                ));
            }
            if values.len() > MAX_TAGS_PER_ACTION {
                return Err(Rejection::param(format!(
                    "{field}: at most {MAX_TAGS_PER_ACTION} values per key"
                )));
            }
            let mut seen = HashSet::new();
            let values = values
                .into_iter()
                .map(|v| {
                    let v = v.trim_matches(' ').to_string();
                    if v.chars().count() > 255 {
                        return Err(tag_invalid(format!(
                            "a value of {field} is longer than 255"
                        )));
                    }
                    if !seen.insert(v.clone()) {
                        return Err(Rejection::param(format!(
                            "{field}: value {v:?} appears twice for key {key:?}"
                        )));
                    }
                    Ok(v)
                })
                .collect::<Result<_, _>>()?;
            Ok(TagFilter { key, values })
        })
        .collect()
}

/// A page parameter sent as a JSON string (the SDK) or number.
fn number(v: Option<serde_json::Value>, default: usize) -> Option<usize> {
    match v {
        None => Some(default),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
        Some(_) => None,
    }
}

impl TryFrom<ResourceQueryBody> for ResourceFilter {
    type Error = Rejection;

    fn try_from(b: ResourceQueryBody) -> Result<Self, Rejection> {
        let count_only = match require(b.action, "action")?.as_str() {
            "filter" => false,
            "count" => true,
            other => {
                return Err(Rejection::new(
                    ErrorCode::InvalidAction,
                    format!("Invalid action {other:?}: filter or count."),
                ));
            }
        };
        let limit = number(b.limit, 1000)
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| Rejection::new(ErrorCode::InvalidLimit, "Invalid limit: 1 to 1000."))?;
        let offset = number(b.offset, 0).ok_or_else(|| {
            Rejection::new(ErrorCode::InvalidOffset, "Invalid offset: 0 or more.")
        })?;
        let mut in_enterprise_project = true;
        for f in filters(b.sys_tags, "sys_tags")? {
            if f.key != ENTERPRISE_PROJECT_TAG {
                return Err(Rejection::param(format!(
                    "sys_tags: the only system tag is {ENTERPRISE_PROJECT_TAG}"
                )));
            }
            in_enterprise_project &= f.values.is_empty() || f.values.iter().any(|v| v == "0");
        }
        let (mut name, mut id) = (None, None);
        let mut fields = HashSet::new();
        for m in b.matches.unwrap_or_default() {
            let key = require(m.key, "matches[].key")?;
            let value = require(m.value, "matches[].value")?;
            if value.chars().count() > 255 {
                return Err(Rejection::param("matches[].value: at most 255 characters"));
            }
            if !fields.insert(key.clone()) {
                return Err(Rejection::param(format!("matches: {key:?} appears twice")));
            }
            match key.as_str() {
                "resource_name" => name = Some(value),
                "resource_id" => id = Some(value),
                _ => {
                    return Err(Rejection::param(format!(
                        "matches[].key {key:?}: resource_name or resource_id"
                    )));
                }
            }
        }
        Ok(Self {
            tags: filters(b.tags, "tags")?,
            tags_any: filters(b.tags_any, "tags_any")?,
            not_tags: filters(b.not_tags, "not_tags")?,
            not_tags_any: filters(b.not_tags_any, "not_tags_any")?,
            in_enterprise_project,
            name,
            id,
            without_any_tag: b.without_any_tag.unwrap_or(false),
            count_only,
            limit,
            offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::{MatchBody, TagBody};

    fn body(key: &str, value: Option<&str>) -> TagBody {
        TagBody {
            key: Some(key.into()),
            value: value.map(Into::into),
        }
    }

    fn edit(action: &str, tags: Vec<TagBody>) -> Result<TagEdit, Rejection> {
        TagEdit::try_from(TagAction {
            tags: Some(tags),
            action: Some(action.into()),
        })
    }

    #[test]
    fn tag_actions_parse_and_refuse_with_the_apis_codes() {
        assert_eq!(
            edit("create", vec![body("env", Some("prod"))]).unwrap(),
            TagEdit::Create(vec![Tag {
                key: "env".into(),
                value: "prod".into()
            }])
        );
        assert_eq!(
            edit("delete", vec![body("env", None), body("team", Some("a"))]).unwrap(),
            TagEdit::Delete(vec![
                ("env".into(), None),
                ("team".into(), Some("a".into()))
            ])
        );
        let code = |r: Result<TagEdit, Rejection>| r.unwrap_err().code;
        assert_eq!(
            code(edit("add", vec![body("a", Some(""))])),
            ErrorCode::InvalidAction
        );
        assert_eq!(code(edit("create", vec![])), ErrorCode::TagEmpty);
        assert_eq!(
            code(edit("create", vec![body("a", None)])),
            ErrorCode::Parameter,
            "a value to create"
        );
        assert_eq!(
            code(edit("create", vec![body("", Some("v"))])),
            ErrorCode::TagEmpty
        );
        assert_eq!(
            code(edit("delete", vec![body("a", None), body("a", Some("x"))])),
            ErrorCode::TagKeyDuplicated
        );
        let eleven = (0..11).map(|i| body(&format!("k{i}"), Some(""))).collect();
        assert_eq!(code(edit("create", eleven)), ErrorCode::TooManyTags);
        for (k, v) in [
            (" a", "v"),
            ("a ", "v"),
            ("_sys_x", "v"),
            ("a/b", "v"),
            ("a", "<v>"),
            ("a", "v\n"),
        ] {
            assert_eq!(
                code(edit("create", vec![body(k, Some(v))])),
                ErrorCode::TagInvalid,
                "{k:?}={v:?}"
            );
        }
        // Letters of any script, and the allowed marks; `/` in values.
        assert!(edit("create", vec![body("環境 a_b.c:d=e+f-g@h", Some("x/y z"))]).is_ok());
        assert_eq!(
            ResourceType::parse("vpc").unwrap_err().code,
            ErrorCode::InvalidResourceType
        );
        assert_eq!(
            ResourceType::parse("endpoint").unwrap(),
            ResourceType::Endpoint
        );
    }

    #[test]
    fn create_bodies_split_off_the_duration_tag() {
        let t = |k: &str, v: &str| Tag {
            key: k.into(),
            value: v.into(),
        };
        let (own, life) =
            split_create_tags(vec![t("env", "a"), t(DURATION_TAG, "60")], true).unwrap();
        assert_eq!((own, life), (vec![t("env", "a")], Some(60)));
        let code = |tags: Vec<Tag>, ep: bool| split_create_tags(tags, ep).unwrap_err().code;
        assert_eq!(
            code(vec![t(DURATION_TAG, "60")], false),
            ErrorCode::TagInvalid,
            "services"
        );
        assert_eq!(code(vec![t(EXPIRES_TAG, "x")], true), ErrorCode::TagInvalid);
        assert_eq!(
            code(vec![t(DURATION_TAG, "-1")], true),
            ErrorCode::TagInvalid
        );
        // Reserved keys do not count towards the limit.
        let mut many: Vec<Tag> = (0..MAX_TAGS).map(|i| t(&format!("k{i}"), "")).collect();
        many.push(t(DURATION_TAG, "5"));
        assert!(split_create_tags(many.clone(), true).is_ok());
        many.push(t("one-more", ""));
        assert_eq!(code(many, true), ErrorCode::TooManyTags);
    }

    #[test]
    fn queries_parse_pages_filters_and_matches() {
        let q = |b: ResourceQueryBody| ResourceFilter::try_from(b);
        let filter = |extra: ResourceQueryBody| ResourceQueryBody {
            action: Some("filter".into()),
            ..extra
        };
        let f = q(filter(ResourceQueryBody::default())).unwrap();
        assert_eq!(
            (f.limit, f.offset, f.count_only, f.in_enterprise_project),
            (1000, 0, false, true)
        );
        let paged = q(filter(ResourceQueryBody {
            limit: Some("5".into()),
            offset: Some(serde_json::json!(7)),
            ..ResourceQueryBody::default()
        }))
        .unwrap();
        assert_eq!(
            (paged.limit, paged.offset),
            (5, 7),
            "strings (the SDK) and numbers"
        );
        let code = |b: ResourceQueryBody| q(b).unwrap_err().code;
        for bad in ["0", "1001", "-1", "x"] {
            let b = filter(ResourceQueryBody {
                limit: Some(bad.into()),
                ..ResourceQueryBody::default()
            });
            assert_eq!(code(b), ErrorCode::InvalidLimit, "{bad}");
        }
        let b = filter(ResourceQueryBody {
            offset: Some("-1".into()),
            ..ResourceQueryBody::default()
        });
        assert_eq!(code(b), ErrorCode::InvalidOffset);
        let b = ResourceQueryBody {
            action: Some("list".into()),
            ..ResourceQueryBody::default()
        };
        assert_eq!(code(b), ErrorCode::InvalidAction);
        assert_eq!(code(ResourceQueryBody::default()), ErrorCode::Parameter);
        let tv = |k: &str, vals: &[&str]| TagValuesBody {
            key: Some(k.into()),
            values: Some(vals.iter().map(|s| s.to_string()).collect()),
        };
        // Keys and values are trimmed; keys unique, values unique per key, ten at most.
        let f = q(filter(ResourceQueryBody {
            tags: Some(vec![tv(" env ", &[" prod"])]),
            ..ResourceQueryBody::default()
        }))
        .unwrap();
        assert_eq!(
            f.tags,
            [TagFilter {
                key: "env".into(),
                values: vec!["prod".into()]
            }]
        );
        let with_tags = |tags: Vec<TagValuesBody>| {
            filter(ResourceQueryBody {
                tags_any: Some(tags),
                ..ResourceQueryBody::default()
            })
        };
        assert_eq!(
            code(with_tags(vec![tv("a", &[]), tv("a ", &[])])),
            ErrorCode::TagKeyDuplicated
        );
        assert_eq!(
            code(with_tags(vec![tv("a", &["x", "x"])])),
            ErrorCode::Parameter
        );
        assert_eq!(code(with_tags(vec![tv(" ", &[])])), ErrorCode::TagEmpty);
        let eleven: Vec<TagValuesBody> = (0..11).map(|i| tv(&format!("k{i}"), &[])).collect();
        assert_eq!(code(with_tags(eleven)), ErrorCode::Parameter);
        let no_values = TagValuesBody {
            key: Some("a".into()),
            values: None,
        };
        assert_eq!(
            code(with_tags(vec![no_values])),
            ErrorCode::Parameter,
            "values may be [] but not absent"
        );
        // System tags: the default enterprise project only.
        let sys = |vals: &[&str], key: &str| {
            q(filter(ResourceQueryBody {
                sys_tags: Some(vec![tv(key, vals)]),
                ..ResourceQueryBody::default()
            }))
        };
        assert!(
            sys(&["0"], ENTERPRISE_PROJECT_TAG)
                .unwrap()
                .in_enterprise_project
        );
        assert!(
            !sys(&["42"], ENTERPRISE_PROJECT_TAG)
                .unwrap()
                .in_enterprise_project
        );
        assert_eq!(
            sys(&[], "_sys_other").unwrap_err().code,
            ErrorCode::Parameter
        );
        // Matches: resource_name and resource_id, each once.
        let m = |k: &str, v: &str| MatchBody {
            key: Some(k.into()),
            value: Some(v.into()),
        };
        let with_matches = |ms: Vec<MatchBody>| {
            q(filter(ResourceQueryBody {
                matches: Some(ms),
                ..ResourceQueryBody::default()
            }))
        };
        let f = with_matches(vec![m("resource_name", "web"), m("resource_id", "x")]).unwrap();
        assert_eq!(
            (f.name.as_deref(), f.id.as_deref()),
            (Some("web"), Some("x"))
        );
        assert!(with_matches(vec![m("resource_name", "a"), m("resource_name", "b")]).is_err());
        assert!(with_matches(vec![m("status", "a")]).is_err());
        // An empty name matches only an empty name.
        let f = with_matches(vec![m("resource_name", "")]).unwrap();
        assert!(!f.matches("id", "web", &[]) && f.matches("id", "", &[]));
    }
}
