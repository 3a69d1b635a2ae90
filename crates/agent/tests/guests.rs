//! The VM drivers boot real guests: in a namespace standing for a hypervisor, with a bridge
//! standing for a guest network's VLAN bridge and dnsmasq serving a static lease on it, a guest
//! built from Debian packages gets its address by DHCP and answers HTTP, through libvirt (a
//! private daemon in the namespace) and through QEMU run by the driver; removing it leaves
//! nothing behind, and a guest that cannot be made is a clear error that leaves nothing behind
//! either.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use agent::guests::{GuestError, Libvirt, LibvirtConfig, Qemu, QemuConfig, VmConfig, VmDriver};
use agent::proto::{GuestImage, GuestSpec};
use router_config::MacAddr;
use sys::cmd::{Child, Program, Stdio};
use test_support::libvirtd::Libvirtd;
use test_support::{guest_image, wait_until};

/// How long a guest may take from its start to its lease (TCG, a loaded machine).
const LEASE_DEADLINE: Duration = Duration::from_secs(90);

/// How long its HTTP server may take to answer once it has its lease.
const HTTP_DEADLINE: Duration = Duration::from_secs(30);

/// The bridge's own address: dnsmasq serves from it.
const BRIDGE_ADDRESS: &str = "10.1.2.1/24";

/// The guest's static lease.
const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 2, 23);
const GUEST_NAME: &str = "guest1";
const GUEST_MAC: &str = "52:54:00:4e:17:23";

static HYPERVISORS: AtomicU32 = AtomicU32::new(0);

/// A namespace standing for a hypervisor: a bridge with an address, dnsmasq on it with one
/// static lease, a private libvirt daemon. Everything in it ends with it, also on a panic.
struct Hypervisor {
    netns: String,
    bridge: String,
    dir: tempfile::TempDir,
    // Dropped in this order: the daemon (destroying its guests), dnsmasq, then the namespace.
    libvirtd: Option<Libvirtd>,
    dnsmasq: Option<Child>,
}

impl Hypervisor {
    /// With a private libvirt daemon.
    fn new() -> Hypervisor {
        let mut h = Hypervisor::bare();
        h.libvirtd = Some(Libvirtd::start(&h.netns).expect("start a private libvirtd"));
        h
    }

    /// Without libvirt.
    fn bare() -> Hypervisor {
        let n = HYPERVISORS.fetch_add(1, Ordering::Relaxed);
        let netns = format!("gng{}-{n}", std::process::id());
        let bridge = format!("brg{n}-100");
        sys::netns::add(&netns).expect("make the namespace");
        let mut h = Hypervisor {
            netns,
            bridge,
            dir: tempfile::tempdir().unwrap(),
            libvirtd: None,
            dnsmasq: None,
        };
        sys::netns::add_bridge(&h.netns, &h.bridge).expect("make the bridge");
        sys::netns::add_address(&h.netns, &h.bridge, BRIDGE_ADDRESS).expect("address the bridge");
        let d = h.dir.path();
        let log = std::fs::File::create(d.join("dnsmasq.log")).unwrap();
        let err = log.try_clone().unwrap();
        let child = Program::in_netns(&h.netns, "dnsmasq")
            .args([
                "--no-daemon",
                "--conf-file=/dev/null",
                "--bind-interfaces",
                "--except-interface=lo",
                "--port=0",
                "--log-dhcp",
            ])
            .arg(format!("--interface={}", h.bridge))
            .arg("--dhcp-range=10.1.2.0,static,255.255.255.0")
            .arg(format!("--dhcp-host={GUEST_MAC},{GUEST_IP},{GUEST_NAME}"))
            .arg(format!("--dhcp-leasefile={}", d.join("leases").display()))
            .arg(format!("--pid-file={}", d.join("dnsmasq.pid").display()))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("start dnsmasq");
        h.dnsmasq = Some(child);
        h
    }

    fn libvirtd(&self) -> &Libvirtd {
        self.libvirtd.as_ref().unwrap()
    }

    fn driver(&self, data_dir: &Path) -> Libvirt {
        Libvirt::new(&LibvirtConfig {
            uri: self.libvirtd().uri().to_string(),
            kvm: false,
            data_dir: data_dir.to_path_buf(),
        })
    }

    /// The interfaces of the namespace, but loopback.
    fn links(&self) -> Vec<String> {
        let out = Program::new("ip")
            .args(["-n", &self.netns, "-o", "link", "show"])
            .run()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
            .filter(|n| n != "lo")
            .collect()
    }

