//! First start: seeds an empty database with what the API needs before anyone can call it (the
//! ROOT domain, the `admin` account and user, one zone, the two network offerings, a service
//! offering, a template and a public range), and settles the admin's API keys on every start.
//!
//! Seeding is idempotent: once the ROOT domain exists, a start only loads the zone and
//! reconciles the keys.
//!
//! Admin keys:
//! - `GUESTNET_ADMIN_API_KEY` and `GUESTNET_ADMIN_SECRET_KEY` both set: the admin user gets
//!   exactly these keys, on every start;
//! - otherwise, if the admin has no keys yet, a pair is generated (32 random bytes each, URL-safe
//!   base64 without padding) and written to `<data dir>/admin-keys` (mode 0600);
//! - otherwise the admin keeps its keys, and `admin-keys` is rewritten from the database when it
//!   is missing or says something else.
//!
//! Secrets are never logged.

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use sqlx::{Any, Row, Transaction};

use crate::app::Site;
use store::db::{now_ms, Db};

/// The environment variable holding the admin's API key.
pub const ENV_API_KEY: &str = "GUESTNET_ADMIN_API_KEY";
/// The environment variable holding the admin's secret key.
pub const ENV_SECRET_KEY: &str = "GUESTNET_ADMIN_SECRET_KEY";
/// The file, in the data directory, that holds generated admin keys.
pub const KEY_FILE: &str = "admin-keys";

/// The zone every first start creates.
pub const ZONE_NAME: &str = "guestnet-zone1";
/// The default offering: outbound traffic denied unless an egress rule allows it.
pub const OFFERING_EGRESS_DENY: &str = "DefaultIsolatedNetworkOfferingWithSourceNatService";
/// The second offering: outbound traffic allowed unless an egress rule says otherwise.
pub const OFFERING_EGRESS_ALLOW: &str = "IsolatedNetworkOfferingWithSourceNatOpenEgress";

/// Where the admin's keys came from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// `GUESTNET_ADMIN_API_KEY` / `GUESTNET_ADMIN_SECRET_KEY`.
    Environment,
    /// The database, with a copy in this file.
    File(PathBuf),
}

/// The admin's keys, as far as the startup line needs them (never the secret).
#[derive(Debug, Clone)]
pub struct AdminKeys {
    /// The API key.
    pub api_key: String,
    /// Where they came from.
    pub source: KeySource,
}

/// A public address range to add to a zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicRange {
    /// The VLAN tag, or `untagged`.
    pub vlan: String,
    /// The segment's gateway.
    pub gateway: Ipv4Addr,
    /// The segment's netmask.
    pub netmask: Ipv4Addr,
    /// First address handed out.
    pub start: Ipv4Addr,
    /// Last address handed out.
    pub end: Ipv4Addr,
}

/// Rows per multi-row insert of public addresses.
const IP_CHUNK: u32 = 500;

