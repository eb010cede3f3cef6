//! Authorization and visibility, positive and negative, including nested exercises in the
//! delivery-versus-payment flow.

use std::collections::BTreeSet;

use super::*;
use crate::model::auth;
use crate::model::tx::NodeKind;

struct Dvp {
    l: Ledger,
    bank: Party,
    issuer: Party,
    seller: Party,
    buyer: Party,
    asset: ContractId,
    payment: ContractId,
    proposal: ContractId,
}

/// Bank issues the buyer a 100 USD IOU; the issuer gives the seller an asset the buyer can
/// see; the seller proposes to sell it to the buyer for that payment.
fn dvp(price: &str) -> Dvp {
    let (bank, issuer, seller, buyer) = (
        party("Bank"),
        party("Issuer"),
        party("Seller"),
        party("Buyer"),
    );
    let mut l = Ledger::new();
    let payment = l
        .create(&bank, "#iou:Iou:Iou", iou_json(&bank, &buyer, "100", &[]))
        .expect("iou");
    let asset_json = serde_json::json!({"issuer": issuer.as_str(), "owner": seller.as_str(), "name": "Painting", "viewers": [buyer.as_str()]});
    let asset = l
        .create(&issuer, "#dvp:Asset:Asset", asset_json)
        .expect("asset");
    let proposal_json = serde_json::json!({
        "seller": seller.as_str(), "buyer": buyer.as_str(), "asset": asset.as_str(),
        "bank": bank.as_str(), "currency": "USD", "price": price,
    });
    let proposal = l
        .create(&seller, "#dvp:Dvp:Proposal", proposal_json)
        .expect("proposal");
    Dvp {
        l,
        bank,
        issuer,
        seller,
        buyer,
        asset,
        payment,
        proposal,
    }
}

fn set(ps: &[&Party]) -> BTreeSet<Party> {
    ps.iter().map(|p| (*p).clone()).collect()
}

