//! One router: gather (ledger, kernel mark), plan and render (the `render` crate), act (`sys`),
//! record (ledger).

use std::time::Instant;

use render::{render_full, render_staged, Ruleset, StagedLoad};
use std::borrow::Cow;

use router_config::{
    parse, validate, ApplyDeltaError, ConfigChange, ConfigProblems, Generation, LoadBalancer,
    ParseError, RouterConfig, RouterDelta, ValidConfig,
};
use serde::Serialize;
use sys::kernel::{Interfaces, Kernel, KernelError, NetnsKernel};
use sys::nft::{ElementBatch, Field, Netns};

use crate::balancer::{Balancer, BalancerError, LbStatus};
use crate::dhcp::{DhcpError, DhcpPlan, DhcpServer, DhcpStatus};
use crate::ledger::{KernelMark, Ledger, LedgerError};

/// How a commit reached the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyMode {
    /// Only the difference from the last committed model.
    Delta,
    /// The whole table replaced in one transaction.
    Full,
}

/// How a commit reached the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitPath {
    /// An `nft -f -` script.
    Nft,
    /// A netlink batch of element changes on the router's own socket.
    Netlink,
    /// A load into a namespace without the table: an `nft -f -` script making the table with
    /// its sets empty (closed), then one netlink batch of every element.
    Staged,
    /// Nothing to commit: the kernel already held it.
    Nothing,
}

/// The answer to an apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ApplyOutcome {
    /// The kernel now enforces this generation.
    Applied {
        /// The generation applied.
        generation: Generation,
        /// Delta or full replace.
        mode: ApplyMode,
        /// Microseconds from the validated config to the committed transaction.
        commit_micros: u64,
        /// Which way the commit went.
        via: CommitPath,
    },
    /// The same generation with the same content: nothing to do.
    Unchanged {
        /// The generation already applied.
        generation: Generation,
    },
    /// An older generation: not applied.
    Superseded {
        /// The generation the router holds.
        applied_generation: Generation,
    },
}

