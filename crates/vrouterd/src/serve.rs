//! The control endpoint and the drift timer.
//!
//! Routes (JSON bodies and answers):
//! - `PUT /v1/config`: a complete `RouterConfig`; answers an [`ApplyOutcome`];
//! - `POST /v1/delta`: a `RouterDelta` against the generation the router holds;
//! - `GET /v1/status`: generation, drift, per-rule counters, load-balancer members and the
//!   DHCP service;
//! - `POST /v1/repair`: replaces the table with the last good config now.
//!
//! Errors answer `{"error": "..."}` with 409 for generation conflicts, 422 for refused configs,
//! and 500 for failures of the router itself.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Json;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use sys::kernel::Kernel;
use tokio::sync::Mutex;

use crate::balancer::LbStatus;
use crate::dhcp::DhcpStatus;
use crate::router::{chain, ApplyError, ApplyOutcome, Drift, Router};
use crate::status::Counters;

/// What `status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// The namespace.
    pub netns: String,
    /// The generation enforced, if any.
    pub generation: Option<u64>,
    /// Whether the kernel still holds it.
    pub drift: Drift,
    /// Per-rule counters.
    pub counters: Counters,
    /// Each load-balancer rule's members with their health and connections, as haproxy reports
    /// them (empty without load-balancer rules).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancers: Vec<LbStatus>,
    /// The DHCP and DNS service (dnsmasq): running, pid, leases; absent when the config serves
    /// no DHCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp: Option<DhcpStatus>,
    /// Set after `?repair=1` or `status --repair`: the generation re-applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repaired: Option<u64>,
}

/// Settings of the control endpoint.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The Unix socket to listen on.
    pub socket: PathBuf,
    /// How often to look for drift; `None` disables the timer (drift is then only reported by
    /// status and repaired by an explicit repair).
    pub drift_interval: Option<Duration>,
}

type Shared = Arc<Mutex<Router>>;

/// An API error as answered on the wire.
struct WireError(StatusCode, String);

impl IntoResponse for WireError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn wire(e: &ApplyError) -> WireError {
    let code = match e {
        ApplyError::Parse(_)
        | ApplyError::Invalid { .. }
        | ApplyError::Kernel { .. }
        | ApplyError::Link { .. }
        | ApplyError::HaproxyRefused { .. }
        | ApplyError::DnsmasqRefused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        ApplyError::GenerationReused { .. } | ApplyError::Delta(_) => StatusCode::CONFLICT,
        ApplyError::Ledger(_)
        | ApplyError::Probe(_)
        | ApplyError::Balancer { .. }
        | ApplyError::Dhcp { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    };
    WireError(code, chain(e))
}

async fn blocking<T: Send + 'static>(
    router: Shared,
    f: impl FnOnce(&mut Router) -> T + Send + 'static,
) -> Result<T, WireError> {
    tokio::task::spawn_blocking(move || {
        let mut r = router.blocking_lock();
        f(&mut r)
    })
    .await
    .map_err(|e| {
        WireError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("router task failed: {e}"),
        )
    })
}

fn log_outcome(r: &Result<ApplyOutcome, ApplyError>) {
    match r {
        Ok(o) => tracing::info!(outcome = ?o, "config handled"),
        Err(e) => tracing::warn!(error = %chain(e), "config refused"),
    }
}

async fn put_config(
    State(router): State<Shared>,
    body: Bytes,
) -> Result<Json<ApplyOutcome>, WireError> {
    let r = blocking(router, move |r| r.apply_bytes(&body)).await?;
    log_outcome(&r);
    r.map(Json).map_err(|e| wire(&e))
}

async fn post_delta(
    State(router): State<Shared>,
    body: Bytes,
) -> Result<Json<ApplyOutcome>, WireError> {
    let r = blocking(router, move |r| {
        let delta =
            router_config::parse::<router_config::RouterDelta>(&body).map_err(ApplyError::Parse)?;
        r.apply_delta(&delta)
    })
    .await?;
    log_outcome(&r);
    r.map(Json).map_err(|e| wire(&e))
}

