//! The host agent: drives the routers of one host for the management servers.
//!
//! A management server never touches a router itself: it sends requests ([`proto::Op`]) to the
//! agent of the router's host, which carries them out with its [`driver::Driver`] (lab
//! namespaces, namespaces on a real host's bridges and VLANs ([`host`]), or dry-run) and
//! answers. The agent is the same code in both of its forms: inside the server process (`guestnet serve` without `--driver agents`, the embedded default), where
//! the server calls [`Agent::handle`] directly, and as its own process (`guestnet agent`,
//! [`run`]), which opens a WebSocket to a server and answers the same requests over it.
//!
//! [`guests`] boots real guests for a VM through libvirt, their NIC on the network's bridge.

pub mod driver;
pub mod guests;
pub mod host;
pub mod proto;
pub mod run;

use std::time::Duration;

use proto::{Answer, Failure, Op};

/// CloudStack's former per-command timeout for the agent's calls to a router, our default.
pub const DEFAULT_APPLY_TIMEOUT: Duration = Duration::from_secs(120);

/// Carries out requests on this host.
#[derive(Clone)]
pub struct Agent {
    driver: driver::Driver,
    apply_timeout: Duration,
}

impl Agent {
    /// An agent over `driver`, giving each router `apply_timeout` to answer.
    pub fn new(driver: driver::Driver, apply_timeout: Duration) -> Agent {
        Agent {
            driver,
            apply_timeout,
        }
    }

    /// The driver.
    pub fn driver(&self) -> &driver::Driver {
        &self.driver
    }

    /// How long a router may take to answer.
    pub fn apply_timeout(&self) -> Duration {
        self.apply_timeout
    }

    /// Carries out one request. A router that does not answer within the apply timeout fails
    /// the request with [`Failure::TimedOut`]; the router's own work goes on, and the next
    /// request for it waits its turn.
    ///
    /// # Errors
    /// [`Failure`].
    pub async fn handle(&self, op: Op) -> Result<Answer, Failure> {
        let subject = op.subject().to_string();
        let timeout = self.apply_timeout;
        let work = async {
            let d = &self.driver;
            // The wire carries the driver's reason as text: the whole chain, at this edge only.
            let refused = |e: driver::DriverError| Failure::Refused(e.chain());
            match op {
                Op::EnsureRouter {
                    router,
                    cidr,
                    gateway,
                    vlan,
                } => d
                    .ensure_router(&router, cidr, gateway, vlan)
                    .await
                    .map(|()| Answer::Done)
                    .map_err(refused),
                Op::RebuildRouter {
                    router,
                    cidr,
                    gateway,
                    vlan,
                } => d
                    .rebuild_router(&router, cidr, gateway, vlan)
                    .await
                    .map(|()| Answer::Done)
                    .map_err(refused),
                Op::StopRouter { router } => d
                    .stop_router(&router)
                    .await
                    .map(|()| Answer::Done)
                    .map_err(refused),
                Op::RemoveRouter { router } => d
                    .remove_router(&router)
                    .await
                    .map(|()| Answer::Done)
                    .map_err(refused),
                Op::EnsureVm {
                    router,
                    vm,
                    ip,
                    label,
                    mac,
                    vlan,
                    guest,
                } => d
                    .ensure_vm(&router, &vm, ip, label, driver::VmNic { mac, vlan, guest })
                    .await
                    .map(|()| Answer::Done)
                    .map_err(refused),
                Op::RemoveVm { vm } => d
                    .remove_vm(&vm)
                    .await
                    .map(|()| Answer::Done)
                    .map_err(refused),
                Op::Apply { router, config } => d
                    .apply(&router, *config)
                    .await
                    .map(|outcome| Answer::Applied { outcome })
                    .map_err(refused),
                Op::ApplyDelta { router, delta } => match d.apply_delta(&router, *delta).await {
                    Ok(outcome) => Ok(Answer::Applied { outcome }),
                    Err(e @ driver::DeltaFailure::Stale { .. }) => {
                        Err(Failure::Stale(vrouterd::chain(&e)))
                    }
                    Err(driver::DeltaFailure::Refused(e)) => Err(refused(e)),
                },
                Op::Held { router } => Ok(Answer::Held {
                    generation: d.held(&router).await,
                }),
                Op::Status { router } => d
                    .status(&router)
                    .await
                    .map(|status| Answer::Status {
                        status: Box::new(status),
                    })
                    .map_err(refused),
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(Failure::TimedOut(format!(
                "{subject} did not answer within {} s",
                timeout.as_secs_f64()
            ))),
        }
    }
}
