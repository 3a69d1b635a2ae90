//! What deployments are made from: network offerings, service offerings and templates, all
//! made at first start.

use sqlx::any::AnyRow;

use crate::db::Db;
use crate::error::StoreError;
use crate::rows::{flag, get};

/// A network offering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkOffering {
    /// Internal id.
    pub id: i64,
    /// API id.
    pub uuid: String,
    /// Name.
    pub name: String,
    /// Words shown for it.
    pub display_text: String,
    /// Whether its networks allow egress unless a rule says otherwise.
    pub egress_default_allow: bool,
    /// Whether it is the default offering.
    pub is_default: bool,
    /// Creation time (unix ms).
    pub created: i64,
}

const OFFERING_COLUMNS: &str =
    "id, uuid, name, display_text, egress_default_allow, is_default, created";

fn offering_row(r: &AnyRow) -> Result<NetworkOffering, StoreError> {
    const W: &str = "reading a network offering";
    Ok(NetworkOffering {
        id: get(r, "id", W)?,
        uuid: get(r, "uuid", W)?,
        name: get(r, "name", W)?,
        display_text: get(r, "display_text", W)?,
        egress_default_allow: flag(r, "egress_default_allow", W)?,
        is_default: flag(r, "is_default", W)?,
        created: get(r, "created", W)?,
    })
}

/// Every network offering, oldest first.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn network_offerings(db: &Db) -> Result<Vec<NetworkOffering>, StoreError> {
    sqlx::query(&format!(
        "SELECT {OFFERING_COLUMNS} FROM network_offerings ORDER BY id"
    ))
    .fetch_all(db.pool())
    .await
    .map_err(StoreError::db("reading network offerings"))?
    .iter()
    .map(offering_row)
    .collect()
}

/// A network offering by uuid.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn network_offering(db: &Db, uuid: &str) -> Result<Option<NetworkOffering>, StoreError> {
    sqlx::query(&format!(
        "SELECT {OFFERING_COLUMNS} FROM network_offerings WHERE uuid = $1"
    ))
    .bind(uuid)
    .fetch_optional(db.pool())
    .await
    .map_err(StoreError::db("reading a network offering"))?
    .as_ref()
    .map(offering_row)
    .transpose()
}

/// A service offering: a VM's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceOffering {
    /// Internal id.
    pub id: i64,
    /// API id.
    pub uuid: String,
    /// Name.
    pub name: String,
    /// Words shown for it.
    pub display_text: String,
    /// CPUs.
    pub cpu_number: i64,
    /// CPU speed (MHz).
    pub cpu_speed: i64,
    /// Memory (MiB).
    pub memory: i64,
    /// Creation time (unix ms).
    pub created: i64,
    /// The system VM type of a system offering (`domainrouter`); `None` for a VM's.
    pub system_vm_type: Option<String>,
}

/// The name of the system offering routers are made from.
pub const ROUTER_OFFERING_NAME: &str = "System Offering For Software Router";

/// Makes the routers' system offering if the database has none (every start: a database
/// made before it existed gets it too). Two servers starting at once make one: the name is
/// unique.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn ensure_router_offering(db: &Db) -> Result<bool, StoreError> {
    let made = sqlx::query(
        "INSERT INTO service_offerings (uuid, name, display_text, cpu_number, cpu_speed, \
         memory, created, system_vm_type) \
         VALUES ($1, $2, $3, 1, 500, 256, $4, 'domainrouter') ON CONFLICT (name) DO NOTHING",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(ROUTER_OFFERING_NAME)
    .bind(
        "Every network's virtual router: nftables, haproxy and dnsmasq in a namespace of its \
         host, not a sized VM",
    )
    .bind(crate::db::now_ms())
    .execute(db.pool())
    .await
    .map_err(StoreError::db("making the routers' system offering"))?;
    Ok(made.rows_affected() == 1)
}

/// Every service offering, oldest first.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn service_offerings(db: &Db) -> Result<Vec<ServiceOffering>, StoreError> {
    const W: &str = "reading service offerings";
    sqlx::query(
        "SELECT id, uuid, name, display_text, cpu_number, cpu_speed, memory, created, \
         system_vm_type FROM service_offerings ORDER BY id",
    )
    .fetch_all(db.pool())
    .await
    .map_err(StoreError::db(W))?
    .iter()
    .map(|r| {
        Ok(ServiceOffering {
            id: get(r, "id", W)?,
            uuid: get(r, "uuid", W)?,
            name: get(r, "name", W)?,
            display_text: get(r, "display_text", W)?,
            cpu_number: get(r, "cpu_number", W)?,
            cpu_speed: get(r, "cpu_speed", W)?,
            memory: get(r, "memory", W)?,
            created: get(r, "created", W)?,
            system_vm_type: get(r, "system_vm_type", W)?,
        })
    })
    .collect()
}

