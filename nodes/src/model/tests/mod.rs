//! Tests over the example packages: upload checking, values, interpretation, authorization.

mod auth;
mod interpret;
mod packages;
mod values;

use std::collections::HashMap;
use std::sync::Arc;

use super::ids::{ContractId, Party, SubmissionSeed, TemplateRef};
use super::interpret::{interpret, Command, ContractLookup, InterpretError, Submitters};
use super::package::{Format, PackageStore};
use super::tx::{Contract, GlobalKey, Transaction};
use super::value::Value;

/// Reads an example package. The model lives in `<crate>/src/model` both here and in the
/// workspace, where the examples are one level up from the crate; try both.
pub fn example(name: &str) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let candidates = [
        format!("{root}/examples/packages/{name}"),
        format!("{root}/../examples/packages/{name}"),
    ];
    candidates
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_else(|| panic!("example package {name} not found in {candidates:?}"))
}

pub fn store() -> PackageStore {
    let mut s = PackageStore::new();
    s.upload(example("iou.yaml").as_bytes(), Format::Yaml)
        .expect("iou uploads");
    s.upload(example("dvp.yaml").as_bytes(), Format::Yaml)
        .expect("dvp uploads");
    s
}

pub fn party(hint: &str) -> Party {
    Party::parse(&format!("{hint}::1220aa")).expect("valid party")
}

pub fn seed(n: u8) -> SubmissionSeed {
    SubmissionSeed([n; 32])
}

pub fn tref(s: &str) -> TemplateRef {
    TemplateRef::parse(s).expect("valid template ref")
}

/// An in-memory ACS: what a participant would keep, committed transaction by transaction.
#[derive(Default)]
pub struct Acs {
    pub contracts: HashMap<ContractId, Arc<Contract>>,
    pub keys: HashMap<GlobalKey, ContractId>,
}

impl ContractLookup for Acs {
    fn contract(&self, id: &ContractId) -> Option<Arc<Contract>> {
        self.contracts.get(id).cloned()
    }
    fn contract_by_key(&self, key: &GlobalKey) -> Option<ContractId> {
        self.keys.get(key).cloned()
    }
}

impl Acs {
    pub fn commit(&mut self, tx: &Transaction) {
        for id in tx.consumed_inputs() {
            if let Some(c) = self.contracts.remove(id) {
                if let Some(k) = c.global_key() {
                    self.keys.remove(&k);
                }
            }
        }
        for c in tx.created_contracts() {
            if let Some(k) = c.global_key() {
                self.keys.insert(k, c.id.clone());
            }
            self.contracts.insert(c.id.clone(), c.clone());
        }
    }
}

/// A ledger for tests: packages, an ACS and a seed counter.
pub struct Ledger {
    pub packages: PackageStore,
    pub acs: Acs,
    next_seed: u8,
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger {
            packages: store(),
            acs: Acs::default(),
            next_seed: 0,
        }
    }

    /// Interprets without committing.
    pub fn try_submit(
        &mut self,
        submitters: &Submitters,
        commands: &[Command],
    ) -> Result<Transaction, InterpretError> {
        self.next_seed += 1;
        interpret(
            &self.packages,
            submitters,
            commands,
            &self.acs,
            &seed(self.next_seed),
        )
    }

    pub fn submit(
        &mut self,
        act_as: &[&Party],
        commands: &[Command],
    ) -> Result<Transaction, InterpretError> {
        let submitters = Submitters::act_as(act_as.iter().map(|p| (*p).clone()));
        let tx = self.try_submit(&submitters, commands)?;
        self.acs.commit(&tx);
        Ok(tx)
    }

    /// Decodes a JSON create argument and submits the create; returns the new contract id.
    pub fn create(
        &mut self,
        act_as: &Party,
        template: &str,
        json: serde_json::Value,
    ) -> Result<ContractId, InterpretError> {
        let template = tref(template);
        let argument = self
            .packages
            .decode_create_argument(&template, &json)
            .expect("argument decodes");
        let tx = self.submit(&[act_as], &[Command::Create { template, argument }])?;
        let id = tx
            .created_contracts()
            .next()
            .expect("one contract")
            .id
            .clone();
        Ok(id)
    }

    pub fn exercise_cmd(
        &self,
        template: &str,
        cid: &ContractId,
        choice: &str,
        json: serde_json::Value,
    ) -> Command {
        let template = tref(template);
        let argument = self
            .packages
            .decode_choice_argument(&template, choice, &json)
            .expect("argument decodes");
        Command::Exercise {
            template,
            contract_id: cid.clone(),
            choice: choice.to_string(),
            argument,
        }
    }

    pub fn exercise(
        &mut self,
        act_as: &Party,
        template: &str,
        cid: &ContractId,
        choice: &str,
        json: serde_json::Value,
    ) -> Result<Transaction, InterpretError> {
        let cmd = self.exercise_cmd(template, cid, choice, json);
        self.submit(&[act_as], &[cmd])
    }
}

pub fn iou_json(
    issuer: &Party,
    owner: &Party,
    amount: &str,
    viewers: &[&Party],
) -> serde_json::Value {
    serde_json::json!({
        "issuer": issuer.as_str(), "owner": owner.as_str(), "currency": "USD",
        "amount": amount, "viewers": viewers.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
    })
}

pub fn field<'a>(c: &'a Contract, name: &str) -> &'a Value {
    match &c.argument {
        Value::Record(r) => r.get(name).expect("field exists"),
        _ => panic!("payload is a record"),
    }
}
