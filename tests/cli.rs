//! The `tandem` binary as a user meets it: bad topologies and unreachable databases make it exit
//! non-zero naming the key or address, every command has help, and `tandem up` starts a topology,
//! shows one active replica per active-passive node, and stops its children on SIGTERM.
#![allow(clippy::unwrap_used)]

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use tandem_nodes::testing::PgDatabase;
use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_tandem");

fn tandem(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A topology with every port 0, on `storage` (`{node}` is replaced by the node's name).
fn small_topology(storage: &str) -> String {
    let s = |node: &str| storage.replace("{node}", node);
    let zero = "admin = \"127.0.0.1:0\", health = \"127.0.0.1:0\"";
    format!(
        "[synchronizer.sequencer]\nstorage = \"{}\"\nreplicas = [{{ api = \"127.0.0.1:0\", {zero} }}]\n\
         [synchronizer.mediator]\nstorage = \"{}\"\nreplicas = [{{ {zero} }}, {{ {zero} }}]\n\
         [synchronizer.topology_manager]\nstorage = \"{}\"\nreplicas = [{{ {zero} }}]\n\
         [[participants]]\nname = \"participant1\"\nstorage = \"{}\"\n{}\n\
         replicas = [{{ api = \"127.0.0.1:0\", {zero} }}, {{ api = \"127.0.0.1:0\", {zero} }}]\n",
        s("sequencer"),
        s("mediator"),
        s("topology_manager"),
        s("participant1"),
        tandem_nodes::testing::participant_auth()
    )
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_topologies_exit_non_zero_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = small_topology(&format!("sqlite://{}/{{node}}.db", dir.path().display()));
    let cases = [
        ("unknown key", good.replace("[[participants]]\n", "[[participants]]\ncolour = \"blue\"\n"), "unknown field `colour`"),
        (
            "missing field",
            good.replace(&format!("storage = \"sqlite://{}/participant1.db\"\n", dir.path().display()), ""),
            "missing field `storage`",
        ),
        (
            "duplicated name",
            good.replace("name = \"participant1\"", "name = \"sequencer\""),
            "participants[0].name: name \"sequencer\" is already used by synchronizer.sequencer.name",
        ),
        (
            "duplicated port",
            good.replacen("admin = \"127.0.0.1:0\"", "admin = \"127.0.0.1:7000\"", 2),
            "synchronizer.mediator.replicas[0].admin: address 127.0.0.1:7000 is already used by synchronizer.sequencer.replicas[0].admin",
        ),
    ];
    for (what, text, expected) in cases {
        let config = write(&dir, "bad.toml", &text);
        let out = tandem(&["node", "--config", &config, "--node", "participant1"]);
        assert!(!out.status.success(), "{what}: exited 0");
        assert!(stderr(&out).contains(expected), "{what}: {}", stderr(&out));
    }
}

#[test]
fn an_unreachable_database_exits_non_zero_naming_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let text = small_topology(&format!("sqlite://{}/{{node}}.db", dir.path().display())).replace(
        &format!("sqlite://{}/participant1.db", dir.path().display()),
        "postgres://tandem:secret@127.0.0.1:1/p1",
    );
    let config = write(&dir, "t.toml", &text);
    let out = tandem(&[
        "node",
        "--config",
        &config,
        "--node",
        "participant1",
        "--replica",
        "1",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("participants[0].storage") && err.contains("127.0.0.1:1"),
        "{err}"
    );
    assert!(!err.contains("secret"), "password leaked: {err}");
}

#[test]
fn a_taken_port_or_unknown_replica_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let text = small_topology(&format!("sqlite://{}/{{node}}.db", dir.path().display())).replacen(
        "health = \"127.0.0.1:0\"",
        &format!("health = \"127.0.0.1:{port}\""),
        1,
    );
    let config = write(&dir, "t.toml", &text);
    let out = tandem(&["node", "--config", &config, "--node", "sequencer"]);
    assert!(
        stderr(&out).contains(&format!(
            "synchronizer.sequencer.replicas[0].health: cannot listen on 127.0.0.1:{port}"
        )),
        "{}",
        stderr(&out)
    );
    let out = tandem(&[
        "node",
        "--config",
        &config,
        "--node",
        "participant1",
        "--replica",
        "5",
    ]);
    assert!(
        stderr(&out).contains("node participant1 has 2 replica(s)"),
        "{}",
        stderr(&out)
    );
    let out = tandem(&["node", "--config", &config, "--node", "nobody"]);
    assert!(
        stderr(&out).contains("no node named \"nobody\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn every_command_explains_itself() {
    let commands: &[&[&str]] = &[
        &[],
        &["up"],
        &["node"],
        &["lb"],
        &["gateway"],
        &["admin"],
        &["admin", "status"],
        &["admin", "set-passive"],
        &["bench"],
        &["bench", "failover"],
        &["bench", "handover"],
        &["check"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let out = tandem(&args);
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.lines().next().is_some_and(|l| l.len() > 20),
            "{args:?} has no description:\n{text}"
        );
    }
}

#[test]
fn a_gateway_missing_from_the_topology_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(&dir, "t.toml", &small_topology("sqlite://x/{node}.db"));
    let out = tandem(&["gateway", "--config", &config]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("the topology has no [[gateways]]"),
        "{}",
        stderr(&out)
    );
}

/// Runs `tandem up`, reads its table, checks the roles, then stops it with SIGTERM.
async fn up_shows_one_active_per_node(extra: &[&str], storage: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = write(&dir, "t.toml", &small_topology(storage));
    let data = dir.path().join("data").display().to_string();
    let mut up = tokio::process::Command::new(BIN)
        .args(["up", "--config", &config, "--data-dir", &data])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(up.stdout.take().unwrap()).lines();
    let mut table = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("Try:") {
                break;
            }
            table.push(line);
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("tandem up printed no table");
    let rows: Vec<Vec<String>> = table
        .iter()
        .skip_while(|l| !l.starts_with("NODE"))
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    assert_eq!(rows.len(), 6, "{table:#?}");
    for node in ["mediator", "topology-manager", "participant1", "sequencer"] {
        let active = rows
            .iter()
            .filter(|r| r[0] == node && r[3] == "active")
            .count();
        assert_eq!(
            active,
            1,
            "{node} must have exactly one active replica:\n{}",
            table.join("\n")
        );
    }
    let passive = rows.iter().filter(|r| r[3] == "passive").count();
    assert_eq!(passive, 2, "{}", table.join("\n"));
    let pids: Vec<i32> = rows.iter().map(|r| r[4].parse().unwrap()).collect();

    kill(Pid::from_raw(up.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), up.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    for pid in pids {
        assert!(
            kill(Pid::from_raw(pid), None).is_err(),
            "replica pid {pid} outlived tandem up"
        );
    }
    // Logs go to files, so they are plain text: no terminal colour codes.
    let logs = std::path::Path::new(&data).join("logs");
    let mut lines = 0;
    for entry in std::fs::read_dir(&logs).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!text.contains('\u{1b}'), "colour codes in a log:\n{text}");
        lines += text.lines().count();
    }
    assert!(lines > 0, "nothing logged in {}", logs.display());
}

#[tokio::test]
async fn up_starts_a_topology_and_stops_it_on_sigterm_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    up_shows_one_active_per_node(
        &[],
        &format!("sqlite://{}/{{node}}.db", dir.path().display()),
    )
    .await;
}

#[tokio::test]
async fn up_starts_a_topology_and_stops_it_on_sigterm_postgres() {
    let Some(db) = PgDatabase::fresh() else {
        return;
    };
    // `--postgres` gives every node its own database on the server, whatever the file says.
    up_shows_one_active_per_node(
        &["--postgres", &db.cluster.server_url()],
        "sqlite://unused/{node}.db",
    )
    .await;
}
