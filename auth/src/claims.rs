//! The verified content of a token ([`Claims`]) and how a signed, time-checked payload is
//! recognised as one of the Daml token formats and checked against the configured audience.
//! Pure: no I/O, no clock.

use crate::error::{shown, AuthError, Reason};
use serde::Serialize;
use serde_json::{Map, Value};

/// The claim that holds the rights of a custom-claims token.
pub const DAML_CLAIMS: &str = "https://daml.com/ledger-api";
/// Audience-based tokens carry this followed by the participant id in `aud`.
pub const PARTICIPANT_AUDIENCE_PREFIX: &str = "https://daml.com/jwt/aud/participant/";

/// The fields of a custom-claims token, inside [`DAML_CLAIMS`] or (legacy) at the top level.
const CUSTOM_FIELDS: [&str; 6] = [
    "actAs",
    "readAs",
    "admin",
    "applicationId",
    "participantId",
    "ledgerId",
];

/// Which of the Daml token formats a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenFormat {
    /// A user token: `aud` contains `https://daml.com/jwt/aud/participant/<participantId>`,
    /// `sub` is the user id.
    Audience,
    /// A user token: `scope` contains `daml_ledger_api` (or the configured scope), `sub` is the
    /// user id.
    Scope,
    /// Rights in the `https://daml.com/ledger-api` object.
    CustomClaims,
    /// Rights at the top level of the payload (the deprecated flattened custom-claims form).
    CustomClaimsFlattened,
}

/// The rights a custom-claims token grants by itself, without user management.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LegacyRights {
    /// Parties the bearer may act as (and read as).
    pub act_as: Vec<String>,
    /// Parties the bearer may read as.
    pub read_as: Vec<String>,
    /// Whether the bearer may use admin services.
    pub admin: bool,
    /// If set, requests must use this application id.
    pub application_id: Option<String>,
    /// If set, the token is valid only on this participant (already checked by the verifier).
    pub participant_id: Option<String>,
    /// If set, the token is valid only on this ledger (not checked: Tandem has one ledger id).
    pub ledger_id: Option<String>,
}

/// What the token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// A user token: rights come from the participant's user management for this user.
    User {
        /// The participant user id (`sub`).
        user_id: String,
    },
    /// A custom-claims token: the rights are in the token.
    Rights(LegacyRights),
}

/// A verified token: signature, times, issuer and audience all checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claims {
    /// Which format the token has.
    pub format: TokenFormat,
    /// The user id or the rights.
    pub grant: Grant,
    /// `sub`, if any (for user tokens, the same as the user id).
    pub subject: Option<String>,
    /// `iss`, if any.
    pub issuer: Option<String>,
    /// `exp` in seconds since the Unix epoch, if any.
    pub expires_at: Option<u64>,
}

impl Claims {
    /// The user id of a user token (audience- or scope-based).
    pub fn user_id(&self) -> Option<&str> {
        match &self.grant {
            Grant::User { user_id } => Some(user_id),
            Grant::Rights(_) => None,
        }
    }

    /// The rights of a custom-claims token.
    pub fn rights(&self) -> Option<&LegacyRights> {
        match &self.grant {
            Grant::User { .. } => None,
            Grant::Rights(rights) => Some(rights),
        }
    }
}

/// The configured expectations that depend on the format.
#[derive(Debug, Clone)]
pub(crate) struct AudienceRules {
    pub participant_id: Option<String>,
    pub audience: Option<String>,
    pub scope: String,
}

impl AudienceRules {
    fn participant_audience(&self) -> Option<String> {
        self.participant_id
            .as_ref()
            .map(|p| format!("{PARTICIPANT_AUDIENCE_PREFIX}{p}"))
    }
}

