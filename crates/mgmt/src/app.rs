//! What every request and job shares: the database, the hosts' agents, the job runner's
//! doorbell, the metrics; and who is calling.

use std::path::PathBuf;
use std::sync::Arc;

use api_types::error::ApiError;

use crate::hosts::Hosts;
use crate::metrics::Metrics;
use crate::runner::Doorbell;
use domain::actor::Caller;
use store::Db;

pub use crate::resp::error::{chain, internal, store_error};
pub use crate::resp::Site;

/// Shared state.
#[derive(Clone)]
pub struct App {
    /// The database.
    pub db: Db,
    /// The hosts' agents connected to this server, and who this server is.
    pub hosts: Arc<Hosts>,
    /// Wakes the job runner.
    pub doorbell: Doorbell,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Where the server keeps its files.
    pub data_dir: PathBuf,
    /// The zone.
    pub site: Arc<Site>,
    /// Users recently found by API key.
    pub keys: Arc<KeyCache>,
    /// Rule creations waiting to be written in a group, per network.
    pub(crate) creations: Arc<crate::cmd::firewall::group::Creations>,
}

/// Users recently found by API key, with their secrets, kept for [`KeyCache::TTL`] so that a
/// client polling a job every millisecond does not read the users table every millisecond.
/// Every request is still checked against the secret; a key replaced by registerUserKeys is
/// forgotten at once on this server, and within the TTL on others.
#[derive(Default)]
pub struct KeyCache {
    entries:
        std::sync::Mutex<std::collections::HashMap<String, (Caller, String, std::time::Instant)>>,
}

impl KeyCache {
    /// How long an entry is trusted.
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(2);

    /// The caller and secret of `key`, if found recently.
    pub fn get(&self, key: &str) -> Option<(Caller, String)> {
        let entries = self.entries.lock().ok()?;
        let (caller, secret, at) = entries.get(key)?;
        (at.elapsed() < Self::TTL).then(|| (caller.clone(), secret.clone()))
    }

    /// Remembers `key`.
    pub fn put(&self, key: &str, caller: &Caller, secret: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() > 10_000 {
                entries.clear();
            }
            entries.insert(
                key.to_string(),
                (
                    caller.clone(),
                    secret.to_string(),
                    std::time::Instant::now(),
                ),
            );
        }
    }

    /// Forgets every key (after keys change).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
