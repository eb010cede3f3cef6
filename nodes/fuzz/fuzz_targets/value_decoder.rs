//! Fuzzes type-directed JSON decoding of values against the example templates, and checks
//! that whatever decodes re-encodes and decodes to the same value.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tandem_nodes::model::{json, Format, PackageStore, TemplateRef, Type};

/// Loaded once: uploading is the slow part, and the decoder never changes the store.
fn store() -> Option<&'static PackageStore> {
    static STORE: OnceLock<Option<PackageStore>> = OnceLock::new();
    STORE
        .get_or_init(|| {
            let mut store = PackageStore::new();
            let iou = include_bytes!("../../../examples/packages/iou.yaml");
            let dvp = include_bytes!("../../../examples/packages/dvp.yaml");
            store.upload(iou, Format::Yaml).ok()?;
            store.upload(dvp, Format::Yaml).ok()?;
            Some(store)
        })
        .as_ref()
}

fuzz_target!(|data: &[u8]| {
    let Some(store) = store() else { return };
    let Some((selector, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let refs = ["#iou:Iou:Iou", "#dvp:Dvp:Proposal", "#dvp:Asset:Asset"];
    let Ok(r) = TemplateRef::parse(refs[usize::from(*selector) % refs.len()]) else {
        return;
    };
    let Ok(template) = store.template(&r) else {
        return;
    };
    let ty = if selector & 0x80 != 0 {
        template
            .key
            .as_ref()
            .map_or(Type::Record(template.id.clone()), |k| k.ty.clone())
    } else {
        Type::Record(template.id.clone())
    };
    match json::from_json_str(&ty, text, store) {
        Ok(v) => {
            let again = json::from_json(&ty, &json::to_json(&v), store);
            assert_eq!(again.as_ref(), Ok(&v), "round trip of {text}");
        }
        Err(e) => {
            let _ = (e.to_string(), e.code());
        }
    }
});
