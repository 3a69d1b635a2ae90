//! Golden tests of the management server at its own level: every command family driven
//! through the HTTP router in process (no socket), with requests signed as clients sign them,
//! and the request → response pairs compared with `tests/golden/<family>.json`.
//!
//! Each family is a test of its own on SQLite; one more test (ignored by a plain run for its
//! cost, run by `cargo xtask test`) runs every family on PostgreSQL and requires the same
//! transcript there. What changes from run to run is normalized: uuids
//! become `<uuid:N>`, numbered by first appearance so that references between responses stay
//! checked (a run of a uuid's hex digits, as in a default VM name, becomes
//! `<hex of uuid:N>`), dates become `<date>`, keys, secrets and tokens `<key>`; everything else
//! is kept exact, and object keys are written sorted. `GUESTNET_BLESS=1` (`cargo xtask bless`)
//! rewrites the golden files from SQLite, and a test fails when a command of the catalogue is
//! sent by no golden file.
//!
//! These tests know the server only as clients do: the only exception is [`admin_keys`],
//! which finds the admin's keys where a first start leaves them.

mod accounts;
mod addresses;
mod apis;
mod egress;
mod events;
mod firewall;
mod forwarding;
mod hosts;
mod jobs;
mod limits;
mod listings;
mod load_balancers;
mod networks;
mod refusals;
mod routers;
mod vms;
mod zones;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, Instant};

use axum::body::Body;
use serde_json::{json, Map, Value};
use tower::ServiceExt;

use agent::driver::{Driver, Fault};

use crate::app::App;
use crate::client::Client;

/// A well-formed uuid that names nothing.
pub(super) const UNKNOWN: &str = "5e1f0a4b-0000-4000-8000-00000000dead";

/// How long a job may take to end with the dry-run agent before the test fails.
const JOB_DEADLINE: Duration = Duration::from_secs(30);
/// How often a pending job is asked about.
const JOB_POLL: Duration = Duration::from_millis(5);

/// The admin's API key and secret.
///
/// The one place these tests look inside the server: a first start writes the admin's keys
/// to the `admin-keys` file of the data directory (or takes them from the environment), as
/// an operator finds them.
fn admin_keys(app: &App) -> (String, String) {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if let (Some(key), Some(secret)) = (
        env(crate::bootstrap::ENV_API_KEY),
        env(crate::bootstrap::ENV_SECRET_KEY),
    ) {
        return (key, secret);
    }
    let path = app.data_dir.join(crate::bootstrap::KEY_FILE);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("{} has no {name}", path.display()))
            .to_string()
    };
    (
        value(crate::bootstrap::ENV_API_KEY),
        value(crate::bootstrap::ENV_SECRET_KEY),
    )
}

/// The ids every family needs: the seeded zone, offerings and template, as listed.
#[derive(Clone)]
pub(super) struct Shared {
    pub(super) zone: String,
    pub(super) offering: String,
    pub(super) open_offering: String,
    pub(super) service_offering: String,
    pub(super) template: String,
}

/// One family's session: the router, the signed clients by name, and the transcript.
pub(super) struct Session {
    router: axum::Router,
    clients: HashMap<String, Client>,
    exchanges: Vec<Value>,
}

/// Whether an exchange goes into the transcript.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Record {
    Yes,
    No,
}

impl Session {
    fn new(app: &App) -> Session {
        let (key, secret) = admin_keys(app);
        let mut clients = HashMap::new();
        clients.insert("admin".to_string(), Client::new("", &key, &secret));
        Session {
            router: crate::http::router(app.clone()),
            clients,
            exchanges: Vec::new(),
        }
    }

    async fn send(
        &mut self,
        who: &str,
        command: &str,
        params: &[(&str, &str)],
        record: Record,
    ) -> (u16, Value) {
        let client = self
            .clients
            .get(who)
            .unwrap_or_else(|| panic!("no caller called {who}"));
        let uri = format!("/client/api?{}", client.query(command, params));
        let req = axum::http::Request::get(uri).body(Body::empty()).unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{command}: the body is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        if record == Record::Yes {
            let params: Vec<Value> = params.iter().map(|(k, v)| json!([k, v])).collect();
            self.exchanges.push(json!({
                "as": who,
                "command": command,
                "params": params,
                "status": status,
                "response": body,
            }));
        }
        (status, body)
    }

