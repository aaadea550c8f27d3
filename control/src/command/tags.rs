//! Commands of the tag API (operation 26, tag actions on one resource) and the tag rules
//! shared with the create bodies; the queries of operation 28 are in [`super::tag_query`].
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
use crate::requests::TagAction;

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

pub(super) fn tag_invalid(why: String) -> Rejection {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::TagBody;

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
}
