//! Interpretation over the example packages: trees, informees, keys, determinism, errors.

use std::collections::BTreeSet;

use super::*;
use crate::model::auth;
use crate::model::decimal::Decimal;
use crate::model::interpret::NoContracts;
use crate::model::tx::NodeKind;

fn set(ps: &[&Party]) -> BTreeSet<Party> {
    ps.iter().map(|p| (*p).clone()).collect()
}

fn dec(s: &str) -> Value {
    Value::Decimal(Decimal::parse(s).expect("decimal"))
}

#[test]
fn create_node_informees_and_confirmers() {
    let (bank, alice, carol) = (party("Bank"), party("Alice"), party("Carol"));
    let mut l = Ledger::new();
    let cid = l
        .create(
            &bank,
            "#iou:Iou:Iou",
            iou_json(&bank, &alice, "100", &[&carol]),
        )
        .expect("create");
    let c = l.acs.contracts.get(&cid).expect("committed");
    assert_eq!(c.signatories, set(&[&bank]));
    assert_eq!(c.stakeholders(), set(&[&bank, &alice, &carol]));
    // Re-run to inspect the node itself.
    let argument = l
        .packages
        .decode_create_argument(&tref("#iou:Iou:Iou"), &iou_json(&bank, &alice, "1", &[]))
        .expect("decodes");
    let tx = l
        .submit(
            &[&bank],
            &[Command::Create {
                template: tref("#iou:Iou:Iou"),
                argument,
            }],
        )
        .expect("create");
    let node = &tx.nodes[0];
    assert!(matches!(node.kind, NodeKind::Create { .. }));
    assert_eq!(node.informees, set(&[&bank, &alice]));
    assert_eq!(node.confirming_parties, set(&[&bank]));
    assert_eq!(node.required_authorizers, set(&[&bank]));
    assert_eq!(node.created.len(), 1);
    assert!(tx.input_contracts.is_empty());
}

#[test]
fn consuming_exercise_with_two_creates() {
    let (bank, alice, carol) = (party("Bank"), party("Alice"), party("Carol"));
    let mut l = Ledger::new();
    let cid = l
        .create(
            &bank,
            "#iou:Iou:Iou",
            iou_json(&bank, &alice, "100", &[&carol]),
        )
        .expect("create");
    let tx = l
        .exercise(
            &alice,
            "#iou:Iou:Iou",
            &cid,
            "Split",
            serde_json::json!({"split": "30.5"}),
        )
        .expect("split");
    assert_eq!(tx.nodes.len(), 3);
    assert_eq!(tx.roots, vec![0]);
    let root = &tx.nodes[0];
    assert!(matches!(
        root.kind,
        NodeKind::Exercise {
            consuming: true,
            ..
        }
    ));
    // Consuming: stakeholders and actors are informees; signatories and actors confirm.
    assert_eq!(root.informees, set(&[&bank, &alice, &carol]));
    assert_eq!(root.confirming_parties, set(&[&bank, &alice]));
    assert_eq!(root.required_authorizers, set(&[&alice]));
    assert_eq!(root.children, vec![1, 2]);
    assert_eq!(root.consumed, vec![cid.clone()]);
    assert_eq!(root.created.len(), 2);
    assert_eq!(tx.input_contracts.len(), 1);
    let amounts: Vec<Value> = tx
        .created_contracts()
        .map(|c| field(c, "amount").clone())
        .collect();
    assert_eq!(amounts, vec![dec("30.5"), dec("69.5")]);
    assert_eq!(tx.consumed_inputs().cloned().collect::<Vec<_>>(), vec![cid]);
    auth::check_transaction(&tx, &set(&[&alice])).expect("re-check passes");
    assert!(auth::check_transaction(&tx, &set(&[&carol])).is_err());
}

#[test]
fn non_consuming_exercise_informees() {
    let (bank, alice, carol) = (party("Bank"), party("Alice"), party("Carol"));
    let mut l = Ledger::new();
    let cid = l
        .create(
            &bank,
            "#iou:Iou:Iou",
            iou_json(&bank, &alice, "100", &[&carol]),
        )
        .expect("create");
    let tx = l
        .exercise(
            &alice,
            "#iou:Iou:Iou",
            &cid,
            "Show",
            serde_json::json!({"to": carol.as_str()}),
        )
        .expect("show");
    let root = &tx.nodes[0];
    assert!(matches!(
        root.kind,
        NodeKind::Exercise {
            consuming: false,
            ..
        }
    ));
    // Non-consuming: signatories and actors only; the observer Carol is not informed.
    assert_eq!(root.informees, set(&[&bank, &alice]));
    assert_eq!(root.confirming_parties, set(&[&bank, &alice]));
    assert!(root.consumed.is_empty());
    assert!(l.acs.contracts.contains_key(&cid), "still active");
}

