//! The interpreter: turns commands into a transaction tree, reading contracts through
//! [`ContractLookup`] and enforcing Daml's authorization and visibility rules. Given the
//! same packages, inputs and seed it produces the same transaction, so confirmers can
//! re-interpret and compare.

mod actions;
mod engine;
mod error;

pub use error::InterpretError;

use std::collections::BTreeSet;
use std::sync::Arc;

use super::ids::{ContractId, Party, SubmissionSeed, TemplateRef};
use super::package::PackageStore;
use super::tx::{Contract, GlobalKey, Transaction};
use super::value::Value;

/// The parties a submission acts and reads as.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Submitters {
    pub act_as: BTreeSet<Party>,
    pub read_as: BTreeSet<Party>,
}

impl Submitters {
    pub fn act_as(parties: impl IntoIterator<Item = Party>) -> Submitters {
        Submitters {
            act_as: parties.into_iter().collect(),
            read_as: BTreeSet::new(),
        }
    }

    /// Whether any act-as or read-as party is among `stakeholders`.
    pub fn can_see(&self, stakeholders: &BTreeSet<Party>) -> bool {
        stakeholders
            .iter()
            .any(|p| self.act_as.contains(p) || self.read_as.contains(p))
    }
}

/// A Ledger API command. Arguments are records (choice arguments: a record of the
/// parameters) and must conform to the template's types; use the `PackageStore::decode_*`
/// helpers to build them from JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Create {
        template: TemplateRef,
        argument: Value,
    },
    Exercise {
        template: TemplateRef,
        contract_id: ContractId,
        choice: String,
        argument: Value,
    },
    CreateAndExercise {
        template: TemplateRef,
        argument: Value,
        choice: String,
        choice_argument: Value,
    },
    ExerciseByKey {
        template: TemplateRef,
        key: Value,
        choice: String,
        argument: Value,
    },
}

/// The contracts the submitter can see; the participant implements this over its ACS.
/// Archived contracts must not be returned.
pub trait ContractLookup {
    fn contract(&self, id: &ContractId) -> Option<Arc<Contract>>;
    fn contract_by_key(&self, key: &GlobalKey) -> Option<ContractId>;
}

/// A lookup that knows no contracts, for submissions that only create.
pub struct NoContracts;

impl ContractLookup for NoContracts {
    fn contract(&self, _: &ContractId) -> Option<Arc<Contract>> {
        None
    }
    fn contract_by_key(&self, _: &GlobalKey) -> Option<ContractId> {
        None
    }
}

/// Interprets `commands` in order as one transaction.
pub fn interpret(
    packages: &PackageStore,
    submitters: &Submitters,
    commands: &[Command],
    contracts: &dyn ContractLookup,
    seed: &SubmissionSeed,
) -> Result<Transaction, InterpretError> {
    if submitters.act_as.is_empty() {
        return Err(InterpretError::NoActAs);
    }
    let mut engine = engine::Engine::new(packages, submitters, contracts, seed);
    for command in commands {
        engine.command(command)?;
    }
    Ok(engine.finish())
}
