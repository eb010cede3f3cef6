//! Config validation: each broken topology and the exact key its error names.

use super::TopologyConfig;

const VALID: &str = r#"
[synchronizer.sequencer]
storage = "sqlite://data/seq.db"
replicas = [{ api = "127.0.0.1:5001", admin = "127.0.0.1:5101", health = "127.0.0.1:5201" }]
[synchronizer.mediator]
storage = "sqlite://data/med.db"
replicas = [{ admin = "127.0.0.1:5111", health = "127.0.0.1:5211" }]
[synchronizer.topology_manager]
storage = "sqlite://data/tm.db"
replicas = [{ admin = "127.0.0.1:5121", health = "127.0.0.1:5221" }]
[[participants]]
name = "participant1"
storage = "postgres://tandem@127.0.0.1:5432/p1"
auth = { unsafe = true, hs256_secret = "0123456789abcdef0123456789abcdef" }
replicas = [
  { api = "127.0.0.1:4011", admin = "127.0.0.1:4111", health = "127.0.0.1:4211" },
  { api = "127.0.0.1:0", admin = "127.0.0.1:0", health = "127.0.0.1:0" },
  { api = "127.0.0.1:0", admin = "127.0.0.1:0", health = "127.0.0.1:0" },
]
"#;

fn error_of(text: &str) -> String {
    match TopologyConfig::parse(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_valid_topology_parses_with_defaults() {
    let config = TopologyConfig::parse(VALID).unwrap();
    let names: Vec<_> = config.nodes().iter().map(|n| n.name.to_string()).collect();
    assert_eq!(
        names,
        ["sequencer", "mediator", "topology-manager", "participant1"]
    );
    assert_eq!(config.replication.lease_ms, 500);
    assert_eq!(config.synchronizer.name, "synchronizer1");
}

#[test]
fn the_shipped_examples_are_valid() {
    for file in ["topology.toml", "topology-postgres.toml"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples")
            .join(file);
        let config = TopologyConfig::load(&path).unwrap();
        assert_eq!(config.participants.len(), 2, "{file}");
    }
}

#[test]
fn broken_topologies_name_the_offending_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "unknown key",
            "[synchronizer.mediator]\nstorage = \"sqlite://data/med.db\"",
            "[synchronizer.mediator]\nstorage = \"sqlite://data/med.db\"\nstorgae = \"x\"",
        ),
        (
            "missing field",
            "storage = \"sqlite://data/tm.db\"\nreplicas = [{ admin = \"127.0.0.1:5121\", health = \"127.0.0.1:5221\" }]",
            "storage = \"sqlite://data/tm.db\"\nreplicas = [{ admin = \"127.0.0.1:5121\" }]",
        ),
        (
            "duplicated port",
            "admin = \"127.0.0.1:5111\", health = \"127.0.0.1:5211\"",
            "admin = \"127.0.0.1:5111\", health = \"127.0.0.1:5101\"",
        ),
        ("duplicated name", "name = \"participant1\"", "name = \"mediator\""),
        ("bad storage", "storage = \"sqlite://data/med.db\"", "storage = \"mysql://x\""),
        ("api on a mediator", "replicas = [{ admin = \"127.0.0.1:5111\"", "replicas = [{ api = \"127.0.0.1:9\", admin = \"127.0.0.1:5111\""),
        ("missing api", "{ api = \"127.0.0.1:4011\", admin", "{ admin"),
        ("bad name", "name = \"participant1\"", "name = \"participant 1\""),
        ("participant without auth", "auth = { unsafe = true, hs256_secret = \"0123456789abcdef0123456789abcdef\" }\n", ""),
        ("HS256 without unsafe", "auth = { unsafe = true, ", "auth = { "),
        ("auth on a mediator", "storage = \"sqlite://data/med.db\"", "storage = \"sqlite://data/med.db\"\nauth = { pem_files = [\"k.pem\"] }"),
    ];
    let expected: &[&str] = &[
        "unknown field `storgae`",
        "missing field `health`",
        "synchronizer.mediator.replicas[0].health: address 127.0.0.1:5101 is already used by synchronizer.sequencer.replicas[0].admin",
        "participants[0].name: name \"mediator\" is already used by synchronizer.mediator.name",
        "synchronizer.mediator.storage: \"mysql://x\" is not a storage URL",
        "synchronizer.mediator.replicas[0].api: this node kind has no public API",
        "participants[0].replicas[0].api: missing field `api`",
        "participants[0].name: \"participant 1\" is not a valid name",
        "participants[0].auth: missing table",
        "participants[0].auth.hs256_secret: HS256 lets anyone",
        "synchronizer.mediator.auth: only participants verify tokens",
    ];
    for ((what, from, to), want) in cases.iter().zip(expected) {
        assert!(VALID.contains(from), "{what}: fixture text not found");
        let broken = VALID.replacen(from, to, 1);
        let got = error_of(&broken);
        assert!(got.contains(want), "{what}: expected {want:?} in {got:?}");
    }
}

#[test]
fn parse_errors_point_at_the_line() {
    let got = error_of(&VALID.replace(
        "storage = \"sqlite://data/tm.db\"",
        "storage = \"sqlite://data/tm.db\"\nsurprise = 1",
    ));
    assert!(got.contains("line 10"), "{got}");
}

#[test]
fn replication_timing_must_leave_room_to_renew() {
    let got = error_of(&format!(
        "[replication]\nlease_ms = 100\nrenew_interval_ms = 80\n{VALID}"
    ));
    assert!(got.contains("replication.renew_interval_ms"), "{got}");
    let got = error_of(&format!("[replication]\npoll_interval_ms = 0\n{VALID}"));
    assert!(
        got.contains("replication.poll_interval_ms: must be greater than 0"),
        "{got}"
    );
}

#[test]
fn lb_frontends_must_route_to_known_participants() {
    let lb = "[lb]\nadmin = \"127.0.0.1:8081\"\n[[lb.frontends]]\nname = \"ledger\"\nlisten = \"127.0.0.1:4001\"\nprotocol = \"h2c\"\nbackend = { ledger_api = { participant = \"nobody\" } }\n";
    let got = error_of(&format!("{VALID}{lb}"));
    assert!(
        got.contains("lb.frontends[0].backend: no participant is named \"nobody\""),
        "{got}"
    );
    let ok = lb.replace("nobody", "participant1");
    TopologyConfig::parse(&format!("{VALID}{ok}")).unwrap();
}
