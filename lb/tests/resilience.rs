//! The lb against misbehaving peers, in-process on 127.0.0.1:0: a raw HTTP/2 backend that
//! resets streams, a backend that freezes (stops answering HTTP/2 pings), a client that goes
//! silent, and a burst of malformed client connections after which every socket the lb held
//! must be released (counted in /proc/net/tcp by port, so parallel tests do not interfere).

#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::*;
use prost::Message;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tandem_lb::testing::pb::{EchoReply, EchoRequest};
use tandem_lb::testing::TestBackend;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How the raw backend answers a call, chosen by the call's message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Answer {
    /// A normal gRPC reply.
    Reply,
    /// RST_STREAM(INTERNAL_ERROR) before any response.
    Reset,
    /// Response headers, then RST_STREAM(INTERNAL_ERROR).
    LateReset,
    /// Never answers and stops serving the whole connection, pings included.
    Freeze,
}

fn answer(message: &str) -> Answer {
    match message {
        "reset" => Answer::Reset,
        "late-reset" => Answer::LateReset,
        "freeze" => Answer::Freeze,
        _ => Answer::Reply,
    }
}

fn grpc_frame(message: &impl Message) -> Bytes {
    let body = message.encode_to_vec();
    let mut framed = Vec::with_capacity(body.len() + 5);
    framed.push(0);
    framed.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(&body);
    framed.into()
}

/// A gRPC backend written on the `h2` crate, so that it can misbehave as `answer` says.
async fn raw_h2_backend() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve_raw_connection(socket));
        }
    });
    (addr, task)
}

async fn serve_raw_connection(socket: TcpStream) {
    let Ok(mut conn) = h2::server::handshake(socket).await else {
        return;
    };
    let (freeze_tx, mut freeze_rx) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        let accepted = tokio::select! {
            accepted = conn.accept() => accepted,
            // Stop polling the connection: no more frames are read or written, so the lb's
            // PINGs go unanswered while the socket stays open.
            _ = freeze_rx.recv() => {
                std::future::pending::<()>().await;
                return;
            }
        };
        let Some(Ok((request, respond))) = accepted else {
            return;
        };
        let freeze = freeze_tx.clone();
        tokio::spawn(async move {
            let mut body = request.into_body();
            let mut bytes = Vec::new();
            while let Some(Ok(chunk)) = body.data().await {
                let _ = body.flow_control().release_capacity(chunk.len());
                bytes.extend_from_slice(&chunk);
            }
            let message = EchoRequest::decode(bytes.get(5..).unwrap_or_default())
                .map(|r| r.message)
                .unwrap_or_default();
            respond_raw(respond, answer(&message), message, freeze).await;
        });
    }
}

async fn respond_raw(
    mut respond: h2::server::SendResponse<Bytes>,
    answer: Answer,
    message: String,
    freeze: tokio::sync::mpsc::Sender<()>,
) {
    let head = || {
        http::Response::builder()
            .status(200)
            .header("content-type", "application/grpc")
            .body(())
            .unwrap()
    };
    match answer {
        Answer::Reset => respond.send_reset(h2::Reason::INTERNAL_ERROR),
        Answer::LateReset => {
            let mut stream = respond.send_response(head(), false).unwrap();
            // Let the head reach the lb (and the client) before the reset.
            tokio::time::sleep(Duration::from_millis(50)).await;
            stream.send_reset(h2::Reason::INTERNAL_ERROR);
        }
        Answer::Freeze => {
            let _ = freeze.send(()).await;
            // Hold the stream open: no answer ever comes.
            std::future::pending::<()>().await;
        }
        Answer::Reply => {
            let mut stream = respond.send_response(head(), false).unwrap();
            let reply = EchoReply {
                server: "raw".into(),
                message,
            };
            stream.send_data(grpc_frame(&reply), false).unwrap();
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", "0".parse().unwrap());
            stream.send_trailers(trailers).unwrap();
        }
    }
}

async fn send(
    client: &mut tandem_lb::testing::pb::echo_client::EchoClient<tonic::transport::Channel>,
    message: &str,
) -> Result<String, tonic::Status> {
    client
        .unary(EchoRequest {
            message: message.into(),
        })
        .await
        .map(|r| r.into_inner().server)
}

