//! `guestnet lab …`: build, use, inspect and remove test hosts made of network namespaces.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use lab::{Lab, LabError, LabSpec, Target};

/// The lab subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum LabCommand {
    /// Build a lab: a switch, an outside host, one router per guest network and the VMs.
    Up {
        #[command(flatten)]
        dir: DataDir,
        /// A JSON lab spec; the default is router `net1` on 10.1.1.0/24 with VMs `web1`, `web2`.
        #[arg(long, value_name = "FILE.json")]
        spec: Option<PathBuf>,
    },
    /// Run a command in the foreground inside a host's namespace; exits with its status.
    Exec {
        #[command(flatten)]
        dir: DataDir,
        /// The host: `outside`, `router:NAME` or `vm:NAME` (`vm:NAME@ACCOUNT` when VMs of several
        /// accounts share the name; `vm:ID` with the 32 hex digits of the VM's id).
        target: String,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<OsString>,
    },
    /// Remove the lab: end its processes, delete its namespaces and its state (idempotent).
    Down {
        #[command(flatten)]
        dir: DataDir,
    },
    /// Show the lab's namespaces and whether they exist.
    Status {
        #[command(flatten)]
        dir: DataDir,
    },
}

/// The `--data-dir` option shared by the subcommands.
#[derive(Debug, clap::Args)]
pub(crate) struct DataDir {
    /// The data directory the lab belongs to.
    #[arg(
        long = "data-dir",
        value_name = "DIR",
        default_value = "./guestnet-data"
    )]
    path: PathBuf,
}

/// Runs one lab subcommand.
pub(crate) fn run(c: LabCommand) -> anyhow::Result<ExitCode> {
    match c {
        LabCommand::Up { dir, spec } => up(&dir.path, spec.as_deref()),
        LabCommand::Exec {
            dir,
            target,
            command,
        } => exec(&dir.path, &target, &command),
        LabCommand::Down { dir } => Ok(down(&dir.path)),
        LabCommand::Status { dir } => status(&dir.path),
    }
}