/// Why an apply failed. In every case the previously applied rules stay enforced.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The document could not be parsed.
    #[error("config refused")]
    Parse(#[source] ParseError),
    /// The config is invalid.
    #[error("config of generation {generation} refused: {problems}")]
    Invalid {
        /// Its generation.
        generation: Generation,
        /// Every problem.
        problems: ConfigProblems,
    },
    /// A generation already used by another config.
    #[error("generation {generation} was already used by a different config (the router holds generation {applied}); generations are never reused")]
    GenerationReused {
        /// The generation sent.
        generation: Generation,
        /// What the router holds.
        applied: Generation,
    },
    /// A delta against a base the router does not hold.
    #[error("delta refused")]
    Delta(#[source] router_config::DeltaError),
    /// The kernel refused the transaction.
    #[error("kernel refused generation {generation}")]
    Kernel {
        /// The generation.
        generation: Generation,
        /// The kernel's message.
        #[source]
        source: KernelError,
    },
    /// Addresses or routes could not be set.
    #[error("cannot configure interfaces for generation {generation}")]
    Link {
        /// The generation.
        generation: Generation,
        /// Why.
        #[source]
        source: KernelError,
    },
    /// The state directory failed.
    #[error("router state")]
    Ledger(#[from] LedgerError),
    /// Reading the kernel's generation failed.
    #[error("cannot read the kernel's ruleset generation")]
    Probe(#[source] KernelError),
    /// haproxy refused the configuration rendered for this generation, or it could not be
    /// written or checked: nothing was applied, the previous haproxy serves on.
    #[error("haproxy refused the load balancers of generation {generation}")]
    HaproxyRefused {
        /// The generation.
        generation: Generation,
        /// haproxy's message.
        #[source]
        source: BalancerError,
    },
    /// dnsmasq refused the DHCP and DNS configuration rendered for this generation, or it could
    /// not be written or checked: nothing was applied, the previous dnsmasq serves on.
    #[error("dnsmasq refused the DHCP and DNS service of generation {generation}")]
    DnsmasqRefused {
        /// The generation.
        generation: Generation,
        /// dnsmasq's message.
        #[source]
        source: DhcpError,
    },
    /// The firewall enforces the generation, but dnsmasq could not be moved to it (started,
    /// restarted, signalled or stopped); the drift timer retries.
    #[error("generation {generation} is enforced by the firewall, but dnsmasq (DHCP and DNS) could not be moved to it (will retry)")]
    Dhcp {
        /// The generation.
        generation: Generation,
        /// Why.
        #[source]
        source: DhcpError,
    },
    /// The firewall enforces the generation, but haproxy could not be moved to it; the drift
    /// timer retries.
    #[error("generation {generation} is enforced by the firewall, but haproxy could not be moved to it (will retry)")]
    Balancer {
        /// The generation.
        generation: Generation,
        /// Why.
        #[source]
        source: BalancerError,
    },
}

/// Whether the kernel still holds what was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Drift {
    /// Nothing committed in the namespace since our last commit.
    InSync,
    /// Something else committed in the namespace (a flush, an edit…).
    Drifted {
        /// The ruleset generation we left.
        expected: u32,
        /// The ruleset generation found.
        found: u32,
    },
    /// Nothing applied yet.
    NothingApplied,
}

struct Applied {
    config: ValidConfig,
    model: Ruleset,
    nft_generation: u32,
}

/// What a commit moves to. One lives per commit, moved, never stored: its size is no cost.
#[allow(clippy::large_enum_variant)]
enum Next {
    /// A config validated whole.
    Whole(ValidConfig),
    /// The enforced config, moved in place by this change.
    Change(ConfigChange),
}

/// What was enforced when a commit began. One lives per commit: its size is no cost.
#[allow(clippy::large_enum_variant)]
enum Before {
    /// The previous config and its model.
    Whole(Applied),
    /// The model of the config before `change`, whose config has been moved by it.
    Moved {
        model: Ruleset,
        nft_generation: u32,
        change: ConfigChange,
    },
}

impl Before {
    fn nft_generation(&self) -> u32 {
        match self {
            Before::Whole(a) => a.nft_generation,
            Before::Moved { nft_generation, .. } => *nft_generation,
        }
    }

    /// The model, once the kernel took the change it was moved by.
    fn into_model(self) -> Ruleset {
        match self {
            Before::Whole(a) => {
                // Freeing the previous config (100k rules: ~12 ms) is nobody's wait.
                let Applied {
                    config: previous,
                    model,
                    ..
                } = a;
                std::thread::spawn(move || drop(previous));
                model
            }
            Before::Moved { model, change, .. } => {
                if change.previous().is_some() {
                    std::thread::spawn(move || drop(change));
                }
                model
            }
        }
    }

    /// What was enforced, from the config the commit was for (`config`), with the model moved
    /// back when it was moved (`model_moved`).
    fn restore(self, config: ValidConfig, model_moved: bool) -> Applied {
        match self {
            Before::Whole(a) => {
                drop(config);
                if model_moved {
                    let model = render::plan(&a.config);
                    Applied { model, ..a }
                } else {
                    a
                }
            }
            Before::Moved {
                mut model,
                nft_generation,
                change,
            } => {
                let mut config = config;
                match change.inverse() {
                    Some(inverse) => {
                        config.undo(change);
                        if model_moved {
                            model.apply_change(&config, &inverse);
                        }
                    }
                    None => {
                        config.undo(change);
                        if model_moved {
                            model = render::plan(&config);
                        }
                    }
                }
                Applied {
                    config,
                    model,
                    nft_generation,
                }
            }
        }
    }
}

/// A router being operated: its kernel, its locked ledger, and the model of what it enforces.
///
/// The kernel is its namespace's ([`NetnsKernel`], the default) or any other [`Kernel`], such
/// as a [`sys::kernel::RecordingKernel`] that enforces nothing: the rules around the kernel
/// (generations, the ledger, delta or full replace, drift) are the same for every kernel.
pub struct Router<K: Kernel = NetnsKernel> {
    kernel: K,
    ledger: Ledger,
    /// The router's haproxy; `None` for a router opened without one ([`Router::with_kernel`]).
    balancer: Option<Balancer>,
    /// The router's dnsmasq; `None` for a router opened without one ([`Router::with_kernel`]).
    dhcp: Option<DhcpServer>,
    applied: Option<Applied>,
    /// The ruleset generation of a commit the kernel no longer holds, while no newer commit
    /// succeeded: set by [`Router::open`] when the ledger's kernel mark is stale, and by
    /// [`Router::repair`]; [`Router::drift`] reports it as drift.
    stale_mark: Option<u32>,
}

impl<K: Kernel> std::fmt::Debug for Router<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("kernel", &self.kernel)
            .field("generation", &self.generation())
            .finish()
    }
}

impl<K: Kernel> Drop for Router<K> {
    fn drop(&mut self) {
        self.settle_balancer_file();
    }
}

impl Router<NetnsKernel> {
    /// Opens the router of a namespace, with its haproxy: locks its state directory and reads
    /// the ledger. When the kernel still holds the ledger's config (same namespace, nothing
    /// committed since), the model is rebuilt from the ledger so the next apply can be a delta;
    /// otherwise the next apply is a full replace, and when the ledger records the commit of its
    /// config, [`Router::drift`] reports drift until something is committed.
    ///
    /// # Errors
    /// [`ApplyError::Ledger`] or [`ApplyError::Probe`].
    pub fn open(netns: Netns, state_dir: &std::path::Path) -> Result<Router, ApplyError> {
        let ledger = Ledger::open(state_dir)?;
        let kernel = NetnsKernel::open(netns.clone()).map_err(ApplyError::Probe)?;
        let balancer = Balancer::open(netns.clone(), state_dir);
        let dhcp = DhcpServer::open(netns, state_dir);
        Router::start(kernel, ledger, Some(balancer), Some(dhcp))
    }

