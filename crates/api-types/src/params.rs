//! Request parameters checked against a command's [`ApiSpec`] and turned into typed values, the
//! way CloudStack's dispatcher does before a command runs.
//!
//! [`check_and_normalize`] takes the request's name/value pairs (query string and form body
//! merged) and:
//! * matches names case-insensitively (CloudStack lowercases every name), keeping the first
//!   value when a name comes twice;
//! * skips the transport parameters ([`TRANSPORT_PARAMS`]) and any name the command does not
//!   declare, as CloudStack does;
//! * decodes map parameters sent as `name[index].field=value` (430 when a bracketed key has
//!   another shape, whatever its name);
//! * fails with 431 when a required parameter is absent or empty, or a value does not parse as
//!   its type, or text is longer than the parameter's length;
//! * fails with 431 when any name or value (of any parameter, known or not) holds an ASCII
//!   control character other than line feed and carriage return, as CloudStack's API server
//!   refuses them ([`check_characters`]);
//! * bounds the request: at most [`MAX_PARAMS`] parameters, [`MAX_LIST_ITEMS`] items in a list
//!   or entries in a map, each list item as long as the parameter's length and each map value
//!   at most [`MAX_MAP_VALUE_CHARS`] characters;
//! * applies the paging rules of list commands ([`Paging`]).
//!
//! Every check is linear in the size of the request.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::catalogue::{ApiSpec, ParamKind};
use crate::error::{ApiError, MAX_PAGE_SIZE};

/// Parameters that belong to the transport (routing, authentication, format), never to a
/// command. Matched case-insensitively.
pub const TRANSPORT_PARAMS: [&str; 7] = [
    "command",
    "response",
    "apikey",
    "signature",
    "signatureversion",
    "expires",
    "sessionkey",
];

/// The most parameters a request may carry (CloudStack's `request.max.form.keys` default).
pub const MAX_PARAMS: usize = 5000;

/// The most bytes of a request's query string (CloudStack's HTTP server takes 8 KiB of request
/// head; longer requests go as a form body).
pub const MAX_QUERY_BYTES: usize = 8192;

/// The most bytes of a request's form body (CloudStack's `request.content.size` default).
pub const MAX_BODY_BYTES: usize = 1_048_576;

/// The most items a list parameter (comma-separated) holds, and the most entries of a map
/// parameter. CloudStack sets none; a rule with more source CIDRs than this is better written
/// as several rules.
pub const MAX_LIST_ITEMS: usize = 1000;

/// The longest value of one field of a map parameter, in characters.
pub const MAX_MAP_VALUE_CHARS: usize = 4096;

/// Whether `c` is one of the control characters CloudStack's API server refuses in a value:
/// U+0000–U+001F and U+007F except line feed and carriage return.
fn is_refused_control(c: char) -> bool {
    c.is_ascii_control() && c != '\n' && c != '\r'
}

/// Refuses a request whose parameter names or values hold a control character other than line
/// feed and carriage return.
///
/// # Errors
/// 431 [`ApiError::control_character`] naming the first such parameter.
pub fn check_characters(raw: &[(String, String)]) -> Result<(), ApiError> {
    for (name, value) in raw {
        if name.chars().any(is_refused_control) || value.chars().any(is_refused_control) {
            return Err(ApiError::control_character(name));
        }
    }
    Ok(())
}

/// A checked value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Text,
    Int(i64),
    Bool(bool),
    List(Vec<String>),
    Map(Vec<BTreeMap<String, String>>),
    /// Seconds since the epoch.
    Date(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// The value as sent (uuids lowercased).
    raw: String,
    value: Value,
}

/// Which slice of a list a request asks for.
///
/// CloudStack's rules: without `pagesize` a list returns at most [`MAX_PAGE_SIZE`] items;
/// `pagesize=-1` returns everything; otherwise page `p` (from 1) of size `n` starts at
/// `n * (p - 1)`, and a `page` below 1 counts as the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    /// Index of the first item to return.
    pub start: usize,
    /// How many items at most; `None` for all of them.
    pub size: Option<usize>,
}

