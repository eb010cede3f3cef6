//! Upload checking: the examples load, versions resolve, and a table of broken packages
//! each with its exact error.

use super::*;
use crate::model::package::PackageErrorKind;

#[test]
fn examples_upload_and_versions_resolve() {
    let mut s = store();
    let v1 = s.latest("iou").map(|p| p.id.clone()).expect("iou loaded");
    // Uploading the same bytes again is idempotent.
    assert_eq!(
        s.upload(example("iou.yaml").as_bytes(), Format::Yaml),
        Ok(v1.clone())
    );
    // A newer version becomes what `#iou:...` means; 1.10.0 sorts above 1.9.0 (semver, not text).
    let v1_10 = example("iou.yaml").replace("version: 1.0.0", "version: 1.10.0");
    let v1_9 = example("iou.yaml").replace("version: 1.0.0", "version: 1.9.0");
    let id10 = s.upload(v1_10.as_bytes(), Format::Yaml).expect("1.10.0");
    s.upload(v1_9.as_bytes(), Format::Yaml).expect("1.9.0");
    assert_eq!(s.latest("iou").map(|p| p.id.clone()), Some(id10.clone()));
    assert_eq!(
        s.template(&tref("#iou:Iou:Iou"))
            .map(|t| t.id.package_id.clone()),
        Ok(id10)
    );
    assert_eq!(
        s.template(&tref(&format!("{v1}:Iou:Iou")))
            .map(|t| t.id.package_id.clone()),
        Ok(v1)
    );
    // Same name and version, different content: refused.
    let changed = example("iou.yaml").replace("amount > 0.0", "amount >= 0.0");
    let e = s
        .upload(changed.as_bytes(), Format::Yaml)
        .expect_err("conflict");
    assert_eq!(e.code(), "PACKAGE_VERSION_CONFLICT");
    assert_eq!(
        e.to_string(),
        "package iou 1.0.0: a different package with this name and version is already loaded"
    );
}

#[test]
fn json_documents_upload_with_positions() {
    let json = r#"{
  "package": "j", "version": "0.1.0",
  "modules": {"M": {"templates": {"T": {
    "fields": {"p": "party"},
    "signatories": ["p"],
    "choices": {"C": {"controllers": ["p"], "do": [{"create": "T", "with": {"p": "q"}}]}}
  }}}}
}"#;
    let e = PackageStore::new()
        .upload(json.as_bytes(), Format::Json)
        .expect_err("unknown name");
    assert_eq!(
        e.to_string(),
        "package j 0.1.0, module M, template T, choice C, line 6, column 83: in field p `q`: unknown name `q`"
    );
    let ok = json.replace(r#""p": "q""#, r#""p": "p""#);
    PackageStore::new()
        .upload(ok.as_bytes(), Format::Json)
        .expect("valid JSON package");
    let e = PackageStore::new()
        .upload(b"{\"package\": \"x\",}", Format::Json)
        .expect_err("not JSON");
    assert_eq!(
        e.to_string(),
        "line 1, column 17: invalid JSON: trailing comma at line 1 column 17"
    );
}

const BASE: &str = "package: t
version: 1.0.0
modules:
  M:
    records:
      Money: {currency: text, amount: decimal}
    templates:
      T:
        fields: {owner: party, amount: decimal, price: Money}
        signatories: [owner]
        ensure: amount > 0.0
        choices:
          C:
            controllers: [owner]
            params: {x: int}
            do:
              - create: T
                with: {owner: owner, amount: amount, price: price}
";

/// Replaces `from` in BASE (which must occur) by `to`.
fn broken(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from:?} not in BASE");
    BASE.replacen(from, to, 1)
}