    /// Sends `command` as `who` and records the exchange; returns the whole body. When the
    /// command was accepted as a job, the job's end is waited for and recorded too, so the
    /// next step never races it.
    pub(super) async fn call(
        &mut self,
        who: &str,
        command: &str,
        params: &[(&str, &str)],
    ) -> Value {
        let (status, body) = self.send(who, command, params, Record::Yes).await;
        let accepted = status == 200 && command != "queryAsyncJobResult";
        if accepted && inner(&body).get("jobid").is_some() {
            self.wait(who, &body).await;
        }
        body
    }

    /// Sends `command` as `who` without recording it (setting the scene); it must succeed.
    /// Returns the object inside the envelope.
    pub(super) async fn quiet(
        &mut self,
        who: &str,
        command: &str,
        params: &[(&str, &str)],
    ) -> Value {
        let (status, body) = self.send(who, command, params, Record::No).await;
        assert_eq!(status, 200, "{command}: {body}");
        inner(&body).clone()
    }

    /// Polls queryAsyncJobResult as `who` until the job of `reply` (a body or the object in
    /// its envelope) ends, then records that last answer and returns its object.
    pub(super) async fn wait(&mut self, who: &str, reply: &Value) -> Value {
        self.wait_as(who, reply, Record::Yes).await
    }

    async fn wait_as(&mut self, who: &str, reply: &Value, record: Record) -> Value {
        let obj = if reply.get("jobid").is_some() {
            reply
        } else {
            inner(reply)
        };
        let jobid = obj["jobid"]
            .as_str()
            .unwrap_or_else(|| panic!("no jobid in {reply}"))
            .to_string();
        let deadline = Instant::now() + JOB_DEADLINE;
        loop {
            let (status, body) = self
                .send(who, "queryAsyncJobResult", &[("jobid", &jobid)], Record::No)
                .await;
            assert_eq!(status, 200, "queryAsyncJobResult: {body}");
            let r = inner(&body);
            if r["jobstatus"].as_i64() != Some(0) {
                if record == Record::Yes {
                    self.exchanges.push(json!({
                        "as": who,
                        "command": "queryAsyncJobResult",
                        "params": [["jobid", jobid]],
                        "status": status,
                        "response": body,
                    }));
                }
                return r.clone();
            }
            assert!(
                Instant::now() < deadline,
                "job {jobid} still pending after {JOB_DEADLINE:?}"
            );
            tokio::time::sleep(JOB_POLL).await;
        }
    }

    /// Sends an async command as `who`, which must accept it, and records it and the end of
    /// its job; returns the immediate reply's object and the ended job's object.
    pub(super) async fn run(
        &mut self,
        who: &str,
        command: &str,
        params: &[(&str, &str)],
    ) -> (Value, Value) {
        let (status, body) = self.send(who, command, params, Record::Yes).await;
        assert_eq!(status, 200, "{command}: {body}");
        let reply = inner(&body).clone();
        let end = self.wait(who, &reply).await;
        (reply, end)
    }

    /// Like [`Session::run`] without recording; the job must succeed. Returns the reply's
    /// object and the job's `jobresult`.
    pub(super) async fn quiet_run(
        &mut self,
        who: &str,
        command: &str,
        params: &[(&str, &str)],
    ) -> (Value, Value) {
        let reply = self.quiet(who, command, params).await;
        let end = self.wait_as(who, &reply, Record::No).await;
        assert_eq!(end["jobstatus"], 1, "{command}: {end}");
        (reply, end["jobresult"].clone())
    }

