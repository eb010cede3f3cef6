//! Interpreter state and the create / exercise / fetch steps. Nodes are appended in
//! pre-order (an exercise reserves its slot before its body runs), so the node index, and
//! with it every derived contract id, is a pure function of the commands and inputs.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use super::actions::check_choice_argument;
use super::{Command, ContractLookup, InterpretError, Submitters};
use crate::model::auth::{self, MAX_DEPTH};
use crate::model::expr::{eval, Env, EvalError};
use crate::model::ids::{ContractId, Party, SubmissionSeed, TemplateId};
use crate::model::package::{Choice, PackageStore, SrcExpr, Template, SELF};
use crate::model::tx::{Contract, ContractKey, GlobalKey, Node, NodeId, NodeKind, Transaction};
use crate::model::types::Type;
use crate::model::value::{conforms, Value};

/// Bound on the nodes of one transaction, so a choice that creates and exercises without
/// end fails cleanly.
const MAX_NODES: usize = 10_000;

pub(super) struct Engine<'a> {
    pub(super) packages: &'a PackageStore,
    submitters: &'a Submitters,
    lookup: &'a dyn ContractLookup,
    seed: &'a SubmissionSeed,
    pub(super) nodes: Vec<Node>,
    roots: Vec<NodeId>,
    /// Contracts created in this transaction.
    local: HashMap<ContractId, Arc<Contract>>,
    /// Consumed contracts and the node that consumed them.
    consumed: HashMap<ContractId, NodeId>,
    /// Keys created (`Some`) or archived (`None`) in this transaction; these shadow the ACS.
    keys: HashMap<GlobalKey, Option<ContractId>>,
    inputs: Vec<Arc<Contract>>,
    input_ids: HashSet<ContractId>,
    depth: usize,
}

/// Where an evaluation happens, for error messages.
pub(super) struct Site<'s> {
    pub(super) template: &'s TemplateId,
    pub(super) choice: Option<&'s str>,
}

impl Site<'_> {
    pub(super) fn describe(&self, what: &str, src: &SrcExpr) -> String {
        match self.choice {
            Some(c) => format!(
                "evaluating {what} `{}` in choice {c} of {}",
                src.text, self.template
            ),
            None => format!("evaluating {what} `{}` of {}", src.text, self.template),
        }
    }

    pub(super) fn eval(
        &self,
        what: &str,
        src: &SrcExpr,
        env: &Env,
    ) -> Result<Value, InterpretError> {
        eval(&src.expr, env).map_err(|e| match e {
            EvalError::Arithmetic(message) => InterpretError::Arithmetic {
                context: self.describe(what, src),
                message,
            },
            EvalError::Type(message) => InterpretError::Evaluation {
                context: self.describe(what, src),
                message,
            },
        })
    }

    pub(super) fn eval_bool(
        &self,
        what: &str,
        src: &SrcExpr,
        env: &Env,
    ) -> Result<bool, InterpretError> {
        match self.eval(what, src, env)? {
            Value::Bool(b) => Ok(b),
            v => Err(InterpretError::Evaluation {
                context: self.describe(what, src),
                message: format!("expected bool, got {}", v.kind()),
            }),
        }
    }

    pub(super) fn parties(
        &self,
        what: &str,
        exprs: &[SrcExpr],
        env: &Env,
    ) -> Result<BTreeSet<Party>, InterpretError> {
        let mut out = BTreeSet::new();
        for e in exprs {
            self.eval(what, e, env)?.collect_parties(&mut out);
        }
        Ok(out)
    }
}

fn record_env(argument: &Value) -> Env {
    let mut env = Env::default();
    if let Value::Record(r) = argument {
        env.vars.extend(r.fields.iter().cloned());
    }
    env
}

