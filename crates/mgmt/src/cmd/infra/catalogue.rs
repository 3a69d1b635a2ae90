//! listNetworkOfferings, listServiceOfferings and listTemplates: what deployments
//! are made from.

use api_types::error::ApiError;
use api_types::params::Params;
use domain::actor::Caller;
use serde_json::Value;

use super::{contains, given, keyword, zone, zone_param};
use crate::app::{store_error, ApiResult, App};
use crate::cmd::{owner, page, required};
use crate::resp::infra as resp;

/// Whether an item of a catalogue passes the `id`, `name` and `keyword` filters.
fn wanted(p: &Params, kw: Option<&str>, uuid: &str, name: &str, text: &str) -> bool {
    given(p, "id").is_none_or(|id| id == uuid)
        && given(p, "name").is_none_or(|n| n == name)
        && kw.is_none_or(|k| contains(name, k) || contains(text, k))
}

/// listNetworkOfferings: the two offerings made at first start.
pub(crate) async fn list_network_offerings(
    app: &App,
    _caller: &Caller,
    p: &Params,
) -> ApiResult<Value> {
    zone_param(app, p, "zoneid")?;
    let offerings = store::catalogue::network_offerings(&app.db)
        .await
        .map_err(store_error)?;
    // The routers' system offering, which every start makes.
    let router_offering = store::catalogue::service_offerings(&app.db)
        .await
        .map_err(store_error)?
        .into_iter()
        .find(|o| o.system_vm_type.as_deref() == Some("domainrouter"))
        .map(|o| o.uuid)
        .ok_or_else(|| {
            ApiError::internal("the routers' system offering is missing from the database")
        })?;
    let kw = keyword(p);
    let type_ok = given(p, "guestiptype").is_none_or(|t| t.eq_ignore_ascii_case("Isolated"));
    let state_ok = given(p, "state").is_none_or(|s| s.eq_ignore_ascii_case("Enabled"));
    let items = offerings
        .iter()
        .filter(|o| {
            type_ok && state_ok && wanted(p, kw.as_deref(), &o.uuid, &o.name, &o.display_text)
        })
        .map(|o| resp::network_offering(o, &router_offering))
        .collect();
    Ok(page("networkoffering", items, p.paging()))
}

/// listServiceOfferings: VM offerings, or with `issystem=true` or `systemvmtype` the
/// routers' system offering (root admins only, as on CloudStack).
pub(crate) async fn list_service_offerings(
    app: &App,
    caller: &Caller,
    p: &Params,
) -> ApiResult<Value> {
    let vm_type = given(p, "systemvmtype").map(str::to_ascii_lowercase);
    if let Some(t) = &vm_type {
        if !["domainrouter", "consoleproxy", "secondarystoragevm"].contains(&t.as_str()) {
            return Err(ApiError::invalid_parameter(format!(
                "Invalid systemvmtype {t}: use domainrouter, consoleproxy or secondarystoragevm"
            )));
        }
    }
    let system = p.bool("issystem") == Some(true) || vm_type.is_some();
    if system && !caller.admin {
        return Err(ApiError::invalid_parameter(
            "Only root admins can access system offerings",
        ));
    }
    let offerings = store::catalogue::service_offerings(&app.db)
        .await
        .map_err(store_error)?;
    let kw = keyword(p);
    let items = offerings
        .iter()
        .filter(|o| {
            o.system_vm_type.is_some() == system
                && vm_type
                    .as_deref()
                    .is_none_or(|t| o.system_vm_type.as_deref() == Some(t))
                && wanted(p, kw.as_deref(), &o.uuid, &o.name, &o.display_text)
        })
        .map(resp::service_offering)
        .collect();
    Ok(page("serviceoffering", items, p.paging()))
}