#[test]
fn fetch_node_informees_and_merge() {
    let (bank, alice, carol) = (party("Bank"), party("Alice"), party("Carol"));
    let mut l = Ledger::new();
    let a = l
        .create(
            &bank,
            "#iou:Iou:Iou",
            iou_json(&bank, &alice, "10", &[&carol]),
        )
        .expect("a");
    let b = l
        .create(&bank, "#iou:Iou:Iou", iou_json(&bank, &alice, "5.25", &[]))
        .expect("b");
    let tx = l
        .exercise(
            &alice,
            "#iou:Iou:Iou",
            &a,
            "Merge",
            serde_json::json!({"other": b.as_str()}),
        )
        .expect("merge");
    let kinds: Vec<&str> = tx
        .nodes
        .iter()
        .map(|n| match &n.kind {
            NodeKind::Create { .. } => "create",
            NodeKind::Exercise { choice, .. } => choice,
            NodeKind::Fetch { .. } => "fetch",
        })
        .collect();
    assert_eq!(kinds, ["Merge", "fetch", "Archive", "create"]);
    let fetch = &tx.nodes[1];
    // Fetch: signatories and the acting stakeholders (authorizers that are stakeholders).
    assert_eq!(fetch.informees, set(&[&bank, &alice]));
    assert_eq!(fetch.confirming_parties, set(&[&bank, &alice]));
    assert_eq!(fetch.required_authorizers, set(&[&bank, &alice]));
    assert_eq!(tx.nodes[0].consumed, vec![a.clone(), b.clone()]);
    let merged: Vec<Value> = tx
        .created_contracts()
        .map(|c| field(c, "amount").clone())
        .collect();
    assert_eq!(merged, vec![dec("15.25")]);
    assert_eq!(l.acs.contracts.len(), 1);
}

#[test]
fn interpretation_is_deterministic() {
    let (bank, alice) = (party("Bank"), party("Alice"));
    let l = Ledger::new();
    let argument = l
        .packages
        .decode_create_argument(&tref("#iou:Iou:Iou"), &iou_json(&bank, &alice, "1", &[]))
        .expect("decodes");
    let cmds = [Command::Create {
        template: tref("#iou:Iou:Iou"),
        argument,
    }];
    let subs = Submitters::act_as([bank]);
    let a = interpret(&l.packages, &subs, &cmds, &NoContracts, &seed(1)).expect("ok");
    let b = interpret(&l.packages, &subs, &cmds, &NoContracts, &seed(1)).expect("ok");
    let c = interpret(&l.packages, &subs, &cmds, &NoContracts, &seed(2)).expect("ok");
    assert_eq!(a, b);
    assert_ne!(
        a.created_contracts().next().map(|c| &c.id),
        c.created_contracts().next().map(|c| &c.id)
    );
}

#[test]
fn create_and_exercise_in_one_command() {
    let (bank, alice) = (party("Bank"), party("Alice"));
    let mut l = Ledger::new();
    let template = tref("#iou:Iou:Iou");
    let argument = l
        .packages
        .decode_create_argument(&template, &iou_json(&bank, &alice, "9", &[]))
        .expect("decodes");
    let choice_argument = l
        .packages
        .decode_choice_argument(&template, "Split", &serde_json::json!({"split": "4"}))
        .expect("decodes");
    let cmd = Command::CreateAndExercise {
        template,
        argument,
        choice: "Split".into(),
        choice_argument,
    };
    let tx = l
        .submit(&[&bank, &alice], &[cmd])
        .expect("create and exercise");
    assert_eq!(tx.roots, vec![0, 1]);
    assert_eq!(tx.created_contracts().count(), 2);
    assert!(tx.input_contracts.is_empty());
}