#[test]
fn dvp_accept_settles_both_legs_through_nested_exercises() {
    let mut d = dvp("100");
    let pay = serde_json::json!({"payment": d.payment.as_str()});
    let tx =
        d.l.exercise(&d.buyer, "#dvp:Dvp:Proposal", &d.proposal, "Accept", pay)
            .expect("accept");
    let shape: Vec<String> = tx
        .nodes
        .iter()
        .map(|n| {
            n.kind
                .describe()
                .split(' ')
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    assert_eq!(
        shape,
        [
            "exercise of Accept",
            "fetch of #iou:Iou:Iou",
            "fetch of #dvp:Asset:Asset",
            "exercise of Transfer",
            "create of #iou:Iou:Iou",
            "exercise of Transfer",
            "create of #dvp:Asset:Asset",
        ]
    );
    // The asset transfer needed both owners; the Accept context carried the seller's
    // authority (proposal signatory) and the buyer's (controller).
    assert_eq!(
        tx.nodes[5].required_authorizers,
        set(&[&d.seller, &d.buyer])
    );
    assert_eq!(
        tx.nodes[5].confirming_parties,
        set(&[&d.issuer, &d.seller, &d.buyer])
    );
    assert_eq!(tx.nodes[3].informees, set(&[&d.bank, &d.buyer]));
    assert_eq!(tx.nodes[4].informees, set(&[&d.bank, &d.seller]));
    assert_eq!(tx.input_contracts.len(), 3);
    assert_eq!(
        tx.nodes[0].consumed,
        vec![d.proposal.clone(), d.payment.clone(), d.asset.clone()]
    );
    auth::check_transaction(&tx, &set(&[&d.buyer])).expect("re-check passes");
    let owners: Vec<Value> = tx
        .created_contracts()
        .map(|c| field(c, "owner").clone())
        .collect();
    assert_eq!(
        owners,
        vec![
            Value::Party(d.seller.clone()),
            Value::Party(d.buyer.clone())
        ]
    );
}

#[test]
fn transfer_outside_the_proposal_lacks_the_new_owners_authority() {
    let mut d = dvp("100");
    let arg = serde_json::json!({"new_owner": d.buyer.as_str()});
    let e =
        d.l.exercise(&d.seller, "#dvp:Asset:Asset", &d.asset, "Transfer", arg)
            .expect_err("seller alone");
    assert_eq!(e.code(), "AUTHORIZATION_ERROR");
    assert_eq!(
        e.to_string(),
        format!(
            "exercise of Transfer on #dvp:Asset:Asset {} (node 0): missing authorization from Buyer::1220aa; the authorizers are Seller::1220aa",
            d.asset
        )
    );
}

#[test]
fn controllers_not_among_authorizers() {
    let mut d = dvp("100");
    // The seller cannot accept their own proposal: Accept is controlled by the buyer.
    let pay = serde_json::json!({"payment": d.payment.as_str()});
    let e =
        d.l.exercise(&d.seller, "#dvp:Dvp:Proposal", &d.proposal, "Accept", pay)
            .expect_err("seller accepts");
    let crate::model::interpret::InterpretError::Authorization(a) = &e else {
        panic!("authorization error, got {e}")
    };
    assert_eq!(a.missing, set(&[&d.buyer]));
    assert_eq!(a.node_id, 0);
    // The buyer can only withdraw what the seller controls: no.
    let e =
        d.l.exercise(
            &d.buyer,
            "#dvp:Dvp:Proposal",
            &d.proposal,
            "Withdraw",
            serde_json::json!({}),
        )
        .expect_err("withdraw");
    assert_eq!(e.code(), "AUTHORIZATION_ERROR");
    // Archive is controlled by the signatories.
    let e =
        d.l.exercise(
            &d.buyer,
            "#dvp:Dvp:Proposal",
            &d.proposal,
            "Archive",
            serde_json::json!({}),
        )
        .expect_err("archive");
    assert_eq!(e.code(), "AUTHORIZATION_ERROR");
    d.l.exercise(
        &d.seller,
        "#dvp:Dvp:Proposal",
        &d.proposal,
        "Archive",
        serde_json::json!({}),
    )
    .expect("seller archives");
}

#[test]
fn create_needs_every_signatory() {
    let (bank, alice) = (party("Bank"), party("Alice"));
    let mut l = Ledger::new();
    let e = l
        .create(&alice, "#iou:Iou:Iou", iou_json(&bank, &alice, "5", &[]))
        .expect_err("alice forges an iou");
    assert_eq!(e.code(), "AUTHORIZATION_ERROR");
    assert_eq!(
        e.to_string(),
        "create of #iou:Iou:Iou (node 0): missing authorization from Bank::1220aa; the authorizers are Alice::1220aa"
    );
    l.create(&bank, "#iou:Iou:Iou", iou_json(&bank, &alice, "5", &[]))
        .expect("the bank issues");
}

#[test]
fn exercise_by_the_controller_succeeds_and_by_others_fails() {
    let (bank, alice, bob) = (party("Bank"), party("Alice"), party("Bob"));
    let mut l = Ledger::new();
    let cid = l
        .create(&bank, "#iou:Iou:Iou", iou_json(&bank, &alice, "5", &[&bob]))
        .expect("create");
    let arg = serde_json::json!({"new_owner": bob.as_str()});
    let e = l
        .exercise(&bob, "#iou:Iou:Iou", &cid, "Transfer", arg.clone())
        .expect_err("observer cannot transfer");
    assert_eq!(e.code(), "AUTHORIZATION_ERROR");
    let tx = l
        .exercise(&alice, "#iou:Iou:Iou", &cid, "Transfer", arg)
        .expect("owner transfers");
    // The nested create is authorized by the Iou's signatory (bank) plus the actor (alice).
    assert_eq!(tx.nodes[1].required_authorizers, set(&[&bank]));
}

#[test]
fn submitter_must_see_the_contract() {
    let (bank, alice, mallory) = (party("Bank"), party("Alice"), party("Mallory"));
    let mut l = Ledger::new();
    let cid = l
        .create(&bank, "#iou:Iou:Iou", iou_json(&bank, &alice, "5", &[]))
        .expect("create");
    let arg = serde_json::json!({"to": bank.as_str()});
    let e = l
        .exercise(&mallory, "#iou:Iou:Iou", &cid, "Show", arg.clone())
        .expect_err("not a stakeholder");
    assert_eq!(e.code(), "CONTRACT_NOT_VISIBLE");
    assert_eq!(
        e.to_string(),
        format!("contract {cid} is not visible to the submitting parties (none of them is a stakeholder)")
    );
    // Reading as a stakeholder grants visibility, but not authority.
    let subs = Submitters {
        act_as: set(&[&mallory]),
        read_as: set(&[&alice]),
    };
    let cmd = l.exercise_cmd("#iou:Iou:Iou", &cid, "Show", arg);
    let e = l
        .try_submit(&subs, &[cmd])
        .expect_err("visible but unauthorized");
    assert_eq!(e.code(), "AUTHORIZATION_ERROR");
}

#[test]
fn nested_fetch_needs_visibility_too() {
    // The asset is not disclosed to the buyer: accepting must fail on the nested fetch.
    let (bank, issuer, seller, buyer) = (
        party("Bank"),
        party("Issuer"),
        party("Seller"),
        party("Buyer"),
    );
    let mut l = Ledger::new();
    let payment = l
        .create(&bank, "#iou:Iou:Iou", iou_json(&bank, &buyer, "100", &[]))
        .expect("iou");
    let asset_json = serde_json::json!({"issuer": issuer.as_str(), "owner": seller.as_str(), "name": "Vase", "viewers": []});
    let asset = l
        .create(&issuer, "#dvp:Asset:Asset", asset_json)
        .expect("asset");
    let proposal_json = serde_json::json!({
        "seller": seller.as_str(), "buyer": buyer.as_str(), "asset": asset.as_str(),
        "bank": bank.as_str(), "currency": "USD", "price": "100",
    });
    let proposal = l
        .create(&seller, "#dvp:Dvp:Proposal", proposal_json)
        .expect("proposal");
    let pay = serde_json::json!({"payment": payment.as_str()});
    let e = l
        .exercise(&buyer, "#dvp:Dvp:Proposal", &proposal, "Accept", pay)
        .expect_err("asset invisible");
    assert_eq!(
        e,
        crate::model::interpret::InterpretError::ContractNotVisible { contract: asset }
    );
}

#[test]
fn dvp_payment_must_match() {
    let mut d = dvp("99");
    let pay = serde_json::json!({"payment": d.payment.as_str()});
    let e =
        d.l.exercise(&d.buyer, "#dvp:Dvp:Proposal", &d.proposal, "Accept", pay)
            .expect_err("price mismatch");
    assert_eq!(e.code(), "ASSERTION_FAILED");
    assert!(
        e.to_string()
            .ends_with("the payment does not match the proposal"),
        "{e}"
    );
}

#[test]
fn recheck_rejects_a_tampered_tree() {
    let mut d = dvp("100");
    let pay = serde_json::json!({"payment": d.payment.as_str()});
    let mut tx =
        d.l.exercise(&d.buyer, "#dvp:Dvp:Proposal", &d.proposal, "Accept", pay)
            .expect("accept");
    // Pretend the Accept was exercised by the seller: the nested buyer actions lose authority.
    if let NodeKind::Exercise { actors, .. } = &mut tx.nodes[0].kind {
        *actors = set(&[&d.seller]);
    }
    let e = auth::check_transaction(&tx, &set(&[&d.seller])).expect_err("tampered");
    assert_eq!(e.missing, set(&[&d.buyer]));
}
