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

/// Rust source without its comments (line comments, doc comments and block comments), so a
/// check of the code does not trip over prose that names what it forbids. String literals are
/// kept as they are.
fn code_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut prev = ' ';
                for n in chars.by_ref() {
                    if prev == '*' && n == '/' {
                        break;
                    }
                    if n == '\n' {
                        out.push('\n');
                    }
                    prev = n;
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// What in `code` creates or runs a process without going through `sys`: a use or mention of
/// the standard library's or tokio's process builder (also inside a `use std::process::{…}`
/// group), and `.spawn()`, `.output()` or `.status()` in a statement that names it.
fn process_uses(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let named = [
        "std::process::Command",
        "process::Command",
        "tokio::process",
        "Command::new(",
    ];
    for n in named {
        if code.contains(n) {
            found.push(format!("names `{n}`"));
        }
    }
    let mut rest = code;
    while let Some(i) = rest.find("process::{") {
        let group = &rest[i..];
        let group = &group[..group.find('}').unwrap_or(group.len())];
        if group
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .any(|w| w == "Command")
        {
            found.push("imports `Command` from `std::process`".to_string());
        }
        rest = &rest[i + 1..];
    }
    for statement in code.split([';', '{', '}']) {
        let names_command = statement
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .any(|w| w == "Command");
        for call in [".spawn()", ".output()", ".status()"] {
            if names_command && statement.contains(call) {
                found.push(format!("calls `{call}` on a `Command`"));
            }
        }
    }
    found
}

/// Only crates/sys creates or spawns processes: everything else runs programs through
/// `sys::cmd` (`run`, `Program`, `Child`). The check looks at the code, not the comments: any
/// naming of `std::process::Command` (or an import of it), of `tokio::process`, a call of
/// `Command::new(`, or `.spawn()`/`.output()`/`.status()` in a statement about a `Command`
/// fails. clippy's `disallowed-methods` (clippy.toml) backs it with types: outside `sys` the
/// standard library's `Command::new`, `spawn`, `output` and `status` are refused.
///
/// xtask is exempt: it is the build tool, whose job is running cargo, the test gates and the
/// package manager, and it is not part of guestnet.
#[test]
fn only_sys_spawns_processes() {
    let mut problems = Vec::new();
    for f in all_rust_files() {
        let s = f.to_string_lossy();
        if s.contains("/crates/sys/") || s.contains("/xtask/") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        for p in process_uses(&code_of(&text)) {
            problems.push(format!("{}: {p}; go through sys::cmd", f.display()));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `sys` hands out no raw process builder: no public function of it returns a `Command`, so a
/// caller cannot get one to spawn without naming it (which [`only_sys_spawns_processes`]
/// catches).
#[test]
fn sys_hands_out_no_command() {
    for f in all_rust_files() {
        if !f.to_string_lossy().contains("/crates/sys/src/") {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(&f).unwrap());
        for item in code.split("pub fn ").skip(1) {
            let signature = &item[..item.find('{').unwrap_or(item.len())];
            let returns = signature.split("->").nth(1).unwrap_or("");
            assert!(
                !returns
                    .split(|c: char| !c.is_alphanumeric() && c != '_')
                    .any(|w| w == "Command"),
                "{}: `pub fn {}` hands out a Command; return a sys::cmd::Program",
                f.display(),
                signature.trim()
            );
        }
    }
}

#[test]
fn the_process_check_sees_code_and_not_comments() {
    let code = code_of(
        "// std::process::Command in a comment\n/// Command::new( in docs\nlet s = \"// not a comment\";",
    );
    assert!(process_uses(&code).is_empty(), "{code}");
    assert!(code.contains("\"// not a comment\""));
    for bad in [
        "use std::process::{Child, Command, Stdio};",
        "fn f(mut c: std::process::Command) {}",
        "let c = Command::new(\"ip\");",
        "let o = tokio::process::Command::new(\"ip\").output().await;",
        "let s = make::<Command>().status()",
    ] {
        assert!(!process_uses(&code_of(bad)).is_empty(), "{bad}");
    }
    assert!(
        process_uses("let s = resp.status(); let c = Program::new(\"ip\").spawn();").is_empty()
    );
}

/// The parts of the server that name the API edge: `crate::cmd` or `crate::http`, written
/// out or inside a `crate::{…}` group (comments aside).
fn api_edge_uses(text: &str) -> Vec<String> {
    let code = code_of(text);
    let mut found = Vec::new();
    for edge in ["crate::cmd", "crate::http"] {
        if code.contains(edge) {
            found.push(edge.to_string());
        }
    }
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::{") {
        let group = &rest[at + "crate::{".len()..];
        let end = group.find('}').unwrap_or(group.len());
        for name in group[..end].split([',', ' ', '\n']).map(str::trim) {
            let head = name.split("::").next().unwrap_or("");
            if head == "cmd" || head == "http" {
                found.push(format!("crate::{{{head}}}"));
            }
        }
        rest = &group[end..];
    }
    found
}

/// The job runner, the host registry and the response layer sit below the API edge: they
/// never name the handlers (`crate::cmd`) or the HTTP layer (`crate::http`), so that a change
/// to a listing cannot break a job's completion. They reach the rest through the store, the
/// domain and (the runner) the response layer.
#[test]
fn the_layers_below_the_api_edge_do_not_import_it() {
    let src = root().join("crates").join("mgmt").join("src");
    let mut files = Vec::new();
    for name in ["runner", "hosts", "resp"] {
        let file = src.join(format!("{name}.rs"));
        assert!(file.exists(), "{} is missing", file.display());
        files.push(file);
        rust_files(&src.join(name), &mut files);
    }
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let found = api_edge_uses(&text);
        assert!(
            found.is_empty(),
            "{}: the runner, the host registry and the response layer must not use the API edge ({})",
            f.display(),
            found.join(", ")
        );
    }
}

/// The check above sees the edge however it is written, and not in comments.
#[test]
fn the_api_edge_check_sees_groups_and_not_comments() {
    assert!(api_edge_uses("// crate::cmd in a comment\nuse crate::resp;").is_empty());
    for bad in [
        "use crate::cmd::table;",
        "let r = crate::http::router(app);",
        "use crate::{app::App, cmd};",
        "use crate::{\n    http::router,\n    resp,\n};",
    ] {
        assert!(!api_edge_uses(bad).is_empty(), "{bad}");
    }
}

/// Places that name sqlx outside the store crate: its dependency in a crate's Cargo.toml, or
/// the word in a crate's source.
fn sqlx_outside_the_store() -> Vec<String> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    dirs.push(root().join("xtask"));
    sqlx_outside(dirs, &root().join("xtask").join("src").join("tidy.rs"))
}

/// Places in the crates at `dirs` (the one called `store` aside) that name sqlx: a line of a
/// manifest that is not a comment, or a line of Rust source (`this_file` aside, which must
/// name what it looks for).
fn sqlx_outside(mut dirs: Vec<PathBuf>, this_file: &Path) -> Vec<String> {
    let mut found = Vec::new();
    dirs.sort();
    for dir in dirs {
        if dir.file_name().is_some_and(|n| n == "store") {
            continue;
        }
        let manifest = dir.join("Cargo.toml");
        if let Ok(text) = std::fs::read_to_string(&manifest) {
            if let Some(i) = text
                .lines()
                .position(|l| !l.trim_start().starts_with('#') && l.contains("sqlx"))
            {
                found.push(format!("{}:{}: depends on sqlx", manifest.display(), i + 1));
            }
        }
        let mut files = Vec::new();
        rust_files(&dir, &mut files);
        for f in files {
            if f == this_file {
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

/// The check finds sqlx in a manifest in whatever form it is declared, and in source, but
/// not in the store.
#[test]
fn sqlx_check_finds_a_planted_use() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let make = |name: &str, manifest: &str, source: &str| {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(dir.join("src")).expect("a crate directory");
        std::fs::write(dir.join("Cargo.toml"), manifest).expect("a manifest");
        std::fs::write(dir.join("src").join("lib.rs"), source).expect("a source file");
        dir
    };
    let dirs = vec![
        make(
            "store",
            "[dependencies]\nsqlx = \"0.8\"\n",
            "use sqlx::Row;\n",
        ),
        make(
            "table",
            "[dependencies.sqlx]\nversion = \"0.8\"\n",
            "//! Clean.\n",
        ),
        make(
            "source",
            "# sqlx is the store's\n",
            "fn f() {\n    sqlx::query(\"\");\n}\n",
        ),
        make("clean", "[dependencies]\nserde = \"1\"\n", "//! Clean.\n"),
    ];
    let found = sqlx_outside(dirs, Path::new("/nonexistent"));
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].contains("source") && found[0].ends_with("lib.rs:2: names sqlx"));
    assert!(found[1].contains("table") && found[1].ends_with("Cargo.toml:1: depends on sqlx"));
}

/// Only the store speaks SQL: no other crate depends on sqlx or names it.
#[test]
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
