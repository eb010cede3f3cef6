//! The gateway tier as `tandem up` runs it, in real processes on port 0: a participant with two
//! replicas over the synchronizer, `tandem lb` routing its Ledger API to the active replica and
//! round-robin over two `tandem gateway`s. Read-your-writes holds through different gateway
//! instances and through the lb; after SIGKILL of the active participant replica the gateways'
//! query caches catch up, and every acknowledged create is there exactly once.

#![allow(clippy::unwrap_used)]

mod common;

use common::topology::{active, Processes};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tandem::process::{GatewayProcess, LbProcess};
use tandem_auth::AuthConfig;
use tandem_nodes::config::GatewayConfig;
use tandem_nodes::testing::{token, TEST_JWT_SECRET};

const IOU: &str = "#iou:Iou:Iou";
const ADMIN: &str = "participant_admin";

const LB: &str = r#"
admin = "127.0.0.1:0"
[[frontends]]
name = "ledger"
listen = "127.0.0.1:0"
protocol = "h2c"
backend = { ledger_api = { participant = "participant1" } }
[[frontends]]
name = "json"
listen = "127.0.0.1:0"
protocol = "auto"
backend = "gateways"
"#;

struct Tier {
    p: Processes,
    lb: LbProcess,
    gateways: Vec<GatewayProcess>,
    /// The lb's `json` frontend.
    json: SocketAddr,
}

fn write(path: &Path, p: &Processes) {
    std::fs::write(path, toml::to_string(&p.topology).unwrap()).unwrap();
}

/// Nodes first; then the lb, whose ledger frontend the gateways use; then the gateways, whose
/// bound addresses reach the lb by a SIGHUP reload (the way an operator adds servers).
async fn start() -> Tier {
    let adjust = |t: &mut tandem_nodes::config::TopologyConfig| {
        t.lb = Some(toml::from_str(LB).unwrap());
        let auth = AuthConfig {
            hs256_secret: Some(TEST_JWT_SECRET.into()),
            allow_unsafe: true,
            ..AuthConfig::default()
        };
        t.gateways = (1..=2)
            .map(|i| {
                GatewayConfig::new(
                    &format!("gateway{i}"),
                    "127.0.0.1:0".parse().unwrap(),
                    "http://127.0.0.1:1",
                    auth.clone(),
                )
            })
            .collect();
    };
    // Postgres when it is installed (CI requires it), else SQLite.
    let mut p = match Processes::start(true, 1, "", adjust).await {
        Some(p) => p,
        None => Processes::start(false, 1, "", adjust).await.unwrap(),
    };
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_tandem"));
    let dir = p.dir.path().to_path_buf();
    let config = dir.join("tier.toml");
    write(&config, &p);
    let timeout = Duration::from_secs(30);
    let lb = LbProcess::spawn_lb(&bin, &config, &dir.join("lb.log"), timeout)
        .await
        .unwrap();
    let ledger = lb.ready.frontends["ledger"];
    for g in &mut p.topology.gateways {
        g.ledger_api = format!("http://{ledger}");
    }
    write(&config, &p);
    let mut gateways = Vec::new();
    for i in 0..2 {
        let name = format!("gateway{}", i + 1);
        let log = dir.join(format!("{name}.log"));
        let g = GatewayProcess::spawn_gateway(&bin, &config, &name, &log, timeout)
            .await
            .unwrap();
        p.topology.gateways[i].listen = g.ready.listen;
        gateways.push(g);
    }
    write(&config, &p);
    lb.signal(nix::sys::signal::Signal::SIGHUP).unwrap();
    let json = lb.ready.frontends["json"];
    let tier = Tier {
        p,
        lb,
        gateways,
        json,
    };
    // Both gateways ready on their own, and the lb sending to them.
    for addr in tier.gateway_addrs().into_iter().chain([json]) {
        until("gateway ready", || async move {
            let (status, body) = call(addr, "GET", "/readyz", None, None).await;
            (status == 200)
                .then_some(())
                .ok_or(format!("{status} {body}"))
        })
        .await;
    }
    tier
}

impl Tier {
    fn gateway_addrs(&self) -> Vec<SocketAddr> {
        self.gateways.iter().map(|g| g.ready.listen).collect()
    }

