//! Management servers and agents as real processes, for the tests of the spread-out pipeline:
//! started (in the test's own namespaces when asked), killed with -9, started again, their logs
//! kept for failure messages; every process is killed when its handle drops, also when a test
//! fails.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sys::cmd::{Child, Program, Stdio};

use mgmt::client::Client;
use serde_json::Value;

/// The admin keys every test server gets.
pub(crate) const KEY: &str = "agents-test-api-key";
/// The admin secret every test server gets.
pub(crate) const SECRET: &str = "agents-test-secret-key";

/// A bound for things that normally take milliseconds to a few seconds.
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

pub(crate) fn guestnet() -> Program {
    sys::cmd::Program::new(env!("CARGO_BIN_EXE_guestnet"))
}

/// `guestnet …` inside a named namespace, or here.
fn guestnet_in(netns: Option<&str>) -> Program {
    match netns {
        Some(ns) => sys::netns::command_in(ns, env!("CARGO_BIN_EXE_guestnet"), Vec::<&str>::new()),
        None => guestnet(),
    }
}

/// What a server is started with.
#[derive(Debug, Clone)]
pub(crate) struct ServerSpec {
    pub(crate) name: String,
    pub(crate) data_dir: PathBuf,
    pub(crate) database_url: Option<String>,
    pub(crate) listen: String,
    pub(crate) netns: Option<String>,
    pub(crate) apply_timeout: String,
    pub(crate) log: PathBuf,
}

/// Starts `guestnet serve --driver agents`; returns it and its endpoint, read from the startup
/// line.
pub(crate) fn server(spec: &ServerSpec) -> (Proc, String) {
    server_logging(spec, "info,mgmt=debug")
}

/// [`server`] with `RUST_LOG` set to `rust_log`.
pub(crate) fn server_logging(spec: &ServerSpec, rust_log: &str) -> (Proc, String) {
    let mut cmd = guestnet_in(spec.netns.as_deref());
    cmd.args(["serve", "--driver", "agents", "--listen", &spec.listen])
        .args(["--server-name", &spec.name])
        .args(["--apply-timeout", &spec.apply_timeout])
        .arg("--data-dir")
        .arg(&spec.data_dir)
        .env("GUESTNET_ADMIN_API_KEY", KEY)
        .env("GUESTNET_ADMIN_SECRET_KEY", SECRET)
        .env("RUST_LOG", rust_log);
    if let Some(url) = &spec.database_url {
        cmd.args(["--database-url", url]);
    }
    cmd.stdout(Stdio::piped());
    let mut proc = Proc::spawn(&spec.name, &mut cmd, &spec.log).unwrap_or_else(|e| panic!("{e}"));
    let (line, endpoint) = match proc.child_mut() {
        Some(child) => startup_line(child, DEADLINE),
        None => (String::new(), None),
    };
    let endpoint = endpoint.unwrap_or_else(|| {
        panic!(
            "{}: no endpoint in the startup line {line:?}; its log:\n{}",
            spec.name,
            proc.log()
        )
    });
    assert!(line.contains("driver agents"), "{line}");
    (proc, endpoint)
}

pub(crate) use test_support::process::{base_url as base, startup_line, Proc};

/// What an agent is started with.
#[derive(Debug, Clone)]
pub(crate) struct AgentSpec {
    pub(crate) name: String,
    pub(crate) servers: Vec<String>,
    pub(crate) token_file: PathBuf,
    pub(crate) data_dir: PathBuf,
    pub(crate) netns: Option<String>,
    pub(crate) apply_timeout: String,
    pub(crate) log: PathBuf,
}

/// Starts `guestnet agent --driver lab`.
pub(crate) fn agent(spec: &AgentSpec) -> Proc {
    agent_with(spec, "lab", "info,agent=debug")
}

/// [`agent`] with another driver and `RUST_LOG` set to `rust_log`.
pub(crate) fn agent_with(spec: &AgentSpec, driver: &str, rust_log: &str) -> Proc {
    let mut cmd = guestnet_in(spec.netns.as_deref());
    cmd.args(["agent", "--driver", driver])
        .args(["--apply-timeout", &spec.apply_timeout])
        .arg("--server")
        .arg(spec.servers.join(","))
        .arg("--token-file")
        .arg(&spec.token_file)
        .arg("--data-dir")
        .arg(&spec.data_dir)
        .args(["--drift-interval", "0.5"])
        .env("RUST_LOG", rust_log);
    cmd.stdout(Stdio::null());
    Proc::spawn(&spec.name, &mut cmd, &spec.log).unwrap_or_else(|e| panic!("{e}"))
}