/// Builds a status report; with `repair`, repairs first when drift is found.
pub fn status_of<K: Kernel>(r: &mut Router<K>, repair: bool) -> Result<StatusReport, ApplyError> {
    let mut drift = r.drift()?;
    let mut repaired = None;
    if repair && matches!(drift, Drift::Drifted { .. }) {
        repaired = r.repair()?;
        drift = r.drift()?;
    }
    let counters = r.counters().unwrap_or_default();
    let load_balancers = r.load_balancers().unwrap_or_else(|e| {
        tracing::warn!(error = %chain(&e), "cannot read haproxy's server states");
        Vec::new()
    });
    Ok(StatusReport {
        netns: r.kernel().to_string(),
        generation: r.generation(),
        drift,
        counters,
        load_balancers,
        dhcp: r.dhcp_status(),
        repaired,
    })
}

async fn get_status(State(router): State<Shared>) -> Result<Json<StatusReport>, WireError> {
    blocking(router, |r| status_of(r, false))
        .await?
        .map(Json)
        .map_err(|e| wire(&e))
}

async fn post_repair(State(router): State<Shared>) -> Result<Json<StatusReport>, WireError> {
    blocking(router, |r| status_of(r, true))
        .await?
        .map(Json)
        .map_err(|e| wire(&e))
}

/// The HTTP routes over a shared router.
pub fn app(router: Arc<Mutex<Router>>) -> axum::Router {
    axum::Router::new()
        .route("/v1/config", put(put_config))
        .route("/v1/delta", post(post_delta))
        .route("/v1/status", get(get_status))
        .route("/v1/repair", post(post_repair))
        .with_state(router)
}

/// Why serving stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The socket could not be bound.
    #[error("cannot listen on {path}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server failed.
    #[error("control endpoint failed")]
    Serve(#[source] std::io::Error),
}

/// Serves the control endpoint until `shutdown` resolves, and runs the drift timer.
///
/// # Errors
/// [`ServeError`].
pub async fn serve(
    router: Router,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let shared = Arc::new(Mutex::new(router));
    let _ = std::fs::remove_file(&options.socket);
    let listener =
        tokio::net::UnixListener::bind(&options.socket).map_err(|source| ServeError::Bind {
            path: options.socket.clone(),
            source,
        })?;
    tracing::info!(socket = %options.socket.display(), "control endpoint listening");
    if let Some(every) = options.drift_interval {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let r = blocking(
                    shared.clone(),
                    |r| -> Result<Option<(Drift, Option<u64>)>, ApplyError> {
                        if let Err(e) = r.tend_balancer() {
                            tracing::warn!(error = %chain(&e), "haproxy chore failed; will retry");
                        }
                        match r.tend_dhcp() {
                            Ok(true) => tracing::warn!("dnsmasq was not running: started it again"),
                            Ok(false) => {}
                            Err(e) => {
                                tracing::warn!(error = %chain(&e), "cannot start dnsmasq; will retry")
                            }
                        }
                        match r.drift()? {
                            d @ Drift::Drifted { .. } => Ok(Some((d, r.repair()?))),
                            _ => Ok(None),
                        }
                    },
                )
                .await;
                match r {
                    Ok(Ok(Some((drift, generation)))) => {
                        tracing::warn!(?drift, ?generation, "drift found and repaired: the table was replaced with the last good config")
                    }
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => {
                        tracing::error!(error = %chain(&e), "drift repair failed; will retry")
                    }
                    Err(WireError(_, e)) => {
                        tracing::error!(error = %e, "drift check failed; will retry")
                    }
                }
            }
        });
    }
    let result = axum::serve(listener, app(shared))
        .with_graceful_shutdown(shutdown)
        .await;
    let _ = std::fs::remove_file(&options.socket);
    result.map_err(ServeError::Serve)
}
