//! Running programs: the one place in the project that creates and spawns processes.
//!
//! [`run`] runs a program to completion and returns its output when it succeeds. For anything
//! else, [`Program`] describes a program to start (arguments, environment, working directory,
//! what its standard streams are connected to, optionally a network namespace to run it in);
//! [`Program::output`] and [`Program::status`] run it and wait, [`Program::spawn`] starts a
//! long-lived [`Child`] that the caller signals, waits for or kills.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::Path;
use std::process::Command;

pub use nix::sys::signal::Signal;

/// Unblocks every signal of the calling thread, so that the threads it starts afterwards and the
/// programs they run begin with no signal blocked.
///
/// A blocked signal mask is inherited across `fork` and `exec`: a process started by a
/// supervisor or a harness that blocks SIGHUP would hand that mask to every program it starts,
/// and a dnsmasq started so never re-reads its leases on SIGHUP. Call it first thing in `main`,
/// before any thread exists.
///
/// # Errors
/// What `pthread_sigmask` returned.
pub fn unblock_all_signals() -> Result<(), nix::errno::Errno> {
    nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    )
}
use nix::unistd::Pid;

pub use std::process::{ChildStderr, ChildStdin, ChildStdout, ExitStatus, Output, Stdio};

/// A command that could not be run or that failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The program could not be started.
    #[error("cannot run `{command}`")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The program ran and exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it wrote to standard error, trimmed.
        stderr: String,
    },
    /// Waiting for, or signalling, a started program failed.
    #[error("cannot {action} `{command}`")]
    Child {
        /// The command line.
        command: String,
        /// What was being done: `wait for`, `kill`.
        action: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A program to run: its arguments, environment, working directory and standard streams.
///
/// Unless set, the standard streams are inherited (for [`Program::spawn`] and
/// [`Program::status`]) or, for [`Program::output`], standard output and error are captured.
#[derive(Debug)]
pub struct Program {
    command: Command,
    line: String,
}

impl Program {
    /// `program`, found on `PATH` unless it names a path.
    #[expect(
        clippy::disallowed_methods,
        reason = "this is the sanctioned place to create commands"
    )]
    pub fn new(program: impl AsRef<OsStr>) -> Program {
        let program = program.as_ref();
        Program {
            command: Command::new(program),
            line: program.to_string_lossy().into_owned(),
        }
    }

    /// `program`, run inside the named network namespace `namespace` through
    /// `nsenter --net=/run/netns/<namespace> --`. `nsenter` enters the namespace and then
    /// replaces itself with `program`, so the child's pid stays the program's pid.
    pub fn in_netns(namespace: &str, program: impl AsRef<OsStr>) -> Program {
        let mut net = OsString::from("--net=");
        net.push(crate::netns::path(namespace));
        let mut p = Program::new("nsenter");
        p.arg(net).arg("--").arg(program);
        p
    }

    /// Adds one argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Program {
        let arg = arg.as_ref();
        self.line.push(' ');
        self.line.push_str(&arg.to_string_lossy());
        self.command.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Program
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self.arg(a);
        }
        self
    }

    /// Sets environment variable `key` for the program.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Program {
        self.command.env(key, value);
        self
    }

    /// Removes environment variable `key` from what the program inherits.
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Program {
        self.command.env_remove(key);
        self
    }

    /// Runs the program in directory `dir`.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Program {
        self.command.current_dir(dir);
        self
    }

    /// Connects the program's standard input.
    pub fn stdin(&mut self, s: impl Into<Stdio>) -> &mut Program {
        self.command.stdin(s);
        self
    }

    /// Connects the program's standard output.
    pub fn stdout(&mut self, s: impl Into<Stdio>) -> &mut Program {
        self.command.stdout(s);
        self
    }

    /// Connects the program's standard error.
    pub fn stderr(&mut self, s: impl Into<Stdio>) -> &mut Program {
        self.command.stderr(s);
        self
    }

    /// The command line, for messages.
    pub fn line(&self) -> &str {
        &self.line
    }

    fn spawn_error(&self, source: std::io::Error) -> CommandError {
        CommandError::Spawn {
            command: self.line.clone(),
            source,
        }
    }

    /// Runs the program, waits for it and returns what it wrote, whatever its exit status
    /// (check `output.status`).
    ///
    /// # Errors
    /// [`CommandError::Spawn`] if it cannot be started or waited for.
    #[expect(
        clippy::disallowed_methods,
        reason = "this is the sanctioned place to run commands"
    )]
    pub fn output(&mut self) -> Result<Output, CommandError> {
        self.command.output().map_err(|e| self.spawn_error(e))
    }

    /// Runs the program, waits for it and returns its exit status.
    ///
    /// # Errors
    /// [`CommandError::Spawn`] if it cannot be started or waited for.
    #[expect(
        clippy::disallowed_methods,
        reason = "this is the sanctioned place to run commands"
    )]
    pub fn status(&mut self) -> Result<ExitStatus, CommandError> {
        self.command.status().map_err(|e| self.spawn_error(e))
    }

    /// Runs the program and returns its output when it exits successfully.
    ///
    /// # Errors
    /// [`CommandError::Spawn`] if it cannot be started, [`CommandError::Failed`] with its
    /// standard error if it exits unsuccessfully.
    pub fn run(&mut self) -> Result<Output, CommandError> {
        let out = self.output()?;
        if !out.status.success() {
            return Err(CommandError::Failed {
                command: self.line.clone(),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(out)
    }

    /// Starts the program and returns without waiting for it.
    ///
    /// # Errors
    /// [`CommandError::Spawn`] if it cannot be started.
    #[expect(
        clippy::disallowed_methods,
        reason = "this is the sanctioned place to run commands"
    )]
    pub fn spawn(&mut self) -> Result<Child, CommandError> {
        let child = self.command.spawn().map_err(|e| self.spawn_error(e))?;
        Ok(Child {
            child,
            line: self.line.clone(),
        })
    }
}

