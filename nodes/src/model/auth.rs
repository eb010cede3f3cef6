//! Daml's authorization rules and the informee rules of design.md §7, in one place, used
//! both while interpreting and to re-check a finished transaction tree.
//!
//! - The root authorizers are the act-as parties.
//! - A create needs every signatory among the authorizers; an exercise every controller
//!   (actor); a fetch at least one stakeholder (its actors are the authorizing stakeholders).
//! - Inside a choice, the authorizers are the contract's signatories plus the actors.
//! - Informees: create → signatories and observers; consuming exercise → stakeholders and
//!   actors; non-consuming exercise and fetch → signatories and actors.
//!   Confirming parties: signatories and actors.

use std::collections::BTreeSet;

use super::ids::Party;
use super::tx::{Node, NodeId, NodeKind, Transaction};

/// A node lacks the authority of some party.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{node} (node {node_id}): missing authorization from {}; the authorizers are {}",
    list(missing),
    list(authorizers)
)]
pub struct AuthorizationError {
    pub node_id: NodeId,
    /// What the node does, e.g. `create of #iou:Iou:Iou`.
    pub node: String,
    pub missing: BTreeSet<Party>,
    pub authorizers: BTreeSet<Party>,
}

pub(crate) fn list(ps: &BTreeSet<Party>) -> String {
    if ps.is_empty() {
        return "{}".into();
    }
    let names: Vec<&str> = ps.iter().map(Party::as_str).collect();
    names.join(", ")
}

/// Checks that every required authorizer is an authorizer. A fetch needs only one of its
/// stakeholders, so its required set is the (non-empty) intersection, checked by the caller.
pub fn authorize(
    node_id: NodeId,
    node: impl FnOnce() -> String,
    required: &BTreeSet<Party>,
    authorizers: &BTreeSet<Party>,
) -> Result<(), AuthorizationError> {
    let missing: BTreeSet<Party> = required.difference(authorizers).cloned().collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(AuthorizationError {
            node_id,
            node: node(),
            missing,
            authorizers: authorizers.clone(),
        })
    }
}

pub fn create_informees(
    signatories: &BTreeSet<Party>,
    observers: &BTreeSet<Party>,
) -> BTreeSet<Party> {
    signatories.union(observers).cloned().collect()
}

pub fn exercise_informees(
    consuming: bool,
    signatories: &BTreeSet<Party>,
    stakeholders: &BTreeSet<Party>,
    actors: &BTreeSet<Party>,
) -> BTreeSet<Party> {
    let base = if consuming { stakeholders } else { signatories };
    base.union(actors).cloned().collect()
}

/// Signatories and actors; for a create, just the signatories.
pub fn confirming_parties(
    signatories: &BTreeSet<Party>,
    actors: &BTreeSet<Party>,
) -> BTreeSet<Party> {
    signatories.union(actors).cloned().collect()
}

/// Deepest nesting of exercises the interpreter produces and the re-check accepts.
pub const MAX_DEPTH: usize = 100;

/// Re-checks authorization of a whole tree from its recorded nodes, as a confirming
/// participant does, without re-running any choice.
pub fn check_transaction(
    tx: &Transaction,
    act_as: &BTreeSet<Party>,
) -> Result<(), AuthorizationError> {
    for &root in &tx.roots {
        check_node(tx, root, act_as, 0)?;
    }
    Ok(())
}

fn check_node(
    tx: &Transaction,
    id: NodeId,
    authorizers: &BTreeSet<Party>,
    depth: usize,
) -> Result<(), AuthorizationError> {
    let Some(node) = tx.nodes.get(id) else {
        return Ok(());
    };
    let required = required_of(node);
    authorize(id, || node.kind.describe(), &required, authorizers)?;
    if let NodeKind::Fetch { stakeholders, .. } = &node.kind {
        if stakeholders.is_disjoint(authorizers) {
            return Err(AuthorizationError {
                node_id: id,
                node: node.kind.describe(),
                missing: stakeholders.clone(),
                authorizers: authorizers.clone(),
            });
        }
    }
    // Children always have larger ids (pre-order), so this recursion ends even on a
    // malformed tree; the depth bound keeps the stack small.
    if let NodeKind::Exercise {
        signatories,
        actors,
        ..
    } = &node.kind
    {
        let inner: BTreeSet<Party> = signatories.union(actors).cloned().collect();
        for &child in node.children.iter().filter(|&&c| c > id) {
            if depth >= MAX_DEPTH {
                return Err(AuthorizationError {
                    node_id: child,
                    node: format!("a node nested deeper than {MAX_DEPTH} levels"),
                    missing: BTreeSet::new(),
                    authorizers: inner,
                });
            }
            check_node(tx, child, &inner, depth + 1)?;
        }
    }
    Ok(())
}

/// What a node needs, from its kind alone (not trusting `required_authorizers`).
fn required_of(node: &Node) -> BTreeSet<Party> {
    match &node.kind {
        NodeKind::Create { contract } => contract.signatories.clone(),
        NodeKind::Exercise { actors, .. } | NodeKind::Fetch { actors, .. } => actors.clone(),
    }
}
