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

pub use domain::guest::VlanRanges;

use crate::app::Site;
use crate::password::{new_key, PasswordError};
use store::db::Db;
use store::seed::{Seed, SeedOffering};
use store::StoreError;

pub use store::ranges::PublicRange;

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

/// Why a first start failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The database could not be read or written.
    #[error("cannot {doing}")]
    Store {
        /// What was being done.
        doing: &'static str,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// The database has a ROOT domain but no zone.
    #[error("the database has a ROOT domain but no zone")]
    NoZone,
    /// The database has no admin user.
    #[error("the database has no admin user")]
    NoAdmin,
    /// No password or key could be made.
    #[error("cannot make the admin's secrets")]
    Secret(#[source] PasswordError),
    /// The key file could not be written.
    #[error("cannot {what} {}", path.display())]
    KeyFile {
        /// What was being done to it.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

fn store(doing: &'static str) -> impl Fn(StoreError) -> BootstrapError {
    move |source| BootstrapError::Store { doing, source }
}

/// The guest VLANs a zone's physical network is made with when `guestnet serve` is not given
/// `--guest-vlans`.
pub const DEFAULT_GUEST_VLANS: &str = "100-999";

/// The name of the zone's physical network.
pub const PHYSICAL_NETWORK_NAME: &str = "guestnet-physical-network";

/// What a start makes of the zone's guest side when it does not exist yet.
#[derive(Debug, Clone)]
pub struct GuestDefaults {
    /// The physical network's guest VLANs, when the zone has no physical network yet.
    pub vlans: VlanRanges,
    /// The zone's DNS servers, on the start that seeds the database.
    pub dns: Vec<Ipv4Addr>,
}

impl Default for GuestDefaults {
    fn default() -> Self {
        GuestDefaults {
            vlans: VlanRanges::parse(DEFAULT_GUEST_VLANS).unwrap_or_default(),
            dns: Vec::new(),
        }
    }
}

/// Seeds the database on first start (idempotent), loads the zone and settles the admin's
/// keys, with the default guest VLANs and no DNS servers.
///
/// # Errors
/// [`BootstrapError`]: why the database cannot be seeded or read, or the key file cannot be
/// written.
pub async fn first_start(db: &Db, data_dir: &Path) -> Result<(Site, AdminKeys), BootstrapError> {
    first_start_with(db, data_dir, &GuestDefaults::default()).await
}

/// As [`first_start`], making the zone's guest side from `guest`: its physical network (on
/// any start that finds none: a first start, or a database made before physical networks)
/// and its DNS servers (on the start that seeds the database).
///
/// # Errors
/// As [`first_start`].
pub async fn first_start_with(
    db: &Db,
    data_dir: &Path,
    guest: &GuestDefaults,
) -> Result<(Site, AdminKeys), BootstrapError> {
    let mut seeded_here = false;
    if !seeded(db).await? {
        match seed(db).await {
            Ok(()) => {
                seeded_here = true;
                tracing::info!(
                    zone = ZONE_NAME,
                    "first start: seeded the ROOT domain, the admin account, the zone, \
                     offerings, a template and the public range"
                )
            }
            // Another server sharing the database may have seeded it meanwhile.
            Err(e) if seeded(db).await? => {
                tracing::info!(
                    error = %crate::app::chain(&e),
                    "first start: another server seeded the database"
                );
            }
            Err(e) => return Err(e),
        }
    }
    let site = load_site(db).await?;
    if store::catalogue::ensure_router_offering(db)
        .await
        .map_err(store("make the routers' system offering"))?
    {
        tracing::info!("made the routers' system offering");
    }
    match store::zones::ensure_physical_network(
        db,
        site.zone_id,
        PHYSICAL_NETWORK_NAME,
        &guest.vlans,
    )
    .await
    {
        Ok(true) => tracing::info!(vlans = %guest.vlans, "made the zone's physical network"),
        Ok(false) => {}
        // Another server sharing the database may have made it meanwhile.
        Err(e) => {
            store::zones::physical_network_of(db, site.zone_id)
                .await
                .map_err(store("read the physical network"))?
                .ok_or(BootstrapError::Store {
                    doing: "make the zone's physical network",
                    source: e,
                })?;
        }
    }
    if seeded_here && !guest.dns.is_empty() {
        let mut change = db
            .change(None)
            .await
            .map_err(store("set the zone's DNS servers"))?;
        store::zones::set_dns(
            &mut change,
            site.zone_id,
            guest.dns.first().copied(),
            guest.dns.get(1).copied(),
        )
        .await
        .map_err(store("set the zone's DNS servers"))?;
        let _no_network_yet = change
            .commit()
            .await
            .map_err(store("set the zone's DNS servers"))?;
    }
    let keys = reconcile_keys(db, data_dir).await?;
    Ok((site, keys))
}

async fn seeded(db: &Db) -> Result<bool, BootstrapError> {
    store::seed::seeded(db)
        .await
        .map_err(store("read the database"))
}

async fn load_site(db: &Db) -> Result<Site, BootstrapError> {
    let (id, uuid, name) = store::seed::first_zone(db)
        .await
        .map_err(store("read the zone"))?
        .ok_or(BootstrapError::NoZone)?;
    Ok(Site {
        zone_id: id.get(),
        zone_uuid: uuid,
        zone_name: name,
    })
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

async fn seed(db: &Db) -> Result<(), BootstrapError> {
    // There is no login command: the password is random and never shown, only its hash kept.
    let password = new_key().map_err(BootstrapError::Secret)?;
    let password_hash = crate::password::hash_blocking(password)
        .await
        .map_err(BootstrapError::Secret)?;
    let offerings = [
        SeedOffering {
            name: OFFERING_EGRESS_DENY,
            display_text: "Isolated guest network with source NAT, firewall, port forwarding \
                           and load balancing; outbound traffic is blocked unless an egress \
                           rule allows it",
            egress_default_allow: false,
            is_default: true,
        },
        SeedOffering {
            name: OFFERING_EGRESS_ALLOW,
            display_text: "Isolated guest network with source NAT, firewall, port forwarding \
                           and load balancing; outbound traffic is open unless egress rules \
                           restrict it",
            egress_default_allow: true,
            is_default: false,
        },
    ];
    store::seed::seed(
        db,
        &Seed {
            admin_password_hash: &password_hash,
            zone_name: ZONE_NAME,
            offerings: &offerings,
            service_offering: (
                "Small Instance",
                "Small machine: one CPU at 500 MHz, 512 MB of memory",
            ),
            template: (
                "guestnet-guest",
                "Lab guest: a network namespace with one interface on its guest network",
            ),
            range: seed_range(),
        },
    )
    .await
    .map(|_| ())
    .map_err(store("seed the database"))
}

fn key_file_text(api_key: &str, secret_key: &str) -> String {
    format!("{ENV_API_KEY}={api_key}\n{ENV_SECRET_KEY}={secret_key}\n")
}

/// Writes the key file with mode 0600: a temporary file first, then a rename.
fn write_key_file(path: &Path, text: &str) -> Result<(), BootstrapError> {
    let tmp = path.with_file_name(format!(".{KEY_FILE}.tmp"));
    let fail = |what: &'static str, p: &Path, source: std::io::Error| BootstrapError::KeyFile {
        what,
        path: p.to_path_buf(),
        source,
    };
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
fn ensure_key_file(path: &Path, api_key: &str, secret_key: &str) -> Result<(), BootstrapError> {
    let want = key_file_text(api_key, secret_key);
    match std::fs::read_to_string(path) {
        Ok(have) if have == want => {
            let loose = std::fs::metadata(path)
                .map(|m| m.permissions().mode() & 0o077 != 0)
                .unwrap_or(false);
            if loose {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
                    |source| BootstrapError::KeyFile {
                        what: "restrict",
                        path: path.to_path_buf(),
                        source,
                    },
                )?;
            }
            Ok(())
        }
        _ => {
            tracing::info!(file = %path.display(), "writing the admin keys file");
            write_key_file(path, &want)
        }
    }
}

async fn reconcile_keys(db: &Db, data_dir: &Path) -> Result<AdminKeys, BootstrapError> {
    let admin = store::accounts::keys_of(db, "admin")
        .await
        .map_err(store("read the admin user"))?
        .ok_or(BootstrapError::NoAdmin)?;
    let (have_api, have_secret) = (admin.api_key, admin.secret_key);
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let (env_api, env_secret) = (env(ENV_API_KEY), env(ENV_SECRET_KEY));
    if let (Some(api), Some(secret)) = (&env_api, &env_secret) {
        if have_api.as_ref() != Some(api) || have_secret.as_ref() != Some(secret) {
            set_keys(db, admin.user, api, secret)
                .await
                .map_err(store("give the admin the keys of the environment"))?;
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
            let a = new_key().map_err(BootstrapError::Secret)?;
            let s = new_key().map_err(BootstrapError::Secret)?;
            set_keys(db, admin.user, &a, &s)
                .await
                .map_err(store("store the generated admin keys"))?;
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

async fn set_keys(
    db: &Db,
    user: domain::ids::UserId,
    api: &str,
    secret: &str,
) -> Result<(), StoreError> {
    let mut change = db.change(None).await?;
    store::accounts::set_keys(change.conn(), user, api, secret).await?;
    let _nothing_to_ring = change.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

        let count = store::testing::public_ip_count(&db).await.unwrap();
        assert_eq!(count, 241);
        let offerings = store::testing::network_offering_count(&db).await.unwrap();
        assert_eq!(offerings, 2);
        // The routers' system offering, made once over the two starts.
        let routers: Vec<_> = store::catalogue::service_offerings(&db)
            .await
            .unwrap()
            .into_iter()
            .filter(|o| o.system_vm_type.is_some())
            .collect();
        assert_eq!(routers.len(), 1, "{routers:?}");
        assert_eq!(routers[0].system_vm_type.as_deref(), Some("domainrouter"));
    }
}
