//! Participants in process over a real synchronizer, on SQLite and Postgres: an Iou issued and
//! transferred across two participants (their ACSs agree; a third participant sees nothing), a
//! double spend through two participants, command deduplication, bad input refused with a
//! stable error code and nothing written, and a party hosted on three participants (threshold
//! 2, one observer) that commits while both confirmers answer and times out when one is gone.
#![allow(clippy::unwrap_used, clippy::cloned_ref_to_slice_refs)]

use serde_json::json;
use std::time::Duration;
use tandem_nodes::participant::client::LedgerClient;
use tandem_nodes::testing::{ledger_client, Synchronizer, TEST_JWT_SECRET};
use tandem_proto::participant::v1 as admin;
use tandem_proto::participant::v1::party_hosting_service_client::PartyHostingServiceClient;
use tandem_proto::participant::v1::synchronizer_connectivity_service_client::SynchronizerConnectivityServiceClient;
use tonic::Code;

const IOU: &str = "#iou:Iou:Iou";

async fn start(postgres: bool, participants: u32) -> Option<(Synchronizer, Vec<LedgerClient>)> {
    let sync = Synchronizer::start(
        postgres,
        2,
        1,
        participants,
        "topology_change_delay_ms = 50\nconfirmation_response_timeout_ms = 2000",
        "",
    )
    .await
    .unwrap()?;
    let package = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/packages/iou.yaml"
    ))
    .unwrap();
    let mut clients = Vec::new();
    for p in &sync.participants {
        let c = ledger_client(
            &format!("http://{}", p.ready.api.unwrap()),
            "participant_admin",
        )
        .unwrap();
        // The replica becomes active, then connects; uploading needs only the former.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match c.upload_package(package.clone(), "yaml").await {
                Ok(_) => break,
                Err(s)
                    if s.code() == Code::Unavailable && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(s) => panic!("upload: {s:?}"),
            }
        }
        clients.push(c);
    }
    Some((sync, clients))
}

/// Allocates `hint` on `c` for its user, waiting out the participant's admission.
async fn party(c: &LedgerClient, hint: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match c.allocate_party(hint, &c.user).await {
            Ok(p) => return p,
            Err(s)
                if tokio::time::Instant::now() < deadline
                    && matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded) =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => panic!("allocating {hint}: {s:?}"),
        }
    }
}

fn iou(issuer: &str, owner: &str, amount: &str) -> serde_json::Value {
    json!({"issuer": issuer, "owner": owner, "currency": "USD", "amount": amount, "viewers": []})
}

fn code_of(s: &tonic::Status) -> &str {
    s.message().split(':').next().unwrap_or_default()
}