/// A group `g` with one server: the raw backend, checked through `health`'s health endpoint
/// (the raw backend has none), passive health off so the resets cannot eject it.
fn raw_config(raw: SocketAddr, health: &TestBackend, extra: &str) -> String {
    let servers = server(raw, health.health);
    config(
        "h2c",
        &group(
            "round_robin",
            "h2c",
            &servers,
            &format!("passive = {{ max_fails = 0 }}\n{extra}"),
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_resets_streams_gives_a_precise_status_and_nothing_else_breaks() {
    let health = TestBackend::grpc("health", true).await.unwrap();
    let (raw, task) = raw_h2_backend().await;
    let lb = Lb::start(&raw_config(raw, &health, "")).await;
    lb.wait_servers("g", "up").await;
    let mut client = lb.client("f").await;
    assert_eq!(send(&mut client, "hello").await.unwrap(), "raw");

    // Reset before any response: nothing reached the client, so the lb answers the call
    // itself, with the status that tells the client the server broke it.
    let status = send(&mut client, "reset").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("server broke the call"),
        "{status:?}"
    );

    // Reset after the response head: the head is already with the client, so the lb sends
    // the same status in the trailers rather than resetting the stream (CANCELLED).
    let late = tokio::time::timeout(Duration::from_secs(5), send(&mut client, "late-reset"))
        .await
        .expect("a call reset after its head hung")
        .unwrap_err();
    assert_eq!(late.code(), tonic::Code::Unavailable, "{late:?}");
    assert!(late.message().contains("server broke the call"), "{late:?}");

    // Calls interleaved with resets on the same client connection all get their answer.
    let mut calls = Vec::new();
    for i in 0..20 {
        let mut client = client.clone();
        calls.push(tokio::spawn(async move {
            let message = if i % 2 == 0 { "reset" } else { "ok" };
            (message, send(&mut client, message).await)
        }));
    }
    for call in calls {
        match call.await.unwrap() {
            ("ok", result) => assert_eq!(result.unwrap(), "raw"),
            (_, result) => {
                assert_eq!(result.unwrap_err().code(), tonic::Code::Unavailable);
            }
        }
    }

    // The lb is still healthy: a new client connection works, nothing is left in flight,
    // and the server was not taken out.
    let mut fresh = lb.client("f").await;
    assert_eq!(send(&mut fresh, "again").await.unwrap(), "raw");
    wait_until(Duration::from_secs(5), || async {
        let server = &lb.status()["groups"][0]["servers"][0];
        server["active_requests"] == 0 && server["state"] == "up"
    })
    .await;
    task.abort();
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_stops_answering_pings_fails_its_streams() {
    let health = TestBackend::grpc("health", true).await.unwrap();
    let (raw, task) = raw_h2_backend().await;
    // No read timeout: only the HTTP/2 ping can find that the server is gone.
    let ping_ms = 200;
    let lb = Lb::start(&raw_config(
        raw,
        &health,
        &format!("h2 = {{ ping_interval_ms = {ping_ms} }}\ntimeouts = {{ read_ms = 0 }}"),
    ))
    .await;
    lb.wait_servers("g", "up").await;
    let mut client = lb.client("f").await;
    assert_eq!(send(&mut client, "hello").await.unwrap(), "raw");

    // The relay sends a PING every interval and waits one interval for its answer, so the
    // call must fail within two intervals (and some slack for a loaded machine), not hang.
    let limit = Duration::from_millis(ping_ms) * 2 + Duration::from_secs(1);
    let started = Instant::now();
    let status = tokio::time::timeout(limit + Duration::from_secs(3), send(&mut client, "freeze"))
        .await
        .expect("a call to a frozen server hung")
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        took < limit + Duration::from_secs(1),
        "failed after {took:?}"
    );

    // The frozen connection is gone; the next call opens a new one and is answered.
    assert_eq!(send(&mut client, "after").await.unwrap(), "raw");
    task.abort();
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_answering_pings_is_disconnected() {
    let a = TestBackend::grpc("a", true).await.unwrap();
    let ping_ms = 200;
    let text = config("h2c", &group("round_robin", "h2c", &servers(&[&a]), "")).replace(
        "backend = { group = \"g\" }\n",
        &format!("backend = {{ group = \"g\" }}\nlimits = {{ h2_ping_interval_ms = {ping_ms} }}\n"),
    );
    let lb = Lb::start(&text).await;
    lb.wait_servers("g", "up").await;

    // A client that completes the HTTP/2 handshake and then never reads again.
    let tcp = TcpStream::connect(lb.addr("f")).await.unwrap();
    let (_send, conn) = h2::client::handshake(tcp).await.unwrap();
    let frozen = tokio::spawn(async move {
        // Drive the handshake's SETTINGS exchange briefly, then hold the socket unread.
        let _ = tokio::time::timeout(Duration::from_millis(50), conn).await;
        std::future::pending::<()>().await;
    });
    wait_until(Duration::from_secs(5), || async {
        lb.status()["frontends"][0]["active_connections"] == 1
    })
    .await;
    // The lb pings every interval and closes a connection whose PING is not answered within
    // the next one.
    let started = Instant::now();
    wait_until(Duration::from_secs(5), || async {
        lb.status()["frontends"][0]["active_connections"] == 0
    })
    .await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(3 * ping_ms) + Duration::from_secs(1),
        "closed after {took:?}"
    );
    frozen.abort();
    let mut client = lb.client("f").await;
    assert_eq!(call(&mut client).await.unwrap(), "a");
    lb.stop().await;
}

/// Sockets in /proc/net/tcp that a process still holds (ESTABLISHED or CLOSE_WAIT) whose
/// local port, or remote port, is `port`.
fn held_sockets(port: u16) -> (usize, usize) {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let port_of = |field: &str| u16::from_str_radix(field.rsplit(':').next().unwrap(), 16).unwrap();
    let (mut local, mut remote) = (0, 0);
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if !matches!(fields[3], "01" | "08") {
            continue;
        }
        if port_of(fields[1]) == port {
            local += 1;
        }
        if port_of(fields[2]) == port {
            remote += 1;
        }
    }
    (local, remote)
}

/// Connects and closes with a reset (SO_LINGER 0) after sending `bytes`.
async fn abort_after(addr: SocketAddr, bytes: &[u8]) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(bytes).await;
    // Linger 0 makes the close a reset and never blocks, which is why tokio deprecates it
    // for everything else.
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_connections_release_every_resource() {
    let a = TestBackend::grpc("a", true).await.unwrap();
    let text = config("auto", &group("round_robin", "h2c", &servers(&[&a]), "")).replace(
        "backend = { group = \"g\" }\n",
        "backend = { group = \"g\" }\nlimits = { header_timeout_ms = 300, max_header_bytes = 4096 }\n",
    );
    let lb = Lb::start(&text).await;
    lb.wait_servers("g", "up").await;
    let addr = lb.addr("f");
    let (lb_port, backend_port) = (addr.port(), a.address.port());

    // Baseline: one good client connection, and the upstream connections it caused.
    let mut client = lb.client("f").await;
    assert_eq!(call(&mut client).await.unwrap(), "a");
    let baseline_upstream = held_sockets(backend_port).1;
    assert_eq!(held_sockets(lb_port).0, 1);

    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut burst: Vec<JoinHandle<()>> = Vec::new();
    for _ in 0..10 {
        // Garbage that is neither HTTP/1 nor HTTP/2, left open.
        burst.push(tokio::spawn(async move {
            let reply = raw_exchange(addr, b"\x16\x03\x01\x00\xffgarbage\r\n\r\n").await;
            assert!(
                reply.is_empty() || reply.starts_with("HTTP/1.1 400"),
                "{reply}"
            );
        }));
        // A broken HTTP/2 preface.
        burst.push(tokio::spawn(async move {
            raw_exchange(addr, b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n").await;
        }));
        // A good preface followed by a frame header announcing 16 MiB of an unknown frame.
        burst.push(tokio::spawn(async move {
            let mut bytes = preface.to_vec();
            bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xee, 0, 0, 0, 0, 1]);
            raw_exchange(addr, &bytes).await;
        }));
        // An oversized HTTP/1 head: 431.
        burst.push(tokio::spawn(async move {
            let head = format!(
                "GET / HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
                "a".repeat(8000)
            );
            let reply = raw_exchange(addr, head.as_bytes()).await;
            assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
        }));
        // Oversized HTTP/2 headers from a real HTTP/2 client.
        burst.push(tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let Ok((mut send, conn)) = h2::client::handshake(tcp).await else {
                return;
            };
            let driver = tokio::spawn(conn);
            let request = http::Request::builder()
                .method("POST")
                .uri(format!("http://{addr}/tandem.lb.echo.v1.Echo/Unary"))
                .header("content-type", "application/grpc")
                .header("x-big", "a".repeat(16_000))
                .body(())
                .unwrap();
            if let Ok((response, _)) = send.send_request(request, true) {
                let _ = tokio::time::timeout(Duration::from_secs(5), response).await;
            }
            driver.abort();
        }));
        // Half-open connections dropped abruptly: mid-preface, and before a byte was sent.
        burst.push(tokio::spawn(abort_after(addr, &preface[..8])));
        burst.push(tokio::spawn(abort_after(addr, b"")));
        // A partial request line that then goes quiet: the header timeout ends it.
        burst.push(tokio::spawn(async move {
            raw_exchange(addr, b"GET /slow HT").await;
        }));
    }
    for task in burst {
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
    }

    // Everything the burst opened is released: the lb holds only the good client's
    // connection, no more upstream connections than before, and nothing in flight.
    wait_until(Duration::from_secs(5), || async {
        let status = lb.status();
        held_sockets(lb_port).0 == 1
            && held_sockets(backend_port).1 <= baseline_upstream
            && status["frontends"][0]["active_connections"] == 1
            && status["groups"][0]["servers"][0]["active_requests"] == 0
    })
    .await;
    assert_eq!(call(&mut client).await.unwrap(), "a");
    let mut fresh = lb.client("f").await;
    assert_eq!(call(&mut fresh).await.unwrap(), "a");
    lb.stop().await;
}
