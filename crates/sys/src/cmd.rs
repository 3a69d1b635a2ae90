//! Running programs.

use std::ffi::OsStr;
use std::io::Write;
use std::process::{Command, Output, Stdio};

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
}

/// Builds a [`Command`]; the one place in the project that creates them.
#[expect(
    clippy::disallowed_methods,
    reason = "this is the sanctioned place to create commands"
)]
pub fn command(program: impl AsRef<OsStr>) -> Command {
    Command::new(program)
}

fn describe(program: &str, args: &[&str]) -> String {
    let mut s = program.to_string();
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

/// Runs `program args…`, optionally feeding `stdin`, and returns its output when it succeeds.
///
/// # Errors
/// [`CommandError::Spawn`] if it cannot start, [`CommandError::Failed`] if it exits non-zero.
pub fn run(program: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<Output, CommandError> {
    let command = describe(program, args);
    let mut c = command_with(program, args);
    c.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|source| CommandError::Spawn {
        command: command.clone(),
        source,
    })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A write error shows up as the program's own failure below; keep its stderr.
        let _ = pipe.write_all(input);
    }
    let out = child
        .wait_with_output()
        .map_err(|source| CommandError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(CommandError::Failed {
            command,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

fn command_with(program: &str, args: &[&str]) -> Command {
    let mut c = command(program);
    c.args(args);
    c
}

/// Whether `program` can be found on `PATH`.
pub fn is_on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}
