//! The request edge fuzzed with proptest: arbitrary parameters through parameter checking and
//! signature verification. Seeded and bounded so it runs in seconds in the test command; a
//! longer run takes `PROPTEST_CASES` (cases per property) and `PROPTEST_RNG_SEED`, e.g.
//! `PROPTEST_CASES=200000 PROPTEST_RNG_SEED=$RANDOM cargo nextest run -p api-types fuzz`.
//! Each property prints how many cases it ran.

use std::cell::Cell;

use base64::Engine as _;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

use crate::catalogue;
use crate::error::ApiErrorCode;
use crate::params::check_and_normalize;
use crate::signing::{sign, verify, AuthError};

const SECRET: &str = "fuzz-secret/Key+==";
/// 2027-01-15: after every past `expires` below, before every future one.
const NOW: i64 = 1_800_000_000;
const PAST: &str = "2020-01-01T00:00:00+0000";
const FUTURE: &str = "2030-01-01T00:00:00Z";

/// Cases per property without `PROPTEST_CASES`.
const DEFAULT_CASES: u32 = 400;
/// The seed without `PROPTEST_RNG_SEED`.
const DEFAULT_SEED: u64 = 0x6775_6573_746e_6574;

fn config() -> Config {
    // `Config::default()` reads PROPTEST_CASES and PROPTEST_RNG_SEED.
    let mut c = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = DEFAULT_CASES;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = RngSeed::Fixed(DEFAULT_SEED);
    }
    c.failure_persistence = None;
    c
}

/// Runs `test` over `strategy` and prints how many cases ran and how many took each outcome.
fn run<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl Fn(S::Value, &Tally) -> Result<(), TestCaseError>,
) {
    let tally = Tally::default();
    let mut runner = TestRunner::new(config());
    let result = runner.run(&strategy, |v| test(v, &tally));
    println!(
        "{name}: {} cases ({} accepted, {} refused), seed {}",
        tally.cases.get(),
        tally.accepted.get(),
        tally.refused.get(),
        runner.config().rng_seed
    );
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

#[derive(Default)]
struct Tally {
    cases: Cell<u64>,
    accepted: Cell<u64>,
    refused: Cell<u64>,
}

impl Tally {
    fn count(&self, accepted: bool) {
        self.cases.set(self.cases.get() + 1);
        let c = if accepted {
            &self.accepted
        } else {
            &self.refused
        };
        c.set(c.get() + 1);
    }
}

/// Names as clients send them, and names no client sends.
fn any_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "command",
            "apiKey",
            "response",
            "signatureVersion",
            "expires",
            "name",
            "description",
            "cidrlist",
            "tags[0].key",
            "tags[0].value",
            "startport",
            "id",
            "pagesize",
            "page",
        ])
        .prop_map(str::to_string),
        "[a-zA-Z0-9=&%\\[\\]. _~\u{0}\u{7}\u{1f}é-]{0,12}",
    ]
}

/// Values: printable text, text with control characters, and list-like text.
fn any_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,16}",
        "[\u{0}-\u{7f}]{0,16}",
        "([0-9.]{1,15}/[0-9]{1,2},){0,6}",
        "[a-f0-9-]{0,40}",
    ]
}

fn any_request() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((any_name(), any_value()), 0..12)
}

fn refused_control(s: &str) -> bool {
    s.chars()
        .any(|c| c.is_ascii_control() && c != '\n' && c != '\r')
}

#[test]
fn arbitrary_requests_never_panic_and_never_pass_control_characters() {
    let commands = catalogue::all();
    run(
        "parameter checking",
        (0..commands.len(), any_request()),
        |(i, raw), tally| {
            let spec = &commands[i];
            let checked = check_and_normalize(spec, &raw);
            let _ = verify(&raw, SECRET, NOW);
            match checked {
                Ok(_) => {
                    prop_assert!(
                        !raw.iter()
                            .any(|(k, v)| refused_control(k) || refused_control(v)),
                        "control character accepted: {raw:?}"
                    );
                    tally.count(true);
                }
                Err(e) => {
                    prop_assert!(
                        matches!(
                            e.code,
                            ApiErrorCode::ParamError | ApiErrorCode::MalformedParameter
                        ),
                        "{e}"
                    );
                    tally.count(false);
                }
            }
            Ok(())
        },
    );
}

/// A request with distinct names (in any case) and none of the expiry parameters.
fn signable_request() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(("[a-zA-Z][a-zA-Z0-9\\[\\]._]{0,10}", "\\PC{0,12}"), 1..10).prop_map(
        |pairs| {
            let mut seen = std::collections::HashSet::new();
            pairs
                .into_iter()
                .filter(|(k, _)| {
                    let k = k.to_ascii_lowercase();
                    !matches!(k.as_str(), "signature" | "expires" | "signatureversion")
                        && seen.insert(k)
                })
                .collect()
        },
    )
}

