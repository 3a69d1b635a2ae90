//! The process harness that guestnet's integration tests and its benchmark share: guestnet
//! processes with their logs ([`process::Proc`], the startup line of `guestnet serve`), a private
//! PostgreSQL cluster per test ([`pg::PgCluster`], made with `initdb` run as the `postgres`
//! user), a management network of namespaces whose links a test can take down
//! ([`mgmtnet::MgmtNet`]), a bootable test guest built from Debian packages
//! ([`guest_image::build`]), a private libvirt daemon inside a test's namespace
//! ([`libvirtd::Libvirtd`]) and a hypervisor host of namespaces for the host driver
//! ([`hypervisor::Hypervisor`]).
//!
//! Every process goes through `sys::cmd`; everything made is removed on drop, also when the
//! caller panics. [`wait_until`] polls a condition with a deadline.

pub mod guest_image;
pub mod hypervisor;
pub mod libvirtd;
pub mod mgmtnet;
pub mod pg;
pub mod process;

use std::time::{Duration, Instant};

/// How often [`wait_until`] looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Polls `cond` until it holds or `deadline` passes; whether it held. `cond` is always asked at
/// least once, also when the deadline has passed already.
pub fn wait_until(deadline: Instant, mut cond: impl FnMut() -> bool) -> bool {
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_reports_whether_the_condition_came_to_hold() {
        let mut asked = 0;
        assert!(wait_until(Instant::now() + Duration::from_secs(5), || {
            asked += 1;
            asked == 3
        }));
        assert_eq!(asked, 3);
        let past = Instant::now();
        let mut asked = 0;
        assert!(!wait_until(past, || {
            asked += 1;
            false
        }));
        assert_eq!(asked, 1);
    }
}
