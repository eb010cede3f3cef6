//! Fixtures for tests and benchmarks: a throwaway Postgres cluster, topologies on port 0 and an
//! in-process synchronizer. Compiled into the library (not only under `cfg(test)`) because
//! `tandem bench` uses them too.

mod member;
mod postgres;
mod synchronizer;

pub use member::{mediator_id, TestMember};
pub use postgres::{PgCluster, PgDatabase};
pub use synchronizer::Synchronizer;

/// A synchronizer topology on `storage` with every port 0: `sequencers` sequencers, two
/// replicas each of the mediator and the topology manager, and `participants` participants
/// (`participant1`, …) with two replicas each. `synchronizer` is extra TOML for
/// `[synchronizer]` (e.g. `"topology_change_delay_ms = 50"`), `sequencing` for
/// `[synchronizer.sequencing]` (e.g. `"offline_after_ms = 600"`).
pub fn synchronizer_topology(
    storage: &str,
    sequencers: usize,
    participants: usize,
    synchronizer: &str,
    sequencing: &str,
) -> String {
    let zero = "admin = \"127.0.0.1:0\", health = \"127.0.0.1:0\"";
    let seq = vec![format!("{{ api = \"127.0.0.1:0\", {zero} }}"); sequencers].join(", ");
    let pair = format!("{{ {zero} }}, {{ {zero} }}");
    let api_pair =
        format!("{{ api = \"127.0.0.1:0\", {zero} }}, {{ api = \"127.0.0.1:0\", {zero} }}");
    let participants: String = (1..=participants)
        .map(|i| format!("[[participants]]\nname = \"participant{i}\"\nstorage = \"{storage}\"\nreplicas = [{api_pair}]\n{}\n", participant_auth()))
        .collect();
    format!(
        "[synchronizer]\n{synchronizer}\n\
         [synchronizer.sequencing]\n{sequencing}\n\
         [synchronizer.sequencer]\nstorage = \"{storage}\"\nreplicas = [{seq}]\n\
         [synchronizer.mediator]\nstorage = \"{storage}\"\nreplicas = [{pair}]\n\
         [synchronizer.topology_manager]\nstorage = \"{storage}\"\nreplicas = [{pair}]\n\
         {participants}"
    )
}

/// The HS256 secret test topologies' participants accept (`auth.unsafe`): tests only.
pub const TEST_JWT_SECRET: &str = "tandem-test-secret-not-for-any-deployment";

/// The `auth` line of a test participant: HS256 with [`TEST_JWT_SECRET`].
pub fn participant_auth() -> String {
    format!("auth = {{ unsafe = true, hs256_secret = \"{TEST_JWT_SECRET}\" }}")
}

/// A scope-based user token for `user`, valid for an hour, that test participants accept.
pub fn token(user: &str) -> String {
    tandem_auth::mint_hs256_dev_token(TEST_JWT_SECRET, user, 3600)
        .expect("HS256 signing with a fixed secret cannot fail")
}

/// A Ledger API client for `user` on `endpoint` with a [`token`] naming it.
pub fn ledger_client(
    endpoint: &str,
    user: &str,
) -> Result<crate::participant::client::LedgerClient, String> {
    crate::participant::client::LedgerClient::connect_lazy(endpoint, user, &token(user))
}
