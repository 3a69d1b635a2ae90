//! The HTTP edge: `/client/api` (GET and POST, CloudStack's signing, envelopes and errors),
//! `/metrics`, the agents' WebSocket (`/agent/v1`, a bearer token per host) and what servers
//! and `guestnet verify` ask each other (`/internal/v1/…`, the database's shared secret).
//!
//! A request to `/client/api` is bounded before anything else looks at it: its query string
//! ([`MAX_QUERY_BYTES`]), its form body ([`MAX_BODY_BYTES`], which must arrive within
//! [`BODY_TIMEOUT`]) and its number of parameters ([`MAX_PARAMS`]); larger ones get a 431
//! naming the limit. Decoding and checking the signature of a large request run on a blocking
//! thread, so they never hold up the runtime's workers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api_types::catalogue;
use api_types::error::{ApiError, ApiErrorCode};
use api_types::params::{check_and_normalize, MAX_BODY_BYTES, MAX_PARAMS, MAX_QUERY_BYTES};
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

use crate::app::{store_error, App};
use crate::cmd::Reply;
use crate::metrics::RequestLabels;
use domain::actor::Caller;

/// The routes.
pub fn router(app: App) -> axum::Router {
    axum::Router::new()
        .route("/client/api", get(api).post(api))
        .route("/client/api/", get(api).post(api))
        .route("/metrics", get(metrics))
        .route(agent::proto::AGENT_PATH, get(agent_socket))
        .route("/internal/v1/router-status", get(router_status))
        .with_state(app)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// An agent connecting: its token names its host; the socket is then served by
/// [`crate::hosts::serve_agent`]. A wrong or revoked token gets 401 and a log line.
async fn agent_socket(
    State(app): State<App>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    let Some(token) = bearer(&headers) else {
        tracing::warn!(%peer, "an agent connected without a token; refused");
        return (StatusCode::UNAUTHORIZED, "a bearer token is required\n").into_response();
    };
    let host = match crate::hosts::authenticate(&app.db, token).await {
        Ok(Some(host)) => host,
        Ok(None) => {
            tracing::warn!(%peer, "an agent presented an unknown or revoked token; refused");
            return (StatusCode::UNAUTHORIZED, "unknown or revoked token\n").into_response();
        }
        Err(e) => {
            tracing::error!(%peer, error = %e, "cannot check an agent's token");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot check the token now\n",
            )
                .into_response();
        }
    };
    let driver = headers
        .get(agent::proto::DRIVER_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown")
        .to_string();
    tracing::info!(%peer, %host, "agent authenticated");
    ws.max_message_size(1 << 30)
        .max_frame_size(1 << 30)
        .on_upgrade(move |socket| {
            crate::hosts::serve_agent(app.db, app.hosts, app.metrics, host, driver, socket)
        })
}

/// What a router holds, asked of its host's agent through this server (for `guestnet verify`,
/// which finds the server holding each host in the database). Needs the cluster's secret.
async fn router_status(
    State(app): State<App>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let secret = match crate::hosts::cluster_secret(&app.db).await {
        Ok(s) => s,
        Err(e) => {
            let text = crate::resp::error::chain(&e);
            return (StatusCode::SERVICE_UNAVAILABLE, text).into_response();
        }
    };
    if bearer(&headers) != Some(secret.as_str()) {
        return (StatusCode::UNAUTHORIZED, "the cluster secret is required\n").into_response();
    }
    let (Some(host), Some(router)) = (q.get("host"), q.get("router")) else {
        return (StatusCode::BAD_REQUEST, "host and router are required\n").into_response();
    };
    let op = agent::proto::Op::Status {
        router: router.clone(),
    };
    match app.hosts.call(host, op).await {
        Ok(agent::proto::Answer::Status { status }) => axum::Json(*status).into_response(),
        Ok(other) => (
            StatusCode::BAD_GATEWAY,
            format!("the agent answered {other:?}\n"),
        )
            .into_response(),
        Err(e @ crate::hosts::CallError::NotConnected(_)) => {
            (StatusCode::CONFLICT, format!("{e}\n")).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("{e}\n")).into_response(),
    }
}

async fn metrics(State(app): State<App>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}

const JSON: &str = "application/json; charset=UTF-8";

fn reply(status: StatusCode, body: &Value, description: Option<&str>) -> Response {
    text_reply(status, body.to_string(), description)
}

fn text_reply(status: StatusCode, body: String, description: Option<&str>) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    if let Some(d) = description {
        // Header values cannot hold every character; keep what they can, and no more than an
        // error text may hold.
        let clean: String = d
            .chars()
            .take(api_types::error::MAX_ERROR_TEXT_CHARS + 3)
            .map(|c| {
                if c.is_ascii() && !c.is_ascii_control() {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        if let Ok(v) = HeaderValue::from_str(&clean) {
            resp.headers_mut().insert("X-Description", v);
        }
    }
    resp
}

fn error_reply(e: &ApiError, command: Option<&str>) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    reply(status, &e.envelope(command), Some(&e.bounded_text()))
}

/// How long a request's body may take to arrive once its head has.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Requests larger than this (query and body) are decoded and their signatures checked on a
/// blocking thread.
const OFFLOAD_BYTES: usize = 64 * 1024;

/// Runs `f` here when `size` is small, on a blocking thread otherwise.
async fn offload<T: Send + 'static>(size: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
    if size <= OFFLOAD_BYTES {
        return f();
    }
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// The form body, read up to [`MAX_BODY_BYTES`] within [`BODY_TIMEOUT`].
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let too_large =
        |size: usize| ApiError::request_too_large("body", size, MAX_BODY_BYTES, "bytes");
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = declared.filter(|n| *n > MAX_BODY_BYTES) {
        return Err(too_large(n));
    }
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            let limit = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if limit {
                Err(too_large(MAX_BODY_BYTES + 1))
            } else {
                Err(ApiError::new(
                    ApiErrorCode::BadRequest,
                    None,
                    "the request's body could not be read",
                ))
            }
        }
        Err(_) => Err(ApiError::new(
            ApiErrorCode::BadRequest,
            None,
            format!(
                "the request's body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// Query string and form body, merged, `+` read as space and `%XX` as UTF-8.
fn request_params(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("application/x-www-form-urlencoded"));
    if is_form && !body.is_empty() {
        out.extend(form_urlencoded::parse(body).into_owned());
    }
    out
}

async fn api(
    State(app): State<App>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let params = match bounded_params(query, &headers, body).await {
        Ok(p) => p,
        Err(e) => {
            app.metrics
                .requests
                .get_or_create(&RequestLabels {
                    command: "unknown".into(),
                    result: e.code.code().to_string(),
                })
                .inc();
            return error_reply(&e, None);
        }
    };
    let command = params
        .iter()
        .find(|(k, _)| k == "command")
        .map(|(_, v)| v.clone());
    let known = command.as_deref().and_then(catalogue::find);
    let label = known.map_or("unknown", |s| s.name).to_string();
    let outcome = handle(&app, &params, command.as_deref()).await;
    let (resp, result) = match outcome {
        Ok(body) => (
            text_reply(StatusCode::OK, body, None),
            "success".to_string(),
        ),
        Err(e) => {
            if e.code.code() >= 530 && e.code.code() != 537 && e.code.code() != 533 {
                tracing::warn!(command = %label, code = e.code.code(), text = %e.text, "request failed");
            }
            let code = e.code.code().to_string();
            (error_reply(&e, command.as_deref()), code)
        }
    };
    app.metrics
        .requests
        .get_or_create(&RequestLabels {
            command: label,
            result,
        })
        .inc();
    resp
}

/// The request's parameters, within the limits of a request.
async fn bounded_params(
    query: Option<String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Vec<(String, String)>, ApiError> {
    let query_len = query.as_deref().map_or(0, str::len);
    if query_len > MAX_QUERY_BYTES {
        let mut e =
            ApiError::request_too_large("query string", query_len, MAX_QUERY_BYTES, "bytes");
        e.text.push_str("; send long requests as a POST form body");
        return Err(e);
    }
    let body = read_body(headers, body).await?;
    let headers = headers.clone();
    let params = offload(query_len + body.len(), move || {
        request_params(query.as_deref(), &headers, &body)
    })
    .await;
    if params.len() > MAX_PARAMS {
        return Err(ApiError::request_too_large(
            "parameter list",
            params.len(),
            MAX_PARAMS,
            "parameters",
        ));
    }
    Ok(params)
}

/// The whole answer body: `{"<command>response": <the command's object>}`.
async fn handle(
    app: &App,
    params: &[(String, String)],
    command: Option<&str>,
) -> Result<String, ApiError> {
    let Some(spec) = command.and_then(catalogue::find) else {
        return Err(ApiError::unknown_command());
    };
    let caller = authenticate(app, params).await?;
    let checked = check_and_normalize(spec, params)?;
    let inner = match crate::cmd::dispatch(app, &caller, spec.name, &checked).await? {
        Reply::Json(v) => v.to_string(),
        Reply::Text(t) => t,
    };
    // The key is the lowercase command name: ASCII letters only, nothing to escape.
    Ok(format!("{{\"{}\":{inner}}}", spec.response_name()))
}

/// Finds the user by `apiKey` (any case of the name) and checks the signature and `expires`.
async fn authenticate(app: &App, params: &[(String, String)]) -> Result<Caller, ApiError> {
    let Some(key) = params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("apikey"))
        .map(|(_, v)| v.as_str())
    else {
        return Err(ApiError::auth_failure());
    };
    // No key holds a control character (and PostgreSQL cannot even be asked about a NUL).
    if key.chars().any(char::is_control) {
        return Err(ApiError::auth_failure());
    }
    let (caller, secret, cached) = match app.keys.get(key) {
        Some((caller, secret)) => (caller, secret, true),
        None => {
            let (caller, secret) = find_user(app, key).await?;
            (caller, secret, false)
        }
    };
    if !signature_holds(params, &secret).await {
        return Err(ApiError::auth_failure());
    }
    if !cached {
        app.keys.put(key, &caller, &secret);
    }
    Ok(caller)
}

/// Whether the request's signature and expiry hold for `secret`.
async fn signature_holds(params: &[(String, String)], secret: &str) -> bool {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let size: usize = params.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size <= OFFLOAD_BYTES {
        return api_types::signing::verify(params, secret, now).is_ok();
    }
    let (params, secret) = (params.to_vec(), secret.to_string());
    offload(size, move || {
        api_types::signing::verify(&params, &secret, now).is_ok()
    })
    .await
}

/// The enabled user (of an enabled account) with this API key, and its secret.
async fn find_user(app: &App, key: &str) -> Result<(Caller, String), ApiError> {
    let holder = store::lookups::key_holder(&app.db, key)
        .await
        .map_err(store_error)?
        .ok_or_else(ApiError::auth_failure)?;
    let secret = holder.secret.ok_or_else(ApiError::auth_failure)?;
    if !holder.user_enabled || !holder.account_enabled {
        return Err(ApiError::auth_failure());
    }
    let caller = Caller {
        user_id: holder.user_id,
        user_uuid: holder.user_uuid,
        account_id: holder.account_id,
        account_uuid: holder.account_uuid,
        account_name: holder.account_name,
        domain_id: holder.domain_id,
        domain_uuid: holder.domain_uuid,
        domain_name: holder.domain_name,
        domain_path: holder.domain_path,
        admin: holder.admin,
    };
    Ok((caller, secret))
}

#[cfg(test)]
mod tests;
