//! Query parameters of list calls: decoding, and [`Page`] (`limit`, `offset`, `sort_key`,
//! `sort_dir`), which sorts and cuts a list after the model's query filtered it.

use std::collections::HashMap;

use crate::auth;
use crate::error::{ErrorCode, Rejection};
use crate::model::ApiStatus;

/// Query parameters decoded with percent-decoding only (`+` stays `+`, as the SDK means it).
pub fn params(query: Option<&str>) -> HashMap<String, String> {
    auth::query_pairs(query.unwrap_or("")).into_iter().collect()
}

/// Check a `status` filter against the values the API documents for a list.
///
/// # Errors
/// EndPoint.0019.
pub fn check_status(
    p: &HashMap<String, String>,
    allowed: &[ApiStatus],
) -> Result<Option<ApiStatus>, Rejection> {
    match p.get("status") {
        None => Ok(None),
        Some(st) => ApiStatus::parse(st)
            .filter(|s| allowed.contains(s))
            .map(Some)
            .ok_or_else(|| {
                Rejection::new(ErrorCode::InvalidStatus, format!("Invalid status {st:?}."))
            }),
    }
}

/// Pagination and sorting of a list.
#[derive(Clone, Copy, Debug)]
pub struct Page {
    /// Page size.
    pub limit: usize,
    /// Skipped entries.
    pub offset: usize,
    /// Sort on `updated_at` instead of `created_at`.
    pub by_update: bool,
    /// Ascending instead of descending.
    pub ascending: bool,
}

impl Page {
    /// Read `limit`, `offset`, `sort_key`, `sort_dir` from query parameters.
    ///
    /// # Errors
    /// EndPoint.0006, 0010, 0017 or 0018.
    pub fn from_params(
        params: &HashMap<String, String>,
        max_limit: usize,
    ) -> Result<Self, Rejection> {
        let limit = match params.get("limit") {
            None => 10,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|l| *l <= max_limit)
                .ok_or_else(|| {
                    Rejection::new(
                        ErrorCode::InvalidLimit,
                        format!("Invalid limit {v:?}: 0 to {max_limit}."),
                    )
                })?,
        };
        let offset = match params.get("offset") {
            None => 0,
            Some(v) => v.parse::<usize>().map_err(|_| {
                Rejection::new(ErrorCode::InvalidOffset, format!("Invalid offset {v:?}."))
            })?,
        };
        let by_update = match params.get("sort_key").map(String::as_str) {
            None | Some("create_at") => false,
            Some("update_at") => true,
            Some(v) => {
                return Err(Rejection::new(
                    ErrorCode::InvalidSortKey,
                    format!("Invalid sort_key {v:?}: create_at or update_at."),
                ));
            }
        };
        let ascending = match params.get("sort_dir").map(String::as_str) {
            None | Some("desc") => false,
            Some("asc") => true,
            Some(v) => {
                return Err(Rejection::new(
                    ErrorCode::InvalidSortDir,
                    format!("Invalid sort_dir {v:?}: asc or desc."),
                ));
            }
        };
        Ok(Self {
            limit,
            offset,
            by_update,
            ascending,
        })
    }

    /// Sort `items` by (time, id) and cut the page; returns the page and the total count.
    pub fn apply<T>(
        &self,
        mut items: Vec<T>,
        key: impl Fn(&T) -> (i64, i64, &str),
    ) -> (Vec<T>, usize) {
        let total = items.len();
        items.sort_by(|a, b| {
            let (ca, ua, ia) = key(a);
            let (cb, ub, ib) = key(b);
            let ord = if self.by_update {
                (ua, ia).cmp(&(ub, ib))
            } else {
                (ca, ia).cmp(&(cb, ib))
            };
            if self.ascending { ord } else { ord.reverse() }
        });
        (
            items
                .into_iter()
                .skip(self.offset)
                .take(self.limit)
                .collect(),
            total,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_sort_and_cut() {
        let p = |q: &str| Page::from_params(&params(Some(q)), 100);
        let items = vec![(1, 5, "a"), (2, 4, "b"), (3, 3, "c"), (3, 9, "d")];
        let ids = |page: Page| {
            page.apply(items.clone(), |x| (x.0, x.1, x.2))
                .0
                .iter()
                .map(|x| x.2)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(p("").unwrap()), vec!["d", "c", "b", "a"]);
        assert_eq!(
            ids(p("sort_dir=asc&limit=2&offset=1").unwrap()),
            vec!["b", "c"]
        );
        assert_eq!(
            ids(p("sort_key=update_at&sort_dir=asc").unwrap()),
            vec!["c", "b", "a", "d"]
        );
        let code = |q: &str| p(q).unwrap_err().code;
        assert_eq!(code("limit=101"), ErrorCode::InvalidLimit);
        assert_eq!(code("offset=-1"), ErrorCode::InvalidOffset);
        assert_eq!(code("sort_key=name"), ErrorCode::InvalidSortKey);
        assert_eq!(code("sort_dir=up"), ErrorCode::InvalidSortDir);
    }
}
