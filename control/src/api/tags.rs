//! The tag API (operations 26-28): tag actions on a service or endpoint, the tag list of a
//! resource type, and resources by tag. `resource_type` is `endpoint_service` or `endpoint`;
//! a tenant sees and tags only its own resources.

use axum::body::Bytes;
use axum::extract::{Path, State};
use serde::Serialize;

use super::{ApiResult, ApiState, Ctx, command, no_content, ok};
use crate::command::{ResourceFilter, ResourceType, TagEdit};
use crate::model::Tag;
use crate::registry::tags::{resources_where, tag_list};
use crate::requests::{ResourceQueryBody, TagAction};

/// `{"key", "values"}` of the tag list.
#[derive(Debug, Serialize)]
struct KeyValues<'m> {
    key: &'m str,
    values: Vec<&'m str>,
}

/// `{"tags": [...]}`.
#[derive(Debug, Serialize)]
struct TagListView<'m> {
    tags: Vec<KeyValues<'m>>,
}

/// One resource of a query's answer.
#[derive(Debug, Serialize)]
struct ResourceView<'m> {
    resource_id: &'m str,
    tags: &'m [Tag],
    resource_name: &'m str,
}

/// The answer to `filter`.
#[derive(Debug, Serialize)]
struct Resources<'m> {
    resources: Vec<ResourceView<'m>>,
    total_count: usize,
}

/// The answer to `count`: the total only.
#[derive(Debug, Serialize)]
struct Count {
    total_count: usize,
}

/// `POST /v1/{project_id}/{resource_type}/{resource_id}/tags/action`: 204.
pub async fn action(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, rt, id)): Path<(String, String, String)>,
    b: Bytes,
) -> ApiResult {
    let rt = ResourceType::parse(&rt)?;
    command::<TagAction, TagEdit, _>(&s, &b, move |r, edit| r.tag_action(&ctx, rt, &id, edit))
        .await?;
    no_content()
}

/// `GET /v1/{project_id}/{resource_type}/tags`.
pub async fn list(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, rt)): Path<(String, String)>,
) -> ApiResult {
    let rt = ResourceType::parse(&rt)?;
    let m = s.registry.read();
    let tags = tag_list(m.tenant(&ctx), rt)
        .into_iter()
        .map(|(key, values)| KeyValues {
            key,
            values: values.into_iter().collect(),
        })
        .collect();
    ok(TagListView { tags })
}

/// `POST /v1/{project_id}/{resource_type}/resource_instances/action` (a query: nothing
/// changes).
pub async fn instances(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, rt)): Path<(String, String)>,
    b: Bytes,
) -> ApiResult {
    let rt = ResourceType::parse(&rt)?;
    let f = ResourceFilter::try_from(super::body::<ResourceQueryBody>(&b)?)?;
    let m = s.registry.read();
    let (page, total_count) = resources_where(m.tenant(&ctx), rt, &f);
    if f.count_only {
        return ok(Count { total_count });
    }
    let resources = page
        .into_iter()
        .map(|r| ResourceView {
            resource_id: r.id,
            tags: r.tags,
            resource_name: r.name,
        })
        .collect();
    ok(Resources {
        resources,
        total_count,
    })
}
