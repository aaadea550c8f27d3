//! Answers as readable tables (lists) or key/value lines (one object), or as JSON.

use serde_json::Value;

use crate::cli::Output;

/// Columns shown for each kind of list.
fn columns(key: &str) -> &'static [&'static str] {
    match key {
        "vpcs" => &["id", "name", "cidr"],
        "subnets" => &["id", "name", "vpc_id", "cidr", "gateway_ip"],
        "ports" => &[
            "id",
            "name",
            "server_type",
            "ip",
            "mac_address",
            "subnet_id",
        ],
        "endpoint_services" => &[
            "id",
            "service_name",
            "service_type",
            "status",
            "server_type",
            "approval_enabled",
            "connection_count",
        ],
        "connections" => &["id", "status", "marker_id", "domain_id", "description"],
        "permissions" => &["id", "permission", "permission_type", "created_at"],
        "endpoints" => &[
            "id",
            "ip",
            "status",
            "service_type",
            "active_status",
            "endpoint_service_name",
            "marker_id",
        ],
        "resources" => &["type", "used", "quota"],
        "tagged_resources" => &["resource_id", "resource_name", "tags"],
        "tags" => &["key", "values"],
        "nodes" => &[
            "name",
            "revision",
            "applied_revision",
            "published_generation",
            "all_workers_current",
            "attachments",
            "owns",
            "api",
        ],
        "audit" => &[
            "at",
            "project_id",
            "ak",
            "operation",
            "resource_id",
            "result",
            "request_id",
        ],
        "flows" => &[
            "end",
            "kind",
            "reason",
            "proto",
            "client",
            "endpoint",
            "snat",
            "backend",
            "packets_to_backend",
            "bytes_to_backend",
            "packets_to_client",
            "bytes_to_client",
            "count",
        ],
        _ => &[],
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        // A tag.
        Value::Object(o) if o.contains_key("key") => {
            format!(
                "{}={}",
                cell(&o["key"]),
                o.get("value").map(cell).unwrap_or_default()
            )
        }
        other => other.to_string(),
    }
}

fn table(rows: &[Value], cols: &[&str]) -> String {
    let mut widths: Vec<usize> = cols.iter().map(|c| c.len()).collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| cols.iter().map(|c| cell(&r[*c])).collect())
        .collect();
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let line = |vals: Vec<String>| {
        vals.iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(cols.iter().map(|c| c.to_uppercase()).collect())];
    out.extend(cells.into_iter().map(line));
    out.join("\n")
}

pub(crate) fn render(v: &Value, output: Output) -> String {
    if output == Output::Json {
        return serde_json::to_string_pretty(v).unwrap_or_default();
    }
    let Some(obj) = v.as_object() else {
        return cell(v);
    };
    // A list response ({"things": [...]} or with "total_count"): the array as a table.
    let is_list = obj.len() == 1 || (obj.len() == 2 && obj.contains_key("total_count"));
    for (k, val) in obj.iter().filter(|_| is_list) {
        // The tag API's resources are not the quota's.
        let tagged = val
            .as_array()
            .and_then(|r| r.first())
            .is_some_and(|r| r.get("resource_id").is_some());
        let k = if tagged {
            "tagged_resources"
        } else {
            k.as_str()
        };
        if let (Some(rows), cols) = (val.as_array(), columns(k))
            && !cols.is_empty()
        {
            return table(rows, cols);
        }
    }
    if let Some(q) = obj.get("quotas") {
        return render(q, output);
    }
    // One object (possibly wrapped as {"vpc": {...}}).
    let inner = if obj.len() == 1 {
        obj.values()
            .next()
            .and_then(Value::as_object)
            .unwrap_or(obj)
    } else {
        obj
    };
    let width = inner.keys().map(String::len).max().unwrap_or(0);
    inner
        .iter()
        .map(|(k, v)| format!("{k:<width$}  {}", cell(v)))
        .collect::<Vec<_>>()
        .join("\n")
}
