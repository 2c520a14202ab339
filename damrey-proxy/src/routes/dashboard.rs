//! `GET /`: the dashboard, one self-contained HTML page whose script reads the JSON API.

use actix_web::HttpResponse;
use actix_web::http::header;

/// The page: HTML, CSS and script in one file, with no external URL, so it works offline.
const PAGE: &str = include_str!("dashboard.html");

/// What the page may load: its own inline style and script, and the proxy's own API.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// `GET /`: the dashboard page.
///
/// It carries no data, so it is served without a token; its script sends the token the
/// page was opened with (`/#token=...`) on every API call.
#[utoipa::path(get, path = "/", tag = "dashboard",
    responses((status = 200, description = "The dashboard page", content_type = "text/html; charset=utf-8", body = String)))]
pub async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(PAGE)
}