    async fn stop(mut self) {
        for g in &mut self.gateways {
            g.stop(Duration::from_secs(10)).await;
        }
        self.lb.stop(Duration::from_secs(10)).await;
        self.p.stop().await;
    }
}

/// Retries `f` until it succeeds, for at most a minute.
async fn until<T, F, Fut>(what: &str, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if Instant::now() < deadline => {
                if std::env::var("TANDEM_TEST_VERBOSE").is_ok() {
                    eprintln!("{what}: {e}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: Option<&[(&str, &str)]>,
    body: Option<(&str, String)>,
) -> (u16, Value) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {}", token(ADMIN)));
    for (k, v) in headers.unwrap_or_default() {
        request = request.header(*k, *v);
    }
    let body = match body {
        Some((content_type, text)) => {
            request = request.header("content-type", content_type);
            Full::from(text)
        }
        None => Full::default(),
    };
    let sent = client.request(request.body(body).unwrap());
    let Ok(Ok(response)) = tokio::time::timeout(Duration::from_secs(30), sent).await else {
        return (0, Value::Null);
    };
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn post(addr: SocketAddr, path: &str, body: &Value) -> Result<Value, String> {
    let (status, answer) = call(
        addr,
        "POST",
        path,
        None,
        Some(("application/json", body.to_string())),
    )
    .await;
    match status {
        200 => Ok(answer),
        _ => Err(format!("POST {path}: {status} {answer}")),
    }
}

/// Uploads the Iou package and allocates a party through the lb.
async fn party(json_api: SocketAddr) -> String {
    let package = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/packages/iou.yaml"
    ))
    .unwrap();
    until("upload", || {
        let package = package.clone();
        async move {
            let (status, answer) = call(
                json_api,
                "POST",
                "/v2/packages",
                None,
                Some(("application/yaml", package)),
            )
            .await;
            matches!(status, 200 | 409)
                .then_some(())
                .ok_or(format!("{status} {answer}"))
        }
    })
    .await;
    until("allocate", || async move {
        let body = json!({"partyIdHint": "Bank", "userId": ADMIN});
        let answer = post(json_api, "/v2/parties", &body).await?;
        Ok(answer["partyDetails"]["party"].as_str().unwrap().to_owned())
    })
    .await
}

fn create_body(party: &str, currency: &str) -> Value {
    json!({
        "commands": [{"CreateCommand": {"templateId": IOU, "createArguments":
            {"issuer": party, "owner": party, "currency": currency, "amount": "1.0", "viewers": []}}}],
        "actAs": [party],
    })
}

/// Creates an Iou through `addr`; the `Idempotency-Key` makes a retry after an unknown outcome
/// safe (a commit already made answers 409 DUPLICATE_COMMAND). Returns once acknowledged.
async fn create(addr: SocketAddr, party: &str, currency: &str) {
    let body = create_body(party, currency).to_string();
    until(&format!("create {currency}"), || {
        let body = body.clone();
        async move {
            let key = [("idempotency-key", currency)];
            let (status, answer) = call(
                addr,
                "POST",
                "/v2/commands/submit-and-wait",
                Some(&key),
                Some(("application/json", body)),
            )
            .await;
            match status {
                200 => Ok(()),
                409 if answer["code"] == "DUPLICATE_COMMAND" => Ok(()),
                _ => Err(format!("{status} {answer}")),
            }
        }
    })
    .await;
}

/// The currencies of `party`'s Ious as the gateway at `addr` answers a cached query.
async fn query(addr: SocketAddr, party: &str, filter: Value) -> Vec<String> {
    let body = json!({"templateIds": [IOU], "parties": [party], "filter": filter});
    let answer = until("query", || post(addr, "/v2/query", &body)).await;
    let mut currencies: Vec<String> = answer["contracts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c["createArgument"]["currency"]
                .as_str()
                .unwrap_or("?")
                .to_owned()
        })
        .collect();
    currencies.sort();
    currencies
}