/// Recognises the format of a payload whose signature, times and issuer were already checked,
/// and checks its audience.
pub(crate) fn classify(
    payload: &Map<String, Value>,
    rules: &AudienceRules,
) -> Result<Claims, AuthError> {
    let audiences = string_or_list(payload, "aud")?;
    let subject = optional_string(payload, "sub")?;
    let issuer = optional_string(payload, "iss")?;
    let expires_at = payload.get("exp").and_then(seconds);

    let (format, grant) = if has_scope(payload, &rules.scope)? {
        check_general_audience(&audiences, rules)?;
        (TokenFormat::Scope, user(subject.as_deref(), "scope-based")?)
    } else if audiences
        .iter()
        .any(|a| a.starts_with(PARTICIPANT_AUDIENCE_PREFIX))
    {
        check_participant_audience(&audiences, rules)?;
        (
            TokenFormat::Audience,
            user(subject.as_deref(), "audience-based")?,
        )
    } else if let Some(custom) = payload.get(DAML_CLAIMS) {
        let Value::Object(custom) = custom else {
            return Err(AuthError::malformed(format!(
                "{DAML_CLAIMS} must be a JSON object"
            )));
        };
        check_general_audience(&audiences, rules)?;
        let rights = rights(custom, &format!("{DAML_CLAIMS}."))?;
        check_rights_participant(&rights, rules)?;
        (TokenFormat::CustomClaims, Grant::Rights(rights))
    } else if CUSTOM_FIELDS.iter().any(|f| payload.contains_key(*f)) {
        check_general_audience(&audiences, rules)?;
        let rights = rights(payload, "")?;
        check_rights_participant(&rights, rules)?;
        (TokenFormat::CustomClaimsFlattened, Grant::Rights(rights))
    } else {
        return Err(AuthError::new(
            Reason::UnrecognizedClaims,
            format!(
                "not a Daml ledger API token: no {:?} in scope, no participant audience and no {DAML_CLAIMS} claims",
                rules.scope
            ),
        ));
    };
    Ok(Claims {
        format,
        grant,
        subject,
        issuer,
        expires_at,
    })
}

fn user(subject: Option<&str>, kind: &str) -> Result<Grant, AuthError> {
    match subject {
        Some(user_id) if !user_id.is_empty() => Ok(Grant::User {
            user_id: user_id.to_owned(),
        }),
        _ => Err(AuthError::malformed(format!(
            "a {kind} token needs the user id in sub"
        ))),
    }
}

fn has_scope(payload: &Map<String, Value>, scope: &str) -> Result<bool, AuthError> {
    match payload.get("scope") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::String(s)) => Ok(s.split_whitespace().any(|w| w == scope)),
        Some(_) => Err(AuthError::malformed(
            "scope must be a space-separated string",
        )),
    }
}

/// Scope-based and custom-claims tokens: the configured audience is required; without one, an
/// `aud` that is present must name this participant.
fn check_general_audience(audiences: &[String], rules: &AudienceRules) -> Result<(), AuthError> {
    if let Some(expected) = &rules.audience {
        if audiences.iter().any(|a| a == expected) {
            return Ok(());
        }
        return Err(AuthError::new(
            Reason::WrongAudience,
            format!("the token's audience does not include {expected:?}"),
        ));
    }
    if audiences.is_empty() {
        return Ok(());
    }
    let accepted = [rules.participant_id.clone(), rules.participant_audience()];
    if audiences
        .iter()
        .any(|a| accepted.iter().flatten().any(|ok| ok == a))
    {
        return Ok(());
    }
    Err(AuthError::new(
        Reason::WrongAudience,
        "the token's audience does not name this participant",
    ))
}

fn check_participant_audience(
    audiences: &[String],
    rules: &AudienceRules,
) -> Result<(), AuthError> {
    let Some(expected) = rules.participant_audience() else {
        return Err(AuthError::new(
            Reason::WrongAudience,
            "audience-based tokens are not accepted here: no participant id is configured",
        ));
    };
    if audiences.contains(&expected) {
        return Ok(());
    }
    Err(AuthError::new(
        Reason::WrongAudience,
        format!("the token is for another participant; expected audience {expected:?}"),
    ))
}

