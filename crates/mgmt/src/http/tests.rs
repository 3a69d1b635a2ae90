//! The HTTP edge as clients meet it: a real listener ([`crate::serve::serve_http`]) over a
//! fresh database, driven through sockets. Covers bounded requests and error texts, control
//! characters on both databases, and connections that are idle, slow or too many.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::app::App;
use crate::client::Client;
use crate::serve::{serve_http, ConnLimits};
use crate::testkit;

/// A server on 127.0.0.1 for the test; stops when dropped.
struct Server {
    addr: SocketAddr,
    admin: Client,
    key: String,
    secret: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start(app: App, limits: ConnLimits) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let keys = store::accounts::keys_of(&app.db, "admin")
        .await
        .unwrap()
        .unwrap();
    let (key, secret) = (keys.api_key.unwrap(), keys.secret_key.unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = crate::http::router(app);
    tokio::spawn(serve_http(listener, router, limits, async {
        let _ = stopped.await;
    }));
    Server {
        admin: Client::new(&format!("http://{addr}/client/api"), &key, &secret),
        addr,
        key,
        secret,
        stop: Some(stop),
    }
}

fn limits() -> ConnLimits {
    ConnLimits::for_fd_limit(4096)
}

/// Sends one raw HTTP/1.1 request and reads the whole answer (the server closes it).
async fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw))
        .await
        .expect("an answer within 30 s")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

