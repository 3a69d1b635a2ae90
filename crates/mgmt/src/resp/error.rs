//! Errors as the API answers them: the one place a [`StoreError`] becomes CloudStack's 530.

use api_types::error::ApiError;
use store::StoreError;

/// A failed database call, as the API reports it (530, details logged, not sent).
pub fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "internal error");
    ApiError::internal("Internal error executing command, please contact your system administrator")
}

/// A failed store call, as the API reports it: the one place a [`StoreError`] becomes an
/// answer (530, the error and its sources logged, not sent).
pub fn store_error(e: StoreError) -> ApiError {
    tracing::error!(error = %chain(&e), "internal error");
    ApiError::internal("Internal error executing command, please contact your system administrator")
}

/// An error and its sources, `: `-separated, for logs and job failures.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