/// A signed admin client with its own runtime.
pub(crate) struct Admin {
    rt: tokio::runtime::Runtime,
    client: Client,
}

impl Admin {
    pub(crate) fn new(endpoint: &str) -> Admin {
        Admin {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            client: Client::new(endpoint, KEY, SECRET),
        }
    }

    pub(crate) fn call(&self, cmd: &str, params: &[(&str, &str)]) -> Value {
        self.rt
            .block_on(self.client.call(cmd, params))
            .unwrap_or_else(|e| panic!("{cmd} {params:?}: {e}"))
    }

    pub(crate) fn try_call(
        &self,
        cmd: &str,
        params: &[(&str, &str)],
    ) -> Result<Value, mgmt::client::ClientError> {
        self.rt.block_on(self.client.call(cmd, params))
    }

    /// Calls an async command and waits for its job to succeed.
    pub(crate) fn run(&self, cmd: &str, params: &[(&str, &str)]) -> Value {
        self.rt
            .block_on(self.client.run(cmd, params))
            .unwrap_or_else(|e| panic!("{cmd} {params:?}: {e}"))
    }

    /// Waits for a job to end; its result, or the job's error.
    pub(crate) fn wait_job(&self, jobid: &str, within: Duration) -> Result<Value, String> {
        self.rt
            .block_on(self.client.wait_job(
                jobid,
                Duration::from_millis(20),
                Instant::now() + within,
            ))
            .map_err(|e| e.to_string())
    }