    /// The seeded zone, offerings and template, listed as the admin (not recorded).
    pub(super) async fn shared(&mut self) -> Shared {
        let zones = self.quiet("admin", "listZones", &[]).await;
        let offerings = self.quiet("admin", "listNetworkOfferings", &[]).await;
        let offering_named = |name: &str| {
            offerings["networkoffering"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["name"] == name)
                .unwrap_or_else(|| panic!("no offering {name} in {offerings}"))["id"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let service = self.quiet("admin", "listServiceOfferings", &[]).await;
        let templates = self
            .quiet("admin", "listTemplates", &[("templatefilter", "featured")])
            .await;
        Shared {
            zone: id(&zones["zone"][0]),
            offering: offering_named(crate::bootstrap::OFFERING_EGRESS_DENY),
            open_offering: offering_named(crate::bootstrap::OFFERING_EGRESS_ALLOW),
            service_offering: id(&service["serviceoffering"][0]),
            template: id(&templates["template"][0]),
        }
    }

    /// A new account `name` (a user account of ROOT) with keys, known to later calls as
    /// `name`. Made quietly through the API as the admin; returns the account's id.
    pub(super) async fn account(&mut self, name: &str) -> String {
        let acc = self
            .quiet(
                "admin",
                "createAccount",
                &[
                    ("accounttype", "0"),
                    ("email", &format!("{name}@example.org")),
                    ("firstname", name),
                    ("lastname", "Golden"),
                    ("username", name),
                    ("password", "golden-password"),
                    ("account", name),
                ],
            )
            .await;
        let user = id(&acc["account"]["user"][0]);
        let keys = self
            .quiet("admin", "registerUserKeys", &[("id", &user)])
            .await;
        let key = keys["userkeys"]["apikey"].as_str().unwrap();
        let secret = keys["userkeys"]["secretkey"].as_str().unwrap();
        self.clients
            .insert(name.to_string(), Client::new("", key, secret));
        id(&acc["account"])
    }

    /// A network of `who` on `offering` named `name`, made quietly; returns its id.
    pub(super) async fn network(
        &mut self,
        who: &str,
        s: &Shared,
        offering: &str,
        name: &str,
    ) -> String {
        let net = self
            .quiet(
                who,
                "createNetwork",
                &[
                    ("name", name),
                    ("displaytext", name),
                    ("zoneid", &s.zone),
                    ("networkofferingid", offering),
                ],
            )
            .await;
        id(&net["network"])
    }

    /// A public IP of `who` on `network`, made quietly; returns its id.
    pub(super) async fn address(&mut self, who: &str, network: &str) -> String {
        let (reply, _) = self
            .quiet_run(who, "associateIpAddress", &[("networkid", network)])
            .await;
        id(&reply)
    }

    /// A VM of `who` on `network` named `name`, made quietly; returns its id.
    pub(super) async fn vm(&mut self, who: &str, s: &Shared, network: &str, name: &str) -> String {
        let (reply, _) = self
            .quiet_run(
                who,
                "deployVirtualMachine",
                &[
                    ("zoneid", &s.zone),
                    ("serviceofferingid", &s.service_offering),
                    ("templateid", &s.template),
                    ("networkids", network),
                    ("name", name),
                ],
            )
            .await;
        id(&reply)
    }

    /// The transcript, normalized.
    fn transcript(&self) -> Value {
        let all = Value::Array(self.exchanges.clone());
        Normalizer::numbering(&all).value(&all, None)
    }
}

/// The object inside a CloudStack envelope (`{"<command>response": {...}}`).
pub(super) fn inner(body: &Value) -> &Value {
    match body.as_object() {
        Some(o) if o.len() == 1 => o.values().next().unwrap(),
        _ => panic!("not a CloudStack envelope: {body}"),
    }
}

/// The `id` of an object, as text.
pub(super) fn id(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_string()
}

/// Keys whose values are secrets or change every run whatever they look like.
const KEY_FIELDS: [&str; 4] = ["apikey", "secretkey", "token", "signature"];

/// The shortest run of hex digits (outside a uuid) taken for a piece of a uuid, such as the
/// 29 digits of a default VM name.
const MIN_HEX_RUN: usize = 16;

/// Replaces what changes between runs; keeps everything else exact. Object keys come out
/// sorted, whatever order the server wrote them in.
#[derive(Default)]
struct Normalizer {
    /// Every uuid of the transcript and its number, by first appearance.
    uuids: HashMap<String, usize>,
}

impl Normalizer {
    /// A normalizer that numbers the uuids of `v` in the order [`Normalizer::value`] meets
    /// them (keys sorted), so that a run of hex digits met before its uuid still names it.
    fn numbering(v: &Value) -> Normalizer {
        let mut n = Normalizer::default();
        n.value(v, None);
        n
    }

    fn value(&mut self, v: &Value, key: Option<&str>) -> Value {
        match v {
            Value::String(s) if key.is_some_and(|k| KEY_FIELDS.contains(&k)) && !s.is_empty() => {
                Value::String("<key>".into())
            }
            Value::String(s) => Value::String(self.text(s)),
            Value::Array(items) => {
                // A `[name, value]` request parameter: a key parameter's value is a secret.
                if let [Value::String(name), value] = items.as_slice() {
                    if KEY_FIELDS.contains(&name.to_lowercase().as_str()) {
                        return json!([name, self.value(value, Some("apikey"))]);
                    }
                }
                Value::Array(items.iter().map(|i| self.value(i, None)).collect())
            }
            Value::Object(o) => {
                let sorted: BTreeMap<&String, &Value> = o.iter().collect();
                let mut out = Map::new();
                for (k, v) in sorted {
                    out.insert(k.clone(), self.value(v, Some(k)));
                }
                Value::Object(out)
            }
            other => other.clone(),
        }
    }

    fn text(&mut self, s: &str) -> String {
        let b = s.as_bytes();
        let mut out = String::with_capacity(s.len());
        let mut i = 0;
        while i < b.len() {
            let starts_word = i == 0 || !b[i - 1].is_ascii_alphanumeric();
            let hex_run = b[i..].iter().take_while(|c| c.is_ascii_hexdigit()).count();
            if is_generated_mac(&b[i..]) {
                out.push_str("<generated mac>");
                i += MAC_LEN;
            } else if is_uuid(&b[i..]) {
                let uuid = s[i..i + 36].to_ascii_lowercase();
                let next = self.uuids.len() + 1;
                let n = *self.uuids.entry(uuid).or_insert(next);
                out.push_str(&format!("<uuid:{n}>"));
                i += 36;
            } else if is_date(&b[i..]) {
                out.push_str("<date>");
                i += DATE_LEN;
            } else if starts_word
                && hex_run >= MIN_HEX_RUN
                && b.get(i + hex_run)
                    .is_none_or(|c| !c.is_ascii_alphanumeric())
            {
                out.push_str(&self.hex(&s[i..i + hex_run]));
                i += hex_run;
            } else {
                let c = s[i..].chars().next().unwrap();
                out.push(c);
                i += c.len_utf8();
            }
        }
        out
    }

    /// A run of hex digits: the start of a known uuid's digits (`<hex of uuid:N>`), or
    /// something random (`<hex>`).
    fn hex(&self, run: &str) -> String {
        let run = run.to_ascii_lowercase();
        self.uuids
            .iter()
            .filter(|(uuid, _)| uuid.replace('-', "").starts_with(&run))
            .map(|(_, n)| format!("<hex of uuid:{n}>"))
            .min()
            .unwrap_or_else(|| "<hex>".to_string())
    }
}

/// `02:00:5e:10:00:01`.
const MAC_LEN: usize = 17;

/// A MAC the server generated (`02:00:` and four random bytes).
fn is_generated_mac(b: &[u8]) -> bool {
    b.len() >= MAC_LEN
        && b.starts_with(b"02:00:")
        && b[..MAC_LEN].iter().enumerate().all(|(i, c)| match i % 3 {
            2 => *c == b':',
            _ => c.is_ascii_hexdigit(),
        })
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() >= 36
        && b[..36].iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// `2026-01-31T12:00:00+0000`.
const DATE_LEN: usize = 24;

fn is_date(b: &[u8]) -> bool {
    const SHAPE: &[u8; DATE_LEN] = b"dddd-dd-ddTdd:dd:dd+dddd";
    b.len() >= DATE_LEN
        && b[..DATE_LEN].iter().zip(SHAPE).all(|(c, s)| match s {
            b'd' => c.is_ascii_digit(),
            b'+' => *c == b'+' || *c == b'-',
            _ => c == s,
        })
}

/// `tests/golden` of this crate: the directory cargo names when it runs the tests (a build
/// shared between checkouts may have been compiled in another one), else the one compiled in.
fn golden_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf(),
            PathBuf::from,
        )
        .join("tests/golden")
}

fn golden_path(family: &str) -> PathBuf {
    golden_dir().join(format!("{family}.json"))
}

/// A family's script: the calls it makes, in order.
pub(super) type Script = for<'a> fn(&'a mut Session) -> Pin<Box<dyn Future<Output = ()> + 'a>>;