    /// The namespace.
    pub fn netns(&self) -> &Netns {
        self.kernel.netns()
    }
}

impl<K: Kernel> Router<K> {
    /// Opens a router over `kernel` without haproxy: as [`Router::open`] in every rule about
    /// generations, the ledger and the kernel; load-balancer rules are validated and recorded,
    /// and served by no haproxy.
    ///
    /// # Errors
    /// [`ApplyError::Ledger`] or [`ApplyError::Probe`].
    pub fn with_kernel(kernel: K, state_dir: &std::path::Path) -> Result<Router<K>, ApplyError> {
        let ledger = Ledger::open(state_dir)?;
        Router::start(kernel, ledger, None, None)
    }

    fn start(
        kernel: K,
        ledger: Ledger,
        balancer: Option<Balancer>,
        dhcp: Option<DhcpServer>,
    ) -> Result<Router<K>, ApplyError> {
        let mut router = Router {
            kernel,
            ledger,
            balancer,
            dhcp,
            applied: None,
            stale_mark: None,
        };
        if let (Some(generation), Some(mark)) =
            (router.ledger.generation(), router.ledger.kernel_mark()?)
        {
            let identity = router.kernel.identity();
            let now = router.kernel.generation().map_err(ApplyError::Probe)?;
            if identity == Some(mark.netns)
                && now == mark.nft_generation
                && mark.generation == generation
            {
                if let Some(Ok(config)) = router.ledger.config()?.map(validate) {
                    let model = render::plan(&config);
                    router.applied = Some(Applied {
                        config,
                        model,
                        nft_generation: now,
                    });
                }
            } else if mark.generation == generation {
                // The ledger's config was committed, and the kernel changed since: drift.
                router.stale_mark = Some(mark.nft_generation);
            }
        }
        Ok(router)
    }

    /// The kernel.
    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    /// The generation the kernel enforces, if any (as far as this process knows).
    pub fn generation(&self) -> Option<Generation> {
        self.applied.as_ref().map(|a| a.config.generation())
    }

    /// The config the kernel enforces, if any.
    pub fn config(&self) -> Option<&ValidConfig> {
        self.applied.as_ref().map(|a| &a.config)
    }

    /// The model of what the kernel enforces, if any.
    pub fn model(&self) -> Option<&Ruleset> {
        self.applied.as_ref().map(|a| &a.model)
    }

    /// Re-applies the last good config from the ledger as a full replace (at start, after drift).
    /// Returns the generation applied, or `None` when the ledger is empty.
    ///
    /// # Errors
    /// [`ApplyError`]; the kernel keeps whatever it had.
    pub fn restore(&mut self) -> Result<Option<Generation>, ApplyError> {
        let Some(doc) = self.ledger.config()? else {
            return Ok(None);
        };
        let generation = doc.generation;
        let config = validate(doc).map_err(|problems| ApplyError::Invalid {
            generation,
            problems,
        })?;
        self.commit(Next::Whole(config), true, None)?;
        Ok(Some(generation))
    }

    /// Applies a config document (JSON bytes).
    ///
    /// # Errors
    /// See [`ApplyError`]; on any error the previous rules stay enforced.
    pub fn apply_bytes(&mut self, bytes: &[u8]) -> Result<ApplyOutcome, ApplyError> {
        let doc: RouterConfig = parse(bytes).map_err(ApplyError::Parse)?;
        self.apply_document(doc)
    }

    /// Applies a delta against the generation the router holds.
    ///
    /// # Errors
    /// [`ApplyError::Delta`] when the base is not what the router holds; otherwise as
    /// [`Router::apply_document`].
    pub fn apply_delta(&mut self, delta: &RouterDelta) -> Result<ApplyOutcome, ApplyError> {
        let outcome = self.apply_delta_unsynced(delta);
        self.answer(outcome)
    }

    /// Whatever the outcome, the generation recorded as seen is durable before the router
    /// answers: an accepted change's record synced it already; a refusal or a no-op syncs it
    /// here. So a number the router answered about is never taken again, while an accepted
    /// change pays one fdatasync, not two.
    fn answer(
        &mut self,
        outcome: Result<ApplyOutcome, ApplyError>,
    ) -> Result<ApplyOutcome, ApplyError> {
        self.ledger.sync()?;
        outcome
    }