/// A started program. Dropping it neither kills nor waits for it (as with the standard
/// library); end it with [`Child::kill`] and [`Child::wait`].
#[derive(Debug)]
pub struct Child {
    child: std::process::Child,
    line: String,
}

impl Child {
    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Its process id as nix names processes.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX))
    }

    /// The command line it was started with.
    pub fn line(&self) -> &str {
        &self.line
    }

    /// The writing end of its standard input, if that was piped and not taken yet.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// The reading end of its standard output, if that was piped and not taken yet.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// The reading end of its standard error, if that was piped and not taken yet.
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    fn error(&self, action: &'static str, source: std::io::Error) -> CommandError {
        CommandError::Child {
            command: self.line.clone(),
            action,
            source,
        }
    }

    /// Sends it SIGKILL; one that has exited already (but was not waited for) is fine.
    ///
    /// # Errors
    /// [`CommandError::Child`] if it was waited for already.
    pub fn kill(&mut self) -> Result<(), CommandError> {
        self.child.kill().map_err(|e| self.error("kill", e))
    }

    /// Sends it `signal`.
    ///
    /// # Errors
    /// The errno of `kill(2)`, for example `ESRCH` once it has been waited for.
    pub fn signal(&self, signal: Signal) -> Result<(), nix::errno::Errno> {
        nix::sys::signal::kill(self.pid(), signal)
    }

    /// Waits for it to end and returns its exit status.
    ///
    /// # Errors
    /// [`CommandError::Child`] if waiting fails.
    pub fn wait(&mut self) -> Result<ExitStatus, CommandError> {
        self.child.wait().map_err(|e| self.error("wait for", e))
    }

    /// Its exit status if it has ended, without waiting.
    ///
    /// # Errors
    /// [`CommandError::Child`] if checking fails.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, CommandError> {
        self.child.try_wait().map_err(|e| self.error("wait for", e))
    }

    /// Waits for it to end and collects whatever it writes to its piped standard output and
    /// error meanwhile.
    ///
    /// # Errors
    /// [`CommandError::Child`] if reading or waiting fails.
    pub fn wait_with_output(self) -> Result<Output, CommandError> {
        let line = self.line;
        self.child
            .wait_with_output()
            .map_err(|source| CommandError::Child {
                command: line,
                action: "wait for",
                source,
            })
    }

    /// SIGKILL, then waits: ends it whatever it is doing and returns how it ended (its own
    /// exit status if it had exited already).
    ///
    /// # Errors
    /// [`CommandError::Child`] if waiting fails.
    pub fn kill_and_wait(&mut self) -> Result<ExitStatus, CommandError> {
        // An error only means it has ended (and maybe been reaped) already; wait tells how.
        let _ = self.child.kill();
        self.wait()
    }
}

/// Runs `program args…`, optionally feeding `stdin`, and returns its output when it succeeds.
///
/// # Errors
/// [`CommandError::Spawn`] if it cannot start, [`CommandError::Failed`] if it exits non-zero.
pub fn run(program: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<Output, CommandError> {
    let mut p = Program::new(program);
    p.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = p.spawn()?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.take_stdin()) {
        // A write error shows up as the program's own failure below; keep its stderr.
        let _ = pipe.write_all(input);
    }
    let out = child.wait_with_output().map_err(|e| match e {
        CommandError::Child {
            command, source, ..
        } => CommandError::Spawn { command, source },
        other => other,
    })?;
    if !out.status.success() {
        return Err(CommandError::Failed {
            command: p.line,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

/// Whether `program` can be found on `PATH`.
pub fn is_on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}