/// A family: the name of its golden file, its script, and what its router refuses (the
/// dry-run router accepts everything when `None`).
type Family = (&'static str, Script, Option<Fault>);

/// Every family.
fn families() -> [Family; 17] {
    [
        ("accounts", |s| Box::pin(accounts::script(s)), None),
        ("addresses", |s| Box::pin(addresses::script(s)), None),
        ("apis", |s| Box::pin(apis::script(s)), None),
        ("egress", |s| Box::pin(egress::script(s)), None),
        ("events", |s| Box::pin(events::script(s)), None),
        ("firewall", |s| Box::pin(firewall::script(s)), None),
        ("hosts", |s| Box::pin(hosts::script(s)), None),
        ("jobs", |s| Box::pin(jobs::script(s)), None),
        ("limits", |s| Box::pin(limits::script(s)), None),
        ("listings", |s| Box::pin(listings::script(s)), None),
        (
            "load_balancers",
            |s| Box::pin(load_balancers::script(s)),
            None,
        ),
        ("networks", |s| Box::pin(networks::script(s)), None),
        ("port_forwarding", |s| Box::pin(forwarding::script(s)), None),
        (
            "refusals",
            |s| Box::pin(refusals::script(s)),
            Some(refusals::refuse),
        ),
        ("routers", |s| Box::pin(routers::script(s)), None),
        ("vms", |s| Box::pin(vms::script(s)), None),
        ("zones", |s| Box::pin(zones::script(s)), None),
    ]
}

/// How many families run on PostgreSQL at once (each app's pool holds up to 16 connections,
/// and the server is shared with the other tests).
const POSTGRES_AT_ONCE: usize = 3;

/// The transcript of `script` on `app`.
async fn transcript_on(app: &App, script: Script) -> Value {
    let mut s = Session::new(app);
    script(&mut s).await;
    s.transcript()
}

/// The transcript of `script` on a fresh SQLite database.
async fn on_sqlite(script: Script, refuse: Option<Fault>) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let app = match refuse {
        None => crate::testkit::app(dir.path()).await,
        Some(fault) => {
            crate::testkit::app_with(dir.path(), Driver::dry_run_refusing(dir.path(), fault)).await
        }
    };
    transcript_on(&app, script).await
}