async fn post(server: &Server, body: &str) -> (u16, String, String) {
    let request = format!(
        "POST /client/api HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
         content-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    exchange(server.addr, request.as_bytes()).await
}

fn error_text(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body:.200}"));
    let (_, inner) = v.as_object().unwrap().iter().next().unwrap();
    inner["errortext"].as_str().unwrap().to_string()
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_refused_with_431_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(testkit::app(dir.path()).await, limits()).await;

    // A query string past 8 KiB.
    let long = "1".repeat(9000);
    let (status, _, body) = exchange(
        server.addr,
        format!("GET /client/api?command=listZones&x={long} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert_eq!(status, 431, "{body}");
    assert_eq!(
        error_text(&body),
        "The request's query string has 9020 bytes, more than the 8192 allowed; send long \
         requests as a POST form body"
    );

    // A body past 1 MiB (90,000 source CIDRs came to 1.8 MB once), refused on its declared
    // length before it is read.
    let (status, _, body) = exchange(
        server.addr,
        b"POST /client/api HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
          content-type: application/x-www-form-urlencoded\r\ncontent-length: 1800000\r\n\r\n",
    )
    .await;
    assert_eq!(status, 431, "{body:.300}");
    assert_eq!(
        error_text(&body),
        "The request's body has 1800000 bytes, more than the 1048576 allowed"
    );

    // 1,001 source CIDRs fit in a body, and are refused as a list too long.
    let cidrs = vec!["10.0.0.0/8"; 1001].join(",");
    let q = server.admin.query(
        "createFirewallRule",
        &[
            ("ipaddressid", "6f1c5b8e-3a2d-4c1e-9b7a-1234567890ab"),
            ("protocol", "tcp"),
            ("cidrlist", &cidrs),
        ],
    );
    let (status, _, body) = post(&server, &q).await;
    assert_eq!(status, 431, "{body:.300}");
    assert!(
        error_text(&body).contains("cidrlist has 1001 items"),
        "{body}"
    );

    // More than 5,000 parameters.
    let many: String = (0..5001).map(|i| format!("&p{i}=1")).collect();
    let (status, _, body) = post(&server, &format!("command=listZones{many}")).await;
    assert_eq!(status, 431, "{body:.300}");
    assert_eq!(
        error_text(&body),
        "The request's parameter list has 5002 parameters, more than the 5000 allowed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_repeats_at_most_a_bounded_part_of_a_value() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(testkit::app(dir.path()).await, limits()).await;
    let value = "7".repeat(1_000_000);
    let q = server.admin.query(
        "createFirewallRule",
        &[
            ("ipaddressid", "6f1c5b8e-3a2d-4c1e-9b7a-1234567890ab"),
            ("protocol", "tcp"),
            ("startport", &value),
        ],
    );
    let (status, head, body) = post(&server, &q).await;
    assert_eq!(status, 431, "{body:.300}");
    let text = error_text(&body);
    let expected = format!(
        "Unable to execute API command createfirewallrule due to invalid value {}... for \
         parameter startport",
        "7".repeat(api_types::error::MAX_ECHO_CHARS)
    );
    assert_eq!(text, expected);
    assert_eq!(header(&head, "x-description"), Some(expected.as_str()));
    assert!(head.len() < 2048, "{} bytes of head", head.len());
}

/// A value with a NUL (or another control character) is refused with 431 before it reaches
/// the database, for every command; a NUL in the key is an unknown key.
async fn control_characters_are_431(app: App) {
    let server = start(app, limits()).await;
    for (command, params) in [
        (
            "createLoadBalancerRule",
            vec![
                ("name", "\u{0}web"),
                ("publicipid", "6f1c5b8e-3a2d-4c1e-9b7a-1234567890ab"),
                ("algorithm", "roundrobin"),
                ("publicport", "80"),
                ("privateport", "80"),
            ],
        ),
        ("listNetworks", vec![("keyword", "a\u{0}b")]),
        ("listAccounts", vec![("name", "\u{0}")]),
        ("listVirtualMachines", vec![("account", "x\u{0}")]),
        (
            "createNetwork",
            vec![("name", "n"), ("displaytext", "\u{1b}[31m")],
        ),
        ("listZones", vec![("description", "\u{7f}")]),
    ] {
        let Err(crate::client::ClientError::Api { code, text, .. }) =
            server.admin.call(command, &params).await
        else {
            panic!("{command} {params:?} was not refused");
        };
        assert_eq!(code, 431, "{command}: {text}");
        assert!(
            text.starts_with("Received value containing illegal ASCII non-printable characters"),
            "{command}: {text}"
        );
    }
    let stranger = Client::new(
        &format!("http://{}/client/api", server.addr),
        &format!("{}\u{0}", server.key),
        &server.secret,
    );
    let Err(crate::client::ClientError::Api { code, .. }) = stranger.call("listZones", &[]).await
    else {
        panic!("a key with a NUL was accepted");
    };
    assert_eq!(code, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_are_refused_with_431_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    control_characters_are_431(testkit::app(dir.path()).await).await;
}

/// The same on PostgreSQL (`GUESTNET_TEST_POSTGRES_URL`, or the server on 127.0.0.1:5432),
/// where a NUL reaching the database was a 530.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_are_refused_with_431_on_postgres() {
    testkit::on_postgres("edge", async |app| {
        control_characters_are_431(app.clone()).await
    })
    .await;
}

/// Opens a connection from `source` (any 127/8 address is this host's loopback).
async fn connect_from(source: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.connect(to).await
}

/// Whether the server closed `s` (EOF or reset), waiting up to `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// 500 silent connections from one address, in a process that may hold 900 descriptors (the
/// test's own ends of the connections count too): another client is still answered on new
/// connections, each time within 100 ms (the bound the server must keep). A server that took
/// every connection ran out of descriptors and answered no one until the silent ones closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_holding_500_idle_connections_does_not_stop_others() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let fds = 900.min(hard);
    setrlimit(Resource::RLIMIT_NOFILE, fds, hard).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Held connections stay held for the whole test: the header timeout is not what saves
    // the other client here.
    let limits = ConnLimits {
        header_read_timeout: Duration::from_secs(120),
        ..ConnLimits::for_fd_limit(fds)
    };
    let server = start(testkit::app(dir.path()).await, limits).await;
    server.admin.call("listZones", &[]).await.unwrap();

    let attacker = Ipv4Addr::new(127, 0, 0, 2);
    let mut idle = Vec::new();
    for _ in 0..500 {
        idle.push(connect_from(attacker, server.addr).await.unwrap());
    }
    // The server has looked at every one once all past its per-address limit are closed.
    let mut refused = 0;
    for s in &mut idle {
        if closed_within(s, Duration::from_millis(1)).await {
            refused += 1;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while refused < 500 - limits.per_address && Instant::now() < deadline {
        refused = 0;
        for s in &mut idle {
            if closed_within(s, Duration::from_millis(1)).await {
                refused += 1;
            }
        }
    }
    println!(
        "idle connections: 500 opened, {refused} refused, {} held",
        500 - refused
    );
    assert_eq!(refused, 500 - limits.per_address);

    // Each call on a new connection (a client of its own), which the server must accept.
    let endpoint = format!("http://{}/client/api", server.addr);
    let mut latencies = Vec::new();
    for _ in 0..5 {
        let other = Client::new(&endpoint, &server.key, &server.secret);
        let t = Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(5), other.call("listZones", &[]))
            .await
            .expect("an answer within 5 s");
        latencies.push(t.elapsed());
        answer.unwrap();
    }
    println!("listZones beside 500 idle connections: {latencies:?}");
    for l in &latencies {
        assert!(*l < Duration::from_millis(100), "{latencies:?}");
    }
    drop(idle);
    // Other tests may share this process (plain `cargo test`).
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
}

/// A request trickled a byte at a time, and a connection that says nothing, are both closed
/// once the header timeout passes; a prompt request on a fresh connection is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_clients_are_cut_off_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let limits = ConnLimits {
        header_read_timeout: Duration::from_secs(1),
        ..limits()
    };
    let server = start(testkit::app(dir.path()).await, limits).await;

    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    let request = b"GET /client/api?command=listZones HTTP/1.1\r\nhost: x\r\nx-pad: ";
    let mut cut_after = None;
    for i in 0..200 {
        let byte = request.get(i).copied().unwrap_or(b'a');
        if slow.write_all(&[byte]).await.is_err()
            || closed_within(&mut slow, Duration::from_millis(100)).await
        {
            cut_after = Some(started.elapsed());
            break;
        }
    }
    println!("trickled request cut off after {cut_after:?}");
    let cut_after = cut_after.expect("the trickling client was never cut off (20 s)");
    assert!(cut_after >= Duration::from_millis(900), "{cut_after:?}");
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await);

    // A keep-alive connection left idle after its answer is closed too.
    let mut kept = TcpStream::connect(server.addr).await.unwrap();
    let q = server.admin.query("listZones", &[]);
    kept.write_all(format!("GET /client/api?{q} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert!(closed_within(&mut kept, Duration::from_secs(5)).await);
}