fn up(data_dir: &Path, spec: Option<&Path>) -> anyhow::Result<ExitCode> {
    let spec = match spec {
        Some(path) => LabSpec::from_json_file(path)?,
        None => LabSpec::default_demo(),
    };
    let lab = Lab::up(data_dir, &spec)?;
    let ns = lab.namespaces();
    let public: Vec<String> = lab::OUTSIDE_PUBLIC_ADDRESSES
        .iter()
        .map(|a| format!("{a}/{}", lab::PUBLIC_PREFIX_LEN))
        .collect();
    let internet: Vec<String> = lab::OUTSIDE_INTERNET_ADDRESSES
        .iter()
        .map(ToString::to_string)
        .collect();
    eprintln!(
        "lab {} is up (data dir {})",
        lab.id(),
        lab.data_dir().display()
    );
    eprintln!(
        "  switch  {}: bridge brpub (public) and brg<N> per guest network",
        ns.switch
    );
    eprintln!(
        "  outside {}: eth0 on brpub with {}; internet addresses {}",
        ns.outside,
        public.join(", "),
        internet.join(", ")
    );
    for (i, net) in lab.spec().networks.iter().enumerate() {
        eprintln!(
            "  router:{} {}: pub0 on brpub, guest0 on brg{i} ({}, gateway {}); no addresses yet",
            net.router,
            lab.router_netns(&net.router)?,
            net.guest_cidr,
            net.gateway
        );
        for vm in &net.vms {
            eprintln!(
                "    vm:{} {}: eth0 on brg{i} with {}/{}, default via {}",
                vm.name,
                lab.vm_netns(&vm.name)?,
                vm.ip,
                net.guest_cidr.prefix_len(),
                net.gateway
            );
        }
    }
    eprintln!(
        "run commands with `guestnet lab exec --data-dir {} TARGET -- COMMAND…`",
        data_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Replaces this process with `nsenter --net=… -- COMMAND…`, so stdio, the exit status and
/// signals belong to the command alone; returns only when that cannot be done.
fn exec(data_dir: &Path, target: &str, command: &[OsString]) -> anyhow::Result<ExitCode> {
    let target: Target = match target.parse() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("guestnet: error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let lab = Lab::open(data_dir)?;
    let cmd = match lab.command(&target, command) {
        Ok(cmd) => cmd,
        Err(
            e @ (LabError::UnknownRouter { .. }
            | LabError::UnknownVm { .. }
            | LabError::AmbiguousVm { .. }),
        ) => {
            eprintln!("guestnet: error: {e}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    run_forwarding_signals(cmd).with_context(|| format!("cannot run the command in {target}"))
}

/// Runs `cmd` in the foreground with this process's standard streams, passes on every signal
/// another process sends us (a terminal's Ctrl-C already reaches the whole foreground process
/// group, so kernel-generated signals are not sent twice), and returns the command's status:
/// its exit code, or 128 + the signal that ended it.
fn run_forwarding_signals(mut cmd: sys::cmd::Program) -> anyhow::Result<ExitCode> {
    use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
    use signal_hook::iterator::exfiltrator::origin::WithOrigin;
    use signal_hook::iterator::SignalsInfo;
    use std::os::unix::process::ExitStatusExt;

    let mut signals =
        SignalsInfo::<WithOrigin>::new([SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2])?;
    let handle = signals.handle();
    let mut child = cmd.spawn()?;
    let pid = child.pid();
    let forwarder = std::thread::spawn(move || {
        for origin in signals.forever() {
            let from_kernel =
                matches!(origin.cause, signal_hook::low_level::siginfo::Cause::Kernel);
            if from_kernel {
                continue;
            }
            if let Ok(sig) = nix::sys::signal::Signal::try_from(origin.signal) {
                let _ = nix::sys::signal::kill(pid, sig);
            }
        }
    });
    let status = child.wait()?;
    handle.close();
    let _ = forwarder.join();
    let code = match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    };
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(255)))
}

fn down(data_dir: &Path) -> ExitCode {
    match lab::down(data_dir) {
        Ok(report) if report.is_empty() => {
            eprintln!("lab {}: nothing to remove", report.id);
            ExitCode::SUCCESS
        }
        Ok(report) => {
            for (ns, pids) in &report.processes_ended {
                eprintln!("lab {}: ended processes {pids:?} in {ns}", report.id);
            }
            for ns in &report.namespaces_removed {
                eprintln!("lab {}: deleted namespace {ns}", report.id);
            }
            if report.state_removed {
                eprintln!("lab {}: removed {}", report.id, lab::STATE_FILE);
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("guestnet: error: {}", lab::chain(e));
            }
            ExitCode::FAILURE
        }
    }
}

fn status(data_dir: &Path) -> anyhow::Result<ExitCode> {
    let id = lab::id_for(data_dir)?;
    let present = lab::present_namespaces(&id)?;
    let lab = match Lab::open(data_dir) {
        Ok(lab) => lab,
        Err(LabError::NotUp { .. }) => {
            println!("no lab for data directory {} (id {id})", data_dir.display());
            for ns in &present {
                println!("  leftover namespace {ns}: run `guestnet lab down`");
            }
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };
    let ns = lab.namespaces();
    let mut rows = vec![
        ("switch".to_string(), ns.switch.clone()),
        ("outside".to_string(), ns.outside.clone()),
    ];
    rows.extend(
        ns.routers
            .iter()
            .map(|(name, n)| (format!("router:{name}"), n.clone())),
    );
    // A server's VM shows as `vm:NAME@ACCOUNT`, which finds it whatever other accounts call
    // their VMs.
    let labels: std::collections::BTreeMap<&str, String> = lab
        .spec()
        .networks
        .iter()
        .flat_map(|n| &n.vms)
        .filter_map(|v| {
            let l = v.label.as_ref()?;
            Some((v.name.as_str(), format!("vm:{}@{}", l.name, l.account)))
        })
        .collect();
    rows.extend(ns.vms.iter().map(|(key, n)| {
        let what = labels
            .get(key.as_str())
            .cloned()
            .unwrap_or_else(|| format!("vm:{key}"));
        (what, n.clone())
    }));
    println!("lab {} (data dir {})", lab.id(), lab.data_dir().display());
    let mut complete = true;
    for (what, n) in rows {
        let state = if present.contains(&n) {
            "present"
        } else {
            complete = false;
            "missing"
        };
        println!("  {what:<16} {n:<32} {state}");
    }
    Ok(if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
