use super::*;

#[test]
fn default_names_are_vm_names_and_bad_names_are_not() {
    let u = uuid::Uuid::new_v4();
    let name = default_vm_name(&u);
    assert_eq!(name.len(), 32);
    assert!(name.starts_with("VM-"));
    assert!(good_vm_name(&name));
    assert!(good_vm_name("web-1a"));
    assert!(good_vm_name(&"x".repeat(63)));
    assert!(!good_vm_name("web_1"), "not a host name");
    assert!(!good_vm_name("1web"), "starts with a digit");
    assert!(!good_vm_name("-web"));
    assert!(!good_vm_name("web-"));
    assert!(!good_vm_name(""));
    assert!(!good_vm_name("has space"));
    assert!(!good_vm_name("dot.ted"));
    assert!(!good_vm_name(&"x".repeat(64)));
}
