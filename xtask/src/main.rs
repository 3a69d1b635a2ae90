//! Project automation: `cargo xtask serve` (the main job), `test` (the one test command),
//! `compat`, `bless`, `demo`.
//!
//! `test` installs what the tests need when it runs as root (Debian packages), checks
//! formatting and lints, prepares what the client compatibility suite needs (a Python venv with
//! the pinned clients, a PostgreSQL server), runs every test, and runs the tests that need root
//! and network namespaces whenever it is root. It fails when any test is skipped.

#![expect(
    clippy::disallowed_methods,
    reason = "running tools is what xtask is for"
)]

use anyhow::{bail, Context, Result};
use std::process::Command;
use std::time::Instant;

mod compat;
mod package;
#[cfg(test)]
mod tidy;

/// Debian packages the tests use, with a program each provides (checked before installing).
const PACKAGES: &[(&str, &str)] = &[
    ("nftables", "nft"),
    ("haproxy", "haproxy"),
    ("iproute2", "ip"),
    ("curl", "curl"),
    ("python3-venv", ""),
    ("iputils-ping", "ping"),
    ("util-linux", "nsenter"),
    ("procps", "sysctl"),
    ("socat", "socat"),
    ("postgresql-client", "psql"),
    // initdb and pg_ctl (under /usr/lib/postgresql/<version>/bin): the fault tests start their
    // own clusters.
    ("postgresql", ""),
    // The package test: dpkg-deb builds and reads it, objdump reads the binary's glibc needs,
    // systemd-analyze checks its units.
    ("dpkg", "dpkg-deb"),
    ("binutils", "objdump"),
    ("systemd", "systemd-analyze"),
    // The guests tests: a private libvirt daemon (with its QEMU driver) boots guests under QEMU,
    // gives a disk guest its overlay, and dnsmasq serves their leases.
    ("libvirt-daemon", "libvirtd"),
    ("libvirt-clients", "virsh"),
    ("qemu-system-x86", "qemu-system-x86_64"),
    ("qemu-utils", "qemu-img"),
    // Debian installs the QEMU driver of libvirt only as a recommendation.
    ("libvirt-daemon-driver-qemu", ""),
    // The router's DHCP and DNS service, and the guests that ask it in the tests.
    ("dnsmasq-base", "dnsmasq"),
    ("busybox", "busybox"),
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => test(args.iter().any(|a| a == "--unprivileged")),
        Some("bless") => bless(),
        Some("install") => install(),
        Some("compat") => compat_suite(&args[1..]),
        Some("demo") => demo(&args[1..]),
        Some("serve") => serve(&args[1..]),
        Some("deb") => deb(),
        _ => {
            eprintln!(
                "usage: cargo xtask test [--unprivileged]   run every test (as root: also the namespace tests)\n       \
                 cargo xtask bless                  rewrite rendering snapshots and API goldens after review\n       \
                 cargo xtask install                install the Debian packages the tests need (root)\n       \
                 cargo xtask compat [PYTEST ARGS]   run only the client compatibility suite\n       \
                 cargo xtask serve [ARGS]           install what the routers need, then run `guestnet serve` (the main job)\n       \
                 cargo xtask deb                    build the Debian package into target/deb/\n       \
                 cargo xtask demo [ARGS]            install what the router needs, then run `guestnet demo` (root)"
            );
            bail!("unknown or missing subcommand")
        }
    }
}

/// Builds the release binary and the Debian package from it, into `target/deb/`.
fn deb() -> Result<()> {
    run(cargo().args(["build", "--release", "-p", "guestnet", "--bin", "guestnet"]))?;
    let ws = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask lives in the workspace")?
        .to_path_buf();
    let out = ws.join("target/deb");
    std::fs::create_dir_all(&out)?;
    let deb = package::build(
        &ws,
        &ws.join("target/release/guestnet"),
        env!("CARGO_PKG_VERSION"),
        &out,
    )?;
    eprintln!("xtask: built {}", deb.display());
    Ok(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false)
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn path_with_sbin() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    let mut parts: Vec<&str> = path.split(':').filter(|p| !p.is_empty()).collect();
    for extra in ["/usr/local/sbin", "/usr/sbin", "/sbin"] {
        if !parts.contains(&extra) {
            parts.push(extra);
        }
    }
    parts.join(":")
}

