//! A hypervisor host made of network namespaces, standing in for a KVM host of CloudStack: the
//! host agent's host driver runs inside it, never in the caller's own namespace.
//!
//! Every namespace is named `<base>-…` with `base` unique per test process and network
//! (`gnh<pid>-<n>`):
//! - `<base>-hv`, the hypervisor: bridge [`PUBLIC_BRIDGE`] (the public network), joined by veth
//!   `vout` to the outside host, and the trunk [`TRUNK`], a veth whose far end is `<base>-far`
//!   (another switch port, where VLAN-tagged frames would leave the host);
//! - `<base>-out`, the outside host: `eth0` on the public bridge with 203.0.113.1/24 (the routers'
//!   gateway), 203.0.113.2 and 203.0.113.3, and 198.51.100.1 and 192.0.2.1 on `lo` as sources
//!   from beyond the public segment;
//! - `TRUNK.N`, made by [`Hypervisor::provide_vlan`]: the VLAN interface of VLAN `N` as the
//!   host's own network configuration would provide it (the agent then runs with
//!   `vlan_interfaces = existing`). It is a veth to the far end rather than an 802.1Q interface,
//!   since the kernel the tests run on may have no 802.1Q support: each VLAN is a separate
//!   segment all the same;
//! - `<base>-g-<name>`, a guest made by [`Hypervisor::guest`]: `eth0` with its MAC, plugged by
//!   a veth into a bridge of the hypervisor as a hypervisor plugs a tap;
//! - routers the agent makes with [`Hypervisor::router_prefix`] as its namespace prefix.
//!
//! Drop ends every process in these namespaces and deletes them, the routers' included (found
//! by their prefix), also when the test panics.

use std::ffi::OsStr;
use std::fs::File;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sys::cmd::{Child, Output, Program, Stdio};

/// The public bridge in the hypervisor.
pub const PUBLIC_BRIDGE: &str = "brpub";

/// The guest trunk in the hypervisor.
pub const TRUNK: &str = "trunk0";

/// The outside host's address on the public segment (the routers' gateway).
pub const OUTSIDE_GATEWAY: &str = "203.0.113.1";

/// How long processes in a namespace get after SIGTERM (and again after SIGKILL) on drop.
const GRACE: Duration = Duration::from_secs(2);

/// Tells hypervisors made by one test process apart.
static HOSTS: AtomicU32 = AtomicU32::new(0);

/// A hypervisor host of namespaces; everything is removed on drop.
#[derive(Debug)]
pub struct Hypervisor {
    base: String,
    /// Every namespace made, in order; drop deletes them in reverse.
    made: Vec<String>,
    guests: Vec<(String, String)>,
}

fn ip_in(ns: &str, args: &[&str]) {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    sys::cmd::run("ip", &all, None)
        .unwrap_or_else(|e| panic!("ip {} in {ns}: {e}", args.join(" ")));
}

impl Hypervisor {
    /// Makes the hypervisor, its public bridge with the outside host on it, and its trunk.
    ///
    /// # Panics
    /// If a namespace or link cannot be made (whatever was made is removed first).
    pub fn new() -> Hypervisor {
        let n = HOSTS.fetch_add(1, Ordering::Relaxed);
        let mut hv = Hypervisor {
            base: format!("gnh{}-{n}", std::process::id()),
            made: Vec::new(),
            guests: Vec::new(),
        };
        let (host, out, far) = (hv.netns(), hv.outside(), format!("{}-far", hv.base));
        for ns in [&host, &out, &far] {
            hv.make_namespace(ns);
        }
        sys::netns::add_bridge(&host, PUBLIC_BRIDGE).expect("add the public bridge");
        sys::netns::add_veth(&host, "vout", &out, "eth0").expect("add the outside's veth");
        sys::netns::attach(&host, "vout", PUBLIC_BRIDGE).expect("attach the outside");
        for a in ["203.0.113.1/24", "203.0.113.2/24", "203.0.113.3/24"] {
            sys::netns::add_address(&out, "eth0", a).expect("outside address");
        }
        for a in ["198.51.100.1/32", "192.0.2.1/32"] {
            sys::netns::add_address(&out, "lo", a).expect("outside source address");
        }
        sys::netns::set_up(&out, "eth0").expect("outside up");
        sys::netns::add_veth(&host, TRUNK, &far, "trunk0").expect("add the trunk");
        sys::netns::set_up(&host, TRUNK).expect("trunk up");
        sys::netns::set_up(&far, "trunk0").expect("far end up");
        hv
    }

    /// Provides VLAN `vlan`'s interface `TRUNK.vlan` in the hypervisor (see the module's
    /// documentation), up.
    ///
    /// # Panics
    /// If it cannot be made.
    pub fn provide_vlan(&self, vlan: u16) -> String {
        let link = format!("{TRUNK}.{vlan}");
        let far = format!("{}-far", self.base);
        sys::netns::add_veth(&self.netns(), &link, &far, &format!("v{vlan}"))
            .expect("add the VLAN's link");
        sys::netns::set_up(&self.netns(), &link).expect("VLAN link up");
        sys::netns::set_up(&far, &format!("v{vlan}")).expect("far end up");
        link
    }

    /// The hypervisor's namespace.
    pub fn netns(&self) -> String {
        format!("{}-hv", self.base)
    }

    /// The outside host's namespace.
    pub fn outside(&self) -> String {
        format!("{}-out", self.base)
    }

    /// The namespace prefix to give the agent: its routers are `<prefix>-<router>`, removed on
    /// drop.
    pub fn router_prefix(&self) -> String {
        format!("{}r", self.base)
    }

