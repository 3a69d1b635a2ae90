//! CloudStack's API as it travels on the wire, so that the clients users already have (`cs`,
//! cloudmonkey, cmk, Terraform) work against guestnet unchanged.
//!
//! Today it owns [`signing`]: how a request's signature and `expires` are checked, the way the
//! Java server does it, with the tolerances real clients need. It is pure: the time is a
//! parameter, nothing here does I/O.

pub mod signing;
