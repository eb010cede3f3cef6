//! Tandem's node kinds and what they share: topology configuration, storage on SQLite and
//! Postgres, replica leadership with epoch fencing, and the health server. Each node kind is a
//! library function the `tandem` binary and the tests call alike; nothing here reads flags.

pub mod admin;
pub mod config;
pub mod health;
pub mod identity;
pub mod mediator;
pub mod member;
pub mod metrics;
pub mod model;
pub mod net;
pub mod node;
pub mod participant;
pub mod replica;
pub mod sequencer;
pub mod store;
pub mod testing;
pub mod topology;
pub mod topology_manager;
pub mod workers;
