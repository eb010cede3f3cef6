//! Tandem's node kinds and what they share: topology configuration, storage on SQLite and
//! Postgres, replica leadership with epoch fencing, and the health server. Each node kind is a
//! library function the `tandem` binary and the tests call alike; nothing here reads flags.

pub mod config;
pub mod store;
pub mod testing;
pub mod metrics;
pub mod replica;
pub mod admin;
pub mod health;
pub mod node;
