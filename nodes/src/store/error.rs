//! The store's error type: sqlx errors and SQLSTATEs become domain errors here and nowhere else.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot connect to database {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("cannot migrate database {url}: {reason}")]
    Migrate { url: String, reason: String },
    /// The writer's leadership epoch is no longer current: another replica took over.
    #[error("write refused: epoch {epoch} of {node}/{replica} is no longer the leader's")]
    Fenced {
        node: String,
        replica: u32,
        epoch: u64,
    },
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Database(db) => match db.code().as_deref() {
                // Class 08: connection exception; 57P01..57P03: the server is shutting down,
                // crashed or not yet accepting connections; SQLite 5/6: busy or locked.
                Some(code)
                    if code.starts_with("08")
                        || matches!(code, "57P01" | "57P02" | "57P03" | "5" | "6") =>
                {
                    StoreError::Unavailable(e.to_string())
                }
                _ => StoreError::Database(e.to_string()),
            },
            _ => StoreError::Database(e.to_string()),
        }
    }
}
