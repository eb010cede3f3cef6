//! Template ids as requests name them and as events carry them: `<package id>:<Module>:<Entity>`
//! or `#<package name>:<Module>:<Entity>`. A filter matches an event's template when both name
//! the same `Module:Entity` and the same package, by id or by name (a name is compared with the
//! event's package reference, and with the name the package list gives for its id).

use std::collections::HashMap;

/// `(package reference, "Module:Entity")`, or `None` if `id` is not a template id.
pub fn split(id: &str) -> Option<(&str, &str)> {
    let (package, rest) = id.split_once(':')?;
    let (module, entity) = rest.rsplit_once(':')?;
    (!package.is_empty() && !module.is_empty() && !entity.is_empty()).then_some((package, rest))
}

/// Whether `filter` (from a request) names the template of `event_template` (from the ledger).
/// `names` maps package ids to package names.
pub fn matches(filter: &str, event_template: &str, names: &HashMap<String, String>) -> bool {
    if filter == event_template {
        return true;
    }
    let (Some((fp, fq)), Some((ep, eq))) = (split(filter), split(event_template)) else {
        return false;
    };
    if fq != eq {
        return false;
    }
    let name_of = |p: &str| -> Option<String> {
        match p.strip_prefix('#') {
            Some(name) => Some(name.to_owned()),
            None => names.get(p).cloned(),
        }
    };
    match (name_of(fp), name_of(ep)) {
        (Some(a), Some(b)) if fp.starts_with('#') || ep.starts_with('#') => a == b,
        _ => fp == ep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_match() {
        let mut names = HashMap::new();
        names.insert("abc123".to_owned(), "iou".to_owned());
        assert!(matches("#iou:Iou:Iou", "#iou:Iou:Iou", &names));
        assert!(matches("#iou:Iou:Iou", "abc123:Iou:Iou", &names));
        assert!(matches("abc123:Iou:Iou", "#iou:Iou:Iou", &names));
        assert!(!matches("#iou:Iou:Iou", "abc123:Iou:Other", &names));
        assert!(!matches("#other:Iou:Iou", "abc123:Iou:Iou", &names));
        assert!(!matches("#iou:Iou:Iou", "zzz:Iou:Iou", &names));
        assert!(!matches("abc123:Iou:Iou", "zzz:Iou:Iou", &names));
        assert!(matches("#p:A.B:T", "#p:A.B:T", &names));
        assert_eq!(split("#p:A.B:T"), Some(("#p", "A.B:T")));
        assert_eq!(split("nocolon"), None);
        assert_eq!(split("p::T"), None);
    }
}
