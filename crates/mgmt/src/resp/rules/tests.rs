//! The list envelope around rules' objects rendered by the database.

use super::list_text;

#[test]
fn an_empty_listing_is_an_empty_object() {
    assert_eq!(list_text("firewallrule", 0, ""), "{}");
}

#[test]
fn a_page_is_wrapped_with_the_count_of_every_page() {
    let text = list_text("portforwardingrule", 7, r#"{"id":"b"},{"id":"a"}"#);
    assert_eq!(
        text,
        r#"{"count":7,"portforwardingrule":[{"id":"b"},{"id":"a"}]}"#
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["portforwardingrule"].as_array().map(Vec::len), Some(2));
}