    /// The namespaces of the agent's routers that exist now.
    pub fn router_namespaces(&self) -> Vec<String> {
        let prefix = format!("{}-", self.router_prefix());
        sys::netns::list()
            .expect("list namespaces")
            .into_iter()
            .filter(|n| n.starts_with(&prefix))
            .collect()
    }

    /// Makes guest `name`: a namespace whose `eth0` (MAC `mac`, address `cidr` when given, a
    /// default route via `gateway` when given) is plugged into `bridge` of the hypervisor by a
    /// veth whose hypervisor side is `port`, as a hypervisor plugs a guest's tap. Returns the
    /// guest's namespace.
    ///
    /// # Panics
    /// If the bridge is missing or a link cannot be made.
    pub fn guest(
        &mut self,
        name: &str,
        port: &str,
        bridge: &str,
        mac: &str,
        cidr: Option<&str>,
        gateway: Option<&str>,
    ) -> String {
        let ns = format!("{}-g-{name}", self.base);
        self.make_namespace(&ns);
        let host = self.netns();
        sys::netns::add_veth(&host, port, &ns, "eth0").expect("add the guest's veth");
        ip_in(&ns, &["link", "set", "dev", "eth0", "address", mac]);
        sys::netns::attach(&host, port, bridge).expect("plug the guest into its bridge");
        if let Some(cidr) = cidr {
            sys::netns::add_address(&ns, "eth0", cidr).expect("guest address");
        }
        sys::netns::set_up(&ns, "eth0").expect("guest up");
        if let Some(gw) = gateway {
            sys::netns::add_default_route(&ns, gw).expect("guest route");
        }
        self.guests.push((name.to_string(), port.to_string()));
        ns
    }

    /// Unplugs guest `name` from its bridge (deletes its veth) and removes its namespace.
    ///
    /// # Panics
    /// If `name` is not a guest, or the namespace cannot be removed.
    pub fn unplug(&mut self, name: &str) {
        let i = self
            .guests
            .iter()
            .position(|(g, _)| g == name)
            .unwrap_or_else(|| panic!("{name} is not a guest"));
        let (_, port) = self.guests.remove(i);
        let ns = format!("{}-g-{name}", self.base);
        sys::netns::remove(&ns, GRACE).expect("remove the guest");
        self.made.retain(|m| *m != ns);
        // The veth went with the guest's namespace; a port left behind is deleted.
        let _ = sys::cmd::run(
            "ip",
            &["-n", &self.netns(), "link", "delete", "dev", &port],
            None,
        );
    }

    /// A program running inside namespace `ns`.
    pub fn command<I, S>(ns: &str, program: impl AsRef<OsStr>, args: I) -> Program
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut p = sys::netns::command_in(ns, program, args);
        p.stdin(Stdio::null());
        p
    }

    /// Runs `argv` in namespace `ns` and returns its output (whatever its status).
    ///
    /// # Panics
    /// If it cannot be started.
    pub fn output(ns: &str, argv: &[&str]) -> Output {
        Hypervisor::command(ns, argv[0], &argv[1..])
            .output()
            .unwrap_or_else(|e| panic!("run {argv:?} in {ns}: {e}"))
    }

    /// Starts `argv` in namespace `ns` in the background, its output discarded; the namespace's
    /// removal ends it.
    ///
    /// # Panics
    /// If it cannot be started.
    pub fn spawn(ns: &str, argv: &[&str]) -> Child {
        Hypervisor::command(ns, argv[0], &argv[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {argv:?} in {ns}: {e}"))
    }

    /// The names of the links of the hypervisor.
    pub fn links(&self) -> Vec<String> {
        links_in(Some(&self.netns()))
    }

    /// Runs `f` on a fresh thread that has entered the hypervisor's namespace, and returns its
    /// result; processes it starts run there, and so do threads it makes (a tokio runtime
    /// built inside `f`).
    ///
    /// # Panics
    /// If the namespace cannot be entered, or if `f` panics.
    pub fn in_netns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns(&self.netns(), f)
    }

    fn make_namespace(&mut self, ns: &str) {
        if sys::netns::exists(ns) {
            remove_namespace(ns);
        }
        sys::netns::add(ns).unwrap_or_else(|e| panic!("cannot add namespace {ns}: {e}"));
        self.made.push(ns.to_string());
    }
}

impl Default for Hypervisor {
    fn default() -> Self {
        Hypervisor::new()
    }
}

impl Drop for Hypervisor {
    fn drop(&mut self) {
        let routers = sys::netns::list()
            .map(|l| {
                let prefix = format!("{}-", self.router_prefix());
                l.into_iter()
                    .filter(|n| n.starts_with(&prefix))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        for ns in routers.iter().chain(self.made.iter().rev()) {
            remove_namespace(ns);
        }
    }
}

/// Runs `f` on a fresh thread that has entered the named namespace `ns`, and returns its
/// result (see [`Hypervisor::in_netns`]).
///
/// # Panics
/// If the namespace cannot be entered, or if `f` panics.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = sys::netns::path(ns);
    std::thread::scope(|s| {
        let thread = s.spawn(move || {
            let ns =
                File::open(&path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("cannot enter {}: {e}", path.display()));
            drop(ns);
            f()
        });
        thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// The names of the links of namespace `ns` (`None`: this process's own).
///
/// # Panics
/// If `ip` fails.
pub fn links_in(ns: Option<&str>) -> Vec<String> {
    let out = match ns {
        Some(ns) => sys::cmd::run("ip", &["-n", ns, "-o", "link", "show"], None),
        None => sys::cmd::run("ip", &["-o", "link", "show"], None),
    }
    .expect("list links");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

fn remove_namespace(ns: &str) {
    if let Err(e) = sys::netns::remove(ns, GRACE) {
        eprintln!("Hypervisor: removing namespace {ns}: {e}");
    }
}