async fn ledger_flows(postgres: bool) {
    let Some((sync, c)) = start(postgres, 3).await else {
        return;
    };
    let bank = party(&c[0], "Bank").await;
    let alice = party(&c[0], "Alice").await;
    let bob = party(&c[1], "Bob").await;
    let _carol = party(&c[2], "Carol").await;

    // An allocation for a user that does not exist records nothing: the same allocation for a
    // real user then succeeds instead of finding the party already allocated.
    let err = c[2].allocate_party("Erin", "nobody").await.unwrap_err();
    assert_eq!(
        (err.code(), code_of(&err)),
        (Code::NotFound, "USER_NOT_FOUND"),
        "{err:?}"
    );
    let erin = party(&c[2], "Erin").await;
    assert!(erin.starts_with("Erin::"), "{erin}");

    // Issue on p1, transfer to Bob on p2.
    let created = c[0]
        .submit_and_wait_for_transaction(c[0].commands(
            "issue-1",
            &[bank.clone()],
            vec![LedgerClient::create(IOU, &iou(&bank, &alice, "100.0"))],
        ))
        .await
        .unwrap();
    let iou1 = match &created.events[0].event {
        Some(tandem_proto::ledger::v2::event::Event::Created(e)) => e.contract_id.clone(),
        other => panic!("{other:?}"),
    };
    let (transfer_update, _) = c[0]
        .submit_and_wait(c[0].commands(
            "transfer-1",
            &[alice.clone()],
            vec![LedgerClient::exercise(
                IOU,
                &iou1,
                "Transfer",
                &json!({"new_owner": bob}),
            )],
        ))
        .await
        .unwrap();
    let at_p1 = c[0].active_contracts(&[bank.clone()]).await.unwrap();
    let at_p2 = c[1].active_contracts(&[bob.clone()]).await.unwrap();
    assert_eq!(at_p1.len(), 1, "{at_p1:?}");
    assert_eq!(
        at_p1[0].contract_id, at_p2[0].contract_id,
        "both ACSs hold the same contract"
    );
    assert_eq!(at_p1[0].arguments, at_p2[0].arguments);
    assert_eq!(at_p2[0].arguments["owner"], json!(bob));
    let p2_updates = c[1]
        .updates(&[bob.clone()], 0, c[1].ledger_end().await.unwrap())
        .await
        .unwrap();
    assert_eq!(p2_updates.len(), 1);
    assert_eq!(
        p2_updates[0].update_id, transfer_update,
        "the update id is the same everywhere"
    );
    assert_eq!(
        c[2].ledger_end().await.unwrap(),
        0,
        "a participant hosting no informee sees nothing"
    );
    assert!(
        c[0].active_contracts(&[alice.clone()])
            .await
            .unwrap()
            .is_empty(),
        "Alice's Iou is archived"
    );

    // Double spend: Bob transfers on p2 while Bank archives on p1, at once.
    let iou2 = at_p2[0].contract_id.clone();
    let transfer = c[1].submit_and_wait(c[1].commands(
        "ds-transfer",
        &[bob.clone()],
        vec![LedgerClient::exercise(
            IOU,
            &iou2,
            "Transfer",
            &json!({"new_owner": alice}),
        )],
    ));
    let archive = c[0].submit_and_wait(c[0].commands(
        "ds-archive",
        &[bank.clone()],
        vec![LedgerClient::exercise(IOU, &iou2, "Archive", &json!({}))],
    ));
    let (t, a) = tokio::join!(transfer, archive);
    let outcomes = [t.map(|_| ()), a.map(|_| ())];
    assert_eq!(
        outcomes.iter().filter(|o| o.is_ok()).count(),
        1,
        "exactly one commits: {outcomes:?}"
    );
    let loser = outcomes.iter().find_map(|o| o.as_ref().err()).unwrap();
    assert!(
        matches!(
            (loser.code(), code_of(loser)),
            (Code::Aborted, "LOCKED_CONTRACTS")
                | (Code::NotFound, "CONTRACT_NOT_FOUND" | "CONTRACT_NOT_ACTIVE")
        ),
        "contention error: {loser:?}"
    );

    // Deduplication: the same change twice, one after the other and at once.
    let cmd = |id: &str| {
        c[0].commands(
            id,
            &[bank.clone()],
            vec![LedgerClient::create(IOU, &iou(&bank, &alice, "1.0"))],
        )
    };
    c[0].submit_and_wait(cmd("dedup-1")).await.unwrap();
    let again = c[0].submit_and_wait(cmd("dedup-1")).await.unwrap_err();
    assert_eq!(
        (again.code(), code_of(&again)),
        (Code::AlreadyExists, "DUPLICATE_COMMAND"),
        "{again:?}"
    );
    let (x, y) = tokio::join!(
        c[0].submit_and_wait(cmd("dedup-2")),
        c[0].submit_and_wait(cmd("dedup-2"))
    );
    let results = [x, y];
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    let dup = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert_eq!(dup.code(), Code::AlreadyExists, "{dup:?}");

    // Bad input: each refused with its code, nothing written.
    let end = c[0].ledger_end().await.unwrap();
    let cases = vec![
        (
            "unknown template",
            c[0].commands(
                "bad-1",
                &[bank.clone()],
                vec![LedgerClient::create(
                    "#iou:Iou:Nope",
                    &iou(&bank, &alice, "1.0"),
                )],
            ),
            Code::InvalidArgument,
            "TEMPLATE_NOT_FOUND",
        ),
        (
            "ill-typed argument",
            c[0].commands(
                "bad-2",
                &[bank.clone()],
                vec![LedgerClient::create(
                    IOU,
                    &json!({"issuer": bank, "owner": 5}),
                )],
            ),
            Code::InvalidArgument,
            "",
        ),
        (
            "unknown choice",
            c[0].commands(
                "bad-3",
                &[alice.clone()],
                vec![LedgerClient::exercise(IOU, &iou1, "Steal", &json!({}))],
            ),
            Code::InvalidArgument,
            "CHOICE_NOT_FOUND",
        ),
        (
            "archived contract",
            c[0].commands(
                "bad-4",
                &[alice.clone()],
                vec![LedgerClient::exercise(
                    IOU,
                    &iou1,
                    "Transfer",
                    &json!({"new_owner": bob}),
                )],
            ),
            Code::NotFound,
            "",
        ),
        (
            "party not hosted here",
            c[0].commands(
                "bad-5",
                &[bob.clone()],
                vec![LedgerClient::create(IOU, &iou(&bob, &bob, "1.0"))],
            ),
            Code::PermissionDenied,
            "",
        ),
        (
            "no commands",
            c[0].commands("bad-6", &[bank.clone()], vec![]),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            "no act_as",
            c[0].commands(
                "bad-7",
                &[],
                vec![LedgerClient::create(IOU, &iou(&bank, &alice, "1.0"))],
            ),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
    ];
    for (what, commands, code, error_code) in cases {
        let err = c[0].submit_and_wait(commands).await.unwrap_err();
        assert_eq!(err.code(), code, "{what}: {err:?}");
        assert!(code_of(&err).starts_with(error_code), "{what}: {err:?}");
    }
    let stranger = ledger_client(
        &format!("http://{}", sync.participants[0].ready.api.unwrap()),
        "nobody",
    )
    .unwrap();
    let err = stranger.ledger_end().await.unwrap_err();
    assert_eq!(
        (err.code(), code_of(&err)),
        (Code::PermissionDenied, "USER_NOT_FOUND")
    );
    let err = c[0].updates(&[bank.clone()], end + 5, 0).await.unwrap_err();
    assert_eq!(
        (err.code(), code_of(&err)),
        (Code::OutOfRange, "OFFSET_AFTER_LEDGER_END"),
        "{err:?}"
    );
    assert_eq!(
        c[0].ledger_end().await.unwrap(),
        end,
        "nothing written by refused commands"
    );
    bad_tokens_are_refused(&sync, &bank).await;
    drop(c);
    sync.stop().await.unwrap();
}

/// Opens an `ObserveLedgerEnd` stream: the sender asks, the stream answers.
async fn observe_ledger_end(
    c: &LedgerClient,
) -> Result<
    (
        tokio::sync::mpsc::Sender<tandem_proto::ledger::v2::GetLedgerEndRequest>,
        tonic::Streaming<tandem_proto::ledger::v2::GetLedgerEndResponse>,
    ),
    tonic::Status,
> {
    let (asks, rx) = tokio::sync::mpsc::channel(4);
    let answers = c
        .state_client()
        .observe_ledger_end(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok((asks, answers))
}

/// Reads `stream` to its end, which must be UNAUTHENTICATED `expired` (what was sent before the
/// expiry comes first).
async fn ends_expired<T>(what: &str, stream: &mut tonic::Streaming<T>) {
    // The token expires 3 s after it was signed and is refused 5 s (the leeway) later.
    let status = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("{what}: the stream ended without an error"),
                Err(status) => return status,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: the stream outlived its token"));
    assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
    assert!(status.message().contains("expired"), "{what}: {status:?}");
}

/// Seconds since the epoch, as a JWT's `exp` counts them.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(claims: &serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// The participant verifies every call's JWT itself: bad tokens are refused with
/// UNAUTHENTICATED naming the reason; a custom-claims token grants exactly its own rights.
async fn bad_tokens_are_refused(sync: &Synchronizer, bank: &str) {
    let api = format!("http://{}", sync.participants[0].ready.api.unwrap());
    let now = unix_now();
    let user =
        |exp: u64| json!({"sub": "participant_admin", "scope": "daml_ledger_api", "exp": exp});
    let unsigned = {
        use base64::Engine as _;
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        format!("{}.{}.", b64(json!({"alg": "none"})), b64(user(now + 600)))
    };
    let mut tampered = sign(&user(now + 600), TEST_JWT_SECRET);
    tampered.insert(tampered.rfind('.').unwrap() + 1, 'A');
    let cases = [
        ("no token", String::new(), "missing"),
        ("not a JWT", "abc".to_string(), "malformed"),
        (
            "another secret",
            sign(&user(now + 600), "another-secret-that-is-long-enough-0123"),
            "bad_signature",
        ),
        ("tampered", tampered, "bad_signature"),
        (
            "expired",
            sign(&user(now - 600), TEST_JWT_SECRET),
            "expired",
        ),
        ("alg none", unsigned, "unsupported_algorithm"),
    ];
    for (what, token, reason) in cases {
        let c = LedgerClient::connect_lazy(&api, "participant_admin", &token).unwrap();
        let err = c.ledger_end().await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{what}: {err:?}");
        let got = err
            .metadata()
            .get("x-tandem-auth-reason")
            .and_then(|v| v.to_str().ok());
        assert_eq!(got, Some(reason), "{what}: {err:?}");
    }
    // The ledger end stream: refused at open for a bad token, like any call.
    let bad = LedgerClient::connect_lazy(&api, "participant_admin", "abc").unwrap();
    let err = observe_ledger_end(&bad).await.err().unwrap();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    // A token that never really expires sets no timer (and overflows nothing).
    let long = sign(&user(u64::MAX), TEST_JWT_SECRET);
    let lasting = LedgerClient::connect_lazy(&api, "participant_admin", &long).unwrap();
    let (asks, mut answers) = observe_ledger_end(&lasting).await.unwrap();
    asks.try_send(tandem_proto::ledger::v2::GetLedgerEndRequest {})
        .unwrap();
    assert!(answers.message().await.unwrap().is_some());
    // A valid token that expires in a few seconds (from now, not from the start of this
    // function): every ask is answered with the ledger end as the ask arrives; then, once the
    // token is refused (its `exp` plus the verifier's leeway), the stream ends UNAUTHENTICATED.
    let soon = sign(&user(unix_now() + 3), TEST_JWT_SECRET);
    let admin = LedgerClient::connect_lazy(&api, "participant_admin", &soon).unwrap();
    let (asks, mut answers) = observe_ledger_end(&admin).await.unwrap();
    // Live update and completion streams opened with it end at its expiry too.
    let mut updates = admin
        .updates_client()
        .get_updates(tandem_proto::ledger::v2::GetUpdatesRequest {
            begin_exclusive: 0,
            end_inclusive: 0,
            filter: Some(tandem_proto::ledger::v2::TransactionFilter {
                parties: vec![bank.to_string()],
                template_ids: Vec::new(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let mut completions = admin
        .completions_client()
        .completion_stream(tandem_proto::ledger::v2::CompletionStreamRequest {
            user_id: String::new(),
            parties: Vec::new(),
            begin_exclusive: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let ask = || asks.try_send(tandem_proto::ledger::v2::GetLedgerEndRequest {});
    let end = admin.ledger_end().await.unwrap();
    ask().unwrap();
    assert_eq!(answers.message().await.unwrap().unwrap().offset, end);
    let c = ledger_client(&api, "participant_admin").unwrap();
    c.submit_and_wait(c.commands(
        "observed-1",
        &[bank.to_string()],
        vec![LedgerClient::create(IOU, &iou(bank, bank, "2.0"))],
    ))
    .await
    .unwrap();
    ask().unwrap();
    let later = answers.message().await.unwrap().unwrap().offset;
    assert!(later > end, "the create moved the end past {end}: {later}");
    assert_eq!(later, c.ledger_end().await.unwrap());
    ends_expired("ledger end", &mut answers).await;
    ends_expired("updates", &mut updates).await;
    ends_expired("completions", &mut completions).await;

    // A legacy custom-claims token: its rights, no more (no admin, only `bank`).
    let claims = json!({
        "https://daml.com/ledger-api": {"actAs": [bank], "applicationId": "bank-app"},
        "exp": now + 600,
    });
    let app =
        LedgerClient::connect_lazy(&api, "bank-app", &sign(&claims, TEST_JWT_SECRET)).unwrap();
    app.submit_and_wait(app.commands(
        "custom-claims-1",
        &[bank.to_string()],
        vec![LedgerClient::create(IOU, &iou(bank, bank, "3.0"))],
    ))
    .await
    .unwrap();
    let err = app.allocate_party("Mallory", "bank-app").await.unwrap_err();
    assert_eq!(
        (err.code(), code_of(&err)),
        (Code::PermissionDenied, "PERMISSION_DENIED"),
        "{err:?}"
    );
}

async fn multi_hosted_party(postgres: bool) {
    let Some((sync, c)) = start(postgres, 3).await else {
        return;
    };
    let dana = party(&c[0], "Dana").await;
    for client in &c[1..] {
        party(client, "Placeholder").await; // connected and admitted
    }
    let admin = |i: usize| format!("http://{}", sync.participants[i].ready.admin);
    let mut ids = Vec::new();
    for client in &c {
        let r = client
            .parties_client()
            .get_participant_id(tandem_proto::ledger::v2::GetParticipantIdRequest {})
            .await
            .unwrap();
        ids.push(r.into_inner().participant_id);
    }
    let (p1, p2, p3) = (&ids[0], &ids[1], &ids[2]);
    let host = |p: &str, perm: &str| admin::Host {
        participant: p.into(),
        permission: perm.into(),
    };
    let proposed = PartyHostingServiceClient::connect(admin(0))
        .await
        .unwrap()
        .propose_party_hosting(admin::ProposePartyHostingRequest {
            party: dana.clone(),
            threshold: 2,
            participants: vec![
                host(p1, "submission"),
                host(p2, "confirmation"),
                host(p3, "observation"),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(proposed.status, "proposed");
    assert_eq!(proposed.missing_signers.len(), 2, "{proposed:?}");
    for i in [1, 2] {
        let mut hosting = PartyHostingServiceClient::connect(admin(i)).await.unwrap();
        let waiting = hosting
            .list_hosting_proposals(admin::ListHostingProposalsRequest {})
            .await
            .unwrap()
            .into_inner()
            .proposals;
        assert_eq!(waiting.len(), 1, "participant {i} sees the proposal");
        assert_eq!(waiting[0].party, dana);
        hosting
            .authorize_hosting_proposal(admin::AuthorizeHostingProposalRequest {
                hash: waiting[0].hash.clone(),
            })
            .await
            .unwrap();
    }
    // Both confirmers answer: committed, and the observer's participant sees it.
    let create = |id: &str| {
        c[0].commands(
            id,
            &[dana.clone()],
            vec![LedgerClient::create(IOU, &iou(&dana, &dana, "5.0"))],
        )
    };
    let (_, offset) = c[0].submit_and_wait(create("multi-1")).await.unwrap();
    assert!(offset > 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while c[2].ledger_end().await.unwrap() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the observer participant never got the transaction"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        c[1].active_contracts(&[dana.clone()]).await.unwrap().len(),
        1
    );
    // The confirming second host is gone: the threshold cannot be met; rejected at the timeout.
    SynchronizerConnectivityServiceClient::connect(admin(1))
        .await
        .unwrap()
        .disconnect_synchronizer(admin::DisconnectSynchronizerRequest {
            synchronizer: "synchronizer1".into(),
        })
        .await
        .unwrap();
    let err = c[0].submit_and_wait(create("multi-2")).await.unwrap_err();
    assert_eq!(
        (err.code(), code_of(&err)),
        (Code::Aborted, "MEDIATOR_TIMEOUT"),
        "{err:?}"
    );
    assert!(
        err.message().contains(&dana),
        "names the unresponsive party: {err:?}"
    );
    drop(c);
    sync.stop().await.unwrap();
}

macro_rules! both_backends {
    ($($name:ident),*) => {
        mod sqlite_backend { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(false).await } )* }
        mod postgres_backend { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(true).await } )* }
    };
}

both_backends!(ledger_flows, multi_hosted_party);
