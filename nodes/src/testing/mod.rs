//! Fixtures for tests and benchmarks: a throwaway Postgres cluster. Compiled into the library
//! (not only under `cfg(test)`) because `tandem bench` starts one too.

mod postgres;

pub use postgres::{PgCluster, PgDatabase};
