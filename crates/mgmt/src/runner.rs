//! The job runner: one worker per network, level-triggered.
//!
//! A worker runs on the server that holds the connection of its router's host (see
//! [`crate::hosts`]). It wakes when a request rings its network's doorbell — here, or through
//! the database from another server — and every few seconds anyway, reads the network's
//! pending jobs, and carries as many as it can in one router generation: it builds the
//! network's complete config with their changes ([`domain::plan`]), has the host's agent apply
//! it, and only then records the outcome (rules Active, revoked rows removed, jobs succeeded,
//! the generation the router confirmed) in one transaction, fenced by the host's epoch. If the
//! router refuses a batch, it retries without the newest job, down to a single job, so that
//! each job gets its own outcome; a job the router refuses on its own is undone and fails with
//! 530 and the router's reason. A router that does not answer within the apply timeout fails
//! the batch's jobs with that reason; a lost connection fails nothing — the jobs wait for the
//! agent to come back, here or on another server.
//!
//! Level-triggered: whenever a worker starts (a server start, an agent connecting) and
//! whenever it is idle, it compares the generation the router holds with the one the database
//! says it confirmed, and re-sends the complete config when they differ or the last apply
//! failed. Jobs survive any restart: they stay pending in the database.

//!
//! The runner depends on the domain, the store, the host registry ([`crate::hosts`]) and the
//! response layer ([`crate::resp`], for a job's result), never on the API's handlers: they
//! reach it through the [`Doorbell`] a committed change rings, and the host registry through
//! the [`HostEvent`]s of the channel [`host_channel`] makes.
//!
//! Its parts: [`Doorbell`] and the workers' start here; a worker's step (`step`), a
//! generation's push and the retries of a refused batch (`push`), the records of a
//! generation and of jobs' ends (`record`), and the worker's copy of its network's rows
//! (`cache`).

use std::collections::{HashMap, HashSet};
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tracing::Instrument;

use crate::hosts::{CallError, HostEvent, Hosts};
use crate::metrics::Metrics;
use crate::resp::Site;
use domain::ids::NetworkId;
use domain::plan::NetworkState;
use store::{Db, Receipt, StoreError};

mod cache;
mod push;
mod record;
mod step;

/// Most jobs carried by one generation (bounds the retries when a batch is refused).
const MAX_BATCH: usize = 64;

/// How often a worker looks at its network even when nobody rang.
const IDLE_CHECK: Duration = Duration::from_secs(5);

