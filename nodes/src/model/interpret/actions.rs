//! The actions of a choice body (create, exercise, archive, fetch, assert) and the
//! checks on their arguments.

use std::collections::BTreeSet;

use super::engine::{Engine, Site};
use super::InterpretError;
use crate::model::auth;
use crate::model::auth::AuthorizationError;
use crate::model::expr::{eval, Env};
use crate::model::ids::{ContractId, Party, TemplateId};
use crate::model::package::{Action, Choice, PackageStore, SrcExpr, Template, ARCHIVE};
use crate::model::tx::{Node, NodeId, NodeKind};
use crate::model::value::{conforms, Record, Value};

impl<'a> Engine<'a> {
    /// Runs a choice body; returns the child nodes.
    pub(super) fn body(
        &mut self,
        c: &Choice,
        site: &Site<'_>,
        mut env: Env,
        authorizers: &BTreeSet<Party>,
    ) -> Result<Vec<NodeId>, InterpretError> {
        let mut children = Vec::with_capacity(c.body.len());
        for action in &c.body {
            match action {
                Action::Create {
                    template,
                    args,
                    bind,
                } => {
                    let argument = eval_args(site, args, &env)?;
                    let t = self.template(template)?;
                    let (node, cid) = self.create(t, argument, authorizers)?;
                    children.push(node);
                    if let Some(b) = bind {
                        env.push(b.clone(), Value::ContractId(cid));
                    }
                }
                Action::Exercise {
                    template,
                    choice,
                    on,
                    args,
                } => {
                    let cid = eval_cid(site, on, &env)?;
                    let argument = eval_args(site, args, &env)?;
                    children.push(self.exercise(
                        Some(template),
                        &cid,
                        choice,
                        argument,
                        authorizers,
                        false,
                    )?);
                }
                Action::Archive { template, on } => {
                    let cid = eval_cid(site, on, &env)?;
                    let empty = Value::Record(Record::default());
                    children.push(self.exercise(
                        template.as_ref(),
                        &cid,
                        ARCHIVE,
                        empty,
                        authorizers,
                        false,
                    )?);
                }
                Action::Fetch { template, on, bind } => {
                    let cid = eval_cid(site, on, &env)?;
                    let (node, payload) = self.fetch(template, &cid, authorizers)?;
                    children.push(node);
                    env.push(bind.clone(), payload);
                }
                Action::Assert { cond, message } => {
                    if !site.eval_bool("assert", cond, &env)? {
                        let message = message
                            .clone()
                            .unwrap_or_else(|| format!("`{}` is false", cond.text));
                        let context = format!("choice {} of {}", c.name, site.template);
                        return Err(InterpretError::AssertionFailed { context, message });
                    }
                }
            }
        }
        Ok(children)
    }

    fn template(&self, id: &TemplateId) -> Result<&'a Template, InterpretError> {
        let packages = self.packages;
        packages.template_by_id(id).ok_or_else(|| {
            crate::model::package::LookupError::TemplateNotFound(id.to_string()).into()
        })
    }

    fn fetch(
        &mut self,
        template: &TemplateId,
        id: &ContractId,
        authorizers: &BTreeSet<Party>,
    ) -> Result<(NodeId, Value), InterpretError> {
        let contract = self.contract(id)?;
        Self::expect_template(&contract, Some(template))?;
        let node_id = self.next_node()?;
        let stakeholders = contract.stakeholders();
        let actors: BTreeSet<Party> = stakeholders.intersection(authorizers).cloned().collect();
        if actors.is_empty() {
            return Err(AuthorizationError {
                node_id,
                node: format!("fetch of {} {id}", contract.template_id),
                missing: stakeholders,
                authorizers: authorizers.clone(),
            }
            .into());
        }
        self.nodes.push(Node {
            informees: auth::confirming_parties(&contract.signatories, &actors),
            confirming_parties: auth::confirming_parties(&contract.signatories, &actors),
            required_authorizers: actors.clone(),
            consumed: Vec::new(),
            created: Vec::new(),
            children: Vec::new(),
            kind: NodeKind::Fetch {
                contract_id: id.clone(),
                template_id: contract.template_id.clone(),
                actors,
                signatories: contract.signatories.clone(),
                stakeholders,
            },
        });
        Ok((node_id, contract.argument.clone()))
    }
}

fn eval_cid(site: &Site<'_>, src: &SrcExpr, env: &Env) -> Result<ContractId, InterpretError> {
    match site.eval("contract id", src, env)? {
        Value::ContractId(c) => Ok(c),
        v => Err(InterpretError::Evaluation {
            context: site.describe("contract id", src),
            message: format!("expected contract_id, got {}", v.kind()),
        }),
    }
}

fn eval_args(
    site: &Site<'_>,
    args: &[(crate::model::types::Name, SrcExpr)],
    env: &Env,
) -> Result<Value, InterpretError> {
    let mut fields = Vec::with_capacity(args.len());
    for (name, src) in args {
        // The label is only formatted on error: this runs for every argument of every action.
        let value = eval(&src.expr, env)
            .map_err(|_| ())
            .or_else(|()| site.eval(&format!("argument {name}"), src, env))?;
        fields.push((name.clone(), value));
    }
    Ok(Value::Record(Record { fields }))
}

/// Checks a choice argument against the parameters of the choice that will run. Body
/// exercises were type-checked at upload, but against the version the package pinned,
/// which may differ from the version that created the contract.
/// Checks that a choice argument is a record of exactly the choice's parameters.
pub(super) fn check_choice_argument(
    choice: &str,
    c: &Choice,
    argument: &Value,
    packages: &PackageStore,
) -> Result<(), InterpretError> {
    let checked = match argument {
        Value::Record(r) => check_params(r, c, packages),
        _ => Err(format!(
            "expected a record of the parameters of {choice}, got {}",
            argument.kind()
        )),
    };
    checked.map_err(|m| InterpretError::InvalidArgument {
        what: format!("argument of choice {choice}"),
        source: crate::model::value::ValueError::new("", m),
    })
}

fn check_params(r: &Record, c: &Choice, packages: &PackageStore) -> Result<(), String> {
    if r.fields.len() != c.params.len() {
        let missing = c.params.iter().find(|(n, _)| r.get(n).is_none());
        if let Some((n, _)) = missing {
            return Err(format!("missing field {n:?}"));
        }
    }
    for (given, _) in &r.fields {
        if !c.params.iter().any(|(n, _)| n == given) {
            return Err(format!("unknown field {given:?}"));
        }
    }
    for ((name, t), (given, v)) in c.params.iter().zip(&r.fields) {
        if name != given {
            return Err(format!("field {given:?} out of order, expected {name:?}"));
        }
        conforms(v, t, packages).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}
