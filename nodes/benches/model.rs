//! Ledger model benchmarks: interpreting a create, an exercise with two creates, and the
//! JSON API encoding of an Iou.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tandem_nodes::model::{
    interpret, json, Command, Contract, ContractId, ContractLookup, Format, GlobalKey, NoContracts,
    PackageStore, Party, SubmissionSeed, Submitters, TemplateRef, Type,
};

fn example(name: &str) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    [
        format!("{root}/examples/packages/{name}"),
        format!("{root}/../examples/packages/{name}"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .expect("example package present")
}

struct Acs(HashMap<ContractId, Arc<Contract>>);

impl ContractLookup for Acs {
    fn contract(&self, id: &ContractId) -> Option<Arc<Contract>> {
        self.0.get(id).cloned()
    }
    fn contract_by_key(&self, _: &GlobalKey) -> Option<ContractId> {
        None
    }
}

fn iou_json() -> serde_json::Value {
    serde_json::json!({
        "issuer": "Bank::1220aa", "owner": "Alice::1220aa", "currency": "USD",
        "amount": "1000.25", "viewers": ["Carol::1220aa"],
    })
}

fn benches(c: &mut Criterion) {
    let mut packages = PackageStore::new();
    packages
        .upload(example("iou.yaml").as_bytes(), Format::Yaml)
        .expect("iou uploads");
    let iou = TemplateRef::parse("#iou:Iou:Iou").expect("template ref");
    let argument = packages
        .decode_create_argument(&iou, &iou_json())
        .expect("decodes");
    let bank = Submitters::act_as([Party::parse("Bank::1220aa").expect("party")]);
    let alice = Submitters::act_as([Party::parse("Alice::1220aa").expect("party")]);
    let seed = SubmissionSeed([1; 32]);

    let create = [Command::Create {
        template: iou.clone(),
        argument: argument.clone(),
    }];
    let mut g = c.benchmark_group("interpret");
    g.throughput(Throughput::Elements(1));
    g.bench_function("create_iou", |b| {
        b.iter(|| interpret(&packages, &bank, black_box(&create), &NoContracts, &seed).expect("ok"))
    });

    let tx = interpret(&packages, &bank, &create, &NoContracts, &seed).expect("ok");
    let contract = tx.created_contracts().next().expect("created").clone();
    let acs = Acs(HashMap::from([(contract.id.clone(), contract.clone())]));
    let split_arg = packages
        .decode_choice_argument(&iou, "Split", &serde_json::json!({"split": "250.5"}))
        .expect("decodes");
    let split = [Command::Exercise {
        template: iou.clone(),
        contract_id: contract.id.clone(),
        choice: "Split".into(),
        argument: split_arg,
    }];
    g.bench_function("exercise_split_two_creates", |b| {
        b.iter(|| interpret(&packages, &alice, black_box(&split), &acs, &seed).expect("ok"))
    });
    g.finish();

    let text = iou_json().to_string();
    let ty = Type::Record(contract.template_id.clone());
    let mut g = c.benchmark_group("json");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode_iou", |b| {
        b.iter(|| json::from_json_str(&ty, black_box(&text), &packages).expect("decodes"))
    });
    g.bench_function("encode_iou", |b| {
        b.iter(|| json::to_json(black_box(&argument)).to_string())
    });
    g.finish();
}

criterion_group!(model, benches);
criterion_main!(model);