fn check_rights_participant(rights: &LegacyRights, rules: &AudienceRules) -> Result<(), AuthError> {
    match (&rights.participant_id, &rules.participant_id) {
        (None, _) => Ok(()),
        (Some(theirs), Some(ours)) if theirs == ours => Ok(()),
        (Some(theirs), _) => Err(AuthError::new(
            Reason::WrongAudience,
            format!("the token is restricted to participant {}", shown(theirs)),
        )),
    }
}

fn rights(object: &Map<String, Value>, prefix: &str) -> Result<LegacyRights, AuthError> {
    Ok(LegacyRights {
        act_as: string_list(object, "actAs", prefix)?,
        read_as: string_list(object, "readAs", prefix)?,
        admin: match object.get("admin") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(AuthError::malformed(format!(
                    "{prefix}admin must be a boolean"
                )))
            }
        },
        application_id: optional_string_at(object, "applicationId", prefix)?,
        participant_id: optional_string_at(object, "participantId", prefix)?,
        ledger_id: optional_string_at(object, "ledgerId", prefix)?,
    })
}

fn string_list(
    object: &Map<String, Value>,
    key: &str,
    prefix: &str,
) -> Result<Vec<String>, AuthError> {
    let bad = || AuthError::malformed(format!("{prefix}{key} must be a list of strings"));
    match object.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(bad))
            .collect(),
        Some(_) => Err(bad()),
    }
}

/// `aud` may be one string or a list of strings (RFC 7519 §4.1.3).
fn string_or_list(object: &Map<String, Value>, key: &str) -> Result<Vec<String>, AuthError> {
    match object.get(key) {
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        _ => string_list(object, key, ""),
    }
}

fn optional_string(object: &Map<String, Value>, key: &str) -> Result<Option<String>, AuthError> {
    optional_string_at(object, key, "")
}

fn optional_string_at(
    object: &Map<String, Value>,
    key: &str,
    prefix: &str,
) -> Result<Option<String>, AuthError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(AuthError::malformed(format!(
            "{prefix}{key} must be a string"
        ))),
    }
}

