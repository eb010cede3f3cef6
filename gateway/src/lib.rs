//! tandem-gateway: the active-active HTTP JSON API of design.md §9 (axum): Canton JSON Ledger
//! API v2 paths, JWT auth, a local query cache and the OpenAPI document in `openapi/`.
//!
//! Not built yet. The topology already describes gateways (`[[gateways]]`, validated by
//! `tandem_nodes::config`), and `tandem gateway` says the service is not available. The gateway
//! will never touch a database: it talks to participants through the Ledger API only.
