//! Hosts, their agents, and the servers that share a database.
//!
//! Every router runs on a host, chosen when its network is created and recorded in
//! `routers.host`. A host is driven by one agent: the server's own, in process (the embedded
//! default), or a `guestnet agent` process that connects to any server with a token minted by
//! `createAgentToken`. The server holding a host's connection owns the host: only it runs the
//! job runners of the host's networks. Each connection (and each change of owner) bumps the
//! host's `epoch` in the database, and every write a runner makes for a job checks, in the same
//! transaction, that the host's epoch and owner are still the ones it started with
//! ([`fence`]): a server that lost a host (its agent went to another server) cannot record
//! anything for it, and the router ignores configs older than what it holds.
//!
//! Servers know each other through the `servers` table: each heartbeats every second
//! ([`housekeeping`]), and a server not heard of for [`SERVER_DEAD_AFTER`] is dead. A live
//! server takes its hosts over (disconnected until their agents connect again, anywhere); a job
//! whose host has no agent anywhere for longer than the apply timeout fails with that reason,
//! its changes undone, instead of staying pending.
//!
//! The registry tells the job runner about hosts through a channel ([`HostEvent`]), which the
//! runner owns and the server wires up: an agent connecting, and the moment to look for jobs
//! of forsaken hosts. It never calls the runner.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent::proto::{AgentMsg, Answer, Failure, Op, ServerMsg, PING_EVERY, SILENCE_LIMIT};
use agent::Agent;
use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use store::db::{now_ms, Db};
use store::StoreError;

/// A server whose heartbeat is older than this is dead.
pub const SERVER_DEAD_AFTER: Duration = Duration::from_secs(5);

/// How often a server heartbeats and looks for dead servers and forsaken jobs.
pub const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);

/// Why a request to a host's agent did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No agent of that host is connected to this server.
    #[error("host {0} has no agent connected to this server")]
    NotConnected(String),
    /// The connection ended before the answer came; the request may or may not have run.
    #[error("the connection to host {0}'s agent was lost")]
    Lost(String),
    /// No answer within the apply timeout.
    #[error("{0}")]
    TimedOut(String),
    /// The agent or the router refused.
    #[error("{0}")]
    Refused(String),
    /// A delta's base is not what the router holds.
    #[error("{0}")]
    Stale(String),
}

/// Why the registry could not record or read something.
#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    /// The database failed.
    #[error("the host registry's database call failed")]
    Store(#[from] StoreError),
    /// A new secret could not be made.
    #[error("cannot make the cluster's secret")]
    Secret(#[from] crate::password::PasswordError),
}

/// What the registry tells the job runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEvent {
    /// The host's agent connected to this server: its networks' runners start here.
    Connected(String),
    /// Jobs pending on hosts that have had no agent anywhere since `before` (unix ms) are to
    /// be failed.
    Forsaken {
        /// The limit.
        before: i64,
    },
}

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Answer, Failure>>>>>;

#[derive(Clone)]
enum Conn {
    /// The server's own agent.
    Local(Agent),
    /// An agent process on the other end of a WebSocket.
    Remote {
        out: mpsc::UnboundedSender<Message>,
        waiting: Waiters,
    },
}

struct Link {
    epoch: i64,
    id: u64,
    conn: Conn,
}

/// The agents connected to this server, and who this server is.
pub struct Hosts {
    server_id: i64,
    server_name: String,
    apply_timeout: Duration,
    embedded: Option<String>,
    links: Mutex<HashMap<String, Link>>,
    next_id: AtomicU64,
    events: mpsc::UnboundedSender<HostEvent>,
}

impl Hosts {
    /// This server, known to the others as `server_id`, telling the job runner about its
    /// hosts through `events`.
    pub fn new(
        server_id: i64,
        server_name: &str,
        apply_timeout: Duration,
        embedded: Option<String>,
        events: mpsc::UnboundedSender<HostEvent>,
    ) -> Hosts {
        Hosts {
            server_id,
            server_name: server_name.to_string(),
            apply_timeout,
            embedded,
            links: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            events,
        }
    }

    /// Tells the job runner; nothing happens when no runner listens (a test without one).
    fn tell(&self, event: HostEvent) {
        if self.events.send(event).is_err() {
            tracing::debug!("no job runner listens to the host registry");
        }
    }

    /// This server's id in `servers`.
    pub fn server_id(&self) -> i64 {
        self.server_id
    }

    /// This server's name.
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// How long a router may take to answer.
    pub fn apply_timeout(&self) -> Duration {
        self.apply_timeout
    }

    /// The host of the in-process agent, if this server runs one.
    pub fn embedded(&self) -> Option<&str> {
        self.embedded.as_deref()
    }