/// The transcript of `script` on a fresh PostgreSQL database.
async fn on_postgres(family: &str, script: Script) -> Value {
    let mut out = Value::Null;
    crate::testkit::on_postgres(&format!("golden_{family}"), async |app| {
        out = transcript_on(app, script).await;
    })
    .await;
    out
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap() + "\n"
}

fn blessing() -> bool {
    std::env::var_os("GUESTNET_BLESS").is_some()
}

fn read_golden(family: &str) -> String {
    let path = golden_path(family);
    std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "{} is missing: run `cargo xtask bless` (or GUESTNET_BLESS=1 cargo test -p mgmt golden)",
            path.display()
        )
    })
}

/// Runs `family` on SQLite and compares its transcript with the golden file, which
/// `GUESTNET_BLESS=1` rewrites instead.
pub(super) async fn check(family: &str) {
    let (_, script, refuse) = families()
        .into_iter()
        .find(|(name, _, _)| *name == family)
        .unwrap_or_else(|| panic!("{family} is not in families()"));
    let got = pretty(&on_sqlite(script, refuse).await);
    if blessing() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(golden_path(family), &got).unwrap();
        return;
    }
    let want = read_golden(family);
    assert!(
        got == want,
        "the {family} golden changed; review and run `cargo xtask bless`\n{}",
        first_difference(&want, &got)
    );
}

