use super::*;

const SECRET: &str = "s3cr3t/Secret+Key==";

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn with_signature(mut p: Vec<(String, String)>, signature: &str) -> Vec<(String, String)> {
    p.push(("signature".into(), signature.into()));
    p
}

// The signatures below were made by the `cs` 5.2.0 client's own signing code (cs.client
// CloudStack._sign) and, for the Java and lowercase-sort forms, by the same algorithm with
// `~` encoded or names lowercased before sorting.

fn list_zones() -> Vec<(String, String)> {
    params(&[
        ("command", "listZones"),
        ("apiKey", "AbC123"),
        ("response", "json"),
        ("signatureVersion", "3"),
        ("expires", "2026-11-25T19:48:22+0000"),
    ])
}

fn create_rule() -> Vec<(String, String)> {
    params(&[
        ("command", "createFirewallRule"),
        ("apiKey", "AbC123"),
        ("response", "json"),
        ("ipaddressid", "9a1e-42"),
        ("protocol", "tcp"),
        ("startPort", "22"),
        ("startdate", "x"),
        ("cidrlist", "10.0.0.0/8,192.168.0.0/16"),
    ])
}

fn odd_value() -> Vec<(String, String)> {
    params(&[
        ("command", "listVirtualMachines"),
        ("apiKey", "AbC123"),
        ("response", "json"),
        ("name", "a b~c*d é/ü"),
    ])
}

const BEFORE_EXPIRY: i64 = 1_764_099_000; // 2025-11-25, well before 2026-11-25T19:48:22Z

#[test]
fn signatures_made_by_the_cs_client_verify() {
    for (p, s) in [
        (list_zones(), "ZlX/xuI+2LNwwWoGDX2KGq9LeqM="),
        (create_rule(), "JeWYf6R1MySblFkn1VGI2qLN35M="),
        (odd_value(), "YWZ7iVJjGwlQJAS/nth0smx87M8="),
    ] {
        assert_eq!(
            verify(&with_signature(p, s), SECRET, BEFORE_EXPIRY),
            Ok(()),
            "{s}"
        );
    }
}

#[test]
fn the_java_form_and_the_lowercase_sort_form_verify_too() {
    assert_eq!(
        verify(
            &with_signature(odd_value(), "cN1N7PV6V13dkBWtGegDmwGFMrI="),
            SECRET,
            0
        ),
        Ok(())
    );
    assert_eq!(
        verify(
            &with_signature(create_rule(), "T/eMSYZaEUOJeOE7m5yOn2PxnBg="),
            SECRET,
            0
        ),
        Ok(())
    );
    // `sign` makes the Java form.
    assert_eq!(sign(&odd_value(), SECRET), "cN1N7PV6V13dkBWtGegDmwGFMrI=");
}