impl Paging {
    /// What a list request without `page` and `pagesize` gets: the first [`MAX_PAGE_SIZE`].
    pub const DEFAULT: Paging = Paging {
        start: 0,
        size: Some(MAX_PAGE_SIZE as usize),
    };

    /// Every item.
    pub const ALL: Paging = Paging {
        start: 0,
        size: None,
    };

    /// The indices to return out of `total` matching items.
    pub fn range(&self, total: usize) -> Range<usize> {
        let start = self.start.min(total);
        let end = match self.size {
            None => total,
            Some(n) => start.saturating_add(n).min(total),
        };
        start..end
    }

    /// The items to return, out of all that match.
    pub fn slice<'a, T>(&self, items: &'a [T]) -> &'a [T] {
        items.get(self.range(items.len())).unwrap_or(&[])
    }
}

/// A request's parameters, checked against its command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    spec: &'static ApiSpec,
    values: BTreeMap<&'static str, Entry>,
    paging: Paging,
}

impl Params {
    /// The command the parameters were checked against.
    pub fn spec(&self) -> &'static ApiSpec {
        self.spec
    }

    /// Whether the request gave the parameter (an empty optional number, boolean or uuid
    /// counts as not given).
    pub fn has(&self, name: &str) -> bool {
        self.entry(name).is_some()
    }

    /// The value as sent, for any parameter but a map (uuids lowercased).
    pub fn str(&self, name: &str) -> Option<&str> {
        self.entry(name)
            .filter(|e| !matches!(e.value, Value::Map(_)))
            .map(|e| e.raw.as_str())
    }

    /// The value of an integer, long or short parameter.
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.entry(name)?.value {
            Value::Int(v) => Some(v),
            _ => None,
        }
    }

    /// The value of a boolean parameter.
    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.entry(name)?.value {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// The items of a list parameter (empty items dropped; uuids lowercased). An empty value
    /// gives an empty list.
    pub fn list(&self, name: &str) -> Option<Vec<String>> {
        match &self.entry(name)?.value {
            Value::List(v) => Some(v.clone()),
            _ => None,
        }
    }

    /// The entries of a map parameter in index order, each a field → value map (field names as
    /// sent). Empty when the parameter was not given.
    pub fn map(&self, name: &str) -> Vec<BTreeMap<String, String>> {
        match self.entry(name).map(|e| &e.value) {
            Some(Value::Map(v)) => v.clone(),
            _ => Vec::new(),
        }
    }

    /// The value of a uuid parameter, lowercased. It is only syntactically checked (or `-1`,
    /// which CloudStack passes through for "all"); resolving it is the caller's job, failing
    /// with [`ApiError::unknown_uuid`].
    pub fn uuid(&self, name: &str) -> Option<&str> {
        let entry = self.entry(name)?;
        (self.spec.param(name)?.kind == ParamKind::Uuid).then_some(entry.raw.as_str())
    }

    /// The value of a date parameter, as seconds since the epoch (UTC when the request gave
    /// no zone).
    pub fn date(&self, name: &str) -> Option<i64> {
        match self.entry(name)?.value {
            Value::Date(v) => Some(v),
            _ => None,
        }
    }

    /// The slice of results the request asks for ([`Paging::DEFAULT`] for commands that do
    /// not page).
    pub fn paging(&self) -> Paging {
        self.paging
    }

    fn entry(&self, name: &str) -> Option<&Entry> {
        debug_assert!(
            self.spec.param(name).is_some(),
            "{} has no parameter {name}",
            self.spec.name
        );
        self.values.get(name)
    }
}

/// One map parameter's entries: index → field → value.
type MapEntries = BTreeMap<i64, BTreeMap<String, String>>;

