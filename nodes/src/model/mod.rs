//! The ledger model (design.md §7): packages, values, expressions, the interpreter and
//! Daml's authorization rules. Pure: no I/O, no async, no clock, no randomness, so every
//! participant that re-interprets a submission gets the same transaction.
//!
//! Entry points: [`PackageStore::upload`] loads a package document, the `decode_*`
//! helpers on the store turn JSON API arguments into [`Value`]s, and [`interpret`] turns
//! [`Command`]s into a [`Transaction`] tree. Every error type has a `code()` with a stable
//! name (`TEMPLATE_NOT_FOUND`, `AUTHORIZATION_ERROR`, …) for the Ledger API to map.

pub mod auth;
pub mod decimal;
pub mod expr;
pub mod ids;
pub mod interpret;
pub mod json;
pub mod package;
pub mod time;
pub mod tx;
pub mod types;
pub mod value;

pub use auth::AuthorizationError;
pub use decimal::Decimal;
pub use ids::{
    ContractId, IdError, PackageId, PackageRef, Party, SubmissionSeed, TemplateId, TemplateRef,
};
pub use interpret::{interpret, Command, ContractLookup, InterpretError, NoContracts, Submitters};
pub use json::{from_json, to_json};
pub use package::{DecodeError, Format, LookupError, PackageError, PackageErrorKind, PackageStore};
pub use time::{Date, Timestamp};
pub use tx::{Contract, ContractKey, GlobalKey, Node, NodeId, NodeKind, Transaction};
pub use types::Type;
pub use value::{Record, Value, ValueError};

#[cfg(test)]
mod tests;
