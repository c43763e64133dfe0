//! The admin API (separate listener, loopback by default, optional bearer
//! token): `GET /admin/status`, `PUT /admin/config` (new plugin
//! configuration), `PUT /admin/module` (new `.wasm`), `GET /metrics`.
//!
//! A backend is `healthy` in the status when neither the proxy (connection
//! failures) nor the filter skips it. The filter says so through a gauge
//! named by the metric convention of [`crate::wasm::metrics`]:
//! [`FILTER_HEALTH_GAUGE`]`{backend="<address>"}`, 0 while it skips the
//! backend (failed scrapes, passive ejection); a filter without that gauge
//! leaves the proxy's view alone (`filter_healthy` is then null).

use crate::body::full;
use crate::server::simple;
use crate::state::App;
use crate::upstream::ProxyBody;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// The filter gauge saying whether it routes to a backend.
pub const FILTER_HEALTH_GAUGE: &str = "prefixgate_backend_healthy";

/// Largest module upload (`PUT /admin/module`).
pub const MAX_MODULE_UPLOAD: usize = 64 << 20;
/// Largest plugin configuration upload (`PUT /admin/config`).
pub const MAX_CONFIG_UPLOAD: usize = 1 << 20;

/// Whether an `Authorization` header carries `token` with the `Bearer`
/// scheme (matched case-insensitively). The token is compared in constant
/// time, through its SHA-256 digest so that its length does not leak either.
pub fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else { return false };
    let value = value.as_bytes().trim_ascii();
    let Some(space) = value.iter().position(|b| *b == b' ') else { return false };
    let (scheme, given) = (&value[..space], value[space..].trim_ascii());
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return false;
    }
    let (given, expected) = (Sha256::digest(given), Sha256::digest(token.as_bytes()));
    given.as_slice().ct_eq(expected.as_slice()).into()
}

/// Reads an upload of at most `cap` bytes chunk by chunk: 413 as soon as a
/// declared length or the bytes read pass the cap, 408 when the client
/// goes idle for `idle`.
async fn read_upload(
    headers: &HeaderMap,
    mut body: Incoming,
    cap: usize,
    idle: Duration,
) -> Result<Vec<u8>, Response<ProxyBody>> {
    let too_large = || simple(StatusCode::PAYLOAD_TOO_LARGE, &format!("upload larger than {cap} bytes"));
    let declared =
        headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap as u64) {
        return Err(too_large());
    }
    let mut out = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(simple(StatusCode::REQUEST_TIMEOUT, "upload idle for too long")),
            Ok(None) => return Ok(out),
            Ok(Some(Err(e))) => return Err(simple(StatusCode::BAD_REQUEST, &format!("reading body: {e}"))),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > cap {
                return Err(too_large());
            }
            out.extend_from_slice(&data);
        }
    }
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<ProxyBody> {
    let mut r = Response::new(full(Bytes::from(format!("{value}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// The status document.
pub fn status(app: &App) -> serde_json::Value {
    let rt = app.current.get();
    let plugin_config = serde_json::from_slice::<serde_json::Value>(&rt.plugin_config)
        .unwrap_or_else(|_| String::from_utf8_lossy(&rt.plugin_config).into_owned().into());
    let backends: Vec<serde_json::Value> = rt
        .backends
        .all()
        .iter()
        .map(|b| {
            let proxy_healthy = b.healthy();
            // The filter's own view, by its gauge (see the module doc).
            let filter_healthy = app
                .builder
                .shared
                .metrics
                .labelled_value(FILTER_HEALTH_GAUGE, "backend", &b.name)
                .map(|v| v != 0);
            serde_json::json!({
                "address": b.name,
                "healthy": proxy_healthy && filter_healthy != Some(false),
                "proxy_healthy": proxy_healthy,
                "filter_healthy": filter_healthy,
                "in_flight": b.in_flight.load(std::sync::atomic::Ordering::Relaxed),
                "connect_failures": b.failures.load(std::sync::atomic::Ordering::Relaxed),
            })
        })
        .collect();
    let (keys, bytes) = app.builder.shared.data.usage();
    serde_json::json!({
        "module": { "sha256": rt.version.sha256, "size": rt.version.size, "abi": rt.version.abi },
        "plugin_config": plugin_config,
        "backends": backends,
        "vms": rt.pool.len(),
        "uptime_seconds": app.started.elapsed().as_secs_f64(),
        "config_age_seconds": rt.since.elapsed().as_secs_f64(),
        "swaps": app.current.swaps(),
        "rollbacks": app.current.rollbacks(),
        "last_rollback": app.current.last_rollback(),
        "spare_vm": rt.pool.spare_ready(),
        "shared_data": { "keys": keys, "bytes": bytes },
    })
}

/// Handles one admin request.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response<ProxyBody> {
    if let Some(token) = &app.admin_token {
        if !bearer_matches(req.headers(), token) {
            return simple(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
        }
    }
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    match (method, path.as_str()) {
        (Method::GET, "/admin/status") => json(StatusCode::OK, status(&app)),
        (Method::GET, "/metrics") => {
            let help = app.current.get().version.metric_help.clone();
            let text =
                format!("{}{}", app.metrics.render(), app.builder.shared.metrics.render(help.as_deref()));
            let mut r = Response::new(full(Bytes::from(text)));
            r.headers_mut()
                .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
            r
        }
        (Method::PUT | Method::POST, "/admin/config" | "/admin/module") => {
            let cap = if path == "/admin/module" { MAX_MODULE_UPLOAD } else { MAX_CONFIG_UPLOAD };
            let (parts, body) = req.into_parts();
            let body = match read_upload(&parts.headers, body, cap, app.upload_idle).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let (module, config) =
                if path == "/admin/module" { (Some(body), None) } else { (None, Some(body)) };
            match app.current.swap(&app.builder, module, config).await {
                Ok(_) => json(StatusCode::OK, status(&app)),
                Err(e) => {
                    let e = crate::error_chain(&e);
                    tracing::warn!("swap refused: {e}");
                    simple(
                        StatusCode::BAD_REQUEST,
                        &format!("refused, the previous filter keeps serving: {e}"),
                    )
                }
            }
        }
        _ => simple(StatusCode::NOT_FOUND, "unknown admin route"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(http::header::AUTHORIZATION, v);
        }
        h
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_the_token_exact() {
        for ok in ["Bearer s3cret", "bearer s3cret", "BEARER  s3cret ", "bEaReR s3cret"] {
            assert!(bearer_matches(&auth(ok), "s3cret"), "{ok:?}");
        }
        for bad in ["Bearer s3cre", "Bearer s3cret2", "Basic s3cret", "s3cret", "Bearer", "Bearers3cret", ""]
        {
            assert!(!bearer_matches(&auth(bad), "s3cret"), "{bad:?}");
        }
        assert!(!bearer_matches(&HeaderMap::new(), "s3cret"));
    }
}