    fn apply_delta_unsynced(&mut self, delta: &RouterDelta) -> Result<ApplyOutcome, ApplyError> {
        if let Some(applied) = self.generation() {
            if delta.generation < applied {
                return Ok(ApplyOutcome::Superseded {
                    applied_generation: applied,
                });
            }
        }
        let generation = delta.generation;
        let Some(a) = &self.applied else {
            // Nothing is enforced by this process: the delta rebuilds the ledger's config, which
            // is applied as a document.
            let base = self.ledger.config()?.ok_or(ApplyError::Delta(
                router_config::DeltaError::BaseMismatch {
                    base: delta.base_generation,
                    held: 0,
                },
            ))?;
            let doc = delta.apply_to(&base).map_err(ApplyError::Delta)?;
            return self.apply_change(doc, Some(delta));
        };
        a.config.fits(delta).map_err(ApplyError::Delta)?;
        if generation <= self.ledger.seen_generation()? {
            // The applied generation again, or a number already used: the document rules decide
            // (rare; it costs a copy of the config).
            let doc = delta
                .apply_to(a.config.document())
                .map_err(ApplyError::Delta)?;
            return self.apply_change(doc, Some(delta));
        }
        let t0 = Instant::now();
        self.ledger.record_seen(generation)?;
        let t1 = Instant::now();
        // The enforced config moves in place, checking only the rules the delta touches; on a
        // refusal it is unchanged.
        let moved = self.applied.as_mut().map(|a| a.config.apply_delta(delta));
        let change = match moved {
            Some(Ok(change)) => change,
            Some(Err(ApplyDeltaError::Delta(e))) => return Err(ApplyError::Delta(e)),
            Some(Err(ApplyDeltaError::Invalid {
                generation,
                problems,
            })) => {
                return Err(ApplyError::Invalid {
                    generation,
                    problems,
                })
            }
            None => {
                return Err(ApplyError::Delta(router_config::DeltaError::BaseMismatch {
                    base: delta.base_generation,
                    held: 0,
                }))
            }
        };
        let t2 = Instant::now();
        let outcome = self.commit(Next::Change(change), false, Some(delta));
        tracing::debug!(
            netns = %self.kernel,
            generation,
            record_seen_us = (t1 - t0).as_micros() as u64,
            validate_us = (t2 - t1).as_micros() as u64,
            commit_us = t2.elapsed().as_micros() as u64,
            "applied a delta"
        );
        outcome
    }

    /// Applies a complete config document, following the generation rules: older is
    /// `superseded`, the same generation with the same content is a no-op, a generation already
    /// seen with other content is refused, and a new generation is recorded before anything else
    /// so it is never reused, even if the config is then refused.
    ///
    /// # Errors
    /// See [`ApplyError`]; on any error the previous rules stay enforced.
    pub fn apply_document(&mut self, doc: RouterConfig) -> Result<ApplyOutcome, ApplyError> {
        let outcome = self.apply_change(doc, None);
        self.answer(outcome)
    }

    /// [`Router::apply_document`] of a document received as `delta` (recorded as such).
    fn apply_change(
        &mut self,
        doc: RouterConfig,
        delta: Option<&RouterDelta>,
    ) -> Result<ApplyOutcome, ApplyError> {
        let generation = doc.generation;
        let applied = match &self.applied {
            Some(a) => Some(a.config.generation()),
            None => self.ledger.generation(),
        };
        if let Some(applied) = applied {
            if generation < applied {
                return Ok(ApplyOutcome::Superseded {
                    applied_generation: applied,
                });
            }
        }
        let seen = self.ledger.seen_generation()?;
        if generation <= seen {
            // Either the applied generation again (no-op if identical) or a reused number.
            let same = applied == Some(generation)
                && match (&self.applied, validate(doc.clone())) {
                    (Some(a), Ok(v)) => a.config.same_content(&v),
                    (None, Ok(v)) => self
                        .ledger
                        .config()?
                        .and_then(|c| validate(c).ok())
                        .is_some_and(|c| c.same_content(&v)),
                    _ => false,
                };
            if same && self.applied.is_some() {
                // Level-triggered: the same config again is a no-op only if the kernel still
                // holds it; a drifted router is repaired.
                if matches!(self.drift()?, Drift::Drifted { .. }) {
                    self.repair()?;
                }
                return Ok(ApplyOutcome::Unchanged { generation });
            }
            if same {
                // Identical to the ledger, but this process does not know the kernel holds it.
                self.restore()?;
                return Ok(ApplyOutcome::Unchanged { generation });
            }
            return Err(ApplyError::GenerationReused {
                generation,
                applied: applied.unwrap_or(0),
            });
        }
        let t0 = Instant::now();
        self.ledger.record_seen(generation)?;
        let t1 = Instant::now();
        let config = validate(doc).map_err(|problems| ApplyError::Invalid {
            generation,
            problems,
        })?;
        let t2 = Instant::now();
        let outcome = self.commit(Next::Whole(config), false, delta);
        tracing::debug!(
            netns = %self.kernel,
            generation,
            record_seen_us = (t1 - t0).as_micros() as u64,
            validate_us = (t2 - t1).as_micros() as u64,
            commit_us = t2.elapsed().as_micros() as u64,
            "applied a document"
        );
        outcome
    }