#[test]
fn errors_have_codes() {
    let (bank, alice) = (party("Bank"), party("Alice"));
    let mut l = Ledger::new();
    let cid = l
        .create(&bank, "#iou:Iou:Iou", iou_json(&bank, &alice, "100", &[]))
        .expect("create");
    let split = |l: &mut Ledger, s: &str| {
        l.exercise(
            &alice,
            "#iou:Iou:Iou",
            &cid,
            "Split",
            serde_json::json!({"split": s}),
        )
    };
    let e = split(&mut l, "100").expect_err("split not below amount");
    assert_eq!(e.code(), "PRECONDITION_FAILED");
    assert_eq!(
        e.to_string(),
        "choice precondition `split > 0.0 && split < amount` of Split on #iou:Iou:Iou is false"
    );

    let bad = l
        .packages
        .decode_create_argument(&tref("#iou:Iou:Iou"), &iou_json(&bank, &alice, "0", &[]))
        .expect("decodes");
    let e = l
        .submit(
            &[&bank],
            &[Command::Create {
                template: tref("#iou:Iou:Iou"),
                argument: bad,
            }],
        )
        .expect_err("ensure");
    assert_eq!(
        e.to_string(),
        "template precondition `amount > 0.0` of #iou:Iou:Iou is false"
    );

    let missing = ContractId::derive(&seed(99), 0);
    let e = l
        .exercise(
            &alice,
            "#iou:Iou:Iou",
            &missing,
            "Show",
            serde_json::json!({"to": bank.as_str()}),
        )
        .expect_err("missing");
    assert_eq!(
        (e.code(), e.to_string()),
        (
            "CONTRACT_NOT_FOUND",
            format!("contract {missing} not found")
        )
    );

    let e = l
        .try_submit(&Submitters::default(), &[])
        .expect_err("no act-as");
    assert_eq!(e.code(), "INVALID_ARGUMENT");

    let cmd = Command::Exercise {
        template: tref("#iou:Iou:Iou"),
        contract_id: cid.clone(),
        choice: "Nope".into(),
        argument: Value::List(vec![]),
    };
    let e = l.submit(&[&alice], &[cmd]).expect_err("no such choice");
    assert_eq!(
        (e.code(), e.to_string()),
        (
            "CHOICE_NOT_FOUND",
            "template #iou:Iou:Iou has no choice Nope".into()
        )
    );

    let cmd = Command::Create {
        template: tref("#iou:Iou:Nope"),
        argument: Value::List(vec![]),
    };
    assert_eq!(
        l.submit(&[&alice], &[cmd]).expect_err("no template").code(),
        "TEMPLATE_NOT_FOUND"
    );
    let cmd = Command::Create {
        template: tref("#nope:Iou:Iou"),
        argument: Value::List(vec![]),
    };
    assert_eq!(
        l.submit(&[&alice], &[cmd]).expect_err("no package").code(),
        "PACKAGE_NOT_FOUND"
    );
    let cmd = Command::Create {
        template: tref("#iou:Iou:Iou"),
        argument: Value::List(vec![]),
    };
    let e = l.submit(&[&alice], &[cmd]).expect_err("bad argument");
    assert_eq!(
        (e.code(), e.to_string()),
        (
            "INVALID_ARGUMENT",
            "invalid create argument: expected #iou:Iou:Iou, got list".into()
        )
    );

    // Exercising a consumed contract again within one transaction.
    let t1 = l.exercise_cmd(
        "#iou:Iou:Iou",
        &cid,
        "Transfer",
        serde_json::json!({"new_owner": bank.as_str()}),
    );
    let e = l
        .submit(&[&alice], &[t1.clone(), t1])
        .expect_err("double spend");
    assert_eq!(e.code(), "CONTRACT_NOT_ACTIVE");

    // Wrong template for the contract.
    let e = l
        .submit(
            &[&alice],
            &[l.exercise_cmd("#dvp:Dvp:Proposal", &cid, "Reject", serde_json::json!({}))],
        )
        .expect_err("wrong template");
    assert_eq!(e.code(), "WRONG_TEMPLATE");
}

#[test]
fn arithmetic_errors_do_not_panic() {
    let (bank, alice) = (party("Bank"), party("Alice"));
    let mut l = Ledger::new();
    let big = "9999999999999999999999999999";
    let a = l
        .create(&bank, "#iou:Iou:Iou", iou_json(&bank, &alice, big, &[]))
        .expect("a");
    let b = l
        .create(&bank, "#iou:Iou:Iou", iou_json(&bank, &alice, big, &[]))
        .expect("b");
    let e = l
        .exercise(
            &alice,
            "#iou:Iou:Iou",
            &a,
            "Merge",
            serde_json::json!({"other": b.as_str()}),
        )
        .expect_err("overflow");
    assert_eq!(e.code(), "ARITHMETIC_ERROR");
    assert_eq!(
        e.to_string(),
        "evaluating argument amount `amount + o.amount` in choice Merge of #iou:Iou:Iou: decimal overflow in `+`"
    );
}

