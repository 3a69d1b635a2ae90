//! API errors as CloudStack reports them: an HTTP status that is also the body's `errorcode`
//! ([`ApiErrorCode`]), an optional `cserrorcode` naming the kind of failure ([`CsErrorCode`]),
//! and a text.
//!
//! [`ApiError`] has a constructor for each standard text the dispatcher and the handlers need,
//! [`ApiError::envelope`] builds the error body of a synchronous reply and
//! [`ApiError::job_result`] the `jobresult` of a failed job.

use serde_json::{json, Value};

use crate::catalogue;

/// CloudStack's `errorcode`, which is also the HTTP status of the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiErrorCode {
    /// 400: the request itself is unusable.
    BadRequest,
    /// 401: credentials or signature not accepted, or a command the caller cannot see.
    Unauthorized,
    /// 405: the HTTP method is not allowed for this call.
    MethodNotAllowed,
    /// 429: the caller exceeded the API rate limit.
    ApiLimitExceeded,
    /// 430: a parameter could not be decoded (a malformed `name[i].field` key).
    MalformedParameter,
    /// 431: a parameter is missing or its value is not acceptable.
    ParamError,
    /// 432: the action is not supported.
    UnsupportedAction,
    /// 503: the service is not available.
    ServiceUnavailable,
    /// 511: two-factor authentication is required.
    Unauthorized2fa,
    /// 530: the server failed while carrying out the command.
    InternalError,
    /// 531: the caller's account may not do this.
    AccountError,
    /// 532: an account resource limit was reached.
    AccountResourceLimit,
    /// 533: not enough capacity (addresses, hosts, …).
    InsufficientCapacity,
    /// 534: a resource needed for the command is unavailable.
    ResourceUnavailable,
    /// 535: a resource could not be allocated.
    ResourceAllocation,
    /// 536: the resource is in use.
    ResourceInUse,
    /// 537: the rule conflicts with an existing one.
    NetworkRuleConflict,
}

impl ApiErrorCode {
    /// Every code, in numeric order.
    pub const ALL: [ApiErrorCode; 17] = [
        Self::BadRequest,
        Self::Unauthorized,
        Self::MethodNotAllowed,
        Self::ApiLimitExceeded,
        Self::MalformedParameter,
        Self::ParamError,
        Self::UnsupportedAction,
        Self::ServiceUnavailable,
        Self::Unauthorized2fa,
        Self::InternalError,
        Self::AccountError,
        Self::AccountResourceLimit,
        Self::InsufficientCapacity,
        Self::ResourceUnavailable,
        Self::ResourceAllocation,
        Self::ResourceInUse,
        Self::NetworkRuleConflict,
    ];

    /// The number: the body's `errorcode` and the HTTP status.
    pub const fn code(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthorized => 401,
            Self::MethodNotAllowed => 405,
            Self::ApiLimitExceeded => 429,
            Self::MalformedParameter => 430,
            Self::ParamError => 431,
            Self::UnsupportedAction => 432,
            Self::ServiceUnavailable => 503,
            Self::Unauthorized2fa => 511,
            Self::InternalError => 530,
            Self::AccountError => 531,
            Self::AccountResourceLimit => 532,
            Self::InsufficientCapacity => 533,
            Self::ResourceUnavailable => 534,
            Self::ResourceAllocation => 535,
            Self::ResourceInUse => 536,
            Self::NetworkRuleConflict => 537,
        }
    }

    /// The code for a number, if it is one of CloudStack's.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }
}

/// CloudStack's `cserrorcode`: which kind of failure, as a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CsErrorCode {
    /// 4250: a generic runtime failure on the server.
    CloudRuntime,
    /// 4280: an account limit was hit.
    AccountLimit,
    /// 4300: a concurrent operation got in the way.
    ConcurrentOperation,
    /// 4320: no free address is left.
    InsufficientAddressCapacity,
    /// 4325: not enough capacity.
    InsufficientCapacity,
    /// 4350: a parameter value is not acceptable.
    InvalidParameterValue,
    /// 4360: the rule conflicts with an existing one.
    NetworkRuleConflict,
    /// 4365: the caller may not do this.
    PermissionDenied,
    /// 4370: a resource could not be allocated.
    ResourceAllocation,
    /// 4375: the resource is in use.
    ResourceInUse,
    /// 4380: a resource needed for the command is unavailable.
    ResourceUnavailable,
    /// 4545: the caller exceeded the API rate limit.
    RequestLimit,
    /// 4555: the command is not available.
    UnavailableCommand,
    /// 9999: an error raised by the API layer itself, with no more specific kind
    /// (missing or undecodable parameters, for example).
    ServerApi,
}