#[test]
fn a_wrong_secret_a_changed_value_or_no_signature_is_refused() {
    let good = with_signature(create_rule(), "JeWYf6R1MySblFkn1VGI2qLN35M=");
    assert_eq!(
        verify(&good, "another secret", 0),
        Err(AuthError::BadSignature)
    );
    let mut tampered = good.clone();
    tampered[4].1 = "udp".into();
    assert_eq!(verify(&tampered, SECRET, 0), Err(AuthError::BadSignature));
    assert_eq!(
        verify(&create_rule(), SECRET, 0),
        Err(AuthError::MissingSignature)
    );
    assert_eq!(
        verify(&with_signature(create_rule(), "not base64!"), SECRET, 0),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn an_expired_version_3_request_is_refused() {
    let p = with_signature(list_zones(), "ZlX/xuI+2LNwwWoGDX2KGq9LeqM=");
    let expiry = parse_expires("2026-11-25T19:48:22+0000").unwrap();
    assert_eq!(verify(&p, SECRET, expiry), Ok(()));
    assert_eq!(
        verify(&p, SECRET, expiry + 1),
        Err(AuthError::Expired("2026-11-25T19:48:22+0000".into()))
    );
}

#[test]
fn expires_forms_clients_send_parse_to_the_same_instant() {
    let utc = parse_expires("2026-11-25T19:48:22Z").unwrap();
    assert_eq!(utc, 1_795_636_102);
    assert_eq!(parse_expires("2026-11-25T19:48:22+0000"), Some(utc));
    assert_eq!(parse_expires("2026-11-25T21:48:22+0200"), Some(utc));
    assert_eq!(parse_expires("2026-11-25T14:48:22-05:00"), Some(utc));
    for bad in [
        "2026-11-25 19:48:22Z",
        "2026-13-25T19:48:22Z",
        "2026-11-25T19:48:22",
        "2026-11-25T19:48:22+2",
        "soon",
    ] {
        assert_eq!(parse_expires(bad), None, "{bad}");
    }
}

/// A stale signed request: version 3, `expires` already past.
fn stale_rule() -> Vec<(String, String)> {
    let p = params(&[
        ("command", "createFirewallRule"),
        ("apiKey", "AbC123"),
        ("response", "json"),
        ("signatureVersion", "3"),
        ("expires", "2020-01-01T00:00:00Z"),
        ("ipaddressid", "9a1e-42"),
        ("protocol", "tcp"),
        ("startport", "1000"),
        ("endport", "4444"),
    ]);
    let s = sign(&p, SECRET);
    with_signature(p, &s)
}

const NOW: i64 = 1_800_000_000; // 2027-01-15, after the stale request's expiry

/// Replaces the parameters named `first` and `second` (adjacent once sorted) by one parameter
/// whose name is `first=<its value>&second` and whose value is `second`'s: the text the old
/// canonical form signed for the two.
fn fuse(p: &[(String, String)], first: &str, second: &str) -> Vec<(String, String)> {
    let a = p.iter().find(|(k, _)| k == first).unwrap().clone();
    let b = p.iter().find(|(k, _)| k == second).unwrap().clone();
    let mut out: Vec<(String, String)> = p
        .iter()
        .filter(|(k, _)| k != first && k != second)
        .cloned()
        .collect();
    out.push((format!("{}={}&{}", a.0, a.1, b.0), b.1));
    out
}

#[test]
fn a_stale_request_is_refused() {
    assert_eq!(
        verify(&stale_rule(), SECRET, NOW),
        Err(AuthError::Expired("2020-01-01T00:00:00Z".into()))
    );
}

#[test]
fn fusing_expires_into_another_name_does_not_keep_the_signature() {
    // `endport%3D4444%26expires=2020-…`: the server sees one parameter named
    // `endport=4444&expires`, and no `expires`.
    let fused = fuse(&stale_rule(), "endport", "expires");
    assert!(!fused.iter().any(|(k, _)| k == "expires"));
    assert_eq!(verify(&fused, SECRET, NOW), Err(AuthError::BadSignature));
}

#[test]
fn fusing_signatureversion_into_another_name_does_not_keep_the_signature() {
    // `response%3Djson%26signatureVersion=3`: no signature version, so once no expiry check.
    let fused = fuse(&stale_rule(), "response", "signatureVersion");
    assert_eq!(verify(&fused, SECRET, NOW), Err(AuthError::BadSignature));
}

#[test]
fn version_3_without_expires_is_refused() {
    let p = params(&[
        ("command", "listZones"),
        ("apiKey", "AbC123"),
        ("signatureVersion", "3"),
    ]);
    let s = sign(&p, SECRET);
    assert_eq!(
        verify(&with_signature(p, &s), SECRET, NOW),
        Err(AuthError::MissingExpires)
    );
}

#[test]
fn expires_is_checked_without_a_signature_version_too() {
    let p = params(&[
        ("command", "listZones"),
        ("apiKey", "AbC123"),
        ("expires", "2020-01-01T00:00:00+0000"),
    ]);
    let s = sign(&p, SECRET);
    let p = with_signature(p, &s);
    assert_eq!(
        verify(&p, SECRET, NOW),
        Err(AuthError::Expired("2020-01-01T00:00:00+0000".into()))
    );
    let early = parse_expires("2020-01-01T00:00:00+0000").unwrap() - 1;
    assert_eq!(verify(&p, SECRET, early), Ok(()));
    // Every `expires` counts, not only the first.
    let p = params(&[
        ("command", "listZones"),
        ("expires", "2030-01-01T00:00:00Z"),
        ("Expires", "2020-01-01T00:00:00Z"),
    ]);
    let s = sign(&p, SECRET);
    assert_eq!(
        verify(&with_signature(p, &s), SECRET, NOW),
        Err(AuthError::Expired("2020-01-01T00:00:00Z".into()))
    );
}

#[test]
fn names_of_real_clients_sign_as_written_and_others_are_escaped() {
    // What every client signs for a map parameter: the name as written, brackets and all.
    let p = params(&[("command", "x"), ("tags[0].key", "env")]);
    let expected = base64::engine::general_purpose::STANDARD.encode(
        mac(SECRET, "command=x&tags[0].key=env")
            .finalize()
            .into_bytes(),
    );
    assert_eq!(sign(&p, SECRET), expected);
    assert_eq!(
        canonical(&params(&[("a=b&c", "d"), ("é", "e")]), Form::Java),
        "a%3db%26c=d&%c3%a9=e"
    );
}
