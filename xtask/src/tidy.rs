//! House rules enforced by `cargo test`.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("invariant: xtask lives in the workspace")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "target" || n == ".git") {
                continue;
            }
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn all_rust_files() -> Vec<PathBuf> {
    let mut v = Vec::new();
    rust_files(&root().join("crates"), &mut v);
    rust_files(&root().join("xtask"), &mut v);
    v
}

/// The pure crates never depend on anything that does I/O, runs processes or keeps time.
#[test]
fn pure_crates_have_no_effectful_dependencies() {
    let forbidden = [
        "tokio",
        "sys",
        "vrouterd",
        "lab",
        "axum",
        "hyper",
        "nix",
        "libc",
        "sqlx",
        "store",
        "uuid",
        "getrandom",
        "rand",
    ];
    for krate in ["router-config", "render", "api-types", "domain"] {
        let manifest =
            std::fs::read_to_string(root().join("crates").join(krate).join("Cargo.toml")).unwrap();
        let deps = manifest.split("[dependencies]").nth(1).unwrap_or("");
        let deps = deps.split("\n[").next().unwrap_or("");
        for line in deps.lines() {
            let name = line.split(['=', '.']).next().unwrap_or("").trim();
            assert!(
                !forbidden.contains(&name),
                "{krate} must stay pure but depends on {name}"
            );
        }
    }
}

/// The domain crate decides and never acts: no files, processes, sockets, clock or randomness
/// in its source (times and new ids are its callers' parameters).
#[test]
fn domain_source_does_no_io_keeps_no_time_and_draws_no_random_numbers() {
    let forbidden = [
        "std::fs",
        "std::process",
        "std::net::Tcp",
        "std::net::Udp",
        "SystemTime::now",
        "Instant::now",
        "new_v4",
        "getrandom",
        "rand::",
    ];
    let mut files = Vec::new();
    rust_files(&root().join("crates").join("domain"), &mut files);
    assert!(!files.is_empty(), "the domain crate has no source");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, line) in text.lines().enumerate() {
            for word in forbidden {
                assert!(
                    !line.contains(word),
                    "{}:{}: the domain crate must stay pure but uses {word}",
                    f.display(),
                    i + 1
                );
            }
        }
    }
}

/// Every library opens with a `//!` saying what it owns.
#[test]
fn every_lib_rs_opens_with_crate_docs() {
    for f in all_rust_files() {
        if f.file_name()
            .is_some_and(|n| n == "lib.rs" || n == "main.rs")
            && f.to_string_lossy().contains("/src/")
        {
            let text = std::fs::read_to_string(&f).unwrap();
            assert!(
                text.trim_start().starts_with("//!"),
                "{} must open with //! docs",
                f.display()
            );
        }
    }
}

/// Tests are ignored only with the reason the test command understands.
#[test]
fn ignored_tests_carry_the_root_reason() {
    let marker = "#[ignore = \"needs root and network namespaces: run by cargo xtask test\"]";
    for f in all_rust_files() {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, line) in text.lines().enumerate() {
            let l = line.trim();
            if l.starts_with("#[ignore") && !f.ends_with("tidy.rs") {
                assert_eq!(
                    l,
                    marker,
                    "{}:{}: ignore only with the root reason",
                    f.display(),
                    i + 1
                );
            }
        }
    }
}

/// Only crates/sys creates processes directly (and xtask, whose job is to run things).
#[test]
fn only_sys_spawns_commands() {
    for f in all_rust_files() {
        let s = f.to_string_lossy();
        if s.contains("/crates/sys/") || s.contains("/xtask/") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            !text.contains("Command::new("),
            "{} spawns a command; go through sys",
            f.display()
        );
    }
}
