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
        .map(|i| format!("[[participants]]\nname = \"participant{i}\"\nstorage = \"{storage}\"\nreplicas = [{api_pair}]\n"))
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
