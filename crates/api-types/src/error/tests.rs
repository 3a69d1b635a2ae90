//! Error codes, standard texts and error bodies.

use super::*;

#[test]
fn codes_carry_cloudstacks_numbers() {
    let numbers: Vec<u16> = ApiErrorCode::ALL.iter().map(|c| c.code()).collect();
    assert_eq!(
        numbers,
        [400, 401, 405, 429, 430, 431, 432, 503, 511, 530, 531, 532, 533, 534, 535, 536, 537]
    );
    for code in ApiErrorCode::ALL {
        assert_eq!(ApiErrorCode::from_code(code.code()), Some(code));
    }
    assert_eq!(ApiErrorCode::from_code(500), None);
    assert_eq!(CsErrorCode::CloudRuntime.code(), 4250);
    assert_eq!(CsErrorCode::InvalidParameterValue.code(), 4350);
    assert_eq!(CsErrorCode::NetworkRuleConflict.code(), 4360);
    assert_eq!(CsErrorCode::PermissionDenied.code(), 4365);
    assert_eq!(CsErrorCode::ResourceUnavailable.code(), 4380);
    assert_eq!(CsErrorCode::ServerApi.code(), 9999);
}

#[test]
fn standard_texts() {
    let e = ApiError::missing_parameter("createFirewallRule", "protocol");
    assert_eq!(e.code, ApiErrorCode::ParamError);
    assert_eq!(e.cs_code, Some(CsErrorCode::ServerApi));
    assert_eq!(
        e.text,
        "Unable to execute API command createfirewallrule due to missing parameter protocol"
    );

    let e = ApiError::invalid_value("createFirewallRule", "startport", "ssh");
    assert_eq!(e.http_status(), 431);
    assert_eq!(
        e.text,
        "Unable to execute API command createfirewallrule due to invalid value ssh for parameter \
         startport"
    );

    let e = ApiError::unknown_uuid("deleteFirewallRule", "id", "nope");
    assert_eq!(e.http_status(), 431);
    assert_eq!(
        e.text,
        "Unable to execute API command deletefirewallrule due to invalid value. Invalid parameter \
         id value=nope due to incorrect long value format, or entity does not exist or due to \
         incorrect parameter annotation for the field in api cmd class."
    );

    let e = ApiError::auth_failure();
    assert_eq!(e.http_status(), 401);
    assert_eq!(e.cs_code, None);
    assert_eq!(
        e.text,
        "unable to verify user credentials and/or request signature"
    );
    assert_eq!(ApiError::unknown_command(), e);

    let e = ApiError::page_size_too_large();
    assert_eq!(e.http_status(), 431);
    assert_eq!(e.cs_code, Some(CsErrorCode::InvalidParameterValue));
    assert_eq!(
        e.text,
        "Page size can't exceed max allowed page size value: 500"
    );

    let e = ApiError::malformed_parameter("tags[0]key");
    assert_eq!(e.http_status(), 430);
    assert!(e.text.starts_with("Unable to decode parameter tags[0]key"));

    assert_eq!(ApiError::rule_conflict("x").http_status(), 537);
    assert_eq!(
        ApiError::rule_conflict("x").cs_code,
        Some(CsErrorCode::NetworkRuleConflict)
    );
    assert_eq!(ApiError::permission_denied("x").http_status(), 531);
    assert_eq!(ApiError::resource_unavailable("x").http_status(), 534);
    assert_eq!(ApiError::resource_in_use("x").http_status(), 536);
    assert_eq!(
        ApiError::insufficient_address_capacity("x").http_status(),
        533
    );
    assert_eq!(ApiError::internal("x").http_status(), 530);
    assert_eq!(
        ApiError::internal("x").cs_code,
        Some(CsErrorCode::CloudRuntime)
    );
    assert_eq!(ApiError::api_limit_exceeded("x").http_status(), 429);
    assert_eq!(ApiError::invalid_parameter("x").http_status(), 431);
    assert_eq!(ApiError::unknown_api_name("nope").http_status(), 530);
}