    /// The epoch of `host`'s connection, when its agent is connected here.
    pub fn epoch(&self, host: &str) -> Option<i64> {
        self.links.lock().ok()?.get(host).map(|l| l.epoch)
    }

    /// The hosts connected here.
    pub fn connected(&self) -> Vec<String> {
        self.links
            .lock()
            .map(|l| l.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn register(&self, host: &str, epoch: i64, conn: Conn) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut links) = self.links.lock() {
            // A host has one connection: an older one (a half-open socket, say) is forgotten,
            // and its waiting requests end as lost when it is dropped.
            links.insert(host.to_string(), Link { epoch, id, conn });
        }
        id
    }

    fn unregister(&self, host: &str, id: u64) -> bool {
        let Ok(mut links) = self.links.lock() else {
            return false;
        };
        if links.get(host).is_some_and(|l| l.id == id) {
            links.remove(host);
            true
        } else {
            false
        }
    }

    /// Sends `op` to `host`'s agent and waits for its answer, at most the apply timeout (and
    /// a little more for the way there and back).
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn call(&self, host: &str, op: Op) -> Result<Answer, CallError> {
        let conn = self
            .links
            .lock()
            .ok()
            .and_then(|l| l.get(host).map(|l| l.conn.clone()))
            .ok_or_else(|| CallError::NotConnected(host.to_string()))?;
        let failure = |f: Failure| match f {
            Failure::Refused(r) => CallError::Refused(r),
            Failure::TimedOut(r) => CallError::TimedOut(r),
            Failure::Stale(r) => CallError::Stale(r),
        };
        match conn {
            Conn::Local(agent) => agent.handle(op).await.map_err(failure),
            Conn::Remote { out, waiting } => {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let (tx, rx) = oneshot::channel();
                if let Ok(mut w) = waiting.lock() {
                    w.insert(id, tx);
                }
                let text = serde_json::to_string(&ServerMsg::Request { id, op })
                    .map_err(|e| CallError::Refused(format!("cannot encode the request: {e}")))?;
                if out.send(Message::Text(text.into())).is_err() {
                    return Err(CallError::Lost(host.to_string()));
                }
                let limit = self.apply_timeout + Duration::from_secs(5);
                let answer = tokio::time::timeout(limit, rx).await;
                if let Ok(mut w) = waiting.lock() {
                    w.remove(&id);
                }
                match answer {
                    Ok(Ok(result)) => result.map_err(failure),
                    Ok(Err(_)) => Err(CallError::Lost(host.to_string())),
                    Err(_) => Err(CallError::TimedOut(format!(
                        "host {host}'s agent did not answer within {} s",
                        limit.as_secs()
                    ))),
                }
            }
        }
    }
}

/// Registers this server process in `servers`; returns its id.
///
/// # Errors
/// [`HostsError::Store`].
pub async fn register_server(db: &Db, name: &str, address: &str) -> Result<i64, HostsError> {
    Ok(store::hosts::register_server(db, name, address).await?)
}

/// Makes sure a host row exists; returns its id.
///
/// # Errors
/// [`HostsError::Store`].
pub async fn ensure_host(db: &Db, name: &str) -> Result<i64, HostsError> {
    let uuid = uuid::Uuid::new_v4().to_string();
    Ok(store::hosts::ensure_host(db, name, &uuid).await?)
}

/// Attaches the server's own agent as `host`: it stays connected for the server's life.
///
/// # Errors
/// [`HostsError::Store`].
pub async fn attach_embedded(
    db: &Db,
    hosts: &Hosts,
    host: &str,
    agent: Agent,
) -> Result<(), HostsError> {
    ensure_host(db, host).await?;
    let driver = agent.driver().kind().name();
    let epoch = store::hosts::claim(db, host, hosts.server_id, driver).await?;
    hosts.register(host, epoch, Conn::Local(agent));
    Ok(())
}

