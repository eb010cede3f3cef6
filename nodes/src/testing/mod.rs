//! Fixtures for tests and benchmarks: a throwaway Postgres cluster and topologies on port 0. Compiled into the library
//! (not only under `cfg(test)`) because `tandem bench` starts one too.

mod postgres;

pub use postgres::{PgCluster, PgDatabase};

/// A topology of `sequencers` sequencers (and the one mediator and topology manager the schema
/// requires, never started) on `storage`, every port 0. `sequencing` is extra TOML for
/// `[synchronizer.sequencing]`, e.g. `"offline_after_ms = 600"`.
pub fn sequencer_topology(storage: &str, sequencers: usize, sequencing: &str) -> String {
    let zero = "admin = \"127.0.0.1:0\", health = \"127.0.0.1:0\"";
    let seq = vec![format!("{{ api = \"127.0.0.1:0\", {zero} }}"); sequencers].join(", ");
    format!(
        "[synchronizer.sequencing]\n{sequencing}\n\
         [synchronizer.sequencer]\nstorage = \"{storage}\"\nreplicas = [{seq}]\n\
         [synchronizer.mediator]\nstorage = \"{storage}\"\nreplicas = [{{ {zero} }}]\n\
         [synchronizer.topology_manager]\nstorage = \"{storage}\"\nreplicas = [{{ {zero} }}]\n"
    )
}
