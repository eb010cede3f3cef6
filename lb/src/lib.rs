//! tandem-lb: the L7 load balancer of design.md §8 (pingora): frontends routed to the active
//! participant replica or round-robin over sequencers and gateways, HTTP/1 health checks.
//!
//! Not built yet. The topology already describes it (`[lb]` in the config, validated by
//! `tandem_nodes::config`), and `tandem lb` validates that section and says the service is not
//! available. This crate must not depend on node internals beyond the config types.