impl<'a> Engine<'a> {
    pub(super) fn new(
        packages: &'a PackageStore,
        submitters: &'a Submitters,
        lookup: &'a dyn ContractLookup,
        seed: &'a SubmissionSeed,
    ) -> Engine<'a> {
        Engine {
            packages,
            submitters,
            lookup,
            seed,
            nodes: Vec::new(),
            roots: Vec::new(),
            local: HashMap::new(),
            consumed: HashMap::new(),
            keys: HashMap::new(),
            inputs: Vec::new(),
            input_ids: HashSet::new(),
            depth: 0,
        }
    }

    pub(super) fn finish(self) -> Transaction {
        Transaction {
            nodes: self.nodes,
            roots: self.roots,
            input_contracts: self.inputs,
        }
    }

    pub(super) fn command(&mut self, command: &Command) -> Result<(), InterpretError> {
        let act_as = self.submitters.act_as.clone();
        let packages = self.packages;
        let root = match command {
            Command::Create { template, argument } => {
                let t = packages.template(template)?;
                self.check_arg(argument, &Type::Record(t.id.clone()), "create argument")?;
                self.create(t, argument.clone(), &act_as)?.0
            }
            Command::Exercise {
                template,
                contract_id,
                choice,
                argument,
            } => {
                let t = packages.template(template)?;
                self.exercise(
                    Some(&t.id),
                    contract_id,
                    choice,
                    argument.clone(),
                    &act_as,
                    false,
                )?
            }
            Command::CreateAndExercise {
                template,
                argument,
                choice,
                choice_argument,
            } => {
                let t = packages.template(template)?;
                self.check_arg(argument, &Type::Record(t.id.clone()), "create argument")?;
                let (node, cid) = self.create(t, argument.clone(), &act_as)?;
                self.roots.push(node);
                self.exercise(
                    Some(&t.id),
                    &cid,
                    choice,
                    choice_argument.clone(),
                    &act_as,
                    false,
                )?
            }
            Command::ExerciseByKey {
                template,
                key,
                choice,
                argument,
            } => {
                let t = packages.template(template)?;
                let key_def = t.key.as_ref().ok_or_else(|| {
                    crate::model::package::LookupError::NoKey(template.to_string())
                })?;
                self.check_arg(key, &key_def.ty, "contract key")?;
                let cid = self.resolve_key(&GlobalKey::new(&t.id, key.clone()))?;
                self.authorize_key_lookup(&cid, template, &act_as)?;
                self.exercise(Some(&t.id), &cid, choice, argument.clone(), &act_as, true)?
            }
        };
        self.roots.push(root);
        Ok(())
    }

    /// Daml: finding a contract by its key needs the authority of at least one of the key's
    /// maintainers, who vouch that the key maps to this contract.
    fn authorize_key_lookup(
        &mut self,
        cid: &ContractId,
        template: &crate::model::TemplateRef,
        authorizers: &std::collections::BTreeSet<crate::model::Party>,
    ) -> Result<(), InterpretError> {
        let contract = self.contract(cid)?;
        let maintainers = contract
            .key
            .as_ref()
            .map(|k| k.maintainers.clone())
            .unwrap_or_default();
        if maintainers.is_disjoint(authorizers) {
            return Err(crate::model::auth::AuthorizationError {
                node_id: self.next_node()?,
                node: format!("exercise by key of {template} (needs one key maintainer)"),
                missing: maintainers,
                authorizers: authorizers.clone(),
            }
            .into());
        }
        Ok(())
    }

    fn check_arg(&self, v: &Value, t: &Type, what: &str) -> Result<(), InterpretError> {
        conforms(v, t, self.packages).map_err(|source| InterpretError::InvalidArgument {
            what: what.into(),
            source,
        })
    }

    fn resolve_key(&self, key: &GlobalKey) -> Result<ContractId, InterpretError> {
        let found = match self.keys.get(key) {
            Some(local) => local.clone(),
            None => self
                .lookup
                .contract_by_key(key)
                .filter(|c| !self.consumed.contains_key(c)),
        };
        found.ok_or_else(|| InterpretError::KeyNotFound {
            template: format!("#{}:{}:{}", key.package_name, key.module, key.entity),
            key: key.key.to_string(),
        })
    }

    pub(super) fn next_node(&self) -> Result<NodeId, InterpretError> {
        if self.nodes.len() >= MAX_NODES {
            return Err(InterpretError::LimitExceeded(format!(
                "a transaction may have at most {MAX_NODES} nodes"
            )));
        }
        Ok(self.nodes.len())
    }

    /// Creates a contract of `t` with payload `argument` under `authorizers`.
    pub(super) fn create(
        &mut self,
        t: &Template,
        argument: Value,
        authorizers: &BTreeSet<Party>,
    ) -> Result<(NodeId, ContractId), InterpretError> {
        let site = Site {
            template: &t.id,
            choice: None,
        };
        let env = record_env(&argument);
        if let Some(ensure) = &t.ensure {
            if !site.eval_bool("ensure", ensure, &env)? {
                return Err(InterpretError::PreconditionFailed(format!(
                    "template precondition `{}` of {} is false",
                    ensure.text, t.id
                )));
            }
        }
        let signatories = site.parties("signatories", &t.signatories, &env)?;
        let observers = site.parties("observers", &t.observers, &env)?;
        if signatories.is_empty() {
            return Err(InterpretError::PreconditionFailed(format!(
                "a contract of {} needs at least one signatory",
                t.id
            )));
        }
        let key = self.eval_key(t, &site, &env, &signatories)?;
        let node_id = self.next_node()?;
        auth::authorize(
            node_id,
            || format!("create of {}", t.id),
            &signatories,
            authorizers,
        )?;
        if let Some(k) = &key {
            let gk = GlobalKey::new(&t.id, k.value.clone());
            if self.resolve_key(&gk).is_ok() {
                return Err(InterpretError::DuplicateKey {
                    template: t.id.to_string(),
                    key: k.value.to_string(),
                });
            }
        }
        let id = ContractId::derive(self.seed, node_id as u32);
        let contract = Arc::new(Contract {
            id: id.clone(),
            template_id: t.id.clone(),
            argument,
            signatories,
            observers,
            key,
        });
        if let Some(gk) = contract.global_key() {
            self.keys.insert(gk, Some(id.clone()));
        }
        self.local.insert(id.clone(), contract.clone());
        self.nodes.push(Node {
            informees: auth::create_informees(&contract.signatories, &contract.observers),
            confirming_parties: contract.signatories.clone(),
            required_authorizers: contract.signatories.clone(),
            consumed: Vec::new(),
            created: vec![id.clone()],
            children: Vec::new(),
            kind: NodeKind::Create { contract },
        });
        Ok((node_id, id))
    }

    fn eval_key(
        &self,
        t: &Template,
        site: &Site<'_>,
        env: &Env,
        signatories: &BTreeSet<Party>,
    ) -> Result<Option<ContractKey>, InterpretError> {
        let Some(k) = &t.key else { return Ok(None) };
        let value = site.eval("key", &k.value, env)?;
        let maintainers = site.parties("maintainers", &k.maintainers, env)?;
        if maintainers.is_empty() || !maintainers.is_subset(signatories) {
            return Err(InterpretError::PreconditionFailed(format!(
                "the key maintainers of a contract of {} must be a non-empty subset of its signatories, got {}",
                t.id,
                auth::list(&maintainers)
            )));
        }
        Ok(Some(ContractKey { value, maintainers }))
    }

    /// Finds an active contract the submitters may use.
    pub(super) fn contract(&mut self, id: &ContractId) -> Result<Arc<Contract>, InterpretError> {
        if let Some(&node) = self.consumed.get(id) {
            return Err(InterpretError::ContractNotActive {
                contract: id.clone(),
                node,
            });
        }
        if let Some(c) = self.local.get(id) {
            return Ok(c.clone());
        }
        let c = self
            .lookup
            .contract(id)
            .ok_or_else(|| InterpretError::ContractNotFound(id.clone()))?;
        if !self.submitters.can_see(&c.stakeholders()) {
            return Err(InterpretError::ContractNotVisible {
                contract: id.clone(),
            });
        }
        if self.input_ids.insert(id.clone()) {
            self.inputs.push(c.clone());
        }
        Ok(c)
    }

    pub(super) fn expect_template(
        contract: &Contract,
        expected: Option<&TemplateId>,
    ) -> Result<(), InterpretError> {
        match expected {
            Some(e) if !e.same_qualified_name(&contract.template_id) => {
                Err(InterpretError::WrongTemplate {
                    contract: contract.id.clone(),
                    expected: e.to_string(),
                    actual: contract.template_id.to_string(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Exercises `choice` on contract `id` under `authorizers`; returns the node.
    pub(super) fn exercise(
        &mut self,
        expected: Option<&TemplateId>,
        id: &ContractId,
        choice: &str,
        argument: Value,
        authorizers: &BTreeSet<Party>,
        by_key: bool,
    ) -> Result<NodeId, InterpretError> {
        let contract = self.contract(id)?;
        Self::expect_template(&contract, expected)?;
        let packages = self.packages;
        let template = packages
            .template_by_id(&contract.template_id)
            .ok_or_else(|| {
                crate::model::package::LookupError::TemplateNotFound(
                    contract.template_id.to_string(),
                )
            })?;
        let c = packages.choice(template, choice)?;
        check_choice_argument(choice, c, &argument, packages)?;
        let site = Site {
            template: &template.id,
            choice: Some(choice),
        };
        let mut env = record_env(&contract.argument);
        if let Value::Record(r) = &argument {
            env.vars.extend(r.fields.iter().cloned());
        }
        let actors = site.parties("controllers", &c.controllers, &env)?;
        let node_id = self.next_node()?;
        let describe = || format!("exercise of {choice} on {} {id}", template.id);
        if actors.is_empty() {
            return Err(InterpretError::PreconditionFailed(format!(
                "{}: the controllers are empty",
                describe()
            )));
        }
        auth::authorize(node_id, describe, &actors, authorizers)?;
        if let Some(ensure) = &c.ensure {
            if !site.eval_bool("ensure", ensure, &env)? {
                return Err(InterpretError::PreconditionFailed(format!(
                    "choice precondition `{}` of {choice} on {} is false",
                    ensure.text, template.id
                )));
            }
        }
        self.enter()?;
        self.push_exercise(&contract, c, argument, &actors, by_key);
        env.push(Arc::from(SELF), Value::ContractId(id.clone()));
        let inner: BTreeSet<Party> = contract.signatories.union(&actors).cloned().collect();
        let children = self.body(c, &site, env, &inner)?;
        self.finish_exercise(node_id, children, c.consuming.then(|| id.clone()));
        self.depth -= 1;
        Ok(node_id)
    }

    /// Appends the exercise node (before its children, which the body appends) and marks a
    /// consumed contract, and its key, inactive before the body runs, as Daml does.
    fn push_exercise(
        &mut self,
        contract: &Contract,
        c: &Choice,
        argument: Value,
        actors: &BTreeSet<Party>,
        by_key: bool,
    ) {
        let node_id = self.nodes.len();
        let stakeholders = contract.stakeholders();
        self.nodes.push(Node {
            informees: auth::exercise_informees(
                c.consuming,
                &contract.signatories,
                &stakeholders,
                actors,
            ),
            confirming_parties: auth::confirming_parties(&contract.signatories, actors),
            required_authorizers: actors.clone(),
            consumed: Vec::new(),
            created: Vec::new(),
            children: Vec::new(),
            kind: NodeKind::Exercise {
                contract_id: contract.id.clone(),
                template_id: contract.template_id.clone(),
                choice: c.name.clone(),
                argument,
                actors: actors.clone(),
                consuming: c.consuming,
                signatories: contract.signatories.clone(),
                stakeholders,
                by_key,
            },
        });
        if c.consuming {
            self.consumed.insert(contract.id.clone(), node_id);
            if let Some(gk) = contract.global_key() {
                self.keys.insert(gk, None);
            }
        }
    }

    fn enter(&mut self) -> Result<(), InterpretError> {
        if self.depth >= MAX_DEPTH {
            return Err(InterpretError::LimitExceeded(format!(
                "exercises may nest at most {MAX_DEPTH} deep"
            )));
        }
        self.depth += 1;
        Ok(())
    }

    fn finish_exercise(
        &mut self,
        node_id: NodeId,
        children: Vec<NodeId>,
        consumed_self: Option<ContractId>,
    ) {
        let mut consumed: Vec<ContractId> = consumed_self.into_iter().collect();
        let mut created = Vec::new();
        for &child in &children {
            if let Some(n) = self.nodes.get(child) {
                consumed.extend(n.consumed.iter().cloned());
                created.extend(n.created.iter().cloned());
            }
        }
        if let Some(n) = self.nodes.get_mut(node_id) {
            n.children = children;
            n.consumed = consumed;
            n.created = created;
        }
    }
}