/// Inserts a range and one Free `public_ips` row per address of it, in the caller's
/// transaction; returns the range's id and uuid. The caller has checked the range.
///
/// # Errors
/// The query's error.
pub async fn insert_public_range(
    tx: &mut Transaction<'_, Any>,
    zone_id: i64,
    range: &PublicRange,
) -> Result<(i64, String), sqlx::Error> {
    let uuid = uuid::Uuid::new_v4().to_string();
    let range_id: i64 = sqlx::query(
        "INSERT INTO vlan_ranges (uuid, zone_id, vlan, gateway, netmask, start_ip, end_ip, \
         created) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(&uuid)
    .bind(zone_id)
    .bind(&range.vlan)
    .bind(range.gateway.to_string())
    .bind(range.netmask.to_string())
    .bind(range.start.to_string())
    .bind(range.end.to_string())
    .bind(now_ms())
    .fetch_one(&mut **tx)
    .await?
    .try_get("id")?;
    let (first, last) = (u32::from(range.start), u32::from(range.end));
    let mut next = first;
    while next <= last {
        let stop = next.saturating_add(IP_CHUNK - 1).min(last);
        // Every value is made here (uuids, dotted quads, numbers), so they are written as
        // literals: one statement per chunk, whatever the back end's limit on bound values.
        let values: Vec<String> = (next..=stop)
            .map(|n| {
                format!(
                    "('{}', '{}', {}, {range_id}, {zone_id}, 'Free', 0, 0)",
                    uuid::Uuid::new_v4(),
                    Ipv4Addr::from(n),
                    i64::from(n)
                )
            })
            .collect();
        sqlx::query(&format!(
            "INSERT INTO public_ips (uuid, address, address_num, vlan_range_id, zone_id, state, \
             source_nat, applied) VALUES {}",
            values.join(", ")
        ))
        .execute(&mut **tx)
        .await?;
        match stop.checked_add(1) {
            Some(n) => next = n,
            None => break,
        }
    }
    Ok((range_id, uuid))
}

/// Seeds the database on first start (idempotent), loads the zone and settles the admin's
/// keys.
///
/// # Errors
/// Why the database cannot be seeded or read, or the key file cannot be written.
pub async fn first_start(db: &Db, data_dir: &Path) -> Result<(Site, AdminKeys), String> {
    if !seeded(db).await? {
        match seed(db).await {
            Ok(()) => tracing::info!(
                zone = ZONE_NAME,
                "first start: seeded the ROOT domain, the admin account, the zone, offerings, \
                 a template and the public range"
            ),
            // Another server sharing the database may have seeded it meanwhile.
            Err(e) if seeded(db).await? => {
                tracing::info!(error = %e, "first start: another server seeded the database");
            }
            Err(e) => return Err(format!("cannot seed the database: {e}")),
        }
    }
    let site = load_site(db).await?;
    let keys = reconcile_keys(db, data_dir).await?;
    Ok((site, keys))
}

async fn seeded(db: &Db) -> Result<bool, String> {
    Ok(sqlx::query("SELECT id FROM domains WHERE path = 'ROOT'")
        .fetch_optional(db.pool())
        .await
        .map_err(|e| format!("cannot read the database: {e}"))?
        .is_some())
}

async fn load_site(db: &Db) -> Result<Site, String> {
    let row = sqlx::query("SELECT id, uuid, name FROM zones ORDER BY id LIMIT 1")
        .fetch_optional(db.pool())
        .await
        .map_err(|e| format!("cannot read the zone: {e}"))?
        .ok_or("the database has a ROOT domain but no zone")?;
    let e = |e: sqlx::Error| format!("cannot read the zone: {e}");
    Ok(Site {
        zone_id: row.try_get("id").map_err(e)?,
        zone_uuid: row.try_get("uuid").map_err(e)?,
        zone_name: row.try_get("name").map_err(e)?,
    })
}

fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let mut buf = [0u8; N];
    getrandom::getrandom(&mut buf).map_err(|e| format!("no randomness available: {e}"))?;
    Ok(buf)
}

