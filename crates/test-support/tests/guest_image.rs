//! The test guest's image is built once per package versions, also when two builds race.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::guest_image;

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn two_builds_at_once_end_with_one_complete_image() {
    let cache = tempfile::tempdir().unwrap();
    let builds: Vec<guest_image::GuestImage> = std::thread::scope(|s| {
        let a = s.spawn(|| guest_image::build_in(cache.path()));
        let b = s.spawn(|| guest_image::build_in(cache.path()));
        [a, b]
            .into_iter()
            .map(|t| t.join().unwrap().expect("build the image"))
            .collect()
    });
    assert_eq!(builds[0], builds[1]);
    let image = &builds[0];
    let initrd = std::fs::read(&image.initrd).unwrap();
    assert_eq!(&initrd[..2], &[0x1f, 0x8b], "the initrd is gzipped");
    let kernel = std::fs::read(&image.kernel).unwrap();
    assert_eq!(&kernel[0x202..0x206], b"HdrS", "the kernel is a bzImage");
    assert_eq!(image.cmdline, guest_image::CMDLINE);
    // One image and no build left behind.
    let entries: Vec<String> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(image.initrd.starts_with(cache.path().join(&entries[0])));
    // Found, not built again.
    let again = guest_image::build_in(cache.path()).unwrap();
    assert_eq!(&again, image);
}
