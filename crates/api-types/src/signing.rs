//! Request signatures (CloudStack's `ApiServer.verifyRequest`, signature version 3).
//!
//! The signed string is every parameter but `signature`, sorted by name case-sensitively, each
//! value encoded like Java's `URLEncoder` (`A-Z a-z 0-9 . - * _` kept, space as `%20`, the rest
//! `%XX` upper hex of its UTF-8 bytes), joined as `name=value` with `&`, then lowercased whole.
//! The signature is the standard base64 of HMAC-SHA1 over it with the user's secret key.
//!
//! Names are escaped too, unlike the Java server, which writes them as received: a name keeps
//! the characters any client's names are made of (`A-Z a-z 0-9 . - * _ [ ]`, so every real
//! request signs exactly as CloudStack signs it) and every other byte becomes `%XX`. Without
//! that, a name holding `=` and `&` (`endport=4444&expires`, sent as `endport%3D4444%26expires`)
//! signs like two parameters, and a request can be re-shaped, dropping its `expires` or its
//! `signatureversion`, without changing its signature.
//!
//! Real clients differ from the Java server in two ways that must be tolerated: `cs`, cmk and
//! py-acs-sdk leave `~` unencoded, and legacy cloudmonkey and py-acs-sdk sort names after
//! lowercasing them. [`verify`] accepts a signature made any of those ways, comparing in
//! constant time.
//!
//! Expiry: `signatureversion=3` requires `expires` (as CloudStack requires it), and an
//! `expires` is checked whenever the request carries one, whatever its `signatureversion`
//! (CloudStack looks at it only with version 3; no client sends `expires` without it).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Why a request's signature or expiry was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The request carries no `signature`.
    #[error("request has no signature")]
    MissingSignature,
    /// The signature does not match any accepted canonical form.
    #[error("signature does not match")]
    BadSignature,
    /// `expires` is not a time in a form clients send.
    #[error("expires `{0}` is not a time")]
    BadExpires(String),
    /// `expires` is in the past.
    #[error("request expired at {0}")]
    Expired(String),
    /// `signatureversion=3` without `expires`.
    #[error("signature version 3 needs expires")]
    MissingExpires,
}

/// How the canonical string is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// The Java server's form.
    Java,
    /// `~` left unencoded (cs, cmk, py-acs-sdk).
    TildeRaw,
    /// Names sorted after lowercasing (legacy cloudmonkey), `~` encoded.
    LowercaseSort,
    /// Names sorted after lowercasing, `~` unencoded (py-acs-sdk).
    LowercaseSortTildeRaw,
}

/// Appends `text` percent-encoded: ASCII letters and digits, `. - * _`, and `extra`, kept;
/// every other byte as `%XX` (upper hex).
pub(crate) fn encode(text: &str, extra: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in text.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'.' | b'-' | b'*' | b'_')
            || extra.contains(&b);
        if keep {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

/// The bytes a parameter name keeps unescaped besides letters, digits and `. - * _`: the
/// brackets of map parameters (`tags[0].key`).
const NAME_EXTRA: &[u8] = b"[]";

fn canonical(params: &[(String, String)], form: Form) -> String {
    let mut signed: Vec<&(String, String)> = params
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("signature"))
        .collect();
    let lower_sort = matches!(form, Form::LowercaseSort | Form::LowercaseSortTildeRaw);
    if lower_sort {
        signed.sort_by(|a, b| {
            a.0.to_lowercase()
                .cmp(&b.0.to_lowercase())
                .then_with(|| a.0.cmp(&b.0))
        });
    } else {
        signed.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let tilde_raw = matches!(form, Form::TildeRaw | Form::LowercaseSortTildeRaw);
    let value_extra: &[u8] = if tilde_raw { b"~" } else { b"" };
    let mut out = String::new();
    for (i, (k, v)) in signed.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode(k, NAME_EXTRA, &mut out);
        out.push('=');
        encode(v, value_extra, &mut out);
    }
    // Everything is ASCII by now.
    out.make_ascii_lowercase();
    out
}

fn mac(secret: &str, canonical: &str) -> Hmac<Sha1> {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("invariant: HMAC accepts keys of any length"));
    mac.update(canonical.as_bytes());
    mac
}

/// Signs parameters the way the Java server checks them (for clients and test harnesses).
pub fn sign(params: &[(String, String)], secret: &str) -> String {
    let digest = mac(secret, &canonical(params, Form::Java))
        .finalize()
        .into_bytes();
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// Checks a request's `signature` against `secret`, and its `expires` against `now_unix`
/// (seconds since the epoch): every `expires` the request carries must be a time not yet
/// past, and `signatureversion=3` needs one.
///
/// # Errors
/// [`AuthError`] naming what failed.
pub fn verify(params: &[(String, String)], secret: &str, now_unix: i64) -> Result<(), AuthError> {
    let given = params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("signature"))
        .map(|(_, v)| v.trim())
        .ok_or(AuthError::MissingSignature)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(given)
        .map_err(|_| AuthError::BadSignature)?;
    let matched = [
        Form::Java,
        Form::TildeRaw,
        Form::LowercaseSort,
        Form::LowercaseSortTildeRaw,
    ]
    .into_iter()
    .any(|form| {
        mac(secret, &canonical(params, form))
            .verify_slice(&decoded)
            .is_ok()
    });
    if !matched {
        return Err(AuthError::BadSignature);
    }
    let version3 = params
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("signatureversion") && v.trim() == "3");
    let mut has_expires = false;
    for (_, expires) in params
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("expires"))
    {
        has_expires = true;
        let at = parse_expires(expires).ok_or_else(|| AuthError::BadExpires(expires.clone()))?;
        if at < now_unix {
            return Err(AuthError::Expired(expires.clone()));
        }
    }
    if version3 && !has_expires {
        return Err(AuthError::MissingExpires);
    }
    Ok(())
}

/// Parses `YYYY-MM-DDTHH:MM:SS` followed by `Z`, `±HHMM` or `±HH:MM` into seconds since the
/// epoch.
pub fn parse_expires(s: &str) -> Option<i64> {
    let s = s.trim();
    let (datetime, zone) = s.split_at_checked(19)?;
    let b = datetime.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = datetime.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || b.get(10) != Some(&b'T')
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let offset = match zone {
        "Z" => 0,
        z if z.len() == 5 || z.len() == 6 => {
            let sign = match z.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let rest = z[1..].replace(':', "");
            if rest.len() != 4
                || !rest.bytes().all(|c| c.is_ascii_digit())
                || (z.len() == 6 && z.as_bytes()[3] != b':')
            {
                return None;
            }
            let hh: i64 = rest[..2].parse().ok()?;
            let mm: i64 = rest[2..].parse().ok()?;
            sign * (hh * 3600 + mm * 60)
        }
        _ => return None,
    };
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests;
