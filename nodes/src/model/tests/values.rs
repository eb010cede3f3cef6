//! Values in the JSON API encoding: a property test of the round trip over random types
//! and values, and a table of bad inputs with their exact errors.

use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::model::decimal::Decimal;
use crate::model::ids::{PackageId, TypeConName};
use crate::model::json::{from_json, from_json_str, to_json};
use crate::model::time::{Date, Timestamp};
use crate::model::types::{Name, RecordTypes, Type};
use crate::model::value::Record;

/// One record type, `#test:T:Pair {a: int, b: optional<text>}`, for the generator.
struct TestRecords {
    pair: TypeConName,
    fields: Vec<(Name, Type)>,
}

impl TestRecords {
    fn new() -> TestRecords {
        let pair = TypeConName {
            package_id: PackageId::of_bytes(b"test"),
            package_name: Arc::from("test"),
            module: Arc::from("T"),
            entity: Arc::from("Pair"),
        };
        let fields = vec![
            (Arc::from("a"), Type::Int),
            (Arc::from("b"), Type::Optional(Box::new(Type::Text))),
        ];
        TestRecords { pair, fields }
    }
}

impl RecordTypes for TestRecords {
    fn record_fields(&self, id: &TypeConName) -> Option<&[(Name, Type)]> {
        (id == &self.pair).then_some(self.fields.as_slice())
    }
}

fn arb_type(pair: TypeConName) -> impl Strategy<Value = Type> {
    let leaf = prop_oneof![
        Just(Type::Party),
        Just(Type::Text),
        Just(Type::Int),
        Just(Type::Decimal),
        Just(Type::Bool),
        Just(Type::Time),
        Just(Type::Date),
        Just(Type::ContractId),
        Just(Type::Record(pair)),
    ];
    leaf.prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|t| Type::List(Box::new(t))),
            inner.clone().prop_map(|t| Type::Optional(Box::new(t))),
            prop::collection::vec(inner, 1..3).prop_map(Type::Tuple),
        ]
    })
}

const MIN_MICROS: i64 = -62_135_596_800_000_000;
const MAX_MICROS: i64 = 253_402_300_799_999_999;

