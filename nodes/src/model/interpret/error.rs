//! Why a command could not be interpreted. Each error has a stable code that the Ledger
//! API maps to a gRPC status and the gateway to an HTTP status.

use crate::model::auth::AuthorizationError;
use crate::model::ids::ContractId;
use crate::model::package::LookupError;
use crate::model::value::ValueError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpretError {
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error("invalid {what}: {source}")]
    InvalidArgument { what: String, source: ValueError },
    #[error("a submission needs at least one act-as party")]
    NoActAs,
    #[error("contract {0} not found")]
    ContractNotFound(ContractId),
    #[error("contract {contract} is not visible to the submitting parties (none of them is a stakeholder)")]
    ContractNotVisible { contract: ContractId },
    #[error("contract {contract} was already consumed in this transaction (node {node})")]
    ContractNotActive { contract: ContractId, node: usize },
    #[error("contract {contract} is a {actual}, not a {expected}")]
    WrongTemplate {
        contract: ContractId,
        expected: String,
        actual: String,
    },
    #[error("no contract of {template} with key {key}")]
    KeyNotFound { template: String, key: String },
    #[error("a contract of {template} with key {key} already exists")]
    DuplicateKey { template: String, key: String },
    #[error(transparent)]
    Authorization(#[from] AuthorizationError),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("assertion failed in {context}: {message}")]
    AssertionFailed { context: String, message: String },
    #[error("{context}: {message}")]
    Arithmetic { context: String, message: String },
    #[error("{context}: {message}")]
    Evaluation { context: String, message: String },
    #[error("{0}")]
    LimitExceeded(String),
}

impl InterpretError {
    /// Stable error code for the Ledger API.
    pub fn code(&self) -> &'static str {
        match self {
            InterpretError::Lookup(e) => e.code(),
            InterpretError::InvalidArgument { .. } | InterpretError::NoActAs => "INVALID_ARGUMENT",
            InterpretError::ContractNotFound(_) => "CONTRACT_NOT_FOUND",
            InterpretError::ContractNotVisible { .. } => "CONTRACT_NOT_VISIBLE",
            InterpretError::ContractNotActive { .. } => "CONTRACT_NOT_ACTIVE",
            InterpretError::WrongTemplate { .. } => "WRONG_TEMPLATE",
            InterpretError::KeyNotFound { .. } => "CONTRACT_KEY_NOT_FOUND",
            InterpretError::DuplicateKey { .. } => "DUPLICATE_CONTRACT_KEY",
            InterpretError::Authorization(_) => "AUTHORIZATION_ERROR",
            InterpretError::PreconditionFailed(_) => "PRECONDITION_FAILED",
            InterpretError::AssertionFailed { .. } => "ASSERTION_FAILED",
            InterpretError::Arithmetic { .. } => "ARITHMETIC_ERROR",
            InterpretError::Evaluation { .. } => "EVALUATION_ERROR",
            InterpretError::LimitExceeded(_) => "INTERPRETATION_LIMIT_EXCEEDED",
        }
    }
}
