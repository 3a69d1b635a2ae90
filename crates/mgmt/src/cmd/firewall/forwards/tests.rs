//! CloudStack's port range rules for forwards.

use super::check_forward_ranges;

#[test]
fn forward_ranges_follow_cloudstack() {
    assert!(check_forward_ranges((2222, 2222), (22, 22)).is_ok());
    assert!(check_forward_ranges((8000, 8010), (8000, 8010)).is_ok());
    assert!(check_forward_ranges((8000, 8010), (9000, 9010)).is_err());
    assert!(check_forward_ranges((8000, 8010), (8000, 8011)).is_err());
}