    /// The commands of the processes in the namespace.
    fn programs(&self) -> Vec<String> {
        sys::netns::pids(&self.netns)
            .unwrap()
            .into_iter()
            .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).ok())
            .map(|c| c.trim().to_string())
            .collect()
    }

    fn curl(&self, url: &str) -> Option<String> {
        let out = Program::in_netns(&self.netns, "curl")
            .args(["-s", "-f", "-m", "2", url])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn report(&self, what: &str) -> String {
        let dnsmasq =
            std::fs::read_to_string(self.dir.path().join("dnsmasq.log")).unwrap_or_default();
        let libvirtd = self
            .libvirtd
            .as_ref()
            .map(Libvirtd::log)
            .unwrap_or_default();
        format!("{what}\n--- dnsmasq\n{dnsmasq}\n--- libvirtd\n{libvirtd}")
    }

    fn qemu(&self, data_dir: &Path) -> Qemu {
        Qemu::new(&QemuConfig {
            kvm: false,
            data_dir: data_dir.to_path_buf(),
            netns: Some(self.netns.clone()),
        })
    }
}

impl Drop for Hypervisor {
    fn drop(&mut self) {
        drop(self.libvirtd.take());
        if let Some(mut c) = self.dnsmasq.take() {
            let _ = c.kill_and_wait();
        }
        if let Err(e) = sys::netns::remove(&self.netns, Duration::from_secs(2)) {
            eprintln!("cannot remove namespace {}: {e}", self.netns);
        }
    }
}

fn spec(image: GuestImage) -> GuestSpec {
    GuestSpec {
        cpus: 1,
        memory_mib: 256,
        image,
    }
}

fn kernel_image() -> (GuestImage, guest_image::GuestImage) {
    let built = guest_image::build().expect("build the guest image");
    (
        GuestImage::Kernel {
            kernel: built.kernel.clone(),
            initrd: Some(built.initrd.clone()),
            cmdline: built.cmdline.clone(),
        },
        built,
    )
}

