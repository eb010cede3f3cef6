//! Fuzzes package upload (YAML and JSON parsing, reading, checking) on arbitrary bytes,
//! with the example packages loaded so cross-package references resolve.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_nodes::model::{Format, PackageStore};

fuzz_target!(|data: &[u8]| {
    let mut store = PackageStore::new();
    let _ = store.upload(
        include_bytes!("../../../examples/packages/iou.yaml"),
        Format::Yaml,
    );
    // The first byte picks the syntax, so one corpus exercises both readers.
    let (format, doc) = match data.split_first() {
        Some((b, rest)) if b % 2 == 0 => (Format::Yaml, rest),
        Some((_, rest)) => (Format::Json, rest),
        None => return,
    };
    if let Err(e) = store.upload(doc, format) {
        // Formatting must not panic either.
        let _ = (e.to_string(), e.code());
    }
});