/// Every family answers on PostgreSQL exactly as the golden file (made on SQLite) says; when
/// blessing, exactly as SQLite answers now.
///
/// A fresh PostgreSQL database per family costs about 0.6 s to make, migrate, seed and drop,
/// so this test takes some 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_answers_alike_on_postgres() {
    use futures_util::StreamExt;
    // A refusing router is not among what the PostgreSQL harness offers.
    let plain = families()
        .into_iter()
        .filter(|(_, _, refuse)| refuse.is_none());
    let runs = futures_util::stream::iter(plain)
        .map(|(family, script, _)| async move {
            let postgres = pretty(&on_postgres(family, script).await);
            let want = if blessing() {
                pretty(&on_sqlite(script, None).await)
            } else {
                read_golden(family)
            };
            (family, want, postgres)
        })
        .buffer_unordered(POSTGRES_AT_ONCE)
        .collect::<Vec<_>>()
        .await;
    let differ: Vec<String> = runs
        .iter()
        .filter(|(_, want, got)| want != got)
        .map(|(family, want, got)| {
            format!(
                "{family}: PostgreSQL answers differently from SQLite\n{}",
                first_difference(want, got)
            )
        })
        .collect();
    assert!(differ.is_empty(), "{}", differ.join("\n\n"));
}

/// Every golden file belongs to a family that runs on PostgreSQL too, and every family has
/// its golden file.
#[test]
fn every_golden_file_is_a_family() {
    if blessing() {
        // The files are being rewritten by the other tests; the next run checks them.
        return;
    }
    let files: BTreeSet<String> = std::fs::read_dir(golden_dir())
        .unwrap_or_else(|e| panic!("{}: {e}", golden_dir().display()))
        .map(|e| {
            let path = e.unwrap().path();
            path.file_stem().unwrap().to_string_lossy().into_owned()
        })
        .collect();
    let names: BTreeSet<String> = families().iter().map(|(n, _, _)| n.to_string()).collect();
    assert_eq!(files, names);
}

/// The first differing line of two texts, with some context, for a readable failure.
fn first_difference(want: &str, got: &str) -> String {
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    let at = w
        .iter()
        .zip(&g)
        .position(|(a, b)| a != b)
        .unwrap_or(w.len().min(g.len()));
    let from = at.saturating_sub(8);
    let show = |lines: &[&str]| lines[from.min(lines.len())..(at + 8).min(lines.len())].join("\n");
    format!(
        "first difference at line {}\n--- expected ---\n{}\n--- got ---\n{}",
        at + 1,
        show(&w),
        show(&g)
    )
}

/// Every command of the catalogue is sent in at least one golden file.
#[test]
fn every_command_of_the_catalogue_has_a_golden_case() {
    if blessing() {
        // The files are being rewritten by the other tests; the next run checks them.
        return;
    }
    let mut sent = BTreeSet::new();
    let entries = std::fs::read_dir(golden_dir())
        .unwrap_or_else(|e| panic!("{}: {e}", golden_dir().display()));
    for entry in entries {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let exchanges: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for e in exchanges.as_array().unwrap() {
            sent.insert(e["command"].as_str().unwrap().to_string());
        }
    }
    let missing: Vec<&str> = api_types::catalogue::all()
        .iter()
        .map(|a| a.name)
        .filter(|name| !sent.contains(*name))
        .collect();
    assert!(
        missing.is_empty(),
        "commands without a golden case: {}",
        missing.join(", ")
    );
}

#[test]
fn normalizing_numbers_uuids_by_first_appearance_and_hides_dates_and_keys() {
    let a = "0b6f7a44-1c2d-4e5f-8a9b-0c1d2e3f4a5b";
    let b = "11111111-2222-4333-8444-555555555555";
    let v = json!({
        "z": format!("{b} then {a}"),
        "a": [a, {"apikey": "k", "created": "2026-01-31T12:00:00+0000 ok"}],
        "name": "VM-111111112222433384445",
        "other": "x-0123456789abcdef0123 and deadbeef",
        "token": "",
    });
    let got = Normalizer::numbering(&v).value(&v, None);
    assert_eq!(
        serde_json::to_string(&got).unwrap(),
        r#"{"a":["<uuid:1>",{"apikey":"<key>","created":"<date> ok"}],"name":"VM-<hex of uuid:2>","other":"x-<hex> and deadbeef","token":"","z":"<uuid:2> then <uuid:1>"}"#
    );
}