impl CsErrorCode {
    /// The number sent as `cserrorcode`.
    pub const fn code(self) -> u16 {
        match self {
            Self::CloudRuntime => 4250,
            Self::AccountLimit => 4280,
            Self::ConcurrentOperation => 4300,
            Self::InsufficientAddressCapacity => 4320,
            Self::InsufficientCapacity => 4325,
            Self::InvalidParameterValue => 4350,
            Self::NetworkRuleConflict => 4360,
            Self::PermissionDenied => 4365,
            Self::ResourceAllocation => 4370,
            Self::ResourceInUse => 4375,
            Self::ResourceUnavailable => 4380,
            Self::RequestLimit => 4545,
            Self::UnavailableCommand => 4555,
            Self::ServerApi => 9999,
        }
    }
}

/// The text of a failed authentication, and of a command the server does not know (CloudStack's
/// request verification rejects unknown command names the same way as bad credentials).
pub const AUTH_FAILURE_TEXT: &str = "unable to verify user credentials and/or request signature";

/// The largest `pagesize` a list command accepts (CloudStack's `default.page.size`), and the
/// page size used when the request gives none.
pub const MAX_PAGE_SIZE: i64 = 500;

/// The most characters of a request's value an error text repeats; a longer value is cut there
/// and `...` marks the cut.
pub const MAX_ECHO_CHARS: usize = 100;

/// The most characters an error text has (in the body, the `X-Description` header and a job's
/// result); a longer text is cut there and ends with `...`.
pub const MAX_ERROR_TEXT_CHARS: usize = 1024;

/// `text` as an error repeats it: at most [`MAX_ECHO_CHARS`] characters, then `...` when it
/// was longer.
pub fn echo(text: &str) -> std::borrow::Cow<'_, str> {
    truncate(text, MAX_ECHO_CHARS)
}

fn truncate(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => std::borrow::Cow::Borrowed(text),
        Some((cut, _)) => std::borrow::Cow::Owned(format!("{}...", &text[..cut])),
    }
}

/// An error reply: what the client sees as `errorcode`, `cserrorcode` and `errortext`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} {}", code.code(), text)]
pub struct ApiError {
    /// The `errorcode`, also the HTTP status.
    pub code: ApiErrorCode,
    /// The `cserrorcode`; `None` leaves it out of the body (authentication failures carry none).
    pub cs_code: Option<CsErrorCode>,
    /// The `errortext`, also sent as the `X-Description` header.
    pub text: String,
}

impl ApiError {
    /// An error with any code and text (cut to [`MAX_ERROR_TEXT_CHARS`]).
    pub fn new(code: ApiErrorCode, cs_code: Option<CsErrorCode>, text: impl Into<String>) -> Self {
        let text = text.into();
        let text = match truncate(&text, MAX_ERROR_TEXT_CHARS) {
            std::borrow::Cow::Borrowed(_) => text,
            std::borrow::Cow::Owned(cut) => cut,
        };
        Self {
            code,
            cs_code,
            text,
        }
    }

