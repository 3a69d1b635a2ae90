//! `guestnet verify`: for every router, what the database says it must enforce against what
//! the router reports it enforces.
//!
//! The database side is the network's complete config planned from its rows as they stand
//! when no job is running (rows of pending jobs count as they were before those jobs). The
//! router side is asked of the router's agent through the server holding the host (found in
//! the database, and asked with the database's shared secret): the generation it holds, the
//! config it holds, and whether the kernel still holds what the router committed.

use std::collections::BTreeSet;
use std::time::Duration;

use domain::ids::JobId;
use domain::model::RouterState;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;

use agent::proto::RouterStatus;

use crate::hosts::SERVER_DEAD_AFTER;
use domain::plan::{self, Batch};
use store::db::{now_ms, Db};

/// What verify found for one router.
#[derive(Debug, Clone)]
pub struct RouterReport {
    /// The router.
    pub router: String,
    /// Its host.
    pub host: String,
    /// The generation the database says the router confirmed.
    pub applied: i64,
    /// The generation the router holds, when it could be asked.
    pub held: Option<u64>,
    /// Every difference, in words; empty when the router enforces exactly what the database
    /// says.
    pub differences: Vec<String>,
}

/// How long verify waits for a server's answer about one router.
const ASK_TIMEOUT: Duration = Duration::from_secs(30);

/// Why `guestnet verify` could not compare the routers.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The cluster's secret could not be read.
    #[error("reading the cluster's secret")]
    Secret(#[from] crate::hosts::HostsError),
    /// The database failed.
    #[error("reading what the database says")]
    Store(#[from] store::StoreError),
}

/// Compares every router.
///
/// # Errors
/// [`VerifyError`].
pub async fn verify(db: &Db) -> Result<Vec<RouterReport>, VerifyError> {
    let secret = crate::hosts::cluster_secret(db).await?;
    let alive = now_ms() - SERVER_DEAD_AFTER.as_millis() as i64;
    let routers = store::routers::overview(db).await?;
    let http = HyperClient::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut reports = Vec::new();
    for r in routers {
        let store::routers::RouterOverview {
            name: router,
            host,
            network,
            state,
            applied,
            last_error,
            connected,
            server_address: address,
            server_heartbeat: heartbeat,
        } = r;
        let mut report = RouterReport {
            router: router.clone(),
            host: host.clone(),
            applied,
            held: None,
            differences: Vec::new(),
        };
        let d = &mut report.differences;
        if state != RouterState::Running {
            d.push(format!("the router is {}", state.as_str()));
        }
        if let Some(err) = last_error {
            d.push(format!("its last apply failed: {err}"));
        }
        let pending: BTreeSet<JobId> = store::jobs::pending(db, network)
            .await?
            .iter()
            .map(|j| j.id)
            .collect();
        if !pending.is_empty() {
            d.push(format!(
                "{} job(s) still pending on its network: compare again when they end",
                pending.len()
            ));
        }
        let server = match (connected, address, heartbeat) {
            (Some(true), Some(a), Some(h)) if h > alive => a,
            _ => {
                d.push(format!(
                    "host {host} has no agent connected to a live server: what the router \
                     enforces cannot be seen"
                ));
                reports.push(report);
                continue;
            }
        };
        let status = match ask(&http, &server, &secret, &host, &router).await {
            Ok(s) => s,
            Err(why) => {
                let why = crate::resp::error::chain(&why);
                d.push(format!("cannot ask the router through {server}: {why}"));
                reports.push(report);
                continue;
            }
        };
        report.held = status.generation;
        let d = &mut report.differences;
        if status.generation.and_then(|g| i64::try_from(g).ok()) != Some(applied) {
            d.push(format!(
                "the router holds generation {}, the database says it confirmed {applied}",
                status
                    .generation
                    .map_or_else(|| "none".to_string(), |g| g.to_string())
            ));
        }
        if let Some(drift) = status.drift {
            d.push(format!(
                "the kernel does not hold what the router committed: {drift}"
            ));
        }
        let state = crate::runner::read_state(db, network).await?;
        let batch = Batch {
            pending,
            included: BTreeSet::new(),
        };
        let (wanted, _) = plan::desired(&state, &batch, 0);
        match &status.config {
            None => d.push("the router holds no config".into()),
            Some(held) => {
                d.extend(
                    router_config::differences(&wanted, held)
                        .iter()
                        .map(ToString::to_string),
                );
            }
        }
        reports.push(report);
    }
    Ok(reports)
}

/// Why a server could not be asked about a router.
#[derive(Debug, thiserror::Error)]
enum AskError {
    /// The request could not be built.
    #[error("cannot build the request")]
    Request(#[source] hyper::http::Error),
    /// No answer in time.
    #[error("no answer within {} s", ASK_TIMEOUT.as_secs())]
    Timeout,
    /// The connection failed.
    #[error("the connection failed")]
    Transport(#[source] hyper_util::client::legacy::Error),
    /// The answer's body could not be read.
    #[error("cannot read the answer")]
    Body(#[source] hyper::Error),
    /// The server refused.
    #[error("{status}: {text}")]
    Refused {
        /// The HTTP status.
        status: hyper::StatusCode,
        /// What the server said.
        text: String,
    },
    /// The answer is not a router's status.
    #[error("unreadable answer")]
    Unreadable(#[source] serde_json::Error),
}

async fn ask(
    http: &HyperClient<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
    server: &str,
    secret: &str,
    host: &str,
    router: &str,
) -> Result<RouterStatus, AskError> {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let url = format!(
        "{}/internal/v1/router-status?host={}&router={}",
        server.trim_end_matches('/'),
        enc(host),
        enc(router)
    );
    let req = hyper::Request::get(&url)
        .header(hyper::header::AUTHORIZATION, format!("Bearer {secret}"))
        .body(Empty::new())
        .map_err(AskError::Request)?;
    let resp = tokio::time::timeout(ASK_TIMEOUT, http.request(req))
        .await
        .map_err(|_| AskError::Timeout)?
        .map_err(AskError::Transport)?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(AskError::Body)?
        .to_bytes();
    if !status.is_success() {
        return Err(AskError::Refused {
            status,
            text: String::from_utf8_lossy(&body).trim().to_string(),
        });
    }
    serde_json::from_slice(&body).map_err(AskError::Unreadable)
}