    /// Commits a validated config: addresses, one nft transaction, then the ledger's record of
    /// it (`delta`, when it came as one), appended and synced.
    fn commit(
        &mut self,
        next: Next,
        force_full: bool,
        delta: Option<&RouterDelta>,
    ) -> Result<ApplyOutcome, ApplyError> {
        // What is enforced is taken out for the commit and put back on any refusal before the
        // kernel is touched; with a change, its config is already the new one.
        let (config, before) = match next {
            Next::Whole(config) => (config, self.applied.take().map(Before::Whole)),
            Next::Change(change) => match self.applied.take() {
                Some(a) => (
                    a.config,
                    Some(Before::Moved {
                        model: a.model,
                        nft_generation: a.nft_generation,
                        change,
                    }),
                ),
                None => {
                    return Err(ApplyError::Delta(router_config::DeltaError::BaseMismatch {
                        base: change.generation_before,
                        held: 0,
                    }))
                }
            },
        };
        let generation = config.generation();
        // haproxy checks a structural change before anything is committed; a refusal refuses
        // the whole config.
        // haproxy checks a structural change before anything is committed. A new config it refuses
        // is refused whole; the last good config (a restore or repair) is still enforced by the
        // firewall, and haproxy is left for the drift timer to retry: a refusal there means the
        // environment changed (haproxy itself, say), not the config.
        let mut lb_failure = None;
        let old_balancers: Option<Cow<'_, [LoadBalancer]>> = match &before {
            Some(Before::Whole(a)) => Some(Cow::Borrowed(&a.config.load_balancers)),
            Some(Before::Moved { change, .. })
                if change.load_balancers.is_empty() && change.previous().is_none() =>
            {
                Some(Cow::Borrowed(&config.load_balancers))
            }
            Some(Before::Moved { change, .. }) => {
                Some(Cow::Owned(change.balancers_before(&config)))
            }
            None => None,
        };
        let prepared = match self.balancer.as_mut() {
            Some(b) => b.prepare(old_balancers.as_deref(), &config, force_full),
            None => Ok(crate::balancer::LbPlan::Nothing),
        };
        drop(old_balancers);
        let lb_plan = match prepared {
            Ok(plan) => plan,
            Err(source) if force_full => {
                tracing::error!(netns = %self.kernel, generation, error = %chain(&source), "haproxy refuses the last good config; enforcing the firewall without it");
                if let Some(b) = self.balancer.as_mut() {
                    b.mark_stale();
                }
                lb_failure = Some(source);
                crate::balancer::LbPlan::Nothing
            }
            Err(source) => {
                self.put_back(config, before);
                return Err(ApplyError::HaproxyRefused { generation, source });
            }
        };
        // dnsmasq likewise: its new files are checked before the commit.
        // A change that leaves what dnsmasq serves alone (its section, the guest network) has
        // nothing to render, compare or check: the files in place describe it already, and a
        // dnsmasq that died meanwhile is the drift timer's to restart.
        let mut dhcp_failure = None;
        let dhcp_same = !force_full
            && match &before {
                Some(Before::Whole(a)) => dhcp_of(&a.config) == dhcp_of(&config),
                Some(Before::Moved { change, .. }) => change
                    .previous()
                    .is_none_or(|p| dhcp_of(p) == dhcp_of(&config)),
                None => false,
            };
        let dhcp_plan = match self
            .dhcp
            .as_mut()
            .filter(|d| !(dhcp_same && d.settled(config.dhcp.is_some())))
            .map(|d| d.prepare(&config))
        {
            None => DhcpPlan::Nothing,
            Some(Ok(plan)) => plan,
            Some(Err(source)) if force_full => {
                tracing::error!(netns = %self.kernel, generation, error = %chain(&source), "dnsmasq refuses the last good config; enforcing the firewall without it");
                dhcp_failure = Some(source);
                DhcpPlan::Nothing
            }
            Some(Err(source)) => {
                self.put_back(config, before);
                return Err(ApplyError::DnsmasqRefused { generation, source });
            }
        };
        // The ledger's record is prepared now (its base is the config held, or the delta that
        // moved it) and appended once the kernel accepted the change, so the journal only ever
        // holds what the kernel accepted.
        let t_prepare = Instant::now();
        let held = match &before {
            Some(Before::Whole(a)) => Some(a.config.document()),
            _ => None,
        };
        let record = match self.ledger.prepare(held, config.document(), delta) {
            Ok(record) => record,
            Err(e) => {
                self.put_back(config, before);
                return Err(e.into());
            }
        };
        let prepare_us = t_prepare.elapsed().as_micros() as u64;
        // Interfaces are set at start and whenever their part of the config changes; a rule
        // change never spawns `ip`.
        let links_changed = force_full
            || match &before {
                Some(Before::Whole(a)) => links_of(&a.config) != links_of(&config),
                Some(Before::Moved { change, .. }) => change
                    .previous()
                    .is_some_and(|p| links_of(p) != links_of(&config)),
                None => true,
            };
        if links_changed {
            if let Err(source) = self.sync_links(&config) {
                self.put_back(config, before);
                return Err(ApplyError::Link { generation, source });
            }
        }
        let started = Instant::now();
        let in_sync = match &before {
            Some(b) => match self.kernel.generation() {
                Ok(found) => found == b.nft_generation(),
                Err(e) => {
                    self.put_back(config, before);
                    return Err(ApplyError::Probe(e));
                }
            },
            None => false,
        };
        let mut before = before;
        let mut model_moved = false;
        let mut mode = ApplyMode::Full;
        let mut via = CommitPath::Nft;
        let mut result = Err(None);
        if let (false, true, Some(b)) = (force_full, in_sync, before.as_mut()) {
            let nft_generation = b.nft_generation();
            let update = match b {
                Before::Whole(a) => a.model.update(&a.config, &config),
                Before::Moved { model, change, .. } => model.apply_change(&config, change),
            };
            model_moved = true;
            mode = ApplyMode::Delta;
            via = match (&update.fast, update.script.is_empty()) {
                (_, true) => CommitPath::Nothing,
                (Some(_), false) => CommitPath::Netlink,
                (None, false) => CommitPath::Nft,
            };
            result = match &update.fast {
                _ if update.script.is_empty() => Ok(()),
                // New buckets are created first by an add-only nft script (nothing references
                // them yet); then every element change and bucket removal goes as one netlink
                // batch on our own socket, pinned to the ruleset generation: no read-back, and
                // only that batch changes what packets meet.
                Some(fast) => {
                    let mut expected = Ok(nft_generation);
                    if !fast.create.is_empty() {
                        expected = self
                            .kernel
                            .apply_script(&fast.create)
                            .and_then(|()| self.kernel.generation());
                    }
                    let batches: Vec<ElementBatch> = element_batches(fast);
                    expected
                        .and_then(|g| {
                            self.kernel
                                .commit_batch(render::TABLE, g, &batches, &fast.remove)
                        })
                        .map_err(Some)
                }
                None => self.kernel.apply_script(&update.script).map_err(Some),
            };
            if let Err(Some(e)) = &result {
                tracing::warn!(netns = %self.kernel, generation, error = %chain(e), "delta refused, trying a full replace");
            }
        }
        let model = match (result, before) {
            (Ok(()), Some(b)) => b.into_model(),
            (_, previous) => {
                mode = ApplyMode::Full;
                let model = render::plan(&config);
                let loaded = self.load_whole(&model, generation);
                via = match loaded {
                    Ok(path) => path,
                    Err((source, skeleton_left)) => {
                        self.after_refusal(config, previous, model_moved, in_sync, links_changed);
                        if skeleton_left {
                            // The kernel holds the closed skeleton of a staged load: drift
                            // until a commit succeeds, so the drift timer tries again. (The
                            // generation is what a drift report names; unreadable, it is 0.)
                            self.stale_mark = Some(self.kernel.generation().unwrap_or_default());
                        }
                        return Err(ApplyError::Kernel { generation, source });
                    }
                };
                model
            }
        };
        let commit_micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let nft_generation = self.kernel.generation().map_err(ApplyError::Probe)?;
        let t_record = Instant::now();
        self.ledger.record(record)?;
        tracing::debug!(
            netns = %self.kernel,
            generation,
            prepare_us,
            kernel_us = commit_micros,
            record_us = t_record.elapsed().as_micros() as u64,
            "committed"
        );
        if let Some(netns) = self.kernel.identity() {
            self.ledger.write_kernel_mark(&KernelMark {
                generation,
                netns,
                nft_generation,
            })?;
        }
        let lb = match (lb_failure, self.balancer.as_mut()) {
            (Some(e), _) => Err(e),
            (None, Some(b)) => b.enact(lb_plan, &config),
            (None, None) => Ok(()),
        };
        let dhcp = match (dhcp_failure, self.dhcp.as_mut()) {
            (Some(e), Some(d)) => {
                // The next tick tries again from the files in place.
                let _ = d.enact(DhcpPlan::Nothing, &config);
                d.mark_stale();
                Err(e)
            }
            (Some(e), None) => Err(e),
            (None, Some(d)) => d.enact(dhcp_plan, &config),
            (None, None) => Ok(()),
        };
        self.applied = Some(Applied {
            config,
            model,
            nft_generation,
        });
        self.stale_mark = None;
        lb.map_err(|source| ApplyError::Balancer { generation, source })?;
        dhcp.map_err(|source| ApplyError::Dhcp { generation, source })?;
        Ok(ApplyOutcome::Applied {
            generation,
            mode,
            commit_micros,
            via,
        })
    }

    /// Loads the whole model. Where the namespace holds a table of ours, it is replaced in one
    /// `nft -f` transaction, so packets meet the old rules or the new ones, nothing between.
    /// Where it holds none (a new namespace, a flushed ruleset), nothing is enforced yet and the
    /// load is staged ([`StagedLoad`]): the skeleton by `nft -f`, closed, then every element in
    /// one netlink batch, without `nft` parsing them; should the batch be refused, one full
    /// `nft -f` replace is tried over the skeleton.
    ///
    /// On failure, returns the kernel's error and whether a skeleton was left in place.
    fn load_whole(
        &mut self,
        model: &Ruleset,
        generation: Generation,
    ) -> Result<CommitPath, (KernelError, bool)> {
        let staged = match self.kernel.has_table(render::TABLE) {
            Ok(false) => render_staged(model),
            Ok(true) => None,
            Err(e) => {
                tracing::warn!(netns = %self.kernel, error = %chain(&e), "cannot ask for the table; replacing it in one transaction");
                None
            }
        };
        let Some(staged) = staged else {
            return self
                .kernel
                .apply_script(&render_full(model))
                .map(|()| CommitPath::Nft)
                .map_err(|e| (e, false));
        };
        let StagedLoad { skeleton, elements } = staged;
        let started = Instant::now();
        self.kernel
            .apply_script(&skeleton)
            .map_err(|e| (e, false))?;
        let skeleton_us = started.elapsed().as_micros() as u64;
        drop(skeleton);
        let batches: Vec<ElementBatch> = elements.iter().map(element_batch).collect();
        drop(elements);
        let left = self.kernel.generation().map_err(|e| (e, true))?;
        let started = Instant::now();
        match self.kernel.commit_batch(render::TABLE, left, &batches, &[]) {
            Ok(()) => {
                tracing::debug!(
                    netns = %self.kernel,
                    generation,
                    skeleton_us,
                    elements_us = started.elapsed().as_micros() as u64,
                    "staged load"
                );
                Ok(CommitPath::Staged)
            }
            Err(e) => {
                tracing::warn!(netns = %self.kernel, generation, error = %chain(&e), "the elements of a staged load were refused, trying a full replace");
                drop(batches);
                self.kernel
                    .apply_script(&render_full(model))
                    .map(|()| CommitPath::Nft)
                    .map_err(|e| (e, true))
            }
        }
    }

    /// After the kernel refused a commit it changed nothing, so it holds what it held before
    /// (but for a staged load's closed skeleton, which the caller marks as drift):
    /// the previous config if it was in sync, otherwise whatever drifted state it had (which
    /// `drift` keeps reporting until a commit succeeds). Interfaces changed for the refused
    /// config are put back.
    fn after_refusal(
        &mut self,
        config: ValidConfig,
        previous: Option<Before>,
        model_moved: bool,
        was_in_sync: bool,
        links_changed: bool,
    ) {
        match previous {
            Some(b) if was_in_sync => {
                // Config and model are moved back to what the kernel holds.
                let a = b.restore(config, model_moved);
                if links_changed {
                    if let Err(e) = self.sync_links(&a.config) {
                        tracing::error!(netns = %self.kernel, error = %chain(&e), "cannot restore the previous interfaces");
                    }
                }
                self.applied = Some(a);
            }
            Some(b) => {
                self.stale_mark = Some(b.nft_generation());
                self.ledger.clear_kernel_mark();
            }
            None => self.ledger.clear_kernel_mark(),
        }
    }

    /// Puts back what was enforced before a commit that was refused before the kernel was
    /// touched.
    fn put_back(&mut self, config: ValidConfig, before: Option<Before>) {
        self.applied = before.map(|b| b.restore(config, false));
    }

    fn sync_links(&mut self, config: &ValidConfig) -> Result<(), KernelError> {
        self.kernel.sync_interfaces(&Interfaces {
            public: config.public_interface.clone(),
            public_addresses: config.public_addresses.iter().copied().collect(),
            public_gateway: config.public_gateway,
            guest: config.guest_interface.clone(),
            guest_address: (config.guest_gateway, config.guest_cidr.prefix_len()),
        })
    }

    /// Checks cheaply (one netlink request) whether anything else committed in the namespace,
    /// since this process's last commit or, before it commits, since the commit the ledger
    /// records.
    ///
    /// # Errors
    /// [`ApplyError::Probe`].
    pub fn drift(&mut self) -> Result<Drift, ApplyError> {
        let Some(a) = &self.applied else {
            return Ok(match self.stale_mark {
                Some(expected) => Drift::Drifted {
                    expected,
                    found: self.kernel.generation().map_err(ApplyError::Probe)?,
                },
                None => Drift::NothingApplied,
            });
        };
        let found = self.kernel.generation().map_err(ApplyError::Probe)?;
        Ok(if found == a.nft_generation {
            Drift::InSync
        } else {
            Drift::Drifted {
                expected: a.nft_generation,
                found,
            }
        })
    }

    /// Repairs drift: replaces the whole table with the last good config, in one transaction.
    ///
    /// # Errors
    /// [`ApplyError`].
    pub fn repair(&mut self) -> Result<Option<Generation>, ApplyError> {
        if let Some(a) = self.applied.take() {
            // Until a commit succeeds, `drift` keeps reporting this, so a failed repair is retried.
            self.stale_mark = Some(a.nft_generation);
        }
        self.ledger.clear_kernel_mark();
        self.restore()
    }

    /// The periodic haproxy chore (drift timer): deletes drained members, and restores haproxy
    /// when an earlier move failed.
    ///
    /// # Errors
    /// [`BalancerError`]; retried on the next tick.
    pub fn tend_balancer(&mut self) -> Result<(), BalancerError> {
        match self.balancer.as_mut() {
            Some(b) => b.tend(self.applied.as_ref().map(|a| &a.config)),
            None => Ok(()),
        }
    }

    /// Rewrites haproxy's file when members changed through its runtime API since it was
    /// written (the drift timer's [`Router::tend_balancer`] does it too); called when the
    /// router is dropped.
    fn settle_balancer_file(&mut self) {
        let config = self.applied.as_ref().map(|a| &a.config);
        if let Some(b) = self.balancer.as_mut() {
            if let Err(e) = b.write_file(config) {
                tracing::warn!(netns = %self.kernel, error = %chain(&e), "cannot write haproxy's file");
            }
        }
    }

    /// The periodic dnsmasq chore (drift timer): when the config serves DHCP and dnsmasq is not
    /// running (it died, or an earlier move failed), starts it again. Returns whether it did.
    ///
    /// # Errors
    /// [`DhcpError`]; retried on the next tick.
    pub fn tend_dhcp(&mut self) -> Result<bool, DhcpError> {
        let config = self.applied.as_ref().map(|a| &a.config);
        match self.dhcp.as_mut() {
            Some(d) => d.tend(config),
            None => Ok(false),
        }
    }

    /// The DHCP and DNS service (running, pid, leases), or `None` when the config serves no
    /// DHCP or the router runs no dnsmasq ([`Router::with_kernel`]).
    pub fn dhcp_status(&mut self) -> Option<DhcpStatus> {
        let config = self.applied.as_ref().map(|a| &a.config);
        self.dhcp.as_mut()?.status(config)
    }

    /// The pid of the router's running dnsmasq, if any.
    pub fn dnsmasq_pid(&mut self) -> Option<i32> {
        self.dhcp.as_mut()?.pid()
    }

    /// Removed load-balancer members haproxy still keeps for their connections, as
    /// `(backend, server)`.
    pub fn draining_members(&self) -> &[(String, String)] {
        self.balancer.as_ref().map_or(&[], |b| b.draining())
    }

    /// Every load-balancer rule's members with haproxy's view of their health and connections
    /// (none for a router without haproxy).
    ///
    /// # Errors
    /// [`BalancerError`] when haproxy does not answer.
    pub fn load_balancers(&self) -> Result<Vec<LbStatus>, BalancerError> {
        match (self.config(), &self.balancer) {
            (Some(c), Some(b)) => b.status(c),
            _ => Ok(Vec::new()),
        }
    }

    /// Reads every rule's counters (a full listing: proportional to the number of elements).
    ///
    /// # Errors
    /// [`KernelError`] when the table cannot be listed.
    pub fn counters(&self) -> Result<crate::status::Counters, KernelError> {
        let json = self.kernel.list_table(render::TABLE)?;
        let mut counters = crate::status::Counters::from_listing(&json, self.model());
        if let Some(cfg) = self.config() {
            let ids = cfg
                .ingress
                .iter()
                .map(|r| r.id)
                .chain(cfg.egress.iter().map(|r| r.id))
                .chain(cfg.port_forwards.iter().map(|r| r.id));
            for id in ids {
                counters.rules.entry(id.0).or_default();
            }
        }
        Ok(counters)
    }
}

