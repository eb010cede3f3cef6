//! Errors of starting and reloading the lb. Every one names the config key or address it is
//! about; request-time failures are not errors here but `failure::Failure`.

use std::net::SocketAddr;
use tandem_nodes::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum LbError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{key}: {message}")]
    Tls { key: String, message: String },
    #[error("{key}: cannot listen on {addr}: {source}")]
    Bind {
        key: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{key}: {message}")]
    Reload { key: String, message: String },
    #[error("lb.workers: cannot start {count} worker threads: {source}")]
    Workers {
        count: usize,
        source: std::io::Error,
    },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("this lb was started without a config file, so there is nothing to reload from")]
    NoFile,
}