    /// The text as replies carry it: at most [`MAX_ERROR_TEXT_CHARS`] characters.
    pub fn bounded_text(&self) -> std::borrow::Cow<'_, str> {
        truncate(&self.text, MAX_ERROR_TEXT_CHARS)
    }

    /// 401: the credentials or the signature were not accepted (also an expired `expires`).
    pub fn auth_failure() -> Self {
        Self::new(ApiErrorCode::Unauthorized, None, AUTH_FAILURE_TEXT)
    }

    /// 401: the command is not one the server knows. CloudStack answers this exactly like an
    /// authentication failure; send it with [`envelope`](Self::envelope)`(None)` so the body is
    /// `errorresponse`.
    pub fn unknown_command() -> Self {
        Self::auth_failure()
    }

    /// 431: a required parameter is absent (or empty).
    /// `command` is the API name as registered; it is lowercased in the text.
    pub fn missing_parameter(command: &str, param: &str) -> Self {
        Self::new(
            ApiErrorCode::ParamError,
            Some(CsErrorCode::ServerApi),
            format!(
                "Unable to execute API command {} due to missing parameter {param}",
                command.to_lowercase()
            ),
        )
    }

    /// 431: a value that does not parse as the parameter's type (a non-integer port, say).
    pub fn invalid_value(command: &str, param: &str, value: &str) -> Self {
        Self::new(
            ApiErrorCode::ParamError,
            Some(CsErrorCode::ServerApi),
            format!(
                "Unable to execute API command {} due to invalid value {} for parameter {param}",
                command.to_lowercase(),
                echo(value)
            ),
        )
    }

    /// 431: a uuid parameter whose value is not a uuid, or names no entity of the right kind.
    pub fn unknown_uuid(command: &str, param: &str, value: &str) -> Self {
        Self::new(
            ApiErrorCode::ParamError,
            Some(CsErrorCode::ServerApi),
            format!(
                "Unable to execute API command {} due to invalid value. Invalid parameter {param} \
                 value={} due to incorrect long value format, or entity does not exist or due \
                 to incorrect parameter annotation for the field in api cmd class.",
                command.to_lowercase(),
                echo(value)
            ),
        )
    }

    /// 431: a string parameter longer than its declared length (counted in UTF-16 units).
    pub fn value_too_long(command: &str, param: &str, max: u32) -> Self {
        Self::new(
            ApiErrorCode::ParamError,
            Some(CsErrorCode::ServerApi),
            format!(
                "Unable to execute API command {} due to invalid value. Value greater than max \
                 allowed length {max} for param: {param}",
                command.to_lowercase()
            ),
        )
    }

    /// 431: a date parameter in none of the accepted forms.
    pub fn unparsable_date(command: &str, value: &str) -> Self {
        Self::new(
            ApiErrorCode::ParamError,
            Some(CsErrorCode::ServerApi),
            format!(
                "Unable to parse date {} for command {}; give it as yyyy-MM-dd, \
                 yyyy-MM-dd HH:mm:ss or yyyy-MM-dd'T'HH:mm:ss with a zone such as +0000",
                echo(value),
                command.to_lowercase()
            ),
        )
    }

    /// 431: a parameter's name or value holds an ASCII control character (CloudStack's text;
    /// line feed and carriage return are allowed).
    pub fn control_character(param: &str) -> Self {
        Self::new(
            ApiErrorCode::ParamError,
            Some(CsErrorCode::ServerApi),
            format!(
                "Received value containing illegal ASCII non-printable characters for parameter {}",
                echo(&printable(param))
            ),
        )
    }

    /// 431: a list parameter with more items than [`crate::params::MAX_LIST_ITEMS`].
    pub fn too_many_items(command: &str, param: &str, items: usize, max: usize) -> Self {
        Self::new(
            ApiErrorCode::ParamError,
            Some(CsErrorCode::ServerApi),
            format!(
                "Unable to execute API command {} due to invalid value. {param} has {items} \
                 items, more than the {max} a list parameter may hold",
                command.to_lowercase()
            ),
        )
    }

    /// 431: a request larger than a limit of [`crate::params`] (its query string, its body,
    /// its number of parameters); `what` names the part and `unit` what is counted.
    pub fn request_too_large(what: &str, size: usize, max: usize, unit: &str) -> Self {
        Self::new(
            ApiErrorCode::ParamError,
            Some(CsErrorCode::ServerApi),
            format!("The request's {what} has {size} {unit}, more than the {max} allowed"),
        )
    }

    /// 430: a key with brackets that is not `name[index].field`.
    pub fn malformed_parameter(key: &str) -> Self {
        Self::new(
            ApiErrorCode::MalformedParameter,
            Some(CsErrorCode::ServerApi),
            format!(
                "Unable to decode parameter {}; a map parameter is sent as \
                 name[index].field=value, for example tags[0].key=env",
                echo(key)
            ),
        )
    }

    /// 431: `pagesize` above [`MAX_PAGE_SIZE`].
    pub fn page_size_too_large() -> Self {
        Self::invalid_parameter(format!(
            "Page size can't exceed max allowed page size value: {MAX_PAGE_SIZE}"
        ))
    }

    /// 431: `page` given together with `pagesize=-1` (everything on one page).
    pub fn page_with_unlimited_page_size() -> Self {
        Self::invalid_parameter("Can't specify page parameter when pagesize is -1 (Unlimited)")
    }

    /// 431: `pagesize` given without `page`.
    pub fn page_required() -> Self {
        Self::new(
            ApiErrorCode::ParamError,
            Some(CsErrorCode::ServerApi),
            "\"page\" parameter is required when \"pagesize\" is specified",
        )
    }

    /// 431: `page` given without `pagesize`.
    pub fn page_size_required() -> Self {
        Self::new(
            ApiErrorCode::ParamError,
            Some(CsErrorCode::ServerApi),
            "\"pagesize\" parameter is required when \"page\" is specified",
        )
    }

    /// 431 with cserrorcode 4350: a handler's own validation failed (bad CIDR, port range, …).
    pub fn invalid_parameter(text: impl Into<String>) -> Self {
        Self::new(
            ApiErrorCode::ParamError,
            Some(CsErrorCode::InvalidParameterValue),
            text,
        )
    }

    /// 531 with cserrorcode 4365: the caller may not act on this resource.
    pub fn permission_denied(text: impl Into<String>) -> Self {
        Self::new(
            ApiErrorCode::AccountError,
            Some(CsErrorCode::PermissionDenied),
            text,
        )
    }

    /// 533 with cserrorcode 4320: no free public address is left.
    pub fn insufficient_address_capacity(text: impl Into<String>) -> Self {
        Self::new(
            ApiErrorCode::InsufficientCapacity,
            Some(CsErrorCode::InsufficientAddressCapacity),
            text,
        )
    }

    /// 534 with cserrorcode 4380: a resource the command needs (the router, say) is unavailable.
    pub fn resource_unavailable(text: impl Into<String>) -> Self {
        Self::new(
            ApiErrorCode::ResourceUnavailable,
            Some(CsErrorCode::ResourceUnavailable),
            text,
        )
    }

    /// 536 with cserrorcode 4375: the resource is still in use.
    pub fn resource_in_use(text: impl Into<String>) -> Self {
        Self::new(
            ApiErrorCode::ResourceInUse,
            Some(CsErrorCode::ResourceInUse),
            text,
        )
    }

    /// 535 with cserrorcode 4370: taking the resource would exceed a resource limit of the
    /// owning account or of one of its domains (CloudStack's `ResourceAllocationException`).
    pub fn resource_allocation(text: impl Into<String>) -> Self {
        Self::new(
            ApiErrorCode::ResourceAllocation,
            Some(CsErrorCode::ResourceAllocation),
            text,
        )
    }

    /// 537 with cserrorcode 4360: the rule overlaps an existing one.
    pub fn rule_conflict(text: impl Into<String>) -> Self {
        Self::new(
            ApiErrorCode::NetworkRuleConflict,
            Some(CsErrorCode::NetworkRuleConflict),
            text,
        )
    }

    /// 530 with cserrorcode 4250: the server failed while carrying out the command.
    pub fn internal(text: impl Into<String>) -> Self {
        Self::new(
            ApiErrorCode::InternalError,
            Some(CsErrorCode::CloudRuntime),
            text,
        )
    }

    /// 429 with cserrorcode 4545: too many requests.
    pub fn api_limit_exceeded(text: impl Into<String>) -> Self {
        Self::new(
            ApiErrorCode::ApiLimitExceeded,
            Some(CsErrorCode::RequestLimit),
            text,
        )
    }

    /// 530 with cserrorcode 9999: `listApis name=…` named no command the server has. CloudStack's
    /// discovery command fails this way (an internal error, not a parameter error).
    pub fn unknown_api_name(name: &str) -> Self {
        Self::new(
            ApiErrorCode::InternalError,
            Some(CsErrorCode::ServerApi),
            format!("No API named {} is available", echo(name)),
        )
    }

    /// The HTTP status of the reply (the same number as `errorcode`).
    pub fn http_status(&self) -> u16 {
        self.code.code()
    }

    /// The body of an error reply:
    /// `{"<command lowercase>response": {"uuidList": [], "errorcode": N, "cserrorcode": M,
    /// "errortext": "…"}}`. The key is `errorresponse` when `command` is absent or not in the
    /// catalogue (case-sensitive, as the server looks commands up), and for 432, as CloudStack
    /// does. `cserrorcode` is left out when [`cs_code`](Self::cs_code) is `None`.
    pub fn envelope(&self, command: Option<&str>) -> Value {
        let key = match command {
            Some(name)
                if self.code != ApiErrorCode::UnsupportedAction
                    && catalogue::find(name).is_some() =>
            {
                format!("{}response", name.to_lowercase())
            }
            _ => "errorresponse".to_string(),
        };
        let mut body = serde_json::Map::new();
        body.insert("uuidList".into(), json!([]));
        body.insert("errorcode".into(), json!(self.code.code()));
        if let Some(cs) = self.cs_code {
            body.insert("cserrorcode".into(), json!(cs.code()));
        }
        body.insert("errortext".into(), json!(self.bounded_text()));
        let mut outer = serde_json::Map::new();
        outer.insert(key, Value::Object(body));
        Value::Object(outer)
    }

    /// The `jobresult` of a job that failed with this error: `{"errorcode": N, "errortext": "…"}`
    /// (no `cserrorcode`, no `uuidList`). The job's `jobresultcode` is the same `N`.
    pub fn job_result(&self) -> Value {
        json!({"errorcode": self.code.code(), "errortext": self.bounded_text()})
    }
}

/// `text` with every control character written as `\u{..}`, so an error can name it.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