/// The SHA-256 digest of a token, as stored.
pub fn digest(token: &str) -> String {
    let d = Sha256::digest(token.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The host a token names, if it is known and not revoked.
///
/// # Errors
/// [`HostsError::Store`].
pub async fn authenticate(db: &Db, token: &str) -> Result<Option<String>, HostsError> {
    Ok(store::hosts::authenticate(db, &digest(token)).await?)
}

/// Serves one agent's WebSocket until it ends: claims the host, rings its networks' runners
/// (they re-send what each router lacks), relays requests and answers, pings, and drops the
/// connection after [`SILENCE_LIMIT`] without a word from the agent.
pub async fn serve_agent(
    db: Db,
    hosts: Arc<Hosts>,
    metrics: Arc<Metrics>,
    host: String,
    driver: String,
    socket: WebSocket,
) {
    let epoch = match store::hosts::claim(&db, &host, hosts.server_id, &driver).await {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(%host, error = %crate::resp::error::chain(&e),
                "cannot record the agent's connection");
            return;
        }
    };
    let (mut sink, mut stream) = socket.split();
    let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
    let waiting: Waiters = Arc::default();
    let welcome = ServerMsg::Welcome {
        host: host.clone(),
        server: hosts.server_name.clone(),
    };
    if let Ok(text) = serde_json::to_string(&welcome) {
        let _ = out.send(Message::Text(text.into()));
    }
    let id = hosts.register(
        &host,
        epoch,
        Conn::Remote {
            out: out.clone(),
            waiting: waiting.clone(),
        },
    );
    tracing::info!(%host, epoch, %driver, "agent connected");
    metrics.agents_connected.inc();
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let pinger = {
        let out = out.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PING_EVERY);
            loop {
                tick.tick().await;
                if out.send(Message::Ping(Vec::new().into())).is_err() {
                    break;
                }
            }
        })
    };
    hosts.tell(HostEvent::Connected(host.clone()));
    let why = loop {
        let next = match tokio::time::timeout(SILENCE_LIMIT, stream.next()).await {
            Err(_) => break format!("silent for {} s", SILENCE_LIMIT.as_secs()),
            Ok(None) => break "closed".to_string(),
            Ok(Some(Err(e))) => break e.to_string(),
            Ok(Some(Ok(m))) => m,
        };
        let text = match next {
            Message::Text(t) => t,
            Message::Close(_) => break "closed by the agent".to_string(),
            Message::Ping(_) | Message::Pong(_) | Message::Binary(_) => continue,
        };
        match serde_json::from_str::<AgentMsg>(text.as_str()) {
            Ok(AgentMsg::Reply { id, result }) => {
                let w = waiting.lock().ok().and_then(|mut w| w.remove(&id));
                if let Some(w) = w {
                    let _ = w.send(result);
                }
            }
            Err(e) => break format!("sent something that is not a message: {e}"),
        }
    };
    pinger.abort();
    let current = hosts.unregister(&host, id);
    // Requests still waiting end as lost.
    if let Ok(mut w) = waiting.lock() {
        w.clear();
    }
    drop(out);
    writer.abort();
    metrics.agents_connected.dec();
    tracing::warn!(%host, epoch, reason = %why, "agent disconnected");
    if current {
        if let Err(e) = store::hosts::release(&db, &host, epoch).await {
            tracing::warn!(%host, error = %crate::resp::error::chain(&e),
                "cannot record the agent's disconnection");
        }
    }
}

/// The host to place a new network's router on: this server's own host when it runs the
/// embedded agent, otherwise the connected host (on a live server) with the fewest routers.
///
/// # Errors
/// `None` when no host is connected; [`HostsError::Store`].
pub async fn place(db: &Db, hosts: &Hosts) -> Result<Option<String>, HostsError> {
    if let Some(h) = hosts.embedded() {
        return Ok(Some(h.to_string()));
    }
    let alive_since = now_ms() - SERVER_DEAD_AFTER.as_millis() as i64;
    Ok(store::hosts::least_loaded(db, alive_since).await?)
}

/// The secret servers of one database present to each other (created on first use).
///
/// # Errors
/// [`HostsError`].
pub async fn cluster_secret(db: &Db) -> Result<String, HostsError> {
    Ok(store::hosts::cluster_secret(db, &crate::password::agent_token()?).await?)
}

/// Every second: heartbeat; release the hosts of dead servers; tell the job runner to fail the
/// jobs of hosts that have had no agent anywhere for longer than the apply timeout. Runs for
/// the server's life.
pub async fn housekeeping(db: Db, hosts: Arc<Hosts>) {
    let mut tick = tokio::time::interval(HOUSEKEEPING_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let t = Instant::now();
        if let Err(e) = keep_house(&db, &hosts).await {
            tracing::warn!(error = %crate::resp::error::chain(&e), "housekeeping failed; retrying");
        }
        tracing::trace!(us = t.elapsed().as_micros() as u64, "housekeeping");
    }
}

async fn keep_house(db: &Db, hosts: &Hosts) -> Result<(), HostsError> {
    let now = now_ms();
    let dead = now - SERVER_DEAD_AFTER.as_millis() as i64;
    // A dead server's hosts are taken over by this one: disconnected until their agents
    // connect again (anywhere), and their jobs failed after the apply timeout otherwise.
    let released = store::hosts::heartbeat(db, hosts.server_id, dead).await?;
    if released > 0 {
        tracing::warn!(
            hosts = released,
            "released the hosts of a management server that stopped heartbeating"
        );
    }
    hosts.tell(HostEvent::Forsaken {
        before: now - hosts.apply_timeout.as_millis() as i64,
    });
    Ok(())
}