fn has_program(name: &str) -> bool {
    path_with_sbin()
        .split(':')
        .any(|d| std::path::Path::new(d).join(name).is_file())
}

fn install() -> Result<()> {
    if !is_root() {
        bail!("installing packages needs root");
    }
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(pkg, prog)| {
            if prog.is_empty() {
                !Command::new("dpkg")
                    .args(["-s", pkg])
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(false)
            } else {
                !has_program(prog)
            }
        })
        .map(|(pkg, _)| *pkg)
        .collect();
    if missing.is_empty() {
        eprintln!("xtask: test packages already installed");
        return Ok(());
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    run(Command::new("apt-get").arg("update").arg("-qq"))?;
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    if missing.contains(&"qemu-system-x86") {
        if let Some(matching) = qemu_utils_to_match()? {
            // qemu-utils newer than the release's QEMU (from backports) breaks its
            // qemu-system-common: take both from the same release.
            eprintln!("xtask: installing {matching} to match qemu-system-x86");
            install.arg("--allow-downgrades").arg(matching);
        }
    }
    run(&mut install)
}

/// `qemu-utils=<version>` when the installed qemu-utils is not the version of the
/// qemu-system-x86 that apt would install, `None` when it is (or none is installed).
fn qemu_utils_to_match() -> Result<Option<String>> {
    let candidate = |pkg: &str, field: &str| -> Result<Option<String>> {
        let out = Command::new("apt-cache").args(["policy", pkg]).output()?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.trim().strip_prefix(field).map(|v| v.trim().to_string()))
            .filter(|v| v != "(none)"))
    };
    let Some(system) = candidate("qemu-system-x86", "Candidate:")? else {
        return Ok(None);
    };
    Ok(match candidate("qemu-utils", "Installed:")? {
        Some(utils) if utils != system => Some(format!("qemu-utils={system}")),
        _ => None,
    })
}