/// The request's names lowercased, split into plain values and map entries.
struct Unpacked {
    plain: BTreeMap<String, String>,
    maps: BTreeMap<String, MapEntries>,
}

/// Splits `name[index].field` into its parts, or `None` when the key has a `[` but not that
/// shape. Keys without `[` (or starting with it) are plain names.
fn split_map_key(key: &str) -> Result<Option<(String, i64, String)>, ()> {
    let Some(open) = key.find('[') else {
        return Ok(None);
    };
    if key.rfind('[') != Some(open) {
        return Err(());
    }
    if open == 0 {
        return Ok(None);
    }
    let close = key.find(']').ok_or(())?;
    if close < open || key.rfind(']') != Some(close) {
        return Err(());
    }
    let dot = key.find('.').ok_or(())?;
    if dot < close {
        return Err(());
    }
    let index: i32 = key[open + 1..close].parse().map_err(|_| ())?;
    Ok(Some((
        key[..open].to_lowercase(),
        i64::from(index),
        key[dot + 1..].to_string(),
    )))
}

fn unpack(raw: &[(String, String)]) -> Result<Unpacked, ApiError> {
    let mut out = Unpacked {
        plain: BTreeMap::new(),
        maps: BTreeMap::new(),
    };
    for (key, value) in raw {
        if TRANSPORT_PARAMS.iter().any(|t| key.eq_ignore_ascii_case(t)) {
            continue;
        }
        match split_map_key(key) {
            Err(()) => return Err(ApiError::malformed_parameter(key)),
            Ok(Some((name, index, field))) => {
                out.maps
                    .entry(name)
                    .or_default()
                    .entry(index)
                    .or_default()
                    .entry(field)
                    .or_insert_with(|| value.clone());
            }
            Ok(None) => {
                out.plain
                    .entry(key.to_lowercase())
                    .or_insert_with(|| value.clone());
            }
        }
    }
    Ok(out)
}