    /// Polls `f` until it holds.
    pub(crate) fn until(&self, what: &str, mut f: impl FnMut(&Admin) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !f(self) {
            assert!(Instant::now() < deadline, "never: {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The token `createAgentToken` issues for `host`, written to `file`.
    pub(crate) fn token(&self, host: &str, file: &Path) -> Value {
        let t = self.call("createAgentToken", &[("host", host)]);
        let token = t["agenttoken"]["token"].as_str().expect("token");
        std::fs::write(file, token).expect("write the token file");
        t["agenttoken"].clone()
    }

    /// Whether listHosts shows `host` Up.
    pub(crate) fn host_up(&self, host: &str) -> bool {
        let r = self.call("listHosts", &[("name", host)]);
        r["host"][0]["state"] == "Up"
    }
}

/// `guestnet verify` against a database; its exit status and output.
pub(crate) fn verify(database_url: Option<&str>, data_dir: &Path) -> (bool, String) {
    let mut cmd = guestnet();
    cmd.arg("verify").arg("--data-dir").arg(data_dir);
    if let Some(url) = database_url {
        cmd.args(["--database-url", url]);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("run guestnet verify");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Polls `guestnet verify` until it finds no difference (the system settles after a fault);
/// its last output.
pub(crate) fn verify_settles(database_url: Option<&str>, data_dir: &Path) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (ok, out) = verify(database_url, data_dir);
        if ok {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "guestnet verify kept finding differences:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A host's lab, as the tests probe it: curl from one of its namespaces, whoami servers in VMs.
pub(crate) struct HostLab {
    pub(crate) data_dir: PathBuf,
    background: Vec<Child>,
}

impl HostLab {
    pub(crate) fn new(data_dir: &Path) -> HostLab {
        HostLab {
            data_dir: data_dir.to_path_buf(),
            background: Vec::new(),
        }
    }

    /// The body `target` gets from ip:port, or None when refused.
    pub(crate) fn get(&self, target: &str, ip: &str, port: u16, timeout: &str) -> Option<String> {
        let out = guestnet()
            .args(["lab", "exec", "--data-dir"])
            .arg(&self.data_dir)
            .args([target, "--", "curl", "-s", "--max-time", timeout])
            .arg(format!("http://{ip}:{port}/"))
            .stdin(Stdio::null())
            .output()
            .expect("run curl in the lab");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits until `target` gets an answer from ip:port.
    pub(crate) fn admitted(&self, target: &str, ip: &str, port: u16) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(body) = self.get(target, ip, port, "2") {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{target} never reached {ip}:{port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Checks that `target` cannot reach ip:port (one probe).
    pub(crate) fn refused(&self, target: &str, ip: &str, port: u16) {
        assert_eq!(
            self.get(target, ip, port, "1"),
            None,
            "{target} reached {ip}:{port}, which the rules refuse"
        );
    }

    /// Runs a command in a lab namespace; whether it succeeded, and its output.
    pub(crate) fn exec(&self, target: &str, argv: &[&str]) -> (bool, String) {
        let out = guestnet()
            .args(["lab", "exec", "--data-dir"])
            .arg(&self.data_dir)
            .arg(target)
            .arg("--")
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .expect("run in the lab");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// Starts the whoami server (answering `NAME CLIENT-ADDRESS`) in a lab host and waits until
    /// that host itself reaches it.
    pub(crate) fn whoami(&mut self, target: &str, ip: &str, port: u16, name: &str) {
        self.serve(lab::WHOAMI_HTTP_SERVER, target, ip, port, name);
    }

    /// Starts `program` (one of the lab's test servers, run as `python3 -c PROGRAM IP PORT
    /// NAME`) in a lab host and waits until that host itself reaches it.
    pub(crate) fn serve(&mut self, program: &str, target: &str, ip: &str, port: u16, name: &str) {
        let child = guestnet()
            .args(["lab", "exec", "--data-dir"])
            .arg(&self.data_dir)
            .args([target, "--", "python3", "-c", program, ip])
            .arg(port.to_string())
            .arg(name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start whoami");
        self.background.push(child);
        let deadline = Instant::now() + DEADLINE;
        while self.get(target, ip, port, "1").is_none() {
            assert!(
                Instant::now() < deadline,
                "whoami on {target} never came up"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for HostLab {
    fn drop(&mut self) {
        for c in &mut self.background {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Err(errors) = lab::down(&self.data_dir) {
            for e in errors {
                eprintln!("teardown: {}", lab::chain(&e));
            }
        }
    }
}

/// What a network made for a test has.
pub(crate) struct TestNet {
    pub(crate) id: String,
    pub(crate) ip: String,
    pub(crate) ip_id: String,
    pub(crate) router: String,
}

/// A network (egress denied by default) with its source-NAT address and the given VMs (name,
/// last octet), each deployed.
pub(crate) fn network(a: &Admin, name: &str, third: u8, vms: &[(&str, u8)]) -> TestNet {
    network_with(a, name, third, false, vms)
}

/// [`network`] on the offering whose default egress policy is `allow` (or deny).
pub(crate) fn network_with(
    a: &Admin,
    name: &str,
    third: u8,
    allow: bool,
    vms: &[(&str, u8)],
) -> TestNet {
    let zone = a.call("listZones", &[])["zone"][0]["id"]
        .as_str()
        .expect("zone")
        .to_string();
    let so = a.call("listServiceOfferings", &[])["serviceoffering"][0]["id"]
        .as_str()
        .expect("service offering")
        .to_string();
    let tpl = a.call("listTemplates", &[("templatefilter", "featured")])["template"][0]["id"]
        .as_str()
        .expect("template")
        .to_string();
    let off = a.call("listNetworkOfferings", &[])["networkoffering"]
        .as_array()
        .expect("offerings")
        .iter()
        .find(|o| o["egressdefaultpolicy"].as_bool() == Some(allow))
        .and_then(|o| o["id"].as_str())
        .expect("an offering with that egress policy")
        .to_string();
    let gw = format!("10.1.{third}.1");
    let n = a.call(
        "createNetwork",
        &[
            ("name", name),
            ("displaytext", name),
            ("networkofferingid", &off),
            ("zoneid", &zone),
            ("gateway", &gw),
            ("netmask", "255.255.255.0"),
        ],
    );
    let id = n["network"]["id"].as_str().expect("network id").to_string();
    let ips = a.call("listPublicIpAddresses", &[("associatednetworkid", &id)]);
    let ip = ips["publicipaddress"][0]["ipaddress"]
        .as_str()
        .expect("source nat ip")
        .to_string();
    let ip_id = ips["publicipaddress"][0]["id"]
        .as_str()
        .expect("ip id")
        .to_string();
    for (vm, last) in vms {
        let addr = format!("10.1.{third}.{last}");
        a.run(
            "deployVirtualMachine",
            &[
                ("zoneid", &zone),
                ("serviceofferingid", &so),
                ("templateid", &tpl),
                ("networkids", &id),
                ("ipaddress", &addr),
                ("name", vm),
            ],
        );
    }
    let router = a.call("listRouters", &[("networkid", &id)])["router"][0]["name"]
        .as_str()
        .expect("router")
        .to_string();
    TestNet {
        id,
        ip,
        ip_id,
        router,
    }
}

/// The id of a VM by name.
pub(crate) fn vm_id(a: &Admin, name: &str) -> String {
    a.call("listVirtualMachines", &[("name", name)])["virtualmachine"][0]["id"]
        .as_str()
        .expect("vm id")
        .to_string()
}
