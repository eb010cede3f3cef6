//! Contracts and the transaction tree the interpreter produces: create, exercise and fetch
//! nodes in pre-order, each with its informees, confirming parties and required authorizers.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::ids::{ContractId, Party, TemplateId};
use super::types::Name;
use super::value::Value;

/// An active contract: what the ACS stores and what create nodes produce.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Contract {
    pub id: ContractId,
    /// The exact package version that created it; its choices are the ones that apply.
    pub template_id: TemplateId,
    /// The payload record.
    pub argument: Value,
    pub signatories: BTreeSet<Party>,
    /// Observers as the template computes them (may overlap the signatories).
    pub observers: BTreeSet<Party>,
    pub key: Option<ContractKey>,
}

impl Contract {
    pub fn stakeholders(&self) -> BTreeSet<Party> {
        self.signatories.union(&self.observers).cloned().collect()
    }

    /// The key, scoped to the template across package versions.
    pub fn global_key(&self) -> Option<GlobalKey> {
        self.key
            .as_ref()
            .map(|k| GlobalKey::new(&self.template_id, k.value.clone()))
    }
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ContractKey {
    pub value: Value,
    pub maintainers: BTreeSet<Party>,
}

/// A contract key as the ACS indexes it: unique per template (package name, module,
/// entity), so keys survive package upgrades.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct GlobalKey {
    pub package_name: Arc<str>,
    pub module: Arc<str>,
    pub entity: Arc<str>,
    pub key: Value,
}

impl GlobalKey {
    pub fn new(template: &TemplateId, key: Value) -> GlobalKey {
        GlobalKey {
            package_name: template.package_name.clone(),
            module: template.module.clone(),
            entity: template.entity.clone(),
            key,
        }
    }
}

/// Index of a node in [`Transaction::nodes`].
pub type NodeId = usize;

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Transaction {
    /// All nodes in pre-order; a node's children follow it.
    pub nodes: Vec<Node>,
    pub roots: Vec<NodeId>,
    /// Contracts read from the ACS (exercised or fetched, not created here), in first-use
    /// order. Confirmers check that these are active and lock them.
    pub input_contracts: Vec<Arc<Contract>>,
}

impl Transaction {
    /// Contracts created here and still active at the end: what the ACS gains.
    pub fn created_contracts(&self) -> impl Iterator<Item = &Arc<Contract>> {
        let consumed: BTreeSet<&ContractId> =
            self.nodes.iter().flat_map(|n| n.consumed_here()).collect();
        self.nodes.iter().filter_map(move |n| match &n.kind {
            NodeKind::Create { contract } if !consumed.contains(&contract.id) => Some(contract),
            _ => None,
        })
    }

    /// Input contracts archived here: what the ACS loses.
    pub fn consumed_inputs(&self) -> impl Iterator<Item = &ContractId> {
        let inputs: BTreeSet<&ContractId> = self.input_contracts.iter().map(|c| &c.id).collect();
        self.nodes
            .iter()
            .flat_map(|n| n.consumed_here())
            .filter(move |c| inputs.contains(c))
    }

    /// Every party that is an informee of some node.
    pub fn informees(&self) -> BTreeSet<Party> {
        self.nodes
            .iter()
            .flat_map(|n| n.informees.iter().cloned())
            .collect()
    }
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Node {
    pub kind: NodeKind,
    pub children: Vec<NodeId>,
    pub informees: BTreeSet<Party>,
    pub confirming_parties: BTreeSet<Party>,
    /// The parties whose authority this node needs (signatories of a create, actors of an
    /// exercise or fetch); each was among the authorizers of its context.
    pub required_authorizers: BTreeSet<Party>,
    /// Contracts consumed by this node and its descendants.
    pub consumed: Vec<ContractId>,
    /// Contracts created by this node and its descendants.
    pub created: Vec<ContractId>,
}

impl Node {
    fn consumed_here(&self) -> Option<&ContractId> {
        match &self.kind {
            NodeKind::Exercise {
                contract_id,
                consuming: true,
                ..
            } => Some(contract_id),
            _ => None,
        }
    }
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum NodeKind {
    Create {
        contract: Arc<Contract>,
    },
    Exercise {
        contract_id: ContractId,
        template_id: TemplateId,
        choice: Name,
        /// The choice argument: a record of its parameters.
        argument: Value,
        /// The controllers, as evaluated.
        actors: BTreeSet<Party>,
        consuming: bool,
        signatories: BTreeSet<Party>,
        stakeholders: BTreeSet<Party>,
        by_key: bool,
    },
    Fetch {
        contract_id: ContractId,
        template_id: TemplateId,
        /// The authorizers that are stakeholders of the fetched contract.
        actors: BTreeSet<Party>,
        signatories: BTreeSet<Party>,
        stakeholders: BTreeSet<Party>,
    },
}

impl NodeKind {
    /// `create of #iou:Iou:Iou`, `exercise of Transfer on #iou:Iou:Iou 00ab…`, for messages.
    pub fn describe(&self) -> String {
        match self {
            NodeKind::Create { contract } => format!("create of {}", contract.template_id),
            NodeKind::Exercise {
                contract_id,
                template_id,
                choice,
                ..
            } => {
                format!("exercise of {choice} on {template_id} {contract_id}")
            }
            NodeKind::Fetch {
                contract_id,
                template_id,
                ..
            } => format!("fetch of {template_id} {contract_id}"),
        }
    }
}