/// Whether `s` is a uuid in its 8-4-4-4-12 hex form (any case).
fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Checks one uuid value, lowercasing it. `-1` passes, as in CloudStack.
fn check_uuid(command: &str, param: &str, value: &str) -> Result<String, ApiError> {
    if value == "-1" || is_uuid(value) {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(ApiError::unknown_uuid(command, param, value))
    }
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses `yyyy-MM-dd`, `yyyy-MM-dd HH:mm:ss`, or `yyyy-MM-ddTHH:mm:ss` optionally followed by
/// `Z`, `±HHMM` or `±HH:MM`, into seconds since the epoch (UTC when no zone is given).
pub fn parse_date(s: &str) -> Option<i64> {
    let (date, rest) = (s.get(..10)?, s.get(10..)?);
    let b = date.as_bytes();
    if b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (year, month, day) = (
        digits(&date[..4])?,
        digits(&date[5..7])?,
        digits(&date[8..])?,
    );
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let days = crate::signing::days_from_civil(year, month, day) * 86_400;
    if rest.is_empty() {
        return Some(days);
    }
    let (sep, time, zone) = (rest.get(..1)?, rest.get(1..9)?, rest.get(9..)?);
    let tb = time.as_bytes();
    if !(sep == " " || sep == "T") || tb[2] != b':' || tb[5] != b':' {
        return None;
    }
    let (h, m, sec) = (
        digits(&time[..2])?,
        digits(&time[3..5])?,
        digits(&time[6..])?,
    );
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    let offset = match zone {
        "" => 0,
        "Z" if sep == "T" => 0,
        z if sep == "T" && z.is_ascii() && (z.len() == 5 || z.len() == 6) => {
            let sign = match z.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (hh, mm) = if z.len() == 6 {
                if z.as_bytes()[3] != b':' {
                    return None;
                }
                (&z[1..3], &z[4..])
            } else {
                (&z[1..3], &z[3..])
            };
            let (hh, mm) = (digits(hh)?, digits(mm)?);
            if hh > 23 || mm > 59 {
                return None;
            }
            sign * (hh * 3600 + mm * 60)
        }
        _ => return None,
    };
    Some(days + h * 3600 + m * 60 + sec - offset)
}

fn parse_int(command: &str, name: &str, value: &str, kind: ParamKind) -> Result<i64, ApiError> {
    let bad = || ApiError::invalid_value(command, name, value);
    match kind {
        ParamKind::Integer => value.parse::<i32>().map(i64::from).map_err(|_| bad()),
        ParamKind::Short => value.parse::<i16>().map(i64::from).map_err(|_| bad()),
        _ => value.parse::<i64>().map_err(|_| bad()),
    }
}

/// Checks a request's parameters against `spec` and returns them typed.
///
/// `raw` holds every name/value pair of the request in arrival order, transport parameters
/// included (they are skipped).
///
/// # Errors
/// * 430 [`ApiError::malformed_parameter`]: a key with `[` that is not `name[index].field`.
/// * 431 [`ApiError::missing_parameter`]: a required parameter absent or empty.
/// * 431 [`ApiError::invalid_value`]: a number, boolean or map parameter that does not parse.
/// * 431 [`ApiError::unknown_uuid`]: a uuid parameter that is not a uuid.
/// * 431 [`ApiError::unparsable_date`], [`ApiError::value_too_long`].
/// * 431 paging: [`ApiError::page_required`], [`ApiError::page_size_required`],
///   [`ApiError::page_size_too_large`], [`ApiError::page_with_unlimited_page_size`], and
///   [`ApiError::invalid_value`] for a `pagesize` below -1.
pub fn check_and_normalize(
    spec: &'static ApiSpec,
    raw: &[(String, String)],
) -> Result<Params, ApiError> {
    if raw.len() > MAX_PARAMS {
        return Err(ApiError::request_too_large(
            "parameter list",
            raw.len(),
            MAX_PARAMS,
            "parameters",
        ));
    }
    check_characters(raw)?;
    let unpacked = unpack(raw)?;
    let command = spec.name;
    let mut values = BTreeMap::new();
    for param in spec.params {
        let name = param.name;
        if param.kind == ParamKind::Map {
            match (unpacked.maps.get(name), unpacked.plain.get(name)) {
                (Some(entries), _) => {
                    if entries.len() > MAX_LIST_ITEMS {
                        return Err(ApiError::too_many_items(
                            command,
                            name,
                            entries.len(),
                            MAX_LIST_ITEMS,
                        ));
                    }
                    let too_long = entries
                        .values()
                        .flat_map(BTreeMap::values)
                        .any(|v| v.chars().count() > MAX_MAP_VALUE_CHARS);
                    if too_long {
                        return Err(ApiError::value_too_long(
                            command,
                            name,
                            u32::try_from(MAX_MAP_VALUE_CHARS).unwrap_or(u32::MAX),
                        ));
                    }
                    let entry = Entry {
                        raw: String::new(),
                        value: Value::Map(entries.values().cloned().collect()),
                    };
                    values.insert(name, entry);
                }
                (None, Some(v)) if !v.is_empty() => {
                    return Err(ApiError::invalid_value(command, name, v));
                }
                (None, _) if param.required => {
                    return Err(ApiError::missing_parameter(command, name));
                }
                (None, _) => {}
            }
            continue;
        }
        let Some(value) = unpacked.plain.get(name) else {
            if param.required {
                return Err(ApiError::missing_parameter(command, name));
            }
            continue;
        };
        if value.is_empty() {
            if param.required {
                return Err(ApiError::missing_parameter(command, name));
            }
            // An empty number, boolean or uuid means "not given"; empty text stays text and an
            // empty list is an empty list.
            if !matches!(
                param.kind,
                ParamKind::String | ParamKind::List | ParamKind::ListOfUuid | ParamKind::Date
            ) {
                continue;
            }
        }
        let entry = match param.kind {
            ParamKind::String => {
                if value.encode_utf16().count() > param.length as usize {
                    return Err(ApiError::value_too_long(command, name, param.length));
                }
                Entry {
                    raw: value.clone(),
                    value: Value::Text,
                }
            }
            ParamKind::Integer | ParamKind::Long | ParamKind::Short => Entry {
                raw: value.clone(),
                value: Value::Int(parse_int(command, name, value, param.kind)?),
            },
            // As CloudStack reads a boolean (Java's `Boolean.valueOf`): "true" in any case is
            // true and every other value false, so a client sending `forced=None` means false.
            ParamKind::Boolean => Entry {
                raw: value.clone(),
                value: Value::Bool(value.eq_ignore_ascii_case("true")),
            },
            ParamKind::Uuid => Entry {
                raw: check_uuid(command, name, value)?,
                value: Value::Text,
            },
            ParamKind::List => {
                check_list(command, name, value, param.length)?;
                Entry {
                    raw: value.clone(),
                    value: Value::List(
                        value
                            .split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect(),
                    ),
                }
            }
            ParamKind::ListOfUuid => {
                check_list(command, name, value, param.length)?;
                let items = value
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| check_uuid(command, name, s))
                    .collect::<Result<Vec<_>, _>>()?;
                Entry {
                    raw: items.join(","),
                    value: Value::List(items),
                }
            }
            ParamKind::Date => Entry {
                raw: value.clone(),
                value: Value::Date(
                    parse_date(value).ok_or_else(|| ApiError::unparsable_date(command, value))?,
                ),
            },
            ParamKind::Map => continue,
        };
        values.insert(name, entry);
    }
    let paging = if spec.is_paged() {
        paging(command, &values)?
    } else {
        Paging::DEFAULT
    };
    Ok(Params {
        spec,
        values,
        paging,
    })
}