/// `sdk/scenario.py` through the Python client `sdk/generate` made (`TANDEM_SDK_CLIENT` names
/// its directory, `TANDEM_SDK_PYTHON` the interpreter of the generator's venv), against the lb's
/// json frontend. Skipped when no client was generated, unless `TANDEM_REQUIRE_SDK=1` (CI).
async fn generated_python_client_runs_its_scenario(json_api: SocketAddr) {
    let client = std::env::var("TANDEM_SDK_CLIENT")
        .ok()
        .filter(|c| !c.is_empty());
    let Some(client) = client else {
        assert!(
            std::env::var("TANDEM_REQUIRE_SDK").as_deref() != Ok("1"),
            "TANDEM_REQUIRE_SDK=1 but TANDEM_SDK_CLIENT is not set (run sdk/generate)"
        );
        eprintln!("SKIP: no generated SDK (TANDEM_SDK_CLIENT); run sdk/generate to include it");
        return;
    };
    let python = std::env::var("TANDEM_SDK_PYTHON").unwrap_or_else(|_| "python3".into());
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/sdk/scenario.py");
    let run = tokio::process::Command::new(&python)
        .args([scenario, "--url", &format!("http://{json_api}")])
        .args(["--token", &token(ADMIN), "--client", &client])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the SDK scenario did not finish within 120 s")
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "SDK scenario failed:\n{printed}");
    eprintln!("SDK scenario passed:\n{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_behind_the_lb_read_their_writes_and_catch_up_after_failover() {
    let tier = start().await;
    let json_api = tier.json;
    let [g1, g2] = tier.gateway_addrs()[..] else {
        unreachable!()
    };
    generated_python_client_runs_its_scenario(json_api).await;
    let party = party(json_api).await;

    // Create through one instance, query through the other at once: always visible.
    for i in 0..10 {
        let (from, to) = if i % 2 == 0 { (g1, g2) } else { (g2, g1) };
        let currency = format!("RYW{i}");
        create(from, &party, &currency).await;
        let seen = query(to, &party, json!({"currency": currency})).await;
        assert_eq!(seen, vec![currency.clone()], "write {i} not visible");
    }
    // The same through the lb, which alternates the instances.
    for i in 0..10 {
        let currency = format!("LB{i}");
        create(json_api, &party, &currency).await;
        let seen = query(json_api, &party, json!({"currency": currency})).await;
        assert_eq!(
            seen,
            vec![currency.clone()],
            "write {i} via the lb not visible"
        );
    }

    // SIGKILL the active participant replica; creates through the lb resume on the standby and
    // both caches follow the new active replica's update stream.
    let mut p = tier.p;
    let victim = active(p.replicas("participant1"), None).await;
    let killed_at = Instant::now();
    p.replicas("participant1")[victim]
        .signal(nix::sys::signal::Signal::SIGKILL)
        .unwrap();
    p.replicas("participant1")[victim].wait().await.unwrap();
    create(json_api, &party, "AFTER0").await;
    let failover = killed_at.elapsed();
    for i in 1..5 {
        create(json_api, &party, &format!("AFTER{i}")).await;
    }
    let mut expected: Vec<String> = (0..10)
        .flat_map(|i| [format!("RYW{i}"), format!("LB{i}")])
        .chain((0..5).map(|i| format!("AFTER{i}")))
        .collect();
    expected.sort();
    for gw in [g1, g2] {
        assert_eq!(
            query(gw, &party, json!({})).await,
            expected,
            "gateway {gw}: every acknowledged create exactly once"
        );
    }
    // The caches agree with the ledger's own active contract set (read through the lb).
    let filter = json!({"filter": {"filtersByParty": {party.clone(): {}}}});
    let acs = until("active contracts", || {
        post(json_api, "/v2/state/active-contracts", &filter)
    })
    .await;
    let mut on_ledger: Vec<String> = acs
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c["contractEntry"]["JsActiveContract"]["createdEvent"]["createArgument"]["currency"]
                .as_str()
                .unwrap_or("?")
                .to_owned()
        })
        .collect();
    on_ledger.sort();
    assert_eq!(on_ledger, expected, "the ledger's ACS");
    eprintln!(
        "SIGKILL of participant1/{victim} → next create acknowledged through lb and gateway after {} ms",
        failover.as_millis()
    );
    let tier = Tier { p, ..tier };
    tier.stop().await;
}
