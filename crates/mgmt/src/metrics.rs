//! Prometheus metrics at `/metrics`: API requests by command and result, job durations, router
//! applies and their latency, and how many generations each router is behind.

use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of an API request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The command (unknown commands count as `unknown`).
    pub command: String,
    /// `success` or the error code.
    pub result: String,
}

/// Labels of a job.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// The command that made it.
    pub command: String,
    /// `succeeded` or `failed`.
    pub result: String,
}

/// Labels of a router apply.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApplyLabels {
    /// `applied`, `superseded` or `refused`.
    pub result: String,
}

/// Labels naming a router.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouterLabels {
    /// The router's name.
    pub router: String,
}

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    /// API requests.
    pub requests: Family<RequestLabels, Counter>,
    /// Seconds from a job's creation to its end.
    pub job_seconds: Family<JobLabels, Histogram>,
    /// Router applies.
    pub applies: Family<ApplyLabels, Counter>,
    /// Seconds an apply took (agent round trip).
    pub apply_seconds: Histogram,
    /// Desired minus applied generation, per router.
    pub generations_behind: Family<RouterLabels, Gauge>,
    /// Agent processes connected to this server.
    pub agents_connected: Gauge,
    /// Times a network worker's copy of its rows differed from a full read (only counted while
    /// the copy check runs: debug builds, or `guestnet serve --check-copy`).
    pub copy_mismatches: Counter,
    /// Groups of rule creations committed (one transaction each).
    pub creation_groups: Counter,
    /// Rule creation requests written in those groups, accepted or refused.
    pub creations_grouped: Counter,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ]
    .into_iter()
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("guestnet");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "api_requests",
            "API requests by command and result",
            requests.clone(),
        );
        let job_seconds = Family::<JobLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        registry.register(
            "job_duration_seconds",
            "Time from a job's creation to its end",
            job_seconds.clone(),
        );
        let applies = Family::<ApplyLabels, Counter>::default();
        registry.register(
            "router_applies",
            "Router config applies by result",
            applies.clone(),
        );
        let apply_seconds = Histogram::new(latency_buckets());
        registry.register(
            "router_apply_seconds",
            "Time a router took to apply a config",
            apply_seconds.clone(),
        );
        let generations_behind = Family::<RouterLabels, Gauge>::default();
        registry.register(
            "router_generations_behind",
            "Generations a router is behind its desired config",
            generations_behind.clone(),
        );
        let agents_connected = Gauge::default();
        registry.register(
            "agents_connected",
            "Agent processes connected to this server",
            agents_connected.clone(),
        );
        let copy_mismatches = Counter::default();
        registry.register(
            "worker_copy_mismatches",
            "Times a network worker's copy of its rows differed from the database",
            copy_mismatches.clone(),
        );
        let creation_groups = Counter::default();
        registry.register(
            "creation_groups",
            "Groups of rule creations committed in one transaction each",
            creation_groups.clone(),
        );
        let creations_grouped = Counter::default();
        registry.register(
            "creations_grouped",
            "Rule creation requests checked in those groups, accepted or refused",
            creations_grouped.clone(),
        );
        Metrics {
            registry,
            creation_groups,
            creations_grouped,
            agents_connected,
            copy_mismatches,
            requests,
            job_seconds,
            applies,
            apply_seconds,
            generations_behind,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