fn signed(mut p: Vec<(String, String)>) -> Vec<(String, String)> {
    let s = sign(&p, SECRET);
    p.push(("signature".into(), s));
    p
}

#[derive(Debug, Clone)]
enum Tamper {
    Value(prop::sample::Index, String),
    Name(prop::sample::Index),
    Drop(prop::sample::Index),
    Add(String, String),
    Signature(prop::sample::Index),
}

fn any_tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        (any::<prop::sample::Index>(), "[0-9a-z%=&]{1,3}").prop_map(|(i, s)| Tamper::Value(i, s)),
        any::<prop::sample::Index>().prop_map(Tamper::Name),
        any::<prop::sample::Index>().prop_map(Tamper::Drop),
        ("[a-z]{1,6}9", "\\PC{0,6}").prop_map(|(k, v)| Tamper::Add(k, v)),
        any::<prop::sample::Index>().prop_map(Tamper::Signature),
    ]
}

/// Applies `t` to the signed request `p` (its last pair is the signature).
fn tamper(mut p: Vec<(String, String)>, t: &Tamper) -> Vec<(String, String)> {
    let n = p.len() - 1;
    match t {
        // Appended text is lowercase or escaped, so it changes the signed text in every form.
        Tamper::Value(i, s) => p[i.index(n)].1.push_str(s),
        Tamper::Name(i) => p[i.index(n)].0.push('9'),
        Tamper::Drop(i) => {
            p.remove(i.index(n));
        }
        Tamper::Add(k, v) => p.insert(0, (k.clone(), v.clone())),
        Tamper::Signature(i) => {
            let mut raw = base64::engine::general_purpose::STANDARD
                .decode(&p[n].1)
                .unwrap_or_default();
            let at = i.index(raw.len());
            raw[at] ^= 1;
            p[n].1 = base64::engine::general_purpose::STANDARD.encode(raw);
        }
    }
    p
}

#[test]
fn signed_requests_verify_and_any_tampering_is_refused() {
    run(
        "tampering",
        (signable_request(), any_tamper()),
        |(p, t), tally| {
            prop_assume!(!p.is_empty());
            let good = signed(p);
            prop_assert_eq!(verify(&good, SECRET, NOW), Ok(()));
            tally.count(true);
            let bad = tamper(good, &t);
            prop_assert_eq!(
                verify(&bad, SECRET, NOW),
                Err(AuthError::BadSignature),
                "{:?} accepted as {:?}",
                t,
                bad
            );
            tally.count(false);
            Ok(())
        },
    );
}

/// Every way of re-shaping a stale request by fusing two neighbours (sorted as the server
/// sorts them) into one name: `a=<a's value>&b` with `b`'s value.
fn fusions(p: &[(String, String)]) -> Vec<Vec<(String, String)>> {
    let mut sorted: Vec<(String, String)> = p
        .iter()
        .filter(|(k, _)| k != "signature")
        .cloned()
        .collect();
    sorted.sort();
    let signature = p.iter().find(|(k, _)| k == "signature").cloned();
    (0..sorted.len().saturating_sub(1))
        .map(|i| {
            let mut out = sorted.clone();
            let (a, b) = (out[i].clone(), out.remove(i + 1));
            // The value as the signed text writes it, so that the old form signed the fused
            // name exactly as it signed the pair.
            let mut value = String::new();
            crate::signing::encode(&a.1, b"", &mut value);
            out[i] = (format!("{}={value}&{}", a.0, b.0), b.1);
            out.extend(signature.clone());
            out
        })
        .collect()
}

#[test]
fn a_stale_request_stays_refused_however_it_is_reshaped() {
    run("stale requests", signable_request(), |mut p, tally| {
        p.push(("signatureVersion".into(), "3".into()));
        p.push(("expires".into(), PAST.into()));
        let stale = signed(p);
        prop_assert_eq!(
            verify(&stale, SECRET, NOW),
            Err(AuthError::Expired(PAST.into()))
        );
        tally.count(false);
        let mut variants = fusions(&stale);
        for drop in ["expires", "signatureVersion"] {
            variants.push(stale.iter().filter(|(k, _)| k != drop).cloned().collect());
        }
        variants.push(
            stale
                .iter()
                .map(|(k, v)| {
                    let v = if k == "expires" { FUTURE } else { v.as_str() };
                    (k.clone(), v.to_string())
                })
                .collect(),
        );
        for v in &variants {
            prop_assert!(
                verify(v, SECRET, NOW).is_err(),
                "a stale request re-shaped as {:?} was accepted",
                v
            );
            tally.count(false);
        }
        Ok(())
    });
}
