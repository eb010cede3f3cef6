//! tandem-gateway: the active-active HTTP JSON API of design.md §9 (axum) in front of one
//! participant's gRPC Ledger API: Canton JSON Ledger API v2 paths and payloads, JWT auth with
//! the shared `tandem-auth` verifier and rights from the participant's user management, a
//! local per-party query cache behind `POST /v2/query`, websocket streams, and the OpenAPI
//! document committed in `openapi/`.
//!
//! The gateway never touches a database and keeps no state that must survive it: any number
//! of instances can run behind the lb. [`serve`] runs one on a listener until a shutdown
//! token is cancelled; [`app`] gives the same service for in-process tests.
//!
//! Map: [`api`] (handlers and JSON shapes), [`auth`] (who the caller is and may do),
//! [`cache`] (the per-party active contract sets), [`query`] (filters and page tokens),
//! [`ledger`] (the gRPC client), [`error`] (problem documents), [`value`] (JSON ⇄ protobuf
//! values), [`openapi`], [`metrics`], [`server`] (layers and serving).

pub mod api;
pub mod auth;
pub mod cache;
pub mod error;
pub mod json;
pub mod ledger;
pub mod metrics;
pub mod openapi;
pub mod query;
pub mod server;
pub mod state;
pub mod value;

pub use server::{app, serve, state as build_state, ServeError};
pub use tandem_nodes::config::GatewayConfig;