#[test]
fn broken_packages() {
    PackageStore::new()
        .upload(BASE.as_bytes(), Format::Yaml)
        .expect("the base package is valid");
    let p = "package t 1.0.0, module M";
    let cases: Vec<(String, PackageErrorKind, String)> = vec![
        (broken("version: 1.0.0", "version: one"), PackageErrorKind::Schema,
            "line 2, column 10: version \"one\" is not semver: unexpected character 'o' while parsing major version number".into()),
        (broken("package: t", "package: t\nauthor: me"), PackageErrorKind::Schema,
            "line 2, column 1: unknown key \"author\" in the package (expected one of: package, version, modules)".into()),
        (broken("  M:\n", "  M:\n   bad: [\n"), PackageErrorKind::Syntax,
            "line 7, column 12: invalid YAML: while parsing a flow mapping, did not find expected ',' or '}'".into()),
        (broken("        signatories: [owner]", "        signatory: [owner]"), PackageErrorKind::Schema,
            format!("{p}, template T, line 10, column 9: unknown key \"signatory\" in a template (expected one of: fields, signatories, observers, ensure, key, choices)")),
        (broken("amount: decimal, price", "amount: decimall, price"), PackageErrorKind::Reference,
            format!("{p}, template T, line 9, column 40: unknown type decimall")),
        (broken("amount: decimal, price", "amount: list<decimal, price"), PackageErrorKind::Schema,
            format!("{p}, template T, line 9, column 40: unknown type syntax \"list<decimal\"")),
        (broken("price: Money}", "price: Moneys}"), PackageErrorKind::Reference,
            format!("{p}, template T, line 9, column 56: unknown type Moneys")),
        (broken("ensure: amount > 0.0", "ensure: amount > 0"), PackageErrorKind::Type,
            format!("{p}, template T, line 11, column 26: in ensure `amount > 0`: expected decimal, got int")),
        (broken("ensure: amount > 0.0", "ensure: amount + 1.0"), PackageErrorKind::Type,
            format!("{p}, template T, line 11, column 17: in ensure `amount + 1.0`: expected bool, got decimal")),
        (broken("ensure: amount > 0.0", "ensure: amount >"), PackageErrorKind::Syntax,
            format!("{p}, template T, line 11, column 25: in ensure `amount >`: expected an expression, found end of expression")),
        (broken("signatories: [owner]", "signatories: [amount]"), PackageErrorKind::Type,
            format!("{p}, template T, line 10, column 23: in signatories `amount`: expected party or list<party>, got decimal")),
        (broken("signatories: [owner]", "signatories: []"), PackageErrorKind::Schema,
            format!("{p}, template T, line 8, column 7: a template needs at least one signatory")),
        (broken("controllers: [owner]", "controllers: [x]"), PackageErrorKind::Type,
            format!("{p}, template T, choice C, line 14, column 27: in controllers `x`: expected party or list<party>, got int")),
        (broken("- create: T", "- create: U"), PackageErrorKind::Reference,
            format!("{p}, template T, choice C, line 17, column 25: unknown template U")),
        (broken("- create: T", "- create: Money"), PackageErrorKind::Reference,
            format!("{p}, template T, choice C, line 17, column 25: #t:M:Money is a record, not a template")),
        (broken("with: {owner: owner, amount: amount, price: price}", "with: {owner: owner, amount: amount}"), PackageErrorKind::Type,
            format!("{p}, template T, choice C, line 17, column 17: missing field `price` of template #t:M:T")),
        (broken("with: {owner: owner, amount: amount, price: price}", "with: {owner: owner, amount: x, price: price}"), PackageErrorKind::Type,
            format!("{p}, template T, choice C, line 18, column 46: in field amount `x`: expected decimal, got int")),
        (broken("with: {owner: owner, amount: amount, price: price}", "with: {owner: owner, amount: amount, price: price, colour: 1}"), PackageErrorKind::Type,
            format!("{p}, template T, choice C, line 18, column 68: template #t:M:T has no field `colour`")),
        (broken("price: price}", "price: \"Money {currency: 'USD', amount: 1}\"}"), PackageErrorKind::Type,
            format!("{p}, template T, choice C, line 18, column 94: in field price `Money {{currency: 'USD', amount: 1}}`: expected decimal, got int")),
        (broken("              - create: T", "              - creat: T"), PackageErrorKind::Schema,
            format!("{p}, template T, choice C, line 17, column 17: an action needs one of the keys create, exercise, archive, fetch, assert")),
        (broken("params: {x: int}", "params: {x: int}\n            consuming: maybe"), PackageErrorKind::Schema,
            format!("{p}, template T, choice C, line 16, column 24: consuming must be true or false, got \"maybe\"")),
        (broken("          C:\n", "          Archive:\n"), PackageErrorKind::Duplicate,
            format!("{p}, template T, choice Archive, line 13, column 11: choice Archive is implicit and cannot be redefined")),
        (broken("params: {x: int}", "params: {owner: party}"), PackageErrorKind::Duplicate,
            format!("{p}, template T, choice C, line 15, column 22: `owner` is already in scope")),
        (broken("      Money:", "      T:"), PackageErrorKind::Duplicate,
            "package t 1.0.0, module M, line 8, column 7: T is defined twice in module M".into()),
        (broken("        ensure: amount > 0.0\n", "        ensure: amount > 0.0\n        key: {maintainers: [owner]}\n"), PackageErrorKind::Schema,
            format!("{p}, template T, line 12, column 14: a key is missing required key \"value\"")),
        (broken("price: Money}", "price: Money, ref: contract_id}\n        key: {value: \"[owner, ref]\", maintainers: [owner]}"), PackageErrorKind::Type,
            format!("{p}, template T, line 10, column 23: a key must not contain contract ids, got tuple<party, contract_id>")),
        (broken("- create: T", "- exercise: Nope\n                on: self\n                template: T\n              - create: T"), PackageErrorKind::Reference,
            format!("{p}, template T, choice C, line 17, column 27: template #t:M:T has no choice Nope")),
        (broken("- create: T", "- exercise: C\n                on: x\n                template: T\n                with: {x: 1}\n              - create: T"), PackageErrorKind::Type,
            format!("{p}, template T, choice C, line 18, column 21: in on `x`: expected contract_id, got int")),
        (broken("- create: T", "- fetch: self\n                template: T\n              - create: T"), PackageErrorKind::Schema,
            format!("{p}, template T, choice C, line 17, column 17: a fetch action needs `as`")),
        (broken("- create: T", "- create: \"#other:M:T\""), PackageErrorKind::Reference,
            format!("{p}, template T, choice C, line 17, column 25: unknown template #other:M:T")),
        (broken("package: t", "package: t\nmodules: {}"), PackageErrorKind::Syntax,
            "line 4, column 1: duplicate key \"modules\"".into()),
    ];
    let mut failures = Vec::new();
    for (doc, kind, expected) in cases {
        match PackageStore::new().upload(doc.as_bytes(), Format::Yaml) {
            Ok(_) => failures.push(format!("accepted, expected: {expected}")),
            Err(e) if e.to_string() != expected || e.kind != kind => failures.push(format!(
                "got      {:?} {e}\nexpected {kind:?} {expected}",
                e.kind
            )),
            Err(e) => assert_eq!(e.code(), "INVALID_PACKAGE"),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

mod mutations {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// A randomised smoke of the package parser beside the cargo-fuzz target: mutated
        /// example documents are rejected or accepted, never a panic.
        #[test]
        fn upload_never_panics(
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
            json in any::<bool>(),
        ) {
            let mut doc = example("dvp.yaml").into_bytes();
            for (at, byte, op) in edits {
                let i = at.index(doc.len().max(1));
                match op {
                    0 if i < doc.len() => doc[i] = byte,
                    1 => doc.insert(i.min(doc.len()), byte),
                    _ => doc.truncate(i),
                }
            }
            let mut s = store();
            let format = if json { Format::Json } else { Format::Yaml };
            if let Err(e) = s.upload(&doc, format) {
                let _ = (e.to_string(), e.code());
            }
        }
    }
}
