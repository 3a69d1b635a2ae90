//! `guestnet verify`: does every router enforce what the database says?

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// Arguments of `guestnet verify`.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// The management servers' database, as given to `guestnet serve`.
    #[arg(
        long = "database-url",
        value_name = "URL",
        env = "GUESTNET_DATABASE_URL"
    )]
    database_url: Option<String>,
    /// With SQLite and no URL: the server's data directory.
    #[arg(
        long = "data-dir",
        value_name = "DIR",
        default_value = "./guestnet-data"
    )]
    data_dir: PathBuf,
}

/// Prints one line per router; exits 1 when any router differs from the database.
pub(crate) fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let url = args
        .database_url
        .unwrap_or_else(|| format!("sqlite://{}", args.data_dir.join("guestnet.db").display()));
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let reports = rt.block_on(async {
        let db = store::Db::connect(&url).await?;
        mgmt::verify::verify(&db)
            .await
            .map_err(|e| anyhow::Error::new(e).context("verify"))
    })?;
    let mut out = std::io::stdout().lock();
    let mut differing = 0usize;
    for r in &reports {
        if r.differences.is_empty() {
            writeln!(
                out,
                "{} on {}: generation {}, enforced as the database says",
                r.router, r.host, r.applied
            )?;
        } else {
            differing += 1;
            writeln!(
                out,
                "{} on {}: {} difference(s)",
                r.router,
                r.host,
                r.differences.len()
            )?;
            for d in &r.differences {
                writeln!(out, "  - {d}")?;
            }
        }
    }
    writeln!(
        out,
        "{} router(s), {} with differences",
        reports.len(),
        differing
    )?;
    Ok(if differing == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