fn test(unprivileged: bool) -> Result<()> {
    let started = Instant::now();
    let root = is_root();
    if !root && !unprivileged {
        bail!(
            "the namespace tests need root: run `cargo xtask test` as root \
             (or `cargo xtask test --unprivileged` to run only the tests that need nothing, knowing the rest are skipped)"
        );
    }
    if root {
        install()?;
    }
    let path = path_with_sbin();
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The release build, before the tests: one of them races updates against it (debug
    // assertions off), and building it here keeps that build out of the test run.
    run(cargo().args(["build", "--release", "-p", "guestnet", "--bin", "guestnet"]))?;
    // Dropping `postgres` stops the private cluster, if one was started, also on failure.
    let (python, postgres) = compat_prerequisites()?;
    let nextest = has_nextest();
    let ignored = if root { "all" } else { "default" };
    if nextest {
        // One run of every test; as root the namespace tests (marked ignored so a plain
        // `cargo test` passes unprivileged) run too, and nothing is skipped.
        run(cargo()
            .args([
                "nextest",
                "run",
                "--workspace",
                "--no-fail-fast",
                "--run-ignored",
                ignored,
            ])
            .args(["--final-status-level", "slow", "--hide-progress-bar"])
            .env("PATH", &path)
            .env(ENV_PYTHON, &python)
            .env(ENV_POSTGRES, &postgres.url))?;
    } else {
        let mut c = cargo();
        c.args(["test", "--workspace", "--no-fail-fast", "--"]);
        if root {
            c.arg("--include-ignored");
        }
        run(c
            .env("PATH", &path)
            .env(ENV_PYTHON, &python)
            .env(ENV_POSTGRES, &postgres.url))?;
    }
    drop(postgres);
    if !root {
        eprintln!("xtask: NOTE the namespace tests were skipped (not root)");
    }
    eprintln!("xtask: test command finished in {:.0?}", started.elapsed());
    Ok(())
}

/// The environment variable naming the venv python the compatibility suite runs pytest with.
const ENV_PYTHON: &str = "GUESTNET_TEST_PYTHON";
/// The environment variable with the URL of a PostgreSQL server the suite may create databases on.
const ENV_POSTGRES: &str = "GUESTNET_TEST_POSTGRES_URL";

fn has_nextest() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The venv python and the PostgreSQL server for the compatibility suite.
fn compat_prerequisites() -> Result<(std::path::PathBuf, compat::Postgres)> {
    let python = compat::ensure_venv()?;
    let postgres = compat::ensure_postgres()?;
    eprintln!(
        "xtask: compatibility suite: {ENV_PYTHON}={} {ENV_POSTGRES}={}{}",
        python.display(),
        postgres.url,
        if postgres.is_private() {
            " (private cluster, stopped at the end)"
        } else {
            ""
        }
    );
    Ok((python, postgres))
}

/// Only the client compatibility suite (no root needed: the server runs its dry-run driver);
/// `pytest_args` (e.g. `-k firewall`) are handed to pytest.
fn compat_suite(pytest_args: &[String]) -> Result<()> {
    if is_root() {
        install()?;
    }
    let (python, postgres) = compat_prerequisites()?;
    let mut c = cargo();
    if has_nextest() {
        c.args([
            "nextest",
            "run",
            "-p",
            "guestnet",
            "--test",
            "compat",
            "--no-fail-fast",
            "--success-output",
            "final",
        ]);
    } else {
        c.args([
            "test",
            "-p",
            "guestnet",
            "--test",
            "compat",
            "--no-fail-fast",
            "--",
            "--nocapture",
        ]);
    }
    if !pytest_args.is_empty() {
        // One argument a line, so that `-k "a or b"` stays one argument.
        c.env("GUESTNET_COMPAT_PYTEST_ARGS", pytest_args.join("\n"));
    }
    run(c
        .env("PATH", path_with_sbin())
        .env(ENV_PYTHON, &python)
        .env(ENV_POSTGRES, &postgres.url))
}

/// The main job on a fresh machine: what the router needs, then the demo, in the foreground.
fn demo(args: &[String]) -> Result<()> {
    if !is_root() {
        bail!("the demo builds network namespaces: run it as root");
    }
    install()?;
    run(cargo()
        .args([
            "run",
            "--release",
            "--quiet",
            "-p",
            "guestnet",
            "--",
            "demo",
        ])
        .args(args)
        .env("PATH", path_with_sbin()))
}

/// The main job: what the routers need, then the management server, in the foreground. As
/// root the lab driver can run; otherwise the server picks dry-run and says so.
fn serve(args: &[String]) -> Result<()> {
    if is_root() {
        install()?;
    } else {
        eprintln!("xtask: not root: the server will use the dry-run driver (nothing enforced)");
    }
    run(cargo()
        .args([
            "run",
            "--release",
            "--quiet",
            "-p",
            "guestnet",
            "--",
            "serve",
        ])
        .args(args)
        .env("PATH", path_with_sbin()))
}

fn bless() -> Result<()> {
    run(cargo()
        .args(["test", "-p", "render", "--lib", "snapshot"])
        .env("GUESTNET_BLESS", "1"))?;
    // The management server's golden transcripts (crates/mgmt/tests/golden), then a normal
    // run that checks the rewritten files cover the whole catalogue.
    // With the PostgreSQL run (ignored by default for its cost), which must agree.
    run(cargo()
        .args([
            "test",
            "-p",
            "mgmt",
            "--lib",
            "golden_tests",
            "--",
            "--include-ignored",
        ])
        .env("GUESTNET_BLESS", "1"))?;
    run(cargo().args(["test", "-p", "mgmt", "--lib", "golden_tests"]))
}