/// Why a worker's step, or a record it makes, failed. The worker logs it, forgets its copy of
/// the network, and tries again shortly.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The database failed, or the host's fence no longer holds.
    #[error("the job runner's database call failed")]
    Store(#[from] StoreError),
    /// A call to the host's agent failed.
    #[error("the call to the host's agent failed")]
    Call(#[source] CallError),
    /// The agent answered something that does not answer the request.
    #[error("host {host}'s agent answered {answer} to {request}")]
    Unexpected {
        /// The host.
        host: String,
        /// The request.
        request: &'static str,
        /// The answer, as debug text.
        answer: String,
    },
    /// The router's agent could not be reached, or the router holds something newer: nothing
    /// is known, and the step is tried again.
    #[error("the router could not be reached: {0}")]
    Unreachable(String),
    /// A write about a host's routers by a server that does not own the host.
    #[error("only the host's owner records what its router applied")]
    NotOwner,
}

/// Wakes network workers and starts them on first use: the job runner's handle, which a
/// committed change rings with its [`Receipt`].
#[derive(Clone)]
pub struct Doorbell {
    shared: Arc<Shared>,
}

/// What every worker shares, reached through the [`Doorbell`].
pub struct Shared {
    /// The database.
    pub(crate) db: Db,
    /// The hosts' agents connected here.
    pub(crate) hosts: Arc<Hosts>,
    /// Prometheus metrics.
    pub(crate) metrics: Arc<Metrics>,
    /// The zone, for jobs' results.
    pub(crate) site: Arc<Site>,
    bells: Mutex<HashMap<NetworkId, Arc<Notify>>>,
    /// Each network's router's host (fixed when the network is made).
    network_hosts: Mutex<HashMap<NetworkId, String>>,
    /// Networks whose host's agent connected since their worker last looked: the worker
    /// starts over as a fresh one (it makes sure the router and the VMs exist again), since
    /// an agent back within one idle look leaves a running worker none the wiser.
    reconnected: Mutex<HashSet<NetworkId>>,
    /// While set, workers take no jobs (jobs wait, pending, in the database).
    held: AtomicBool,
    /// Whether workers compare their copy with a full read after every generation: on in
    /// debug builds (the tests), off in release builds unless asked for (`guestnet serve
    /// --check-copy`), because the full read is what the copy saves.
    copy_check: AtomicBool,
}

impl Deref for Doorbell {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl Doorbell {
    /// The runner of this server: its workers read and write `db`, reach routers through
    /// `hosts`, count in `metrics`, and render jobs' results for `site`'s zone.
    pub fn new(db: Db, hosts: Arc<Hosts>, metrics: Arc<Metrics>, site: Arc<Site>) -> Doorbell {
        Doorbell {
            shared: Arc::new(Shared {
                db,
                hosts,
                metrics,
                site,
                bells: Mutex::default(),
                network_hosts: Mutex::default(),
                reconnected: Mutex::default(),
                held: AtomicBool::new(false),
                copy_check: AtomicBool::new(cfg!(debug_assertions)),
            }),
        }
    }

    /// Rings the workers of the networks a committed change names (its [`Receipt`]).
    pub fn ring(&self, receipt: Receipt) {
        for network in receipt.networks {
            self.ring_network(network);
        }
    }

    /// Rings `network`'s worker: here when this server holds the router's host, otherwise
    /// through the database for the server that does. Handlers that commit through a
    /// [`store::ChangeTx`] ring with its receipt ([`Doorbell::ring`]) instead.
    pub fn ring_network(&self, network: impl Into<NetworkId>) {
        let network = network.into();
        let known = self
            .network_hosts
            .lock()
            .ok()
            .and_then(|h| h.get(&network).cloned());
        if let Some(host) = &known {
            if self.hosts.epoch(host).is_some() {
                self.ring_here(network);
                return;
            }
        }
        let bell = self.clone();
        tokio::spawn(async move {
            let host = match known {
                Some(h) => Some(h),
                None => bell.host_of(network).await,
            };
            match host {
                Some(h) if bell.hosts.epoch(&h).is_some() => bell.ring_here(network),
                _ => {
                    if let Err(e) = bell.db.ring_others(network.get()).await {
                        tracing::warn!(network = %network, error = %e,
                            "cannot ring the other servers; their runners look again within seconds");
                    }
                }
            }
        });
    }

    async fn host_of(&self, network: NetworkId) -> Option<String> {
        let host = store::routers::router_of(&self.db, network)
            .await
            .ok()??
            .host;
        if let Ok(mut h) = self.network_hosts.lock() {
            h.insert(network, host.clone());
        }
        Some(host)
    }

    /// Rings the worker of `network` on this server, starting it if needed (it ends at once
    /// when the router's host is not connected here).
    pub fn ring_here(&self, network: NetworkId) {
        let (bell, new) = {
            let Ok(mut bells) = self.bells.lock() else {
                return;
            };
            match bells.get(&network) {
                Some(b) => (b.clone(), false),
                None => {
                    let b = Arc::new(Notify::new());
                    bells.insert(network, b.clone());
                    (b, true)
                }
            }
        };
        if new {
            let rt = self.clone();
            let b = bell.clone();
            // Everything a worker logs, the database's statements included, names its
            // network.
            let span = tracing::info_span!("worker", network = %network);
            tokio::spawn(async move { step::worker(rt, network, b).await }.instrument(span));
        }
        bell.notify_one();
    }

    /// Holds every worker: requests are still accepted and their jobs wait, pending.
    pub fn hold(&self) {
        self.held.store(true, Ordering::SeqCst);
    }

    /// Lets workers take jobs again, and rings every network's worker.
    pub fn release(&self) {
        self.held.store(false, Ordering::SeqCst);
        let networks: Vec<NetworkId> = self
            .bells
            .lock()
            .map(|b| b.keys().copied().collect())
            .unwrap_or_default();
        for n in networks {
            self.ring_here(n);
        }
    }

    fn is_held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }

    /// Turns the workers' copy check on or off (see [`Doorbell::checks_copy`]).
    pub fn check_copy(&self, on: bool) {
        self.copy_check.store(on, Ordering::SeqCst);
    }

    /// Whether workers compare their copy of the network's rows with a full read after every
    /// generation they record; a difference is counted (`worker_copy_mismatches`), logged, the
    /// copy dropped and the router sent the config of a full read. On by default in debug
    /// builds.
    pub fn checks_copy(&self) -> bool {
        self.copy_check.load(Ordering::SeqCst)
    }

    /// Whether `network`'s host connected since the last call (see `Shared::reconnected`).
    fn take_reconnected(&self, network: NetworkId) -> bool {
        self.reconnected
            .lock()
            .map(|mut r| r.remove(&network))
            .unwrap_or(false)
    }

    fn forget(&self, network: NetworkId) {
        if let Ok(mut bells) = self.bells.lock() {
            bells.remove(&network);
        }
    }

    /// Rings the workers of every network whose router runs on `host` (its agent just
    /// connected).
    async fn ring_host(&self, host: &str) {
        match store::routers::networks_on(&self.db, host).await {
            Ok(networks) => {
                for n in networks {
                    if let Ok(mut h) = self.network_hosts.lock() {
                        h.insert(n, host.to_string());
                    }
                    if let Ok(mut r) = self.reconnected.lock() {
                        r.insert(n);
                    }
                    self.ring_here(n);
                }
            }
            Err(e) => tracing::warn!(%host, error = %crate::resp::error::chain(&e),
                "cannot list the host's networks"),
        }
    }
}

/// The host registry's side of the channel it tells the runner through.
pub type HostEvents = mpsc::UnboundedSender<HostEvent>;

/// The runner's side: what [`start`] listens to.
pub struct HostEventsReceiver(mpsc::UnboundedReceiver<HostEvent>);

/// The channel through which the host registry tells the runner about hosts: give the sender
/// to [`Hosts::new`] and the receiver to [`start`].
pub fn host_channel() -> (HostEvents, HostEventsReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    (tx, HostEventsReceiver(rx))
}

/// Starts the job runner: listens for other servers' rings and for the host registry's
/// events, and rings every network's worker of the hosts connected here (they make sure
/// their router and VMs exist, and re-send what the router lacks).
pub async fn start(bell: &Doorbell, events: HostEventsReceiver) {
    tokio::spawn(listen(bell.clone()));
    tokio::spawn(host_events(bell.clone(), events));
    for host in bell.hosts.connected() {
        bell.ring_host(&host).await;
    }
}

/// Follows the host registry: rings the networks of a host that connected, and fails the jobs
/// of forsaken hosts (one look at a time; looks asked for meanwhile are folded into one).
async fn host_events(bell: Doorbell, HostEventsReceiver(mut events): HostEventsReceiver) {
    while let Some(event) = events.recv().await {
        match event {
            HostEvent::Connected(host) => bell.ring_host(&host).await,
            HostEvent::Forsaken { mut before } => {
                let mut connected = Vec::new();
                while let Ok(next) = events.try_recv() {
                    match next {
                        HostEvent::Forsaken { before: b } => before = before.max(b),
                        HostEvent::Connected(h) => connected.push(h),
                    }
                }
                for host in connected {
                    bell.ring_host(&host).await;
                }
                if let Err(e) = record::fail_forsaken(&bell, before).await {
                    tracing::warn!(error = %crate::resp::error::chain(&e),
                        "failing the jobs of forsaken hosts");
                }
            }
        }
    }
}

/// Rings this server's workers when another server rings through the database (PostgreSQL);
/// runs for the server's life.
async fn listen(bell: Doorbell) {
    loop {
        let mut listener = match bell.db.listen().await {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for other servers' rings; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            match listener.recv().await {
                Ok(n) => {
                    if let Ok(network) = n.payload().parse::<i64>() {
                        let network = NetworkId::from(network);
                        let host = bell.host_of(network).await;
                        if host.is_some_and(|h| bell.hosts.epoch(&h).is_some()) {
                            bell.ring_here(network);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lost the listener's connection; reconnecting");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads everything the network's router config is built from.
///
/// # Errors
/// [`StoreError`].
pub async fn read_state(db: &Db, network: NetworkId) -> Result<NetworkState, StoreError> {
    store::state::read(db, network).await
}
