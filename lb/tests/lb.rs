//! The lb in-process, against real tonic and axum backends on 127.0.0.1:0: routing, health,
//! passive health, retries, ending streams, protocols, TLS, reloads, admin, bad input.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::time::{Duration, Instant};
use tandem_lb::testing::pb::{EchoRequest, StreamRequest};
use tandem_lb::testing::TestBackend;
use tokio::io::AsyncWriteExt;
use tokio_stream::StreamExt;

async fn tally(
    client: &mut tandem_lb::testing::pb::echo_client::EchoClient<tonic::transport::Channel>,
    n: usize,
) -> std::collections::BTreeMap<String, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..n {
        *seen.entry(call(client).await.unwrap()).or_default() += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_routing_follows_health() {
    let a = TestBackend::grpc("a", true).await.unwrap();
    let b = TestBackend::grpc("b", false).await.unwrap();
    let lb = Lb::start(&config(
        "h2c",
        &group("active", "h2c", &servers(&[&a, &b]), ""),
    ))
    .await;
    wait_until(Duration::from_secs(5), || async {
        a.calls() == 0 && lb.status()["groups"][0]["active"].is_string()
    })
    .await;
    let mut client = lb.client("f").await;
    let seen = tally(&mut client, 20).await;
    assert_eq!(seen.get("a"), Some(&20), "{seen:?}");
    assert_eq!(b.calls(), 0);

    // Flip: traffic follows within two check intervals (50 ms each, rise = fall = 1), plus
    // slack for probes and scheduling on a loaded two-core machine.
    a.set_healthy(false);
    b.set_healthy(true);
    let flipped = Instant::now();
    wait_until(Duration::from_secs(5), || {
        let mut client = client.clone();
        async move { call(&mut client).await.ok().as_deref() == Some("b") }
    })
    .await;
    let took = flipped.elapsed();
    assert!(
        took < Duration::from_millis(2 * 50 + 400),
        "traffic moved after {took:?}"
    );
    let seen = tally(&mut client, 10).await;
    assert_eq!(seen.get("b"), Some(&10), "{seen:?}");

    // Neither healthy: UNAVAILABLE, from the lb.
    b.set_healthy(false);
    lb.wait_servers("g", "down").await;
    let status = call(&mut client).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("no healthy server"), "{status:?}");
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_start_down_until_their_first_check_passes() {
    let a = TestBackend::grpc("a", true).await.unwrap();
    // Its traffic port works, but its health address answers nothing: it must never get a call
    // (pingora's own health state would start it up).
    let server = server(a.address, closed_port().await);
    let lb = Lb::start(&config("h2c", &group("round_robin", "h2c", &server, ""))).await;
    let status = lb.status();
    assert_eq!(
        status["groups"][0]["servers"][0]["state"], "down",
        "{status}"
    );
    let mut client = lb.client("f").await;
    for _ in 0..5 {
        assert_eq!(
            call(&mut client).await.unwrap_err().code(),
            tonic::Code::Unavailable
        );
    }
    wait_until(Duration::from_secs(5), || async {
        lb.status()["groups"][0]["servers"][0]["last_check"]["ok"] == false
    })
    .await;
    assert_eq!(a.calls(), 0);
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_calls_of_one_connection() {
    let a = TestBackend::grpc("a", true).await.unwrap();
    let b = TestBackend::grpc("b", true).await.unwrap();
    let c = TestBackend::grpc("c", true).await.unwrap();
    let lb = Lb::start(&config(
        "h2c",
        &group("round_robin", "h2c", &servers(&[&a, &b, &c]), ""),
    ))
    .await;
    lb.wait_servers("g", "up").await;
    // One client, one HTTP/2 connection: balancing is per call, not per connection.
    let mut client = lb.client("f").await;
    let seen = tally(&mut client, 30).await;
    assert_eq!(
        seen.values().copied().collect::<Vec<_>>(),
        [10, 10, 10],
        "{seen:?}"
    );
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_health_ejects_a_failing_server_and_brings_it_back() {
    let a = TestBackend::grpc("a", true).await.unwrap();
    let b = TestBackend::grpc("b", true).await.unwrap();
    let passive = "passive = { max_fails = 2, fail_timeout_ms = 600 }";
    let lb = Lb::start(&config(
        "h2c",
        &group("round_robin", "h2c", &servers(&[&a, &b]), passive),
    ))
    .await;
    lb.wait_servers("g", "up").await;
    let mut client = lb.client("f").await;
    b.fail_with(Some(tonic::Code::Unavailable));
    let mut failures = 0;
    for _ in 0..10 {
        if call(&mut client).await.is_err() {
            failures += 1;
        }
    }
    // Two UNAVAILABLE trailers eject b; every later call goes to a.
    assert_eq!(failures, 2);
    let status = lb.status();
    assert_eq!(
        status["groups"][0]["servers"][1]["state"], "ejected",
        "{status}"
    );
    // While ejected, b gets nothing even though its health check passes.
    let calls_of_b = b.calls();
    assert_eq!(tally(&mut client, 4).await.get("a"), Some(&4));
    assert_eq!(b.calls(), calls_of_b);
    b.fail_with(None);
    wait_until(Duration::from_secs(3), || {
        let mut client = client.clone();
        async move { call(&mut client).await.ok().as_deref() == Some("b") }
    })
    .await;
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_5xx_counts_for_passive_health() {
    let a = TestBackend::http1("a", true).await.unwrap();
    let b = TestBackend::http1("b", true).await.unwrap();
    let passive = "passive = { max_fails = 1, fail_timeout_ms = 60000 }";
    let lb = Lb::start(&config(
        "http1",
        &group("round_robin", "http1", &servers(&[&a, &b]), passive),
    ))
    .await;
    lb.wait_servers("g", "up").await;
    b.fail_with(Some(tonic::Code::Unavailable));
    let addr = lb.addr("f");
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let reply = raw_exchange(
            addr,
            b"GET /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        statuses.push(reply.lines().next().unwrap_or_default().to_string());
    }
    let failed = statuses.iter().filter(|s| s.contains("503")).count();
    assert_eq!(failed, 1, "{statuses:?}");
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_connect_is_retried_on_another_server() {
    let a = TestBackend::grpc("a", true).await.unwrap();
    let dead = closed_port().await;
    // Healthy by its health check, but nothing listens on its traffic port.
    let servers = format!(
        "{}, {}",
        server(dead, a.health),
        server(a.address, a.health)
    );
    let passive = "passive = { max_fails = 0 }";
    let lb = Lb::start(&config(
        "h2c",
        &group("round_robin", "h2c", &servers, passive),
    ))
    .await;
    lb.wait_servers("g", "up").await;
    let mut client = lb.client("f").await;
    let seen = tally(&mut client, 10).await;
    assert_eq!(seen.get("a"), Some(&10), "{seen:?}");
    let status = lb.status();
    assert!(
        status["groups"][0]["servers"][0]["failures"]
            .as_u64()
            .unwrap()
            >= 4,
        "{status}"
    );
    lb.stop().await;
}

/// A server that accepts connections and never answers.
async fn silent_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sent_request_is_not_retried_and_a_silent_server_gives_504() {
    let a = TestBackend::grpc("a", true).await.unwrap();
    let (silent, task) = silent_server().await;
    let servers = format!(
        "{}, {}",
        server(silent, a.health),
        server(a.address, a.health)
    );
    let extra = "passive = { max_fails = 0 }\ntimeouts = { read_ms = 300 }";
    let lb = Lb::start(&config(
        "h2c",
        &group("round_robin", "h2c", &servers, extra),
    ))
    .await;
    lb.wait_servers("g", "up").await;
    let mut client = lb.client("f").await;
    let mut ok = 0;
    let mut deadline = 0;
    for _ in 0..4 {
        match call(&mut client).await {
            Ok(server) => {
                assert_eq!(server, "a");
                ok += 1;
            }
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
                deadline += 1;
            }
        }
    }
    assert_eq!((ok, deadline), (2, 2));
    assert_eq!(
        a.calls(),
        2,
        "the calls sent to the silent server were not retried"
    );
    task.abort();
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_its_client_cancels_ends_while_the_server_is_silent() {
    let health = TestBackend::grpc("health", true).await.unwrap();
    let (silent, task) = silent_server().await;
    let servers = server(silent, health.health);
    // No read timeout: only the client's cancel can end these calls.
    let lb = Lb::start(&config("h2c", &group("round_robin", "h2c", &servers, ""))).await;
    lb.wait_servers("g", "up").await;
    let mut client = lb.client("f").await;
    for _ in 0..3 {
        let cancelled = tokio::time::timeout(Duration::from_millis(200), call(&mut client)).await;
        assert!(cancelled.is_err(), "{cancelled:?}");
    }
    // Dropping a call resets its stream; the lb ends its half and nothing stays in flight.
    wait_until(Duration::from_secs(5), || async {
        lb.status()["groups"][0]["servers"][0]["active_requests"] == 0
    })
    .await;
    task.abort();
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_to_a_server_that_lost_the_active_role_are_ended() {
    let a = TestBackend::grpc("a", true).await.unwrap();
    let b = TestBackend::grpc("b", false).await.unwrap();
    let lb = Lb::start(&config(
        "h2c",
        &group("active", "h2c", &servers(&[&a, &b]), ""),
    ))
    .await;
    wait_until(Duration::from_secs(5), || async {
        lb.status()["groups"][0]["active"].is_string()
    })
    .await;
    let mut client = lb.client("f").await;
    let mut stream = client
        .server_stream(StreamRequest {
            count: 0,
            interval_ms: 20,
        })
        .await
        .unwrap()
        .into_inner();
    for _ in 0..3 {
        assert_eq!(stream.next().await.unwrap().unwrap().server, "a");
    }
    a.set_healthy(false);
    b.set_healthy(true);
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the stream to the old active server was not ended");
    assert!(matches!(ended, Some(Err(_)) | None), "{ended:?}");
    // Once b is the active server, the client's next stream reaches it.
    wait_until(Duration::from_secs(5), || {
        let mut client = client.clone();
        async move { call(&mut client).await.ok().as_deref() == Some("b") }
    })
    .await;
    let mut stream = client
        .server_stream(StreamRequest {
            count: 2,
            interval_ms: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.next().await.unwrap().unwrap().server, "b");
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_status_trailers_and_streaming_pass_through() {
    let a = TestBackend::grpc("a", true).await.unwrap();
    let lb = Lb::start(&config("h2c", &group("active", "h2c", &servers(&[&a]), ""))).await;
    lb.wait_servers("g", "up").await;
    let mut client = lb.client("f").await;
    a.fail_with(Some(tonic::Code::NotFound));
    let status = call(&mut client).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(status.message(), "a fails on purpose");
    a.fail_with(None);
    let replies: Vec<_> = client
        .server_stream(StreamRequest {
            count: 5,
            interval_ms: 1,
        })
        .await
        .unwrap()
        .into_inner()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert_eq!(replies.len(), 5);
    let outbound = tokio_stream::iter((0..4).map(|i| EchoRequest {
        message: i.to_string(),
    }));
    let replies: Vec<_> = client
        .bidi(outbound)
        .await
        .unwrap()
        .into_inner()
        .map(|r| r.unwrap().message)
        .collect()
        .await;
    assert_eq!(replies, ["0", "1", "2", "3"]);
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_and_http1_share_an_auto_port() {
    let a = TestBackend::http1("a", true).await.unwrap();
    let g = TestBackend::grpc("g1", true).await.unwrap();
    let text = format!(
        "[lb]\nadmin = \"127.0.0.1:0\"\n\
         [[lb.frontends]]\nname = \"f\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"auto\"\nbackend = {{ group = \"g\" }}\n\
         [[lb.frontends]]\nname = \"h\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"auto\"\nbackend = {{ group = \"web\" }}\n\
         {}\n[[lb.backends]]\nname = \"web\"\nstrategy = \"round_robin\"\nprotocol = \"http1\"\nservers = [{}]\n\
         health_check = {{ interval_ms = 50 }}\n",
        group("round_robin", "h2c", &servers(&[&g]), ""),
        servers(&[&a])
    );
    let lb = Lb::start(&text).await;
    lb.wait_servers("g", "up").await;
    lb.wait_servers("web", "up").await;
    let mut client = lb.client("f").await;
    assert_eq!(call(&mut client).await.unwrap(), "g1");
    let reply = raw_exchange(
        lb.addr("h"),
        b"GET /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with('a'), "{reply}");
    // Keep-alive: a second request on the same connection.
    let mut stream = tokio::net::TcpStream::connect(lb.addr("h")).await.unwrap();
    stream
        .write_all(b"GET /echo HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = Vec::new();
    while !first.ends_with(b"\r\n\r\na") {
        let mut byte = [0u8; 1];
        tokio::io::AsyncReadExt::read_exact(&mut stream, &mut byte)
            .await
            .unwrap();
        first.push(byte[0]);
    }
    stream
        .write_all(b"GET /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let reply = String::from_utf8_lossy(&first).into_owned() + &read_all(&mut stream).await;
    assert_eq!(reply.matches("HTTP/1.1 200").count(), 2, "{reply}");
    lb.stop().await;
}

/// A raw HTTP/2 client connection to `addr` (prior knowledge), driven on its own task.
async fn h2_connection(addr: std::net::SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    send
}

/// `GET /echo` on an HTTP/2 connection: status, headers and body.
async fn h2_get(
    send: &h2::client::SendRequest<bytes::Bytes>,
    addr: std::net::SocketAddr,
) -> Result<(u16, http::HeaderMap, String), h2::Error> {
    let request = http::Request::get(format!("http://{addr}/echo"))
        .body(())
        .unwrap();
    let (response, _) = send.clone().ready().await?.send_request(request, true)?;
    let (head, mut body) = response.await?.into_parts();
    let mut text = Vec::new();
    while let Some(chunk) = body.data().await {
        text.extend_from_slice(&chunk?);
    }
    Ok((
        head.status.as_u16(),
        head.headers,
        String::from_utf8_lossy(&text).into_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_to_http1_servers_moves_http2_clients_off_the_relay() {
    let g = TestBackend::grpc("g1", true).await.unwrap();
    let a = TestBackend::http1("a", true).await.unwrap();
    let h2c = config("h2c", &group("round_robin", "h2c", &servers(&[&g]), ""));
    let lb = Lb::start(&h2c).await;
    lb.wait_servers("g", "up").await;
    let addr = lb.addr("f");
    // Relayed to the tonic server, which answers an unknown path itself: UNIMPLEMENTED.
    let relayed = h2_connection(addr).await;
    let (_, headers, _) = h2_get(&relayed, addr).await.unwrap();
    assert_eq!(headers["grpc-status"], "12");

    std::fs::write(
        &lb.path,
        config("h2c", &group("round_robin", "http1", &servers(&[&a]), "")),
    )
    .unwrap();
    lb.running.lb().reload_from_file().await.unwrap();
    lb.wait_servers("g", "up").await;
    // The relayed connection refuses its next stream (safe to retry) and closes.
    let refused = h2_get(&relayed, addr).await.unwrap_err();
    assert_eq!(
        refused.reason(),
        Some(h2::Reason::REFUSED_STREAM),
        "{refused:?}"
    );
    assert!(h2_get(&relayed, addr).await.is_err());
    // A new connection goes through pingora to the HTTP/1 server.
    let proxied = h2_connection(addr).await;
    let (status, _, body) = h2_get(&proxied, addr).await.unwrap();
    assert_eq!((status, body.as_str()), (200, "a"));

    // Back to HTTP/2 servers: the pingora connection keeps serving, now to the tonic server.
    std::fs::write(&lb.path, &h2c).unwrap();
    lb.running.lb().reload_from_file().await.unwrap();
    lb.wait_servers("g", "up").await;
    let (_, headers, _) = h2_get(&proxied, addr).await.unwrap();
    assert_eq!(headers["grpc-status"], "12");
    lb.stop().await;
}

/// Under load on two cores a health probe can take a while: a single slow probe must not take
/// the only server down in the middle of the reload test.
const TOLERANT: &str = "{ interval_ms = 50, timeout_ms = 1000, rise = 1, fall = 3 }";

fn tolerant(servers: &str) -> String {
    group_with_health("round_robin", "h2c", servers, TOLERANT, "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_loses_no_request_and_a_bad_reload_keeps_the_old_config() {
    let a = TestBackend::grpc("a", true).await.unwrap();
    let b = TestBackend::grpc("b", true).await.unwrap();
    let lb = Lb::start(&config("h2c", &tolerant(&servers(&[&a])))).await;
    lb.wait_servers("g", "up").await;
    let stop = tokio_util::sync::CancellationToken::new();
    let mut load = Vec::new();
    for _ in 0..4 {
        let mut client = lb.client("f").await;
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.is_cancelled() {
                match call(&mut client).await {
                    Ok(_) => ok += 1,
                    Err(e) => failed.push(e),
                }
            }
            (ok, failed)
        }));
    }
    let admin = lb.running.admin();
    let reload = |text: String| {
        let path = lb.path.clone();
        async move {
            std::fs::write(&path, text).unwrap();
            let reply = raw_exchange(admin, b"POST /reload HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
            reply
        }
    };
    // Add b, wait until it takes calls, then drop a.
    let reply = reload(config("h2c", &tolerant(&servers(&[&a, &b])))).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    wait_until(Duration::from_secs(5), || async { b.calls() > 20 }).await;
    let reply = reload(config("h2c", &tolerant(&servers(&[&b])))).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let a_calls = a.calls();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A bad file (unknown key) is refused; the running config stays.
    let reply = reload(config(
        "h2c",
        &group_with_health("round_robin", "h2c", &servers(&[&a]), TOLERANT, "bogus = 1"),
    ))
    .await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("bogus"), "{reply}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    let mut total = 0;
    for task in load {
        let (ok, failed) = task.await.unwrap();
        assert!(failed.is_empty(), "{failed:?}");
        total += ok;
    }
    assert!(total > 20, "{total}");
    assert!(
        a.calls() <= a_calls + 4,
        "a still got calls after it was removed"
    );
    assert_eq!(lb.status()["generation"], 2);
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_shows_status_and_metrics() {
    let a = TestBackend::grpc("a", true).await.unwrap();
    let lb = Lb::start(&config("h2c", &group("active", "h2c", &servers(&[&a]), ""))).await;
    lb.wait_servers("g", "up").await;
    let mut client = lb.client("f").await;
    call(&mut client).await.unwrap();
    // The request ends for the lb just after the client has its answer.
    wait_until(Duration::from_secs(5), || async {
        lb.status()["groups"][0]["servers"][0]["active_requests"] == 0
    })
    .await;
    let admin = lb.running.admin();
    let reply = raw_exchange(
        admin,
        b"GET /status HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    let body: serde_json::Value =
        serde_json::from_str(reply.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let server = &body["groups"][0]["servers"][0];
    assert_eq!(server["state"], "up", "{body}");
    assert_eq!(server["requests"], 1, "{body}");
    assert_eq!(server["active_requests"], 0, "{body}");
    assert_eq!(server["last_check"]["ok"], true, "{body}");
    assert_eq!(body["frontends"][0]["group"], "g", "{body}");
    assert_eq!(body["frontends"][0]["requests"], 1, "{body}");
    assert_eq!(body["frontends"][0]["active_connections"], 1, "{body}");
    assert_eq!(body["groups"][0]["active"], a.address.to_string(), "{body}");
    let reply = raw_exchange(
        admin,
        b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(
        reply.contains("tandem_lb_upstream_requests_total{group=\"g\""),
        "{reply}"
    );
    assert!(reply.contains("tandem_lb_server_up{group=\"g\""), "{reply}");
    assert!(
        reply.contains("tandem_lb_responses_total{class=\"2xx\",frontend=\"f\"} 1"),
        "{reply}"
    );
    lb.stop().await;
}

mod bad_input {
    use super::*;

    async fn web_lb(limits: &str) -> (Lb, TestBackend) {
        let a = TestBackend::http1("a", true).await.unwrap();
        let text = config(
            "http1",
            &group(
                "round_robin",
                "http1",
                &servers(&[&a]),
                "timeouts = { read_ms = 300 }",
            ),
        )
        .replace(
            "protocol = \"http1\"\nbackend",
            &format!("protocol = \"http1\"\n{limits}\nbackend"),
        );
        let lb = Lb::start(&text).await;
        lb.wait_servers("g", "up").await;
        (lb, a)
    }

    async fn still_serving(lb: &Lb) {
        let reply = raw_exchange(
            lb.addr("f"),
            b"GET /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn malformed_oversized_and_slow_requests() {
        let (lb, _a) =
            web_lb("limits = { header_timeout_ms = 300, max_header_bytes = 2048 }").await;
        let addr = lb.addr("f");
        let reply = raw_exchange(addr, b"THIS IS NOT HTTP\r\n\r\n").await;
        assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
        still_serving(&lb).await;

        let big = format!(
            "GET /echo HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
            "a".repeat(4000)
        );
        let reply = raw_exchange(addr, big.as_bytes()).await;
        assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
        still_serving(&lb).await;

        // Slowloris: a byte at a time, never finishing the head.
        let started = Instant::now();
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let trickle = async {
            for byte in b"GET /echo HTTP/1.1\r\nhost: x\r\nx-slow: 1234567890" {
                if stream.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        trickle.await;
        let reply = read_all(&mut stream).await;
        assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
        assert!(started.elapsed() < Duration::from_secs(5));
        still_serving(&lb).await;
        lb.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn upstream_failures_map_to_502_503_504() {
        let (silent, task) = silent_server().await;
        let a = TestBackend::http1("a", true).await.unwrap();
        let dead = closed_port().await;
        let web = |name: &str, address: std::net::SocketAddr| {
            format!(
                "[[lb.backends]]\nname = \"{name}\"\nstrategy = \"round_robin\"\nprotocol = \"http1\"\n\
                 servers = [{{ address = \"{address}\", health = \"{}\" }}]\n\
                 health_check = {{ interval_ms = 50 }}\ntimeouts = {{ read_ms = 300 }}\npassive = {{ max_fails = 0 }}\n",
                a.health
            )
        };
        let frontend = |name: &str| {
            format!("[[lb.frontends]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"http1\"\nbackend = {{ group = \"{name}\" }}\n")
        };
        let text = format!(
            "[lb]\nadmin = \"127.0.0.1:0\"\n{}{}{}{}{}{}",
            frontend("refused"),
            frontend("silent"),
            frontend("down"),
            web("refused", dead),
            web("silent", silent),
            // Its health check never passes.
            web("down", a.address).replace(&a.health.to_string(), &dead.to_string()),
        );
        let lb = Lb::start(&text).await;
        lb.wait_servers("refused", "up").await;
        lb.wait_servers("silent", "up").await;
        let get = b"GET /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
        // Each answer is a problem document naming the failure.
        for (frontend, status, code) in [
            ("refused", "502", "LB_CONNECT_FAILED"),
            ("silent", "504", "LB_UPSTREAM_TIMEOUT"),
            ("down", "503", "LB_NO_SERVER"),
        ] {
            let reply = raw_exchange(lb.addr(frontend), get).await;
            assert!(reply.starts_with(&format!("HTTP/1.1 {status}")), "{reply}");
            let lower = reply.to_ascii_lowercase();
            assert!(
                lower.contains("content-type: application/problem+json"),
                "{reply}"
            );
            let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
            let problem: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(problem["code"], code, "{reply}");
            assert_eq!(problem["status"].to_string(), status, "{reply}");
        }
        task.abort();
        lb.stop().await;
    }
}

mod tls {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use tandem_lb::testing::pb::echo_client::EchoClient;
    use tandem_lb::testing::{Behaviour, EchoService};
    use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity, ServerTlsConfig};

    fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_downstream_terminates_at_the_lb() {
        let a = TestBackend::grpc("a", true).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert_pem = key.cert.pem();
        let cert = write(dir.path(), "cert.pem", &cert_pem);
        let private = write(dir.path(), "key.pem", &key.signing_key.serialize_pem());
        let text = config("auto", &group("active", "h2c", &servers(&[&a]), "")).replace(
            "protocol = \"auto\"\n",
            &format!("protocol = \"auto\"\ntls = {{ cert = \"{cert}\", key = \"{private}\" }}\n"),
        );
        let lb = Lb::start(&text).await;
        lb.wait_servers("g", "up").await;
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&cert_pem))
            .domain_name("localhost");
        let channel = Channel::from_shared(format!("https://{}", lb.addr("f")))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = EchoClient::new(channel);
        assert_eq!(call(&mut client).await.unwrap(), "a");
        // Plaintext to a TLS port gets nothing.
        let reply = raw_exchange(lb.addr("f"), b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
        assert!(!reply.contains("HTTP/1.1 200"), "{reply}");
        lb.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mtls_upstream_presents_the_client_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |name: &str| {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(vec![name.to_string()])
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf("localhost");
        let (client_cert, client_key) = leaf("lb");
        let ca = write(dir.path(), "ca.pem", &ca_cert.pem());
        let cert = write(dir.path(), "client.pem", &client_cert);
        let key = write(dir.path(), "client.key", &client_key);

        // The TLS backend: tonic requiring a client certificate signed by the CA; its health
        // endpoint is borrowed from a plain test backend.
        let health = TestBackend::grpc("health", true).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(server_cert, server_key))
            .client_ca_root(Certificate::from_pem(ca_cert.pem()));
        let service =
            EchoService::new("secure", std::sync::Arc::new(Behaviour::default())).into_server();
        let server = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .tls_config(tls)
                .unwrap()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
        });
        let servers = common::server(address, health.health);
        let with_cert = format!(
            "tls = {{ ca = \"{ca}\", cert = \"{cert}\", key = \"{key}\", sni = \"localhost\" }}"
        );
        let lb = Lb::start(&config(
            "h2c",
            &group("active", "h2c", &servers, &with_cert),
        ))
        .await;
        lb.wait_servers("g", "up").await;
        let mut client = lb.client("f").await;
        assert_eq!(call(&mut client).await.unwrap(), "secure");
        lb.stop().await;

        // Without the client certificate the server refuses the lb.
        let without = format!(
            "tls = {{ ca = \"{ca}\", sni = \"localhost\" }}\npassive = {{ max_fails = 0 }}"
        );
        let lb = Lb::start(&config("h2c", &group("active", "h2c", &servers, &without))).await;
        lb.wait_servers("g", "up").await;
        let mut client = lb.client("f").await;
        let status = call(&mut client).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        lb.stop().await;
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_tls_files_are_refused_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let junk = write(dir.path(), "junk.pem", "not a certificate");
        let text = config(
            "h2c",
            &group(
                "active",
                "h2c",
                "{ address = \"127.0.0.1:1\" }",
                &format!("tls = {{ ca = \"{junk}\" }}"),
            ),
        );
        let loaded = tandem_nodes::config::LoadedLb::parse(&text).unwrap();
        let error = match tandem_lb::serve(loaded, None, tokio_util::sync::CancellationToken::new())
            .await
        {
            Ok(_) => panic!("a junk CA was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(error.contains("lb.backends[0].tls.ca"), "{error}");
    }
}
