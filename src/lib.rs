//! The `tandem` command: one binary that starts whole topologies (`up`), single replicas
//! (`node`), the load balancer and gateways, talks to admin APIs and runs benchmarks. The node
//! kinds themselves live in `tandem-nodes`; this crate wires flags and processes to them.

pub mod cli;
pub mod commands;
pub mod process;