/// A list's size: at most [`MAX_LIST_ITEMS`] non-empty items, each at most `length` UTF-16
/// units (as strings are measured). Counts before anything is allocated.
fn check_list(command: &str, name: &str, value: &str, length: u32) -> Result<(), ApiError> {
    let mut items = 0usize;
    for item in value.split(',').filter(|s| !s.is_empty()) {
        items += 1;
        if item.encode_utf16().count() > length as usize {
            return Err(ApiError::value_too_long(command, name, length));
        }
    }
    if items > MAX_LIST_ITEMS {
        return Err(ApiError::too_many_items(
            command,
            name,
            items,
            MAX_LIST_ITEMS,
        ));
    }
    Ok(())
}

fn paging(command: &str, values: &BTreeMap<&'static str, Entry>) -> Result<Paging, ApiError> {
    let int = |name: &str| match values.get(name).map(|e| &e.value) {
        Some(Value::Int(v)) => Some(*v),
        _ => None,
    };
    let (page, page_size) = (int("page"), int("pagesize"));
    match (page, page_size) {
        (None, Some(size)) if size != -1 => return Err(ApiError::page_required()),
        (Some(_), None) => return Err(ApiError::page_size_required()),
        _ => {}
    }
    let Some(size) = page_size else {
        return Ok(Paging::DEFAULT);
    };
    if size > MAX_PAGE_SIZE {
        return Err(ApiError::page_size_too_large());
    }
    if size == -1 {
        if page.is_some() {
            return Err(ApiError::page_with_unlimited_page_size());
        }
        return Ok(Paging::ALL);
    }
    if size < -1 {
        return Err(ApiError::invalid_value(
            command,
            "pagesize",
            &size.to_string(),
        ));
    }
    let page = page.unwrap_or(1).max(1);
    let start = size.saturating_mul(page - 1);
    Ok(Paging {
        start: usize::try_from(start).unwrap_or(usize::MAX),
        size: Some(usize::try_from(size).unwrap_or(usize::MAX)),
    })
}

#[cfg(test)]
mod tests;