/// A template: what a VM boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Internal id.
    pub id: i64,
    /// API id.
    pub uuid: String,
    /// Name.
    pub name: String,
    /// Words shown for it.
    pub display_text: String,
    /// Its OS type's name.
    pub os_type: String,
    /// Creation time (unix ms).
    pub created: i64,
    /// What it boots, when it was registered with a file (the built-in one has nothing).
    pub image: Option<TemplateImage>,
}

/// What a registered template boots, as paths on the hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateImage {
    /// The disk image, or the kernel when `initrd` is set.
    pub path: String,
    /// `QCOW2` or `RAW`.
    pub format: String,
    /// The initial RAM disk of a kernel.
    pub initrd: Option<String>,
    /// A kernel's command line.
    pub cmdline: Option<String>,
}

/// The image columns of a template row (`image_path`, `format`, `initrd`, `cmdline`).
pub(crate) fn template_image(
    r: &sqlx::any::AnyRow,
    what: &'static str,
) -> Result<Option<TemplateImage>, StoreError> {
    let Some(path) = get::<Option<String>>(r, "image_path", what)? else {
        return Ok(None);
    };
    Ok(Some(TemplateImage {
        path,
        format: get::<Option<String>>(r, "format", what)?.unwrap_or_default(),
        initrd: get(r, "initrd", what)?,
        cmdline: get(r, "cmdline", what)?,
    }))
}

/// A template to register.
#[derive(Debug, Clone)]
pub struct NewTemplate<'a> {
    /// Its API id.
    pub uuid: &'a str,
    /// Its name (unique).
    pub name: &'a str,
    /// Words shown for it.
    pub display_text: &'a str,
    /// What it boots.
    pub image: &'a TemplateImage,
    /// Creation time (unix ms).
    pub created: i64,
}

/// Whether a template has this name.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn template_name_taken(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    name: &str,
) -> Result<bool, StoreError> {
    Ok(sqlx::query("SELECT id FROM templates WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await
        .map_err(StoreError::db("reading a template's name"))?
        .is_some())
}

/// Writes a registered template.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn insert_template(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    t: &NewTemplate<'_>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO templates (uuid, name, display_text, os_type, created, image_path, format, \
         initrd, cmdline) VALUES ($1, $2, $3, 'Other Linux', $4, $5, $6, $7, $8)",
    )
    .bind(t.uuid)
    .bind(t.name)
    .bind(t.display_text)
    .bind(t.created)
    .bind(t.image.path.as_str())
    .bind(t.image.format.as_str())
    .bind(t.image.initrd.as_deref())
    .bind(t.image.cmdline.as_deref())
    .execute(&mut **tx)
    .await
    .map_err(StoreError::db("registering a template"))?;
    Ok(())
}

/// Every template, oldest first.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn templates(db: &Db) -> Result<Vec<Template>, StoreError> {
    const W: &str = "reading templates";
    sqlx::query(
        "SELECT id, uuid, name, display_text, os_type, created, image_path, format, initrd, \
         cmdline FROM templates ORDER BY id",
    )
    .fetch_all(db.pool())
    .await
    .map_err(StoreError::db(W))?
    .iter()
    .map(|r| {
        Ok(Template {
            id: get(r, "id", W)?,
            uuid: get(r, "uuid", W)?,
            name: get(r, "name", W)?,
            display_text: get(r, "display_text", W)?,
            os_type: get(r, "os_type", W)?,
            created: get(r, "created", W)?,
            image: template_image(r, W)?,
        })
    })
    .collect()
}

/// The internal id of the VM service offering of uuid `uuid` (a system offering is none).
///
/// # Errors
/// [`StoreError::Db`].
pub async fn service_offering_id(db: &Db, uuid: &str) -> Result<Option<i64>, StoreError> {
    id_by_uuid(
        db,
        "SELECT id FROM service_offerings WHERE uuid = $1 AND system_vm_type IS NULL",
        uuid,
    )
    .await
}

/// The internal id of the template of uuid `uuid`.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn template_id(db: &Db, uuid: &str) -> Result<Option<i64>, StoreError> {
    id_by_uuid(db, "SELECT id FROM templates WHERE uuid = $1", uuid).await
}

async fn id_by_uuid(db: &Db, sql: &'static str, uuid: &str) -> Result<Option<i64>, StoreError> {
    const W: &str = "reading an id";
    sqlx::query(sql)
        .bind(uuid)
        .fetch_optional(db.pool())
        .await
        .map_err(StoreError::db(W))?
        .map(|r| get(&r, "id", W))
        .transpose()
}