/// A key as CloudStack's look: random bytes in URL-safe base64 without padding.
fn new_key() -> Result<String, String> {
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

/// The seed's public range: TEST-NET-3, so that nothing real is ever shadowed.
fn seed_range() -> PublicRange {
    PublicRange {
        vlan: "untagged".into(),
        gateway: Ipv4Addr::new(203, 0, 113, 1),
        netmask: Ipv4Addr::new(255, 255, 255, 0),
        start: Ipv4Addr::new(203, 0, 113, 10),
        end: Ipv4Addr::new(203, 0, 113, 250),
    }
}

async fn seed(db: &Db) -> Result<(), sqlx::Error> {
    // There is no login command: the password is random and never shown, only its hash kept.
    let password = new_key().map_err(sqlx::Error::Protocol)?;
    let password_hash = crate::password::hash_blocking(password)
        .await
        .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
    let _w = db.write_lock().await;
    let mut tx = db.begin_write().await?;
    let now = now_ms();
    let domain_id: i64 = sqlx::query(
        "INSERT INTO domains (uuid, name, path, parent_id, created) \
         VALUES ($1, 'ROOT', 'ROOT', NULL, $2) RETURNING id",
    )
    .bind(new_uuid())
    .bind(now)
    .fetch_one(&mut *tx)
    .await?
    .try_get("id")?;
    let account_id: i64 = sqlx::query(
        "INSERT INTO accounts (uuid, name, domain_id, account_type, state, created) \
         VALUES ($1, 'admin', $2, 1, 'enabled', $3) RETURNING id",
    )
    .bind(new_uuid())
    .bind(domain_id)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?
    .try_get("id")?;
    sqlx::query(
        "INSERT INTO users (uuid, account_id, username, password_hash, email, firstname, \
         lastname, state, created) \
         VALUES ($1, $2, 'admin', $3, 'admin@localhost', 'Admin', 'User', 'enabled', $4)",
    )
    .bind(new_uuid())
    .bind(account_id)
    .bind(password_hash)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let zone_id: i64 =
        sqlx::query("INSERT INTO zones (uuid, name, created) VALUES ($1, $2, $3) RETURNING id")
            .bind(new_uuid())
            .bind(ZONE_NAME)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?
            .try_get("id")?;
    for (name, text, allow, default) in [
        (
            OFFERING_EGRESS_DENY,
            "Isolated guest network with source NAT, firewall, port forwarding and load \
             balancing; outbound traffic is blocked unless an egress rule allows it",
            0i64,
            1i64,
        ),
        (
            OFFERING_EGRESS_ALLOW,
            "Isolated guest network with source NAT, firewall, port forwarding and load \
             balancing; outbound traffic is open unless egress rules restrict it",
            1,
            0,
        ),
    ] {
        sqlx::query(
            "INSERT INTO network_offerings (uuid, name, display_text, egress_default_allow, \
             is_default, created) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(new_uuid())
        .bind(name)
        .bind(text)
        .bind(allow)
        .bind(default)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "INSERT INTO service_offerings (uuid, name, display_text, cpu_number, cpu_speed, memory, \
         created) VALUES ($1, 'Small Instance', $2, 1, 500, 512, $3)",
    )
    .bind(new_uuid())
    .bind("Small machine: one CPU at 500 MHz, 512 MB of memory")
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO templates (uuid, name, display_text, os_type, created) \
         VALUES ($1, 'guestnet-guest', $2, 'Other Linux', $3)",
    )
    .bind(new_uuid())
    .bind("Lab guest: a network namespace with one interface on its guest network")
    .bind(now)
    .execute(&mut *tx)
    .await?;
    insert_public_range(&mut tx, zone_id, &seed_range()).await?;
    tx.commit().await
}

fn key_file_text(api_key: &str, secret_key: &str) -> String {
    format!("{ENV_API_KEY}={api_key}\n{ENV_SECRET_KEY}={secret_key}\n")
}

/// Writes the key file with mode 0600: a temporary file first, then a rename.
fn write_key_file(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_file_name(format!(".{KEY_FILE}.tmp"));
    let fail =
        |what: &str, p: &Path, e: std::io::Error| format!("cannot {what} {}: {e}", p.display());
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail("remove", &tmp, e)),
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| fail("create", &tmp, e))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| fail("write", &tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| fail("rename into", path, e))
}

/// Makes sure the key file holds these keys, readable by its owner only.
fn ensure_key_file(path: &Path, api_key: &str, secret_key: &str) -> Result<(), String> {
    let want = key_file_text(api_key, secret_key);
    match std::fs::read_to_string(path) {
        Ok(have) if have == want => {
            let loose = std::fs::metadata(path)
                .map(|m| m.permissions().mode() & 0o077 != 0)
                .unwrap_or(false);
            if loose {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| format!("cannot restrict {}: {e}", path.display()))?;
            }
            Ok(())
        }
        _ => {
            tracing::info!(file = %path.display(), "writing the admin keys file");
            write_key_file(path, &want)
        }
    }
}

