//! The process's log: `tracing` to stderr, with credentials blanked out of every line.
//!
//! guestnet itself never logs a secret, but the libraries under it may: at trace level the
//! WebSocket client logs the whole HTTP request of its handshake, the agent's bearer token
//! included. Every formatted line therefore passes [`redact`] before it is written, whatever
//! the level and whichever crate logged it: a credential after `authorization`, `bearer` or
//! `secretkey` becomes `[redacted]`.

use std::io::Write;

use tracing_subscriber::fmt::MakeWriter;

/// Installs the subscriber: `RUST_LOG` (default `info`), to stderr through [`redact`].
pub(crate) fn init() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(Redacting)
        .init();
}

/// Makes a [`RedactingWriter`] over stderr for each event.
struct Redacting;

impl<'a> MakeWriter<'a> for Redacting {
    type Writer = RedactingWriter;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(std::io::stderr())
    }
}

/// Writes what it is given to stderr with credentials blanked. The formatter hands it one
/// whole event per write, so a credential is never split between two writes.
struct RedactingWriter(std::io::Stderr);

impl Write for RedactingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(&redact(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// The words after which a credential follows (compared without regard to case).
const MARKERS: [&[u8]; 3] = [b"authorization", b"bearer", b"secretkey"];

/// What a credential is replaced with.
const REDACTED: &[u8] = b"[redacted]";

/// `text` with every credential blanked: after a marker and its separators (`:` or `=`, or a
/// space after `bearer`; quotes and spaces around them are kept), the value up to the next
/// quote, backslash, comma, semicolon, brace, ampersand or line end becomes `[redacted]`. After
/// `authorization` the scheme (`Bearer`, `Basic`) is blanked with the credential.
pub(crate) fn redact(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let Some(marker) = MARKERS
            .iter()
            .find(|m| text.len() - i >= m.len() && text[i..i + m.len()].eq_ignore_ascii_case(m))
        else {
            out.push(text[i]);
            i += 1;
            continue;
        };
        out.extend_from_slice(&text[i..i + marker.len()]);
        i += marker.len();
        let start = i;
        while i < text.len() && matches!(text[i], b':' | b'=' | b'"' | b'\'' | b' ' | b'\t') {
            i += 1;
        }
        out.extend_from_slice(&text[start..i]);
        // A value follows `bearer` after a space, the others after `:` or `=`; otherwise the
        // marker was an ordinary word ("authorization failed", "secretkeys").
        let assigned = text[start..i].iter().any(|b| matches!(b, b':' | b'='));
        let spaced = *marker == b"bearer" && i > start;
        if !assigned && !spaced {
            continue;
        }
        let value = i;
        while i < text.len()
            && !matches!(
                text[i],
                b'"' | b'\'' | b'\\' | b',' | b';' | b'}' | b'&' | b'\r' | b'\n'
            )
        {
            i += 1;
        }
        if i > value {
            out.extend_from_slice(REDACTED);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    fn r(s: &str) -> String {
        String::from_utf8(redact(s.as_bytes())).unwrap()
    }

    #[test]
    fn the_handshake_request_loses_its_token() {
        // What the WebSocket client logs at trace level: the request as a debug string.
        let line = "TRACE tungstenite::handshake::client: Request: \"GET /agent/v1 HTTP/1.1\\r\\n\
                    Host: 127.0.0.1:8080\\r\\nauthorization: Bearer s3cr3t-T0ken_x\\r\\n\
                    sec-websocket-version: 13\\r\\n\\r\\n\"\n";
        let out = r(line);
        assert!(!out.contains("s3cr3t-T0ken_x"), "{out}");
        assert!(
            out.contains("authorization: [redacted]\\r\\nsec-websocket-version: 13"),
            "{out}"
        );
        assert!(out.contains("Host: 127.0.0.1:8080"), "{out}");
    }

    #[test]
    fn every_marker_in_every_shape() {
        assert_eq!(r("Authorization=Basic abc def"), "Authorization=[redacted]");
        assert_eq!(r("x bearer abc, y"), "x bearer [redacted], y");
        assert_eq!(
            r(r#"{"secretkey":"abc","apikey":"k"}"#),
            r#"{"secretkey":"[redacted]","apikey":"k"}"#
        );
        assert_eq!(r("secretKey=abc&apiKey=k"), "secretKey=[redacted]&apiKey=k");
        assert_eq!(
            r("AUTHORIZATION: x\nnext line"),
            "AUTHORIZATION: [redacted]\nnext line"
        );
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        for s in [
            "revoked token refused: host=h1",
            "the secretkeys were rotated",
            "authorization failed",
            "authorization",
            "",
            "plain ünïcödé text",
        ] {
            assert_eq!(r(s), s);
        }
    }
}
