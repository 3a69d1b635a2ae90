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

/// The job runner and the host registry sit below the API edge: they never name the handlers
/// (`crate::cmd`) or the HTTP layer (`crate::http`), so that a change to a listing cannot break
/// a job's completion. They reach the rest through the store, the domain and the response
/// layer.
#[test]
fn runner_and_host_registry_do_not_import_the_api_edge() {
    let src = root().join("crates").join("mgmt").join("src");
    let mut files = Vec::new();
    for name in ["runner", "hosts"] {
        let file = src.join(format!("{name}.rs"));
        assert!(file.exists(), "{} is missing", file.display());
        files.push(file);
        rust_files(&src.join(name), &mut files);
    }
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, line) in text.lines().enumerate() {
            for edge in ["crate::cmd", "crate::http"] {
                assert!(
                    !line.contains(edge),
                    "{}:{}: the runner and the host registry must not use the API edge ({edge})",
                    f.display(),
                    i + 1
                );
            }
        }
    }
}

/// Places that name sqlx outside the store crate: its dependency in a crate's Cargo.toml, or
/// the word in a crate's source.
fn sqlx_outside_the_store() -> Vec<String> {
    let mut found = Vec::new();
    let crates = root().join("crates");
    let Ok(entries) = std::fs::read_dir(&crates) else {
        return found;
    };
    let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    dirs.push(root().join("xtask"));
    dirs.sort();
    for dir in dirs {
        if dir.file_name().is_some_and(|n| n == "store") {
            continue;
        }
        let manifest = dir.join("Cargo.toml");
        if let Ok(text) = std::fs::read_to_string(&manifest) {
            if text.lines().any(|l| l.trim_start().starts_with("sqlx")) {
                found.push(format!("{}: depends on sqlx", manifest.display()));
            }
        }
        let mut files = Vec::new();
        rust_files(&dir, &mut files);
        for f in files {
            if f.ends_with("tidy.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            if let Some(i) = text.lines().position(|l| l.contains("sqlx")) {
                found.push(format!("{}:{}: names sqlx", f.display(), i + 1));
            }
        }
    }
    found
}

/// Only the store speaks SQL: no other crate depends on sqlx or names it.
#[test]
#[ignore = "the handlers still hold statements until every part of the store's move has landed"]
fn sqlx_only_in_the_store() {
    let found = sqlx_outside_the_store();
    assert!(
        found.is_empty(),
        "sqlx outside the store crate:\n{}",
        found.join("\n")
    );
}

/// The check above finds what it looks for (so that it cannot pass by looking nowhere).
#[test]
fn sqlx_check_reads_the_crates() {
    let crates = root().join("crates");
    assert!(crates.join("store").join("Cargo.toml").exists());
    let mut files = Vec::new();
    rust_files(&crates.join("store"), &mut files);
    assert!(
        files.iter().any(|f| std::fs::read_to_string(f)
            .unwrap_or_default()
            .contains("sqlx")),
        "the store crate names sqlx, and the check reads the same files"
    );
}
