//! The admin API (separate listener, loopback by default, optional bearer
//! token): `GET /admin/status`, `PUT /admin/config` (new plugin
//! configuration), `PUT /admin/module` (new `.wasm`), `GET /metrics`.

use crate::app::App;
use crate::body::full;
use crate::server::simple;
use crate::upstream::ProxyBody;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use std::sync::Arc;

/// Largest admin request body (a module).
const MAX_UPLOAD: usize = 64 << 20;

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
            serde_json::json!({
                "address": b.name,
                "healthy": b.healthy(),
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
        "shared_data": { "keys": keys, "bytes": bytes },
    })
}

/// Handles one admin request.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response<ProxyBody> {
    if let Some(token) = &app.admin_token {
        let ok = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| t == token);
        if !ok {
            return simple(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
        }
    }
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    match (method, path.as_str()) {
        (Method::GET, "/admin/status") => json(StatusCode::OK, status(&app)),
        (Method::GET, "/metrics") => {
            let text = format!("{}{}", app.metrics.render(), app.builder.shared.metrics.render());
            let mut r = Response::new(full(Bytes::from(text)));
            r.headers_mut()
                .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
            r
        }
        (Method::PUT | Method::POST, "/admin/config" | "/admin/module") => {
            let body = match Limited::new(req.into_body(), MAX_UPLOAD).collect().await {
                Ok(b) => b.to_bytes().to_vec(),
                Err(e) => return simple(StatusCode::BAD_REQUEST, &format!("reading body: {e}")),
            };
            let (module, config) =
                if path == "/admin/module" { (Some(body), None) } else { (None, Some(body)) };
            match app.current.swap(&app.builder, module, config).await {
                Ok(_) => json(StatusCode::OK, status(&app)),
                Err(e) => {
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
