//! The catalogue: one [`ApiSpec`] for every command the server implements, with the parameters
//! it accepts and the fields it answers with.
//!
//! The dispatcher checks requests against it ([`crate::params::check_and_normalize`]) before a
//! handler runs, and `listApis` is built from it ([`list_apis_response`]), so what clients such
//! as cmk and cloudmonkey learn from `listApis` is exactly what the server accepts.
//!
//! Names, types, requiredness and response object keys are CloudStack's. Transport parameters
//! (`command`, `response`, `apikey`, `signature`, `signatureversion`, `expires`) are not listed:
//! the dispatcher handles them before a command is looked at.

use serde_json::{json, Value};

use crate::error::ApiError;

mod table;

/// The type of a request parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamKind {
    /// A uuid naming an entity (syntactically checked; the server resolves it).
    Uuid,
    /// Free text, at most [`ParamSpec::length`] UTF-16 units long.
    String,
    /// A 32-bit signed integer.
    Integer,
    /// A 64-bit signed integer.
    Long,
    /// `true` or `false`, any case.
    Boolean,
    /// Comma-separated strings.
    List,
    /// Comma-separated uuids.
    ListOfUuid,
    /// `name[index].field=value` entries, grouped by index.
    Map,
    /// A date, `yyyy-MM-dd` with an optional time and zone.
    Date,
    /// A 16-bit signed integer.
    Short,
}

impl ParamKind {
    /// The type name `listApis` reports for this kind, as CloudStack spells it.
    pub const fn api_type(&self) -> &'static str {
        match self {
            Self::Uuid => "uuid",
            Self::String => "string",
            Self::Integer => "integer",
            Self::Long => "long",
            Self::Boolean => "boolean",
            Self::List | Self::ListOfUuid => "list",
            Self::Map => "map",
            Self::Date => "date",
            Self::Short => "short",
        }
    }
}

/// One request parameter of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamSpec {
    /// The name, lowercase (requests may spell it in any case).
    pub name: &'static str,
    /// The type, which the dispatcher checks.
    pub kind: ParamKind,
    /// Whether the command fails with 431 when it is absent.
    pub required: bool,
    /// The longest accepted [`ParamKind::String`] value; reported by `listApis` for every kind.
    pub length: u32,
    /// What the parameter means.
    pub description: &'static str,
    /// Comma-separated commands whose results supply values for it (uuid parameters), or "".
    pub related: &'static str,
    /// The CloudStack version that added the parameter, or "" when it is older than that record.
    pub since: &'static str,
}

/// One field of a command's response object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseField {
    /// The JSON key.
    pub name: &'static str,
    /// What the field holds.
    pub description: &'static str,
    /// The value's type as `listApis` reports it: "string", "integer", "long", "boolean",
    /// "date", "list", "set", "map" or "object".
    pub kind: &'static str,
}

/// A command the server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiSpec {
    /// The command name, exactly as clients send it (`createFirewallRule`).
    pub name: &'static str,
    /// What the command does.
    pub description: &'static str,
    /// Whether the command answers at once with a `jobid` and finishes in a job that
    /// `queryAsyncJobResult` reports.
    pub is_async: bool,
    /// For async commands: whether the entity is created before the job runs, so the immediate
    /// reply is `{"id": "<entity uuid>", "jobid": "<job uuid>"}` (CloudStack's async create
    /// commands). Always false for sync commands.
    pub creates: bool,
    /// The CloudStack version that added the command, or "" when it is older than that record.
    pub since: &'static str,
    /// Commands that list or produce the same kind of entity.
    pub related: &'static [&'static str],
    /// Every parameter, inherited ones included; transport parameters excluded.
    pub params: &'static [ParamSpec],
    /// The fields of the response object (of each item, for list commands).
    pub response: &'static [ResponseField],
    /// The key the result sits under: the array key of a list reply
    /// (`{"count": N, "<key>": [...]}`), the wrapper of a sync object reply
    /// (`{"<key>": {...}}`), or the wrapper inside a successful job's `jobresult`.
    /// `None` when the result is `{"success": true}` or is not wrapped (`queryAsyncJobResult`).
    pub response_object: Option<&'static str>,
}

impl ApiSpec {
    /// The parameter called `name` (lowercase), if the command has one.
    pub fn param(&self, name: &str) -> Option<&'static ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }

    /// The top-level key of the reply: the lowercased name followed by `response`.
    pub fn response_name(&self) -> String {
        format!("{}response", self.name.to_lowercase())
    }

    /// Whether this is a list command (reply `{"count": N, "<key>": [...]}`, or `{}` when
    /// nothing matches).
    pub fn is_list(&self) -> bool {
        self.name.starts_with("list")
    }

    /// Whether the command pages its results (it has `page` and `pagesize`).
    pub fn is_paged(&self) -> bool {
        self.param("pagesize").is_some()
    }
}

/// The command called `name`, matched exactly (case-sensitive, as CloudStack looks commands up).
pub fn find(name: &str) -> Option<&'static ApiSpec> {
    table::APIS.iter().find(|a| a.name == name)
}

/// Every command the server implements.
pub fn all() -> &'static [ApiSpec] {
    table::APIS
}

/// The fields every async command's reply can carry besides its own object's.
const ASYNC_FIELDS: [ResponseField; 2] = [
    ResponseField {
        name: "jobid",
        description: "The id of the job that carries out the command",
        kind: "string",
    },
    ResponseField {
        name: "jobstatus",
        description: "The job's state: 0 pending, 1 succeeded, 2 failed",
        kind: "integer",
    },
];

fn api_json(api: &ApiSpec) -> Value {
    let params: Vec<Value> = api
        .params
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "description": p.description,
                "type": p.kind.api_type(),
                "length": p.length,
                "required": p.required,
                "since": p.since,
                "related": p.related,
            })
        })
        .collect();
    let extra: &[ResponseField] = if api.is_async { &ASYNC_FIELDS } else { &[] };
    let response: Vec<Value> = api
        .response
        .iter()
        .chain(extra)
        .map(|f| json!({"name": f.name, "description": f.description, "type": f.kind}))
        .collect();
    json!({
        "name": api.name,
        "description": api.description,
        "isasync": api.is_async,
        "since": api.since,
        "related": api.related.join(","),
        "params": params,
        "response": response,
    })
}

/// The body of `listapisresponse`: `{"count": N, "api": [...]}` describing every command, or
/// only `name_filter` when given (matched exactly).
///
/// Every string is present and non-null, `isasync` and `required` are booleans, `length` is an
/// integer, `related` is a comma-separated string and `params` and `response` are arrays, which
/// is what cmk and legacy cloudmonkey parse.
///
/// # Errors
/// [`ApiError::unknown_api_name`] when `name_filter` names no command.
pub fn list_apis_response(name_filter: Option<&str>) -> Result<Value, ApiError> {
    let apis: Vec<Value> = match name_filter {
        Some(name) => vec![api_json(
            find(name).ok_or_else(|| ApiError::unknown_api_name(name))?,
        )],
        None => all().iter().map(api_json).collect(),
    };
    Ok(json!({"count": apis.len(), "api": apis}))
}

#[cfg(test)]
mod tests;