#[test]
fn assertion_failure_carries_message() {
    let (bank, alice, other_bank) = (party("Bank"), party("Alice"), party("Other"));
    let mut l = Ledger::new();
    let a = l
        .create(&bank, "#iou:Iou:Iou", iou_json(&bank, &alice, "1", &[]))
        .expect("a");
    let b = l
        .create(
            &other_bank,
            "#iou:Iou:Iou",
            iou_json(&other_bank, &alice, "1", &[]),
        )
        .expect("b");
    let e = l
        .exercise(
            &alice,
            "#iou:Iou:Iou",
            &a,
            "Merge",
            serde_json::json!({"other": b.as_str()}),
        )
        .expect_err("mismatch");
    assert_eq!(e.code(), "ASSERTION_FAILED");
    assert_eq!(
        e.to_string(),
        "assertion failed in choice Merge of #iou:Iou:Iou: can only merge IOUs of the same issuer, owner and currency"
    );
}

#[test]
fn keys_are_unique_and_exercisable() {
    let (issuer, seller, buyer) = (party("Issuer"), party("Seller"), party("Buyer"));
    let mut l = Ledger::new();
    let asset = serde_json::json!({"issuer": issuer.as_str(), "owner": seller.as_str(), "name": "Mona Lisa", "viewers": []});
    l.create(&issuer, "#dvp:Asset:Asset", asset.clone())
        .expect("first");
    let e = l
        .create(&issuer, "#dvp:Asset:Asset", asset)
        .expect_err("duplicate key");
    assert_eq!(e.code(), "DUPLICATE_CONTRACT_KEY");
    let template = tref("#dvp:Asset:Asset");
    let key = l
        .packages
        .decode_key(
            &template,
            &serde_json::json!([issuer.as_str(), "Mona Lisa"]),
        )
        .expect("key decodes");
    let argument = l
        .packages
        .decode_choice_argument(
            &template,
            "Transfer",
            &serde_json::json!({"new_owner": buyer.as_str()}),
        )
        .expect("decodes");
    let cmd = Command::ExerciseByKey {
        template: template.clone(),
        key: key.clone(),
        choice: "Transfer".into(),
        argument,
    };
    // The owner controls Transfer, but finding the contract by key needs a key maintainer too.
    let e = l
        .submit(&[&seller, &buyer], std::slice::from_ref(&cmd))
        .expect_err("no maintainer among the authorizers");
    assert_eq!(e.code(), "AUTHORIZATION_ERROR");
    assert!(e.to_string().contains(issuer.as_str()), "{e}");
    let tx = l
        .submit(&[&issuer, &seller, &buyer], &[cmd])
        .expect("exercise by key");
    assert!(matches!(
        tx.nodes[0].kind,
        NodeKind::Exercise { by_key: true, .. }
    ));
    // The consuming transfer freed the key and the new contract took it.
    let new_owner = tx
        .created_contracts()
        .next()
        .map(|c| field(c, "owner").clone());
    assert_eq!(new_owner, Some(Value::Party(buyer.clone())));
    let missing = l
        .packages
        .decode_key(&template, &serde_json::json!([issuer.as_str(), "Nope"]))
        .expect("decodes");
    let argument = l
        .packages
        .decode_choice_argument(&template, "Archive", &serde_json::json!({}))
        .expect("decodes");
    let cmd = Command::ExerciseByKey {
        template,
        key: missing,
        choice: "Archive".into(),
        argument,
    };
    assert_eq!(
        l.submit(&[&issuer], &[cmd]).expect_err("no key").code(),
        "CONTRACT_KEY_NOT_FOUND"
    );
}

#[test]
fn runaway_recursion_is_bounded() {
    let doc = "package: spin
version: 1.0.0
modules:
  M:
    templates:
      T:
        fields: {p: party}
        signatories: [p]
        choices:
          Spin:
            consuming: false
            controllers: [p]
            do:
              - exercise: Spin
                on: self
                template: T
";
    let mut l = Ledger::new();
    l.packages
        .upload(doc.as_bytes(), Format::Yaml)
        .expect("uploads");
    let alice = party("Alice");
    let cid = l
        .create(
            &alice,
            "#spin:M:T",
            serde_json::json!({"p": alice.as_str()}),
        )
        .expect("create");
    let e = l
        .exercise(&alice, "#spin:M:T", &cid, "Spin", serde_json::json!({}))
        .expect_err("bounded");
    assert_eq!(
        (e.code(), e.to_string()),
        (
            "INTERPRETATION_LIMIT_EXCEEDED",
            "exercises may nest at most 100 deep".into()
        )
    );
}
