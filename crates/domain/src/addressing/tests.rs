use super::*;

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

#[test]
fn netmasks_must_be_contiguous() {
    assert_eq!(netmask_prefix("255.255.255.0").unwrap(), 24);
    assert_eq!(netmask_prefix("255.255.0.0").unwrap(), 16);
    assert_eq!(netmask_prefix("255.255.255.252").unwrap(), 30);
    assert!(netmask_prefix("255.0.255.0").is_err());
    assert!(netmask_prefix("not-a-mask").is_err());
}

#[test]
fn the_lowest_unused_slash_24_is_picked() {
    let ranges = [(
        Ipv4Addr::new(203, 0, 113, 10),
        Ipv4Addr::new(203, 0, 113, 250),
    )];
    assert_eq!(
        pick_cidr(&[], &ranges),
        Some((net("10.1.0.0/24"), Ipv4Addr::new(10, 1, 0, 1)))
    );
    let used = [net("10.1.0.0/24"), net("10.1.1.0/25")];
    assert_eq!(pick_cidr(&used, &ranges).unwrap().0, net("10.1.2.0/24"));
    assert_eq!(pick_cidr(&[net("10.1.0.0/16")], &ranges), None);
    let public = [(Ipv4Addr::new(10, 1, 0, 200), Ipv4Addr::new(10, 1, 1, 5))];
    assert_eq!(pick_cidr(&[], &public).unwrap().0, net("10.1.2.0/24"));
}

#[test]
fn host_addresses_and_overlaps() {
    let n = net("10.1.1.0/24");
    assert!(is_host(Ipv4Addr::new(10, 1, 1, 1), n));
    assert!(!is_host(Ipv4Addr::new(10, 1, 1, 0), n));
    assert!(!is_host(Ipv4Addr::new(10, 1, 1, 255), n));
    assert!(!is_host(Ipv4Addr::new(10, 1, 2, 1), n));
    assert!(is_host(Ipv4Addr::new(10, 1, 1, 0), net("10.1.1.0/31")));
    assert!(overlaps(&n, &net("10.1.0.0/16")));
    assert!(overlaps(&net("10.1.0.0/16"), &n));
    assert!(!overlaps(&n, &net("10.1.2.0/24")));
    assert!(meets_range(
        &n,
        Ipv4Addr::new(10, 1, 1, 200),
        Ipv4Addr::new(10, 1, 2, 5)
    ));
    assert!(!meets_range(
        &n,
        Ipv4Addr::new(10, 1, 2, 0),
        Ipv4Addr::new(10, 1, 2, 5)
    ));
}

#[test]
fn private_networks_lie_wholly_in_rfc_1918() {
    assert!(is_private(&net("10.1.1.0/24")));
    assert!(is_private(&net("10.0.0.0/8")));
    assert!(is_private(&net("172.16.0.0/12")));
    assert!(is_private(&net("192.168.4.0/22")));
    assert!(!is_private(&net("203.0.113.0/24")));
    assert!(!is_private(&net("172.0.0.0/8")));
    assert!(!is_private(&net("10.0.0.0/7")));
    assert!(!is_private(&net("192.0.0.0/8")));
}

#[test]
fn a_guest_network_is_private_and_its_gateway_a_host() {
    assert_eq!(
        guest_network("10.1.0.129", "255.255.255.128").unwrap(),
        (net("10.1.0.128/25"), Ipv4Addr::new(10, 1, 0, 129))
    );
    for (gw, mask) in [
        ("10.1.0.0", "255.255.255.0"),
        ("10.1.0.1", "255.0.255.0"),
        ("8.8.8.1", "255.255.255.0"),
        ("10.1.0.1", "255.255.255.254"),
        ("10.1.0.1", "128.0.0.0"),
    ] {
        assert!(guest_network(gw, mask).is_err(), "{gw}/{mask}");
    }
}

#[test]
fn vm_addresses_skip_the_gateway_and_the_used() {
    let n = net("10.1.1.0/24");
    let gw = Ipv4Addr::new(10, 1, 1, 1);
    assert_eq!(lowest_free(n, gw, &[]), Some(Ipv4Addr::new(10, 1, 1, 2)));
    assert_eq!(
        lowest_free(n, gw, &[Ipv4Addr::new(10, 1, 1, 2)]),
        Some(Ipv4Addr::new(10, 1, 1, 3))
    );
    let tiny = net("10.1.1.0/30");
    assert_eq!(lowest_free(tiny, gw, &[Ipv4Addr::new(10, 1, 1, 2)]), None);
}