async fn reconcile_keys(db: &Db, data_dir: &Path) -> Result<AdminKeys, String> {
    let e = |e: sqlx::Error| format!("cannot read the admin user: {e}");
    let row = sqlx::query("SELECT id, api_key, secret_key FROM users WHERE username = 'admin'")
        .fetch_optional(db.pool())
        .await
        .map_err(e)?
        .ok_or("the database has no admin user")?;
    let user_id: i64 = row.try_get("id").map_err(e)?;
    let have_api: Option<String> = row.try_get("api_key").map_err(e)?;
    let have_secret: Option<String> = row.try_get("secret_key").map_err(e)?;
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let (env_api, env_secret) = (env(ENV_API_KEY), env(ENV_SECRET_KEY));
    if let (Some(api), Some(secret)) = (&env_api, &env_secret) {
        if have_api.as_ref() != Some(api) || have_secret.as_ref() != Some(secret) {
            set_keys(db, user_id, api, secret).await.map_err(|err| {
                format!("cannot give the admin the keys of {ENV_API_KEY}/{ENV_SECRET_KEY}: {err}")
            })?;
            tracing::info!("admin keys set from the environment");
        }
        return Ok(AdminKeys {
            api_key: api.clone(),
            source: KeySource::Environment,
        });
    }
    if env_api.is_some() || env_secret.is_some() {
        let missing = if env_api.is_none() {
            ENV_API_KEY
        } else {
            ENV_SECRET_KEY
        };
        tracing::warn!(
            missing,
            "only one of the admin key variables is set; both are needed, so neither is used"
        );
    }
    let path = data_dir.join(KEY_FILE);
    let (api, secret) = match (have_api, have_secret) {
        (Some(a), Some(s)) if !a.is_empty() && !s.is_empty() => (a, s),
        _ => {
            let (a, s) = (new_key()?, new_key()?);
            set_keys(db, user_id, &a, &s)
                .await
                .map_err(|err| format!("cannot store the generated admin keys: {err}"))?;
            tracing::info!(file = %path.display(), "generated admin keys");
            (a, s)
        }
    };
    ensure_key_file(&path, &api, &secret)?;
    Ok(AdminKeys {
        api_key: api,
        source: KeySource::File(path),
    })
}

async fn set_keys(db: &Db, user_id: i64, api: &str, secret: &str) -> Result<(), sqlx::Error> {
    let _w = db.write_lock().await;
    sqlx::query("UPDATE users SET api_key = $1, secret_key = $2 WHERE id = $3")
        .bind(api)
        .bind(secret)
        .bind(user_id)
        .execute(db.pool())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_look_like_cloudstack_keys() {
        let k = new_key().unwrap();
        assert_eq!(k.len(), 43);
        assert!(k
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(k, new_key().unwrap());
    }

    #[tokio::test]
    async fn first_start_seeds_once_and_keeps_the_keys() {
        if std::env::var(ENV_API_KEY).is_ok() || std::env::var(ENV_SECRET_KEY).is_ok() {
            return; // the environment decides the keys; this test is about generated ones
        }
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let db = Db::connect(&url).await.unwrap();
        let (site, keys) = first_start(&db, dir.path()).await.unwrap();
        assert_eq!(site.zone_name, ZONE_NAME);
        let KeySource::File(path) = &keys.source else {
            panic!("keys should come from the file");
        };
        let meta = std::fs::metadata(path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.starts_with(&format!("{ENV_API_KEY}={}\n", keys.api_key)));

        std::fs::remove_file(path).unwrap();
        let (again, keys2) = first_start(&db, dir.path()).await.unwrap();
        assert_eq!(again.zone_uuid, site.zone_uuid);
        assert_eq!(keys2.api_key, keys.api_key);
        assert_eq!(std::fs::read_to_string(path).unwrap(), text);

        let count: i64 = sqlx::query("SELECT COUNT(*) AS n FROM public_ips")
            .fetch_one(db.pool())
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
        assert_eq!(count, 241);
        let offerings: i64 = sqlx::query("SELECT COUNT(*) AS n FROM network_offerings")
            .fetch_one(db.pool())
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
        assert_eq!(offerings, 2);
    }
}
