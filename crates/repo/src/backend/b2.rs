//! Backblaze B2, through B2's S3-compatible API.
//!
//! `b2:bucket:path` with `B2_ACCOUNT_ID` and `B2_ACCOUNT_KEY` like restic. We call B2's
//! native `b2_authorize_account` once, only to learn the account's S3 endpoint
//! (`s3ApiUrl`, e.g. `https://s3.us-west-004.backblazeb2.com`), then speak S3 with the same
//! key. Why not the native API for everything: the S3 path is the one our Garage tests
//! exercise for real, it uploads without the native API's per-thread upload URLs and SHA-1
//! headers, and it is what B2 recommends for new integrations. Caveat (B2's, not ours): the
//! S3 API needs an application key; the account's master key is refused.

use super::s3::{Credentials, S3Backend, Target};
use super::{Backend, Options};
use crate::error::{Error, Kind, Result};
use base64::Engine;
use std::sync::Arc;

const AUTH_URL: &str = "https://api.backblazeb2.com/b2api/v2/b2_authorize_account";

pub fn open(spec: &str, opts: &Options) -> Result<Arc<dyn Backend>> {
    let (bucket, path) = spec.split_once(':').unwrap_or((spec, ""));
    if bucket.is_empty() {
        return Err(Error::invalid(format!(
            "b2:{spec}: expected b2:bucket:path"
        )));
    }
    let get = |k: &str| opts.env_var(k);
    let (Some(id), Some(key)) = (get("B2_ACCOUNT_ID"), get("B2_ACCOUNT_KEY")) else {
        return Err(Error::new(
            Kind::Auth,
            "no B2 credentials: set B2_ACCOUNT_ID (the application key id) and B2_ACCOUNT_KEY",
        ));
    };
    // For tests and private deployments; restic has no equivalent because it is fixed.
    let auth_url = opts
        .get("b2.auth-url")
        .map(str::to_string)
        .or_else(|| get("CAIRN_B2_AUTH_URL"))
        .unwrap_or_else(|| AUTH_URL.to_string());
    let http = opts.http("b2");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{key}"));
    let resp = http
        .send_retry(
            "GET",
            &auth_url,
            &|| vec![("Authorization", format!("Basic {basic}"))],
            None,
            super::http::MAX_DOCUMENT,
            "B2 authorization",
        )
        .map_err(|e| {
            if e.kind() == Kind::Auth {
                Error::new(
                    Kind::Auth,
                    "B2 refused the key: check B2_ACCOUNT_ID and B2_ACCOUNT_KEY (an application key and its id)",
                )
            } else {
                e
            }
        })?;
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Auth {
        s3_api_url: String,
    }
    let auth: Auth = serde_json::from_slice(&resp.body).map_err(|e| {
        Error::new(
            Kind::Io,
            format!("B2 authorization: unexpected answer (no s3ApiUrl): {e}"),
        )
    })?;
    let endpoint = auth.s3_api_url.trim_end_matches('/').to_string();
    // s3.<region>.backblazeb2.com names the region the signature must use; elsewhere the
    // S3 backend learns the region from the server's first error.
    let region = endpoint
        .split("://")
        .nth(1)
        .filter(|h| h.starts_with("s3.") && h.ends_with(".backblazeb2.com"))
        .and_then(|h| h.split('.').nth(1))
        .unwrap_or("us-east-1")
        .to_string();
    let target = Target {
        endpoints: vec![endpoint],
        bucket: bucket.to_string(),
        prefix: path.trim_matches('/').to_string(),
        virtual_host: false,
    };
    let creds = Credentials {
        access_key: id,
        secret_key: key,
        session_token: None,
    };
    Ok(Arc::new(S3Backend::new(target, creds, region, http)))
}