#[test]
fn envelope_of_a_known_command() {
    let e = ApiError::missing_parameter("createFirewallRule", "protocol");
    assert_eq!(
        e.envelope(Some("createFirewallRule")),
        json!({"createfirewallruleresponse": {
            "uuidList": [],
            "errorcode": 431,
            "cserrorcode": 9999,
            "errortext": e.text,
        }})
    );
}

#[test]
fn envelope_is_errorresponse_for_unknown_absent_and_unsupported() {
    let e = ApiError::unknown_command();
    let expected = json!({"errorresponse": {
        "uuidList": [],
        "errorcode": 401,
        "errortext": "unable to verify user credentials and/or request signature",
    }});
    assert_eq!(e.envelope(None), expected);
    assert_eq!(e.envelope(Some("noSuchCommand")), expected);
    // Commands are looked up case-sensitively.
    assert_eq!(e.envelope(Some("listzones")), expected);
    let unsupported = ApiError::new(ApiErrorCode::UnsupportedAction, None, "no");
    assert!(unsupported
        .envelope(Some("listZones"))
        .get("errorresponse")
        .is_some());
}

#[test]
fn envelope_has_exactly_one_top_level_key_and_integer_codes() {
    let body = ApiError::rule_conflict("overlaps").envelope(Some("createPortForwardingRule"));
    let top = body.as_object().unwrap();
    assert_eq!(top.len(), 1);
    let inner = &top["createportforwardingruleresponse"];
    assert!(inner["errorcode"].is_u64());
    assert!(inner["cserrorcode"].is_u64());
    assert!(inner["errortext"].is_string());
    assert!(inner["uuidList"].as_array().unwrap().is_empty());
}

#[test]
fn job_result_has_only_code_and_text() {
    let e = ApiError::internal("Failed to delete firewall rule");
    assert_eq!(
        e.job_result(),
        json!({"errorcode": 530, "errortext": "Failed to delete firewall rule"})
    );
}

#[test]
fn display_shows_code_and_text() {
    assert_eq!(ApiError::rule_conflict("x").to_string(), "537 x");
}

#[test]
fn echoed_values_and_texts_are_bounded() {
    let huge = "9".repeat(1_000_000);
    let e = ApiError::invalid_value("createFirewallRule", "startport", &huge);
    assert_eq!(
        e.text,
        format!(
            "Unable to execute API command createfirewallrule due to invalid value {}... for \
             parameter startport",
            "9".repeat(MAX_ECHO_CHARS)
        )
    );
    for e in [
        ApiError::unknown_uuid("listNetworks", "id", &huge),
        ApiError::unparsable_date("listEvents", &huge),
        ApiError::malformed_parameter(&huge),
        ApiError::unknown_api_name(&huge),
        ApiError::control_character(&huge),
    ] {
        assert!(e.text.len() < 400, "{}", e.text.len());
        assert!(e
            .text
            .contains(&format!("{}...", "9".repeat(MAX_ECHO_CHARS))));
    }
    // A handler's own text is cut too, wherever it is sent.
    let e = ApiError::invalid_parameter(format!("Source CIDRs formatting error {huge}"));
    assert_eq!(e.text.chars().count(), MAX_ERROR_TEXT_CHARS + 3);
    assert!(e.text.ends_with("999..."));
    let body = e.envelope(Some("createFirewallRule"));
    let text = body["createfirewallruleresponse"]["errortext"]
        .as_str()
        .unwrap();
    assert_eq!(text, e.text);
    let mut raw = e.clone();
    raw.text = huge.clone();
    assert_eq!(
        raw.job_result()["errortext"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        MAX_ERROR_TEXT_CHARS + 3
    );
    // Short texts are left alone, multi-byte characters are cut whole.
    assert_eq!(
        echo("é".repeat(MAX_ECHO_CHARS).as_str()),
        "é".repeat(MAX_ECHO_CHARS)
    );
    assert_eq!(
        echo("é".repeat(MAX_ECHO_CHARS + 1).as_str()),
        format!("{}...", "é".repeat(MAX_ECHO_CHARS))
    );
}