/// The netlink batches of a fast update's element changes, as the router commits them.
pub fn element_batches(fast: &render::FastUpdate) -> Vec<ElementBatch> {
    fast.elements.iter().map(element_batch).collect()
}

fn element_batch(c: &render::ElementChange) -> ElementBatch {
    let conv = |fields: &[render::KeyField]| -> Vec<Field> {
        fields
            .iter()
            .map(|f| match f {
                render::KeyField::Ipv4(ip) => Field::Ipv4(*ip),
                render::KeyField::Proto(p) => Field::Proto(*p),
                render::KeyField::Port(p) => Field::Port(*p),
                render::KeyField::PortRange(a, b) => Field::PortRange(*a, *b),
                render::KeyField::Jump(chain) => Field::Jump(chain.clone()),
            })
            .collect()
    };
    ElementBatch {
        set: c.set.clone(),
        interval: c.interval,
        delete: c.delete,
        elements: c
            .elements
            .iter()
            .map(|(k, v)| (conv(k), v.as_deref().map(conv)))
            .collect(),
    }
}

/// The parts of a config that dnsmasq's files depend on.
fn dhcp_of(c: &ValidConfig) -> impl PartialEq + '_ {
    (&c.dhcp, c.guest_cidr, c.guest_gateway)
}

/// The parts of a config that interfaces and routes depend on.
fn links_of(c: &ValidConfig) -> impl PartialEq + '_ {
    (
        &c.public_interface,
        &c.public_addresses,
        c.public_gateway,
        &c.guest_interface,
        c.guest_cidr,
        c.guest_gateway,
    )
}

/// An error and its sources on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