/// listTemplates: `templatefilter` decides, as CloudStack's filters do for a featured public
/// template owned by the admin.
pub(crate) async fn list_templates(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let filter = required(p, "templatefilter")?.trim().to_ascii_lowercase();
    let shown = match filter.as_str() {
        "featured" | "executable" => true,
        "self" | "selfexecutable" => caller.admin,
        "community" | "sharedexecutable" => false,
        "all" if caller.admin => true,
        "all" => {
            return Err(ApiError::invalid_parameter(
                "Filter all can be specified by admin only",
            ))
        }
        other => {
            return Err(ApiError::invalid_parameter(format!(
                "Invalid templatefilter {other}: use featured, self, selfexecutable, \
                 sharedexecutable, executable, community or all"
            )))
        }
    };
    zone_param(app, p, "zoneid")?;
    if !shown {
        return Ok(page("template", Vec::new(), p.paging()));
    }
    let templates = store::catalogue::templates(&app.db)
        .await
        .map_err(store_error)?;
    let admin_account = store::owners::first_root_admin(&app.db)
        .await
        .map_err(store_error)?;
    let admin = owner(app, admin_account).await?;
    let kw = keyword(p);
    let items = templates
        .iter()
        .filter(|t| wanted(p, kw.as_deref(), &t.uuid, &t.name, &t.display_text))
        .map(|t| resp::template(t, &admin, zone(app)))
        .collect();
    Ok(page("template", items, p.paging()))
}

/// The local file a `file://` URL parameter names, which must be a readable regular file.
fn local_file(name: &str, url: &str) -> ApiResult<String> {
    let Some(path) = url.strip_prefix("file://").filter(|p| p.starts_with('/')) else {
        return Err(ApiError::invalid_parameter(format!(
            "Invalid {name} {url}: only file:// URLs of an absolute path are supported"
        )));
    };
    let readable =
        std::fs::metadata(path).is_ok_and(|m| m.is_file()) && std::fs::File::open(path).is_ok();
    if !readable {
        return Err(ApiError::invalid_parameter(format!(
            "Invalid {name} {url}: {path} is not a readable regular file"
        )));
    }
    Ok(path.to_string())
}

/// registerTemplate (root admins): a template booting a disk image (`format` QCOW2 or RAW) or,
/// with `details[0].initrd`, a kernel (the url) with its initial RAM disk and
/// `details[0].cmdline`. The files must be at the same path on every host; the server checks
/// them on its own machine.
pub(crate) async fn register_template(app: &App, _caller: &Caller, p: &Params) -> ApiResult<Value> {
    zone_param(app, p, "zoneid")?;
    let name = required(p, "name")?.to_string();
    let display = given(p, "displaytext").unwrap_or(&name).to_string();
    let path = local_file("url", required(p, "url")?)?;
    let details = p.map("details");
    let detail = |k: &str| {
        details
            .iter()
            .find_map(|d| d.get(k).map(|v| v.trim().to_string()))
            .filter(|v| !v.is_empty())
    };
    let initrd = detail("initrd")
        .map(|u| local_file("details[0].initrd", &u))
        .transpose()?;
    let format = required(p, "format")?.trim().to_ascii_uppercase();
    if !matches!(format.as_str(), "QCOW2" | "RAW") {
        return Err(ApiError::invalid_parameter(format!(
            "Invalid format {format}: QCOW2 or RAW"
        )));
    }
    let image = store::catalogue::TemplateImage {
        path,
        format,
        cmdline: detail("cmdline"),
        initrd,
    };
    let uuid = uuid::Uuid::new_v4().to_string();
    let mut change = app.db.change(None).await.map_err(store_error)?;
    if store::catalogue::template_name_taken(change.conn(), &name)
        .await
        .map_err(store_error)?
    {
        return Err(ApiError::invalid_parameter(format!(
            "A template named {name} already exists"
        )));
    }
    store::catalogue::insert_template(
        change.conn(),
        &store::catalogue::NewTemplate {
            uuid: &uuid,
            name: &name,
            display_text: &display,
            image: &image,
            created: store::db::now_ms(),
        },
    )
    .await
    .map_err(store_error)?;
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    let template = store::catalogue::templates(&app.db)
        .await
        .map_err(store_error)?
        .into_iter()
        .find(|t| t.uuid == uuid)
        .ok_or_else(|| ApiError::internal(format!("template {name} vanished")))?;
    let admin_account = store::owners::first_root_admin(&app.db)
        .await
        .map_err(store_error)?;
    let admin = owner(app, admin_account).await?;
    Ok(page(
        "template",
        vec![resp::template(&template, &admin, zone(app))],
        p.paging(),
    ))
}
