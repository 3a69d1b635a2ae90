//! What every request and job shares: the database, the agent, the job runner's doorbell, the
//! metrics; and who is calling.

use std::path::PathBuf;
use std::sync::Arc;

use api_types::error::ApiError;

use crate::db::Db;
use crate::driver::Driver;
use crate::metrics::Metrics;
use crate::runner::Doorbell;

/// Facts fixed at first start that many answers need.
#[derive(Debug, Clone)]
pub struct Site {
    /// The zone's internal id.
    pub zone_id: i64,
    /// The zone's uuid.
    pub zone_uuid: String,
    /// The zone's name.
    pub zone_name: String,
}

/// Shared state.
#[derive(Clone)]
pub struct App {
    /// The database.
    pub db: Db,
    /// The agent driving routers.
    pub driver: Driver,
    /// Wakes the job runner.
    pub doorbell: Doorbell,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Where the server keeps its files.
    pub data_dir: PathBuf,
    /// The zone.
    pub site: Arc<Site>,
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// User id.
    pub user_id: i64,
    /// User uuid.
    pub user_uuid: String,
    /// Account id.
    pub account_id: i64,
    /// Account uuid.
    pub account_uuid: String,
    /// Account name.
    pub account_name: String,
    /// Domain id.
    pub domain_id: i64,
    /// Domain uuid.
    pub domain_uuid: String,
    /// Domain name.
    pub domain_name: String,
    /// Domain path, e.g. `ROOT`.
    pub domain_path: String,
    /// Root administrator.
    pub admin: bool,
}

impl Caller {
    /// Whether the caller may see and change what `account_id` owns.
    pub fn may_touch(&self, account_id: i64) -> bool {
        self.admin || self.account_id == account_id
    }
}

/// A failed database call, as the API reports it (530, details logged, not sent).
pub fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "internal error");
    ApiError::internal("Internal error executing command, please contact your system administrator")
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