fn arb_value(t: &Type) -> BoxedStrategy<Value> {
    match t {
        Type::Party => "[A-Za-z][A-Za-z0-9_.-]{0,12}::[0-9a-f]{1,24}"
            .prop_map(|s| Value::Party(Party::parse(&s).expect("generated party is valid")))
            .boxed(),
        Type::Text => any::<String>().prop_map(Value::Text).boxed(),
        Type::Int => any::<i64>().prop_map(Value::Int).boxed(),
        Type::Decimal => (-(10_i128.pow(38) - 1)..10_i128.pow(38))
            .prop_map(|u| Value::Decimal(Decimal::from_unscaled(u).expect("in range")))
            .boxed(),
        Type::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        Type::Time => (MIN_MICROS..=MAX_MICROS)
            .prop_map(|m| Value::Time(Timestamp::from_micros(m).expect("in range")))
            .boxed(),
        Type::Date => (-719_162_i32..=2_932_896)
            .prop_map(|d| Value::Date(Date::from_days(d).expect("in range")))
            .boxed(),
        Type::ContractId => (any::<u8>(), any::<u32>())
            .prop_map(|(s, n)| Value::ContractId(ContractId::derive(&seed(s), n)))
            .boxed(),
        Type::List(inner) => prop::collection::vec(arb_value(inner), 0..4)
            .prop_map(Value::List)
            .boxed(),
        Type::Optional(inner) => prop::option::of(arb_value(inner))
            .prop_map(|o| Value::Optional(o.map(Box::new)))
            .boxed(),
        Type::Tuple(ts) => {
            let parts: Vec<BoxedStrategy<Value>> = ts.iter().map(arb_value).collect();
            parts.prop_map(Value::List).boxed()
        }
        Type::Record(_) => (any::<i64>(), prop::option::of(any::<String>()))
            .prop_map(|(a, b)| {
                Value::Record(Record {
                    fields: vec![
                        (Arc::from("a"), Value::Int(a)),
                        (
                            Arc::from("b"),
                            Value::Optional(b.map(|s| Box::new(Value::Text(s)))),
                        ),
                    ],
                })
            })
            .boxed(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn json_round_trip((t, v) in arb_type(TestRecords::new().pair).prop_flat_map(|t| (Just(t.clone()), arb_value(&t)))) {
        let records = TestRecords::new();
        let text = to_json(&v).to_string();
        let back = from_json_str(&t, &text, &records);
        prop_assert_eq!(back, Ok(v), "type {} json {}", t, text);
    }
}

#[test]
fn bad_inputs_have_precise_errors() {
    let store = store();
    let iou = tref("#iou:Iou:Iou");
    let ok = serde_json::json!({"issuer": "Bank::12", "owner": "Alice::12", "currency": "USD", "amount": "1.5", "viewers": []});
    assert!(store.decode_create_argument(&iou, &ok).is_ok());
    let with = |key: &str, v: serde_json::Value| {
        let mut j = ok.clone();
        j[key] = v;
        j
    };
    let without = |key: &str| {
        let mut j = ok.clone();
        j.as_object_mut().map(|m| m.remove(key));
        j
    };
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (
            with("amount", "12x".into()),
            r#"amount: expected decimal, got "12x""#,
        ),
        (
            with("amount", 1.5.into()),
            "amount: expected decimal as a string (fractional JSON numbers are inexact), got 1.5",
        ),
        (
            with("amount", "1e3".into()),
            r#"amount: expected decimal, got "1e3""#,
        ),
        (
            with("amount", "12345678901234567890123456789".into()),
            r#"amount: decimal out of range (at most 28 digits before and 10 after the point), got "12345678901234567890123456789""#,
        ),
        (
            with("amount", "0.00000000001".into()),
            r#"amount: decimal has more than 10 digits after the point, got "0.00000000001""#,
        ),
        (
            with("amount", serde_json::Value::Null),
            "amount: expected decimal, got null",
        ),
        (
            with("owner", "Alice".into()),
            r#"owner: expected party (<hint>::<fingerprint>), got "Alice""#,
        ),
        (with("owner", 5.into()), "owner: expected party, got 5"),
        (
            with("viewers", serde_json::json!(["Bob::12", "bob"])),
            r#"viewers[1]: expected party (<hint>::<fingerprint>), got "bob""#,
        ),
        (
            with("viewers", "Bob::12".into()),
            r#"viewers: expected list<party>, got "Bob::12""#,
        ),
        (with("colour", "red".into()), r#"unknown field "colour""#),
        (without("owner"), r#"missing field "owner""#),
        (
            serde_json::json!([1, 2]),
            "expected record #iou:Iou:Iou, got [1,2]",
        ),
    ];
    for (json, expected) in cases {
        let err = store
            .decode_create_argument(&iou, &json)
            .expect_err(expected);
        assert_eq!(err.to_string(), expected);
        assert_eq!(err.code(), "INVALID_ARGUMENT");
    }
}

#[test]
fn scalar_bad_inputs() {
    let records = TestRecords::new();
    let cases: Vec<(Type, &str, &str)> = vec![
        (
            Type::Int,
            r#""9223372036854775808""#,
            r#"int out of range (64 bits), got "9223372036854775808""#,
        ),
        (
            Type::Int,
            "18446744073709551615",
            "int out of range (64 bits), got 18446744073709551615",
        ),
        (Type::Int, r#""+5""#, r#"expected int, got "+5""#),
        (Type::Int, "1.0", "expected int, got 1.0"),
        (
            Type::Time,
            r#""2024-13-01T00:00:00Z""#,
            r#"expected time: not an RFC 3339 timestamp, got "2024-13-01T00:00:00Z""#,
        ),
        (
            Type::Time,
            r#""2024-01-01T00:00:00.1234567Z""#,
            r#"expected time: timestamp has more than 6 fractional digits, got "2024-01-01T00:00:00.1234567Z""#,
        ),
        (
            Type::Date,
            r#""2024-02-30""#,
            r#"expected date: not a date (YYYY-MM-DD), got "2024-02-30""#,
        ),
        (
            Type::ContractId,
            r#""00abc""#,
            r#"expected contract id (00 followed by 64 lowercase hex digits), got "00abc""#,
        ),
        (Type::Bool, r#""true""#, r#"expected bool, got "true""#),
        (
            Type::Tuple(vec![Type::Party, Type::Text]),
            r#"["A::1"]"#,
            r#"expected tuple<party, text>, got ["A::1"]"#,
        ),
        (
            Type::Optional(Box::new(Type::Optional(Box::new(Type::Int)))),
            "[1, 2]",
            "expected optional<optional<int>> ([] or [value]), got [1,2]",
        ),
        (
            Type::Record(records.pair.clone()),
            r#"{"a": "1", "b": 5}"#,
            "b: expected text, got 5",
        ),
        (
            Type::Text,
            "{",
            "malformed JSON: EOF while parsing an object at line 1 column 1",
        ),
    ];
    for (t, json, expected) in cases {
        let err = from_json_str(&t, json, &records).expect_err(expected);
        assert_eq!(err.to_string(), expected, "{t} {json}");
    }
    // Ints and decimals also accept JSON integers; a missing optional field is none.
    assert_eq!(
        from_json(&Type::Int, &serde_json::json!(-7), &records),
        Ok(Value::Int(-7))
    );
    assert_eq!(
        from_json(&Type::Decimal, &serde_json::json!(7), &records),
        Ok(Value::Decimal(Decimal::from_i64(7)))
    );
    let pair = from_json(
        &Type::Record(records.pair.clone()),
        &serde_json::json!({"a": "1"}),
        &records,
    );
    let expected = Record {
        fields: vec![
            (Arc::from("a"), Value::Int(1)),
            (Arc::from("b"), Value::Optional(None)),
        ],
    };
    assert_eq!(pair, Ok(Value::Record(expected)));
}

#[test]
fn encoding_matches_the_json_api() {
    let store = store();
    let iou = tref("#iou:Iou:Iou");
    let j = serde_json::json!({"issuer": "Bank::12", "owner": "Alice::12", "currency": "USD", "amount": "1.50", "viewers": ["Bob::12"]});
    let v = store.decode_create_argument(&iou, &j).expect("decodes");
    let expected = serde_json::json!({"issuer":"Bank::12","owner":"Alice::12","currency":"USD","amount":"1.5","viewers":["Bob::12"]});
    assert_eq!(to_json(&v), expected);
    let nested = Value::Optional(Some(Box::new(Value::Optional(None))));
    assert_eq!(to_json(&nested).to_string(), "[]");
    let nested = Value::Optional(Some(Box::new(Value::Optional(Some(Box::new(Value::Int(
        3,
    )))))));
    assert_eq!(to_json(&nested).to_string(), r#"["3"]"#);
}