/// Waits for the guest's marker on its serial console, then for its page; how long after
/// `started` each came.
fn wait_for_guest(h: &Hypervisor, serial: &Path, started: Instant) -> (Duration, Duration) {
    let marker = format!("{}{GUEST_IP}", guest_image::MARKER);
    let leased = wait_until(Instant::now() + LEASE_DEADLINE, || {
        std::fs::read_to_string(serial).is_ok_and(|t| t.contains(&marker))
    });
    assert!(
        leased,
        "{}",
        h.report(&format!(
            "no {marker:?} within {LEASE_DEADLINE:?}; serial console:\n{}",
            std::fs::read_to_string(serial).unwrap_or_default()
        ))
    );
    let lease = started.elapsed();
    let url = format!("http://{GUEST_IP}/");
    let mut page = None;
    let answered = wait_until(Instant::now() + HTTP_DEADLINE, || {
        page = h.curl(&url);
        page.is_some()
    });
    assert!(answered, "{}", h.report(&format!("{url} did not answer")));
    let http = started.elapsed();
    let page = page.unwrap();
    assert!(
        page.contains(GUEST_NAME) && page.contains(&GUEST_IP.to_string()),
        "the page names the guest: {page:?}"
    );
    (lease, http)
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn a_guest_boots_gets_its_lease_and_serves_http_and_goes_without_a_trace() {
    let (image, built) = kernel_image();
    let h = Hypervisor::new();
    let data = tempfile::tempdir().unwrap();
    let driver = h.driver(data.path());
    let mac: MacAddr = GUEST_MAC.parse().unwrap();
    let key = "vm-1";

    let started = Instant::now();
    driver
        .ensure(key, &spec(image.clone()), mac, &h.bridge)
        .unwrap_or_else(|e| panic!("{}", h.report(&format!("ensure: {e:?}"))));
    let defined = started.elapsed();
    assert_eq!(driver.list().unwrap(), [key]);

    let (lease, http) = wait_for_guest(&h, &driver.serial_log(key), started);
    let url = format!("http://{GUEST_IP}/");
    println!(
        "libvirt guest ({}): defined and started {defined:.2?}, lease {lease:.2?}, HTTP {http:.2?} after ensure",
        built.versions
    );

    // Again: the running guest is found, not made twice.
    driver
        .ensure(key, &spec(image), mac, &h.bridge)
        .expect("ensure again");
    assert_eq!(driver.list().unwrap(), [key]);
    assert!(h.links().iter().any(|l| l != &h.bridge), "the guest's tap");

    driver.remove(key).expect("remove");
    assert!(driver.list().unwrap().is_empty());
    assert_eq!(driver.state(key).unwrap(), None);
    assert!(!driver.guest_dir(key).exists(), "its files are gone");
    assert_eq!(h.links(), std::slice::from_ref(&h.bridge), "no tap is left");
    let gone = wait_until(Instant::now() + Duration::from_secs(10), || {
        !h.programs().iter().any(|p| p.starts_with("qemu"))
    });
    assert!(gone, "no QEMU is left: {:?}", h.programs());
    assert_eq!(h.curl(&url), None, "nothing answers any more");
    // Removing it again, or a guest never made, is fine.
    driver.remove(key).expect("remove again");
    driver
        .remove("never-made")
        .expect("remove an unknown guest");
}

/// Nothing the driver made is left: no domain, no files, no tap.
fn assert_nothing_left(h: &Hypervisor, driver: &Libvirt, data: &Path, key: &str) {
    assert!(driver.list().unwrap().is_empty(), "no domain");
    assert!(h.libvirtd().virsh().list_all().unwrap().is_empty());
    assert!(!driver.guest_dir(key).exists(), "no files");
    let guests = data.join("guests");
    let left: Vec<PathBuf> = std::fs::read_dir(&guests)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "nothing under {}: {left:?}",
        guests.display()
    );
    assert_eq!(h.links(), std::slice::from_ref(&h.bridge), "no tap");
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn a_guest_that_cannot_be_made_is_a_clear_error_and_leaves_nothing() {
    let h = Hypervisor::new();
    let data = tempfile::tempdir().unwrap();
    let driver = h.driver(data.path());
    let mac: MacAddr = GUEST_MAC.parse().unwrap();
    let files = tempfile::tempdir().unwrap();

    // A kernel that is not there.
    let missing = files.path().join("no-such-vmlinuz");
    let e = driver
        .ensure(
            "vm-missing",
            &spec(GuestImage::Kernel {
                kernel: missing.clone(),
                initrd: None,
                cmdline: String::new(),
            }),
            mac,
            &h.bridge,
        )
        .unwrap_err();
    assert!(
        matches!(&e, GuestError::ImageMissing { what: "kernel", path, .. } if path == &missing),
        "{e:?}"
    );
    assert!(e.to_string().contains("no-such-vmlinuz"), "{e}");
    assert_nothing_left(&h, &driver, data.path(), "vm-missing");

    // A disk image that is not a qcow2 image: qemu-img refuses to put an overlay on it.
    let bogus = files.path().join("bogus.qcow2");
    std::fs::write(&bogus, b"this is not a disk image\n").unwrap();
    let e = driver
        .ensure(
            "vm-bogus-disk",
            &spec(GuestImage::Disk {
                path: bogus.clone(),
                format: "qcow2".into(),
            }),
            mac,
            &h.bridge,
        )
        .unwrap_err();
    assert!(matches!(&e, GuestError::Overlay { .. }), "{e:?}");
    let text = vrouterd::chain(&e);
    assert!(
        text.contains("bogus.qcow2") && text.contains("qemu-img"),
        "{text}"
    );
    assert_nothing_left(&h, &driver, data.path(), "vm-bogus-disk");

    // A kernel file that is no kernel: QEMU refuses to start, libvirt says why.
    let junk = files.path().join("junk-vmlinuz");
    std::fs::write(&junk, vec![0x5a_u8; 4096]).unwrap();
    let e = driver
        .ensure(
            "vm-junk-kernel",
            &spec(GuestImage::Kernel {
                kernel: junk,
                initrd: None,
                cmdline: String::new(),
            }),
            mac,
            &h.bridge,
        )
        .unwrap_err();
    assert!(matches!(&e, GuestError::Libvirt { .. }), "{e:?}");
    let text = vrouterd::chain(&e);
    assert!(text.contains("start"), "{text}");
    assert_nothing_left(&h, &driver, data.path(), "vm-junk-kernel");

    // A bridge that does not exist: libvirt refuses to plug the NIC in.
    let (image, _) = kernel_image();
    let e = driver
        .ensure("vm-no-bridge", &spec(image), mac, "brg-none")
        .unwrap_err();
    let text = vrouterd::chain(&e);
    assert!(
        matches!(&e, GuestError::Libvirt { .. }) && text.contains("brg-none"),
        "{text}"
    );
    assert_nothing_left(&h, &driver, data.path(), "vm-no-bridge");
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn a_disk_guest_runs_on_its_own_overlay_and_leaves_the_template_alone() {
    let h = Hypervisor::new();
    let data = tempfile::tempdir().unwrap();
    let driver = h.driver(data.path());
    let mac: MacAddr = GUEST_MAC.parse().unwrap();
    // A template's image: an empty qcow2 disk (the firmware finds nothing to boot, and the
    // guest runs on regardless).
    let templates = tempfile::tempdir().unwrap();
    let base = templates.path().join("template.qcow2");
    Program::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&base)
        .arg("64M")
        .run()
        .expect("make a template image");
    let before = std::fs::read(&base).unwrap();
    let key = "vm-disk";
    driver
        .ensure(
            key,
            &spec(GuestImage::Disk {
                path: base.clone(),
                format: "qcow2".into(),
            }),
            mac,
            &h.bridge,
        )
        .unwrap_or_else(|e| panic!("{}", h.report(&format!("ensure: {e:?}"))));
    assert_eq!(driver.list().unwrap(), [key]);
    let overlay = driver.guest_dir(key).join("disk.qcow2");
    let info = Program::new("qemu-img")
        .args(["info", "-U", "--output=json"])
        .arg(&overlay)
        .run()
        .expect("read the overlay");
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains(&format!("\"backing-filename\": \"{}\"", base.display())),
        "the overlay is backed by the template: {info}"
    );
    let xml = std::fs::read_to_string(driver.guest_dir(key).join("domain.xml")).unwrap();
    assert!(
        xml.contains(&format!("<source file='{}'/>", overlay.display())),
        "{xml}"
    );
    driver.remove(key).expect("remove");
    assert_nothing_left(&h, &driver, data.path(), key);
    assert_eq!(
        std::fs::read(&base).unwrap(),
        before,
        "the template is untouched"
    );
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn a_qemu_guest_boots_is_found_again_after_a_restart_and_goes_without_a_trace() {
    let (image, built) = kernel_image();
    let h = Hypervisor::bare();
    let data = tempfile::tempdir().unwrap();
    let config = VmConfig {
        driver: "qemu".parse().unwrap(),
        uri: String::new(),
        kvm: false,
        data_dir: data.path().to_path_buf(),
        netns: Some(h.netns.clone()),
    };
    let driver = VmDriver::new(&config);
    let mac: MacAddr = GUEST_MAC.parse().unwrap();
    let key = "vm-q";
    let tap = Qemu::tap_name(key);

    let started = Instant::now();
    driver
        .ensure(key, &spec(image.clone()), mac, &h.bridge)
        .unwrap_or_else(|e| panic!("{}", h.report(&format!("ensure: {e:?}"))));
    let running = started.elapsed();
    let (lease, http) = wait_for_guest(&h, &driver.serial_log(key), started);
    println!(
        "qemu guest ({}): started {running:.2?}, lease {lease:.2?}, HTTP {http:.2?} after ensure",
        built.versions
    );
    assert!(h.links().contains(&tap), "its tap {tap}: {:?}", h.links());
    let pid = h.qemu(data.path()).pid(key).expect("its QEMU runs");

    // An agent that restarts finds the guest through its files, and does not start it again.
    drop(driver);
    let driver = VmDriver::new(&config);
    assert_eq!(driver.list().unwrap(), [key]);
    driver
        .ensure(key, &spec(image), mac, &h.bridge)
        .expect("ensure after a restart");
    assert_eq!(h.qemu(data.path()).pid(key), Some(pid), "the same QEMU");

    driver.remove(key).expect("remove");
    assert!(driver.list().unwrap().is_empty());
    assert!(!sys::proc::is_alive(pid), "its QEMU is gone");
    assert!(!h.programs().iter().any(|p| p.starts_with("qemu")));
    assert_eq!(h.links(), std::slice::from_ref(&h.bridge), "no tap is left");
    assert!(!data.path().join("guests").join(key).exists(), "no files");
    driver.remove(key).expect("remove again");
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn a_qemu_guest_that_cannot_start_is_a_clear_error_and_leaves_nothing() {
    let h = Hypervisor::bare();
    let data = tempfile::tempdir().unwrap();
    let driver = h.qemu(data.path());
    let mac: MacAddr = GUEST_MAC.parse().unwrap();
    let nothing_left = |key: &str| {
        assert!(driver.list().unwrap().is_empty());
        assert!(!h.programs().iter().any(|p| p.starts_with("qemu")));
        assert_eq!(h.links(), std::slice::from_ref(&h.bridge), "no tap");
        assert!(!driver.guest_dir(key).exists(), "no files");
    };

    // No such bridge: the tap cannot be plugged in.
    let (image, _) = kernel_image();
    let e = driver
        .ensure("vm-no-bridge", &spec(image), mac, "brg-none")
        .unwrap_err();
    let text = vrouterd::chain(&e);
    assert!(
        matches!(&e, GuestError::Tap { .. }) && text.contains("brg-none"),
        "{text}"
    );
    nothing_left("vm-no-bridge");

    // A kernel file that is no kernel: QEMU refuses to start and says why.
    let files = tempfile::tempdir().unwrap();
    let junk = files.path().join("junk-vmlinuz");
    std::fs::write(&junk, vec![0x5a_u8; 4096]).unwrap();
    let e = driver
        .ensure(
            "vm-junk",
            &spec(GuestImage::Kernel {
                kernel: junk,
                initrd: None,
                cmdline: String::new(),
            }),
            mac,
            &h.bridge,
        )
        .unwrap_err();
    let text = vrouterd::chain(&e);
    assert!(
        matches!(&e, GuestError::Qemu { .. }) && text.contains("qemu-system-x86_64"),
        "{text}"
    );
    nothing_left("vm-junk");
}
