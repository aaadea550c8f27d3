//! The query of the tag API (operation 28, `resource_instances/action`): tag filters, search
//! fields, paging, and `count`.
//!
//! As the API describes it: `tags` holds resources with every one of the filters, `tags_any`
//! with at least one, `not_tags` without all of them, `not_tags_any` without any; within a
//! filter the values are alternatives, and no values means any value. A filter list holds
//! at most [`MAX_TAGS_PER_ACTION`] keys of as many values; keys and values are trimmed of
//! spaces and checked for length only. `without_any_tag` ignores the four lists.

use std::collections::HashSet;

use super::tags::{ENTERPRISE_PROJECT_TAG, MAX_TAGS_PER_ACTION, tag_invalid};
use crate::error::{ErrorCode, Rejection, require};
use crate::model::Tag;
use crate::requests::{ResourceQueryBody, TagValuesBody};

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
    use crate::requests::MatchBody;

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
