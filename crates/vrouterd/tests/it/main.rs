//! Enforcement tests: a [`vrouterd::Router`] operating a lab router, checked with real packets
//! (curl, a UDP client, ping) sent from the lab's outside host and VMs.
//!
//! Every test that needs root builds its own lab in its own temporary data directory through
//! `lab::LabGuard`, which removes everything it made, also when the test fails. Tests wait only
//! by polling a condition with a deadline.

mod addresses;
mod bulk;
mod delta;
mod dhcp;
mod drift;
mod egress;
mod forward;
mod generations;
mod ingress;
mod lb;
mod support;