/// A NumericDate (RFC 7519 §2): seconds, possibly fractional; negative or non-numbers are none.
pub(crate) fn seconds(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules() -> AudienceRules {
        AudienceRules {
            participant_id: Some("p1".into()),
            audience: None,
            scope: "daml_ledger_api".into(),
        }
    }

    fn classify_json(v: Value, rules: &AudienceRules) -> Result<Claims, AuthError> {
        classify(v.as_object().unwrap(), rules)
    }

    #[test]
    fn scope_based_user_token() {
        let c = classify_json(
            json!({"sub": "alice", "scope": "openid daml_ledger_api", "exp": 10}),
            &rules(),
        )
        .unwrap();
        assert_eq!(c.format, TokenFormat::Scope);
        assert_eq!(c.user_id(), Some("alice"));
        assert_eq!(c.expires_at, Some(10));
    }

    #[test]
    fn scope_must_be_a_whole_word() {
        let err =
            classify_json(json!({"sub": "a", "scope": "daml_ledger_api_x"}), &rules()).unwrap_err();
        assert_eq!(err.reason(), Reason::UnrecognizedClaims);
    }

    #[test]
    fn audience_based_needs_our_participant() {
        let ok = classify_json(
            json!({"sub": "bob", "aud": ["x", "https://daml.com/jwt/aud/participant/p1"]}),
            &rules(),
        )
        .unwrap();
        assert_eq!(ok.format, TokenFormat::Audience);
        assert_eq!(ok.user_id(), Some("bob"));
        let err = classify_json(
            json!({"sub": "bob", "aud": "https://daml.com/jwt/aud/participant/p2"}),
            &rules(),
        )
        .unwrap_err();
        assert_eq!(err.reason(), Reason::WrongAudience);
        let no_participant = AudienceRules {
            participant_id: None,
            ..rules()
        };
        let err = classify_json(
            json!({"sub": "bob", "aud": "https://daml.com/jwt/aud/participant/p1"}),
            &no_participant,
        )
        .unwrap_err();
        assert_eq!(err.reason(), Reason::WrongAudience);
    }

    #[test]
    fn user_tokens_need_a_subject() {
        let err = classify_json(json!({"scope": "daml_ledger_api"}), &rules()).unwrap_err();
        assert_eq!(err.reason(), Reason::Malformed);
    }

    #[test]
    fn custom_claims_in_the_daml_object() {
        let c = classify_json(
            json!({"https://daml.com/ledger-api": {
                "actAs": ["Alice"], "readAs": ["Bob"], "admin": true,
                "applicationId": "app", "participantId": "p1", "ledgerId": null}}),
            &rules(),
        )
        .unwrap();
        assert_eq!(c.format, TokenFormat::CustomClaims);
        let r = c.rights().unwrap();
        assert_eq!(r.act_as, vec!["Alice"]);
        assert_eq!(r.read_as, vec!["Bob"]);
        assert!(r.admin);
        assert_eq!(r.application_id.as_deref(), Some("app"));
    }

    #[test]
    fn flattened_custom_claims() {
        let c = classify_json(
            json!({"actAs": ["Alice"], "applicationId": "app"}),
            &rules(),
        )
        .unwrap();
        assert_eq!(c.format, TokenFormat::CustomClaimsFlattened);
        assert_eq!(c.rights().unwrap().act_as, vec!["Alice"]);
        assert!(!c.rights().unwrap().admin);
    }

    #[test]
    fn custom_claims_for_another_participant_are_refused() {
        let err = classify_json(
            json!({"https://daml.com/ledger-api": {"participantId": "p2"}}),
            &rules(),
        )
        .unwrap_err();
        assert_eq!(err.reason(), Reason::WrongAudience);
    }

    #[test]
    fn wrong_types_are_malformed() {
        for bad in [
            json!({"https://daml.com/ledger-api": {"actAs": "Alice"}}),
            json!({"https://daml.com/ledger-api": {"admin": "yes"}}),
            json!({"https://daml.com/ledger-api": []}),
            json!({"scope": 1, "sub": "a"}),
            json!({"aud": 5, "actAs": []}),
        ] {
            let err = classify_json(bad.clone(), &rules()).unwrap_err();
            assert_eq!(err.reason(), Reason::Malformed, "{bad}");
        }
    }

    #[test]
    fn configured_audience_is_required_for_scope_and_custom_tokens() {
        let strict = AudienceRules {
            audience: Some("https://ledger.example".into()),
            ..rules()
        };
        let ok = json!({"sub": "a", "scope": "daml_ledger_api", "aud": ["https://ledger.example"]});
        classify_json(ok, &strict).unwrap();
        for bad in [
            json!({"sub": "a", "scope": "daml_ledger_api"}),
            json!({"sub": "a", "scope": "daml_ledger_api", "aud": "https://other"}),
            json!({"actAs": ["A"], "aud": "https://other"}),
        ] {
            assert_eq!(
                classify_json(bad, &strict).unwrap_err().reason(),
                Reason::WrongAudience
            );
        }
    }

    #[test]
    fn unconfigured_audience_accepts_none_or_this_participant() {
        classify_json(
            json!({"sub": "a", "scope": "daml_ledger_api", "aud": "p1"}),
            &rules(),
        )
        .unwrap();
        let err = classify_json(
            json!({"sub": "a", "scope": "daml_ledger_api", "aud": "p2"}),
            &rules(),
        )
        .unwrap_err();
        assert_eq!(err.reason(), Reason::WrongAudience);
    }
}
