//! `prefixgate swap`: uploads a module and/or a plugin configuration to a
//! running proxy's admin API.

use crate::cli::SwapArgs;
use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

async fn put(args: &SwapArgs, route: &str, body: Vec<u8>) -> anyhow::Result<String> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let url = format!("{}{route}", args.admin.trim_end_matches('/'));
    let mut req = http::Request::put(&url);
    if let Some(t) = &args.token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req.body(Full::new(Bytes::from(body))).with_context(|| format!("building request to {url}"))?;
    let resp = client.request(req).await.with_context(|| format!("PUT {url}"))?;
    let status = resp.status();
    let text = String::from_utf8_lossy(&resp.into_body().collect().await?.to_bytes()).into_owned();
    if !status.is_success() {
        bail!("PUT {url}: {status}: {}", text.trim());
    }
    Ok(text)
}

/// Runs the swap; the module first, then the configuration.
pub async fn run(args: SwapArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.module {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        print!("{}", put(&args, "/admin/module", bytes).await?);
    }
    if let Some(path) = &args.config {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        print!("{}", put(&args, "/admin/config", bytes).await?);
    }
    Ok(())
}
