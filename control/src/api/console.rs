//! The console: the static files of `control/console/`, compiled into vpcepd
//! (`rust-embed`, in every profile: no Node build, nothing read from disk), served at
//! `/console/` on the API listener. The page is only a client of the API: it signs in at
//! `/v3/auth/tokens` and sends the token as `X-Auth-Token`, with no cookie (so no CSRF).
//!
//! Every answer carries a strict Content-Security-Policy (scripts and styles from this
//! origin only: no inline script, no `eval`), `frame-ancestors 'none'`,
//! `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use rust_embed::Embed;

/// The console's files.
#[derive(Embed)]
#[folder = "console/"]
struct Assets;

/// The policy every console answer carries.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
    frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// `/console` → `/console/`.
pub async fn redirect() -> Redirect {
    Redirect::permanent("/console/")
}

/// `/console/`: the page.
pub async fn index() -> Response {
    serve("index.html")
}

/// `/console/{file}`: one asset, or 404.
pub async fn file(Path(file): Path<String>) -> Response {
    serve(&file)
}

fn serve(name: &str) -> Response {
    let Some(asset) = Assets::get(name) else {
        return secure(
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "not found\n",
            )
                .into_response(),
        );
    };
    let mime = asset.metadata.mimetype();
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, mime.to_string())],
        asset.data.into_owned(),
    )
        .into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!(
        "\"{}\"",
        hex::encode(&asset.metadata.sha256_hash()[..8])
    )) {
        resp.headers_mut().insert(header::ETAG, etag);
    }
    // The page itself is never cached stale: a new vpcepd serves its own console.
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure(resp)
}

/// The console's security headers.
fn secure(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}
