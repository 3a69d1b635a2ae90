//! CloudStack's API as it travels on the wire, so that the clients users already have (`cs`,
//! cloudmonkey, cmk, Terraform) work against guestnet unchanged.
//!
//! * [`signing`]: how a request's signature and `expires` are checked, the way the Java server
//!   does it, with the tolerances real clients need.
//! * [`catalogue`]: every command the server implements, its parameters and response fields;
//!   the dispatcher checks requests against it and `listApis` is built from it.
//! * [`params`]: a request's parameters checked against a command and typed, with CloudStack's
//!   paging rules.
//! * [`error`]: CloudStack's error codes, standard error texts and error bodies.
//!
//! It is pure: the time is a parameter, nothing here does I/O.

pub mod catalogue;
pub mod error;
pub mod params;
pub mod signing;

#[cfg(test)]
mod fuzz;

pub use catalogue::{ApiSpec, ParamKind, ParamSpec, ResponseField};
pub use error::{ApiError, ApiErrorCode, CsErrorCode};
pub use params::{check_and_normalize, Paging, Params};
