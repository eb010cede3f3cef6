//! Who may call what: one pure check per endpoint class, run before anything is sent to the
//! ledger. The participant authorizes again; these checks make a refusal cheap and certain.
//!
//! | class | endpoints | needs |
//! |---|---|---|
//! | authenticated | ledger end, version, packages (list), own user | a valid token |
//! | act-as | commands | `CanActAs` every `actAs` party, `CanReadAs` or `CanActAs` every `readAs` party; `userId` the caller's own unless admin |
//! | read-as | state, updates, completions, query, streams | `CanReadAs` or `CanActAs` every party read |
//! | admin | parties, users, package upload | `ParticipantAdmin` |
//! | self-or-admin | a user and its rights | the caller's own user id, or `ParticipantAdmin` |

use super::Rights;
use crate::error::ApiError;

/// The endpoint classes of the table above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Authenticated,
    ActAs,
    ReadAs,
    Admin,
    SelfOrAdmin,
}

/// Commands: every acting party must be granted `CanActAs`, every reading one `CanReadAs` (or
/// `CanActAs`); `user_id`, when given, must be the caller's own unless the caller is admin.
/// Returns the user id the commands are submitted as.
pub fn check_act_as(
    rights: &Rights,
    act_as: &[String],
    read_as: &[String],
    user_id: Option<&str>,
) -> Result<String, ApiError> {
    if act_as.is_empty() {
        return Err(ApiError::field(
            "actAs",
            "at least one acting party is required",
        ));
    }
    for (i, party) in act_as.iter().enumerate() {
        if !rights.can_act_as(party) {
            return Err(ApiError::Forbidden(format!(
                "the caller may not act as {party:?} (actAs[{i}])"
            )));
        }
    }
    for (i, party) in read_as.iter().enumerate() {
        if !rights.can_read_as(party) {
            return Err(ApiError::Forbidden(format!(
                "the caller may not read as {party:?} (readAs[{i}])"
            )));
        }
    }
    submitting_user(rights, user_id)
}

/// The user id requests are made as: the one given (which must be the caller's own unless the
/// caller is admin), else the caller's.
pub fn submitting_user(rights: &Rights, user_id: Option<&str>) -> Result<String, ApiError> {
    match (user_id.filter(|u| !u.is_empty()), rights.user_id.as_deref()) {
        (Some(given), Some(own)) if given == own => Ok(given.to_owned()),
        (Some(given), _) if rights.admin => Ok(given.to_owned()),
        (Some(given), _) => Err(ApiError::Forbidden(format!(
            "the caller may not act for user {given:?} (userId)"
        ))),
        (None, Some(own)) => Ok(own.to_owned()),
        (None, None) => Err(ApiError::field(
            "userId",
            "required: the token names no user or application id",
        )),
    }
}

/// Reading: every party must be readable. `field` names the request field listing them.
pub fn check_read_as(rights: &Rights, parties: &[String], field: &str) -> Result<(), ApiError> {
    if parties.is_empty() {
        return Err(ApiError::field(field, "at least one party is required"));
    }
    for (i, party) in parties.iter().enumerate() {
        if !rights.can_read_as(party) {
            return Err(ApiError::Forbidden(format!(
                "the caller may not read as {party:?} ({field}[{i}])"
            )));
        }
    }
    Ok(())
}

/// Administration.
pub fn check_admin(rights: &Rights) -> Result<(), ApiError> {
    if rights.admin {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "this needs the ParticipantAdmin right".into(),
        ))
    }
}

/// A user's own records, or anyone's for an admin.
pub fn check_self_or_admin(rights: &Rights, user_id: &str) -> Result<(), ApiError> {
    if rights.admin || rights.user_id.as_deref() == Some(user_id) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "only {user_id:?} itself or a ParticipantAdmin may do this"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rights(act: &[&str], read: &[&str], admin: bool, user: Option<&str>) -> Rights {
        Rights {
            user_id: user.map(str::to_owned),
            act_as: act.iter().map(|s| s.to_string()).collect(),
            read_as: read.iter().map(|s| s.to_string()).collect(),
            admin,
        }
    }

    fn v(parties: &[&str]) -> Vec<String> {
        parties.iter().map(|s| s.to_string()).collect()
    }

    fn forbidden<T: std::fmt::Debug>(r: Result<T, ApiError>) -> bool {
        matches!(r, Err(ApiError::Forbidden(_)))
    }

    #[test]
    fn act_as_class() {
        let alice = rights(&["Alice"], &["Bob"], false, Some("alice"));
        assert_eq!(
            check_act_as(&alice, &v(&["Alice"]), &v(&["Bob"]), None).unwrap(),
            "alice"
        );
        assert!(forbidden(check_act_as(&alice, &v(&["Bob"]), &[], None)));
        assert!(forbidden(check_act_as(
            &alice,
            &v(&["Alice"]),
            &v(&["Carol"]),
            None
        )));
        assert!(forbidden(check_act_as(
            &alice,
            &v(&["Alice"]),
            &[],
            Some("bob")
        )));
        assert!(matches!(
            check_act_as(&alice, &[], &[], None),
            Err(ApiError::BadRequest { field: Some(f), .. }) if f == "actAs"
        ));
        // Admin does not imply acting as anyone, but may submit for another user.
        let admin = rights(&["Alice"], &[], true, Some("admin"));
        assert!(forbidden(check_act_as(&admin, &v(&["Bob"]), &[], None)));
        assert_eq!(
            check_act_as(&admin, &v(&["Alice"]), &[], Some("alice")).unwrap(),
            "alice"
        );
        let no_user = rights(&["Alice"], &[], false, None);
        assert!(matches!(
            check_act_as(&no_user, &v(&["Alice"]), &[], None),
            Err(ApiError::BadRequest { .. })
        ));
    }

    #[test]
    fn read_as_class() {
        let r = rights(&["Alice"], &["Bob"], false, Some("u"));
        check_read_as(&r, &v(&["Alice", "Bob"]), "parties").unwrap();
        assert!(forbidden(check_read_as(
            &r,
            &v(&["Alice", "Carol"]),
            "parties"
        )));
        let admin = rights(&[], &[], true, Some("admin"));
        assert!(forbidden(check_read_as(&admin, &v(&["Alice"]), "parties")));
        assert!(matches!(
            check_read_as(&r, &[], "parties"),
            Err(ApiError::BadRequest { .. })
        ));
    }

    #[test]
    fn admin_and_self_classes() {
        let none = rights(&[], &[], false, Some("u"));
        let admin = rights(&[], &[], true, Some("root"));
        assert!(forbidden(check_admin(&none)));
        check_admin(&admin).unwrap();
        check_self_or_admin(&none, "u").unwrap();
        assert!(forbidden(check_self_or_admin(&none, "v")));
        check_self_or_admin(&admin, "v").unwrap();
    }
}
