//! The policy engine: loads and checks policies, then judges statements.
//!
//! Loading is strict so that mistakes surface at `policy check` or reload
//! time, never as a surprise at statement time: policies must parse, pass
//! Cedar's strict validation against the Portcullis schema, and follow the
//! annotation rules below. A reload that fails keeps the old engine.
//!
//! Annotation rules:
//! - every policy has a unique `@id`, which decisions name;
//! - every `forbid` has a `@message` (shown to the client) and may have a
//!   `@hint`;
//! - `@approvers("group")` makes a forbid an approval rule; it is only
//!   allowed on a forbid that ends in `unless { context.approved }`, so an
//!   approved statement is no longer caught by it.
//!
//! Unmasking ([`PolicyEngine::may_unmask`]) is decided by its own slice of
//! the policies: the permits whose action scope names the Unmask action and
//! every forbid that can match it. See [`counts_for_unmask`].

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{
    ActionConstraint, AuthorizationError, Authorizer, Context, Effect, Policy, PolicyId, PolicySet,
    Response, ValidationMode, Validator,
};
use miette::Diagnostic;

use crate::action::Action;
use crate::bundle::{default_bundle, read_policy_files, PolicySource};
use crate::cache::{DecisionCache, UnmaskCache};
use crate::decision::{
    Approval, Decided, Decision, Denial, DenyCause, INVALID_REQUEST_ID, NO_PERMIT_ID,
};
use crate::error::{line_column, LoadError, Problem};
use crate::explain::{Evaluation, Explanation};
use crate::needs::PolicyNeeds;
use crate::request::{Principal, Request, RequestContext, ResourceRef, TargetRef};
use crate::schema::Vocabulary;
use crate::translate::{unmask_request, Call, Translated};

/// Loaded, validated policies, ready to judge statements. Immutable and
/// `Send + Sync`: share one behind an `Arc` and swap it whole on reload.
pub struct PolicyEngine {
    vocab: Vocabulary,
    /// Indexed by [`Action::index`]: the policies whose action scope admits
    /// that action. Cedar evaluates every policy in the set it is given, so
    /// handing it only those that can apply (3 of the default bundle's 9
    /// for a SELECT) cuts the cost of a decision without changing it.
    by_action: Vec<PolicySet>,
    /// In load order: the order decisions prefer when several policies
    /// deny a statement.
    infos: Vec<PolicyInfo>,
    by_id: HashMap<PolicyId, usize>,
    warnings: Vec<Problem>,
    authorizer: Authorizer,
    needs: PolicyNeeds,
    /// `needs.reads("time")`, asked for every statement judged.
    reads_time: bool,
    cache: DecisionCache,
    /// The policies that decide unmasking ([`counts_for_unmask`]), what
    /// they read, and whether any of them is a permit (if none is, nobody
    /// may unmask and Cedar need not be asked).
    unmask: PolicySet,
    unmask_needs: PolicyNeeds,
    unmask_permitted: bool,
    unmask_cache: UnmaskCache,
    /// See [`PolicyEngine::bundle_hash`].
    bundle_hash: String,
}

/// SHA-256 over each source's name and text, length-prefixed so that no
/// two bundles share an encoding; hex.
fn bundle_digest(sources: &[PolicySource]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"portcullis-policy-bundle/v1\0");
    for s in sources {
        for part in [s.name.as_bytes(), s.text.as_bytes()] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Decisions cached per engine unless [`PolicyEngine::with_cache_capacity`]
/// says otherwise; about 0.5 KiB each.
pub const DEFAULT_CACHE_CAPACITY: usize = 8192;

/// What `policy check` and explanations show about one policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    pub id: String,
    pub effect: PolicyEffect,
    pub message: Option<String>,
    pub hint: Option<String>,
    /// Set on approval rules.
    pub approvers: Option<String>,
    pub file: String,
    pub line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyEffect {
    Permit,
    Forbid,
}

impl PolicyEngine {
    /// The built-in default bundle (the files in `policies/`).
    pub fn default_bundle() -> Result<Self, LoadError> {
        Self::from_sources(default_bundle())
    }

    /// Policies from files and directories; see [`read_policy_files`].
    /// The default bundle is not added: operators start from a copy of it.
    pub fn from_paths<P: AsRef<Path>>(paths: &[P]) -> Result<Self, LoadError> {
        Self::from_sources(read_policy_files(paths)?)
    }

    pub fn from_sources(sources: Vec<PolicySource>) -> Result<Self, LoadError> {
        let vocab = Vocabulary::load()?;
        let mut loader = Loader::default();
        for (i, source) in sources.iter().enumerate() {
            loader.add_source(i, source);
        }
        let Loader {
            mut problems,
            policies,
            infos,
            by_id,
            locations,
        } = loader;
        if problems.is_empty() && infos.is_empty() {
            problems.push(Problem {
                file: sources
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                line: None,
                column: None,
                policy: None,
                message: "no policies found; every statement would be denied".into(),
                help: Some("start from a copy of the default bundle".into()),
            });
        }
        if !problems.is_empty() {
            return Err(LoadError::Invalid(problems));
        }

        // Strict validation: policies must type-check against the schema,
        // so a misspelled attribute is a load error, not a forbid that
        // silently never applies.
        let result =
            Validator::new(vocab.schema.clone()).validate(&policies, ValidationMode::Strict);
        let locate = |policy: &PolicyId, diag: &dyn Diagnostic, message: String| {
            let at = by_id[policy];
            let source = &sources[locations[at]];
            let offset = diag
                .labels()
                .and_then(|mut labels| labels.next())
                .map(|l| l.offset());
            let (line, column) = match offset {
                Some(o) => {
                    let (l, c) = line_column(&source.text, o);
                    (l, Some(c))
                }
                None => (infos[at].line, None),
            };
            Problem {
                file: source.name.clone(),
                line: Some(line),
                column,
                policy: Some(infos[at].id.clone()),
                message,
                help: diag.help().map(|h| h.to_string()),
            }
        };
        let problems = dedup(
            result
                .validation_errors()
                .map(|e| locate(e.policy_id(), e, tidy(&e.to_string()))),
        );
        if !problems.is_empty() {
            return Err(LoadError::Invalid(problems));
        }
        let mut warnings = dedup(
            result
                .validation_warnings()
                .map(|w| locate(w.policy_id(), w, tidy(&w.to_string()))),
        );
        if !infos.iter().any(|i| i.effect == PolicyEffect::Permit) {
            warnings.push(Problem {
                file: sources[0].name.clone(),
                line: None,
                column: None,
                policy: None,
                message: "there is no permit policy, so every statement will be denied".into(),
                help: None,
            });
        }
        // Statements carry no classification (""), so a rule about one that
        // cannot apply to Unmask never sees a real class: say so rather
        // than let it silently never match.
        for p in policies.policies() {
            if reads_classification(p) && !counts_for_unmask(p, &vocab) {
                let info = &infos[by_id[p.id()]];
                warnings.push(Problem {
                    file: info.file.clone(),
                    line: Some(info.line),
                    column: None,
                    policy: Some(info.id.clone()),
                    message: "reads resource.classification, which is \"\" when statements \
                              are judged; classifications are only set for Unmask"
                        .into(),
                    help: Some(
                        "name Portcullis::Action::\"Unmask\" in the action scope to decide \
                         who sees the column unmasked"
                            .into(),
                    ),
                });
            }
        }

        let subset = |keep: &dyn Fn(&Policy) -> bool| {
            let mut set = PolicySet::new();
            for p in policies.policies().filter(|p| keep(p)) {
                set.add(p.clone()).expect("ids are unique in the full set");
            }
            set
        };
        let by_action: Vec<PolicySet> = Action::ALL
            .iter()
            .map(|&action| subset(&|p| admits(&p.action_constraint(), &vocab, action)))
            .collect();
        // What statements need is read from the policies that can judge
        // statements: a policy about unmasking alone that mentions
        // `resource` must not make every statement cost one Cedar
        // evaluation per object.
        let needs = PolicyNeeds::of(&subset(&|p| {
            Action::ALL
                .iter()
                .any(|&a| admits(&p.action_constraint(), &vocab, a))
        }));
        let unmask = subset(&|p| counts_for_unmask(p, &vocab));
        let unmask_needs = PolicyNeeds::of(&unmask);
        let unmask_permitted = unmask.policies().any(|p| p.effect() == Effect::Permit);
        let bundle_hash = bundle_digest(&sources);
        Ok(PolicyEngine {
            bundle_hash,
            cache: DecisionCache::new(DEFAULT_CACHE_CAPACITY, &needs),
            reads_time: needs.reads("time"),
            needs,
            unmask_cache: UnmaskCache::new(DEFAULT_CACHE_CAPACITY, &unmask_needs),
            unmask_permitted,
            unmask,
            unmask_needs,
            vocab,
            by_action,
            infos,
            by_id,
            warnings,
            authorizer: Authorizer::new(),
        })
    }

    /// Replaces the decision cache with one of `entries` (0: no cache).
    /// Unmask answers get a cache of the same size.
    pub fn with_cache_capacity(mut self, entries: usize) -> Self {
        self.cache = DecisionCache::new(entries, &self.needs);
        self.unmask_cache = UnmaskCache::new(entries, &self.unmask_needs);
        self
    }

    /// The policies, in load order.
    pub fn policies(&self) -> &[PolicyInfo] {
        &self.infos
    }

    /// Cedar's validation warnings (e.g. confusable Unicode), and a
    /// bundle without any permit. They do not stop loading.
    pub fn warnings(&self) -> &[Problem] {
        &self.warnings
    }

    /// Whether some policy reads the time of day: then the same statement
    /// may be decided differently from one minute to the next, and a
    /// decision must not be remembered across requests.
    pub fn reads_time(&self) -> bool {
        self.reads_time
    }

    /// Whether some policy deciding unmasking reads the time of day: then
    /// an answer of [`PolicyEngine::may_unmask`] holds for the minute it
    /// was given in, and a masking plan must not be remembered across
    /// result sets.
    pub fn unmask_reads_time(&self) -> bool {
        self.unmask_needs.reads("time")
    }

    /// May `principal` see the values of `column`, classified
    /// `classification` (a masking class name: `"email"`,
    /// `"password_hash"`...), unmasked, on `target`? This is the Cedar
    /// request `Portcullis::Action::"Unmask"` on the `Column` with that
    /// `classification`, in `context` (its time, client address and row
    /// limit; `approved` is ignored: unmasking has no approval workflow).
    ///
    /// No by default: only a permit whose action scope names Unmask can
    /// allow it, so the base `permit(principal, action, resource)` of the
    /// default bundle does not, and any forbid that matches (blanket ones
    /// included) blocks it. A forbid that fails to evaluate blocks it too.
    /// `column` must be a [`ResourceRef::Column`]; anything else is never
    /// unmasked. Answers are cached per engine.
    pub fn may_unmask(
        &self,
        principal: &Principal,
        target: &TargetRef,
        context: &RequestContext,
        column: &ResourceRef,
        classification: &str,
    ) -> bool {
        if !self.unmask_permitted || !matches!(column, ResourceRef::Column { .. }) {
            return false;
        }
        let key = self
            .unmask_cache
            .key(principal, target, context, column, classification);
        if let Some(answer) = key.as_ref().and_then(|k| self.unmask_cache.get(k)) {
            return answer;
        }
        let answer = self.judge_unmask(principal, target, context, column, classification);
        if let Some(key) = key {
            self.unmask_cache.insert(key, answer);
        }
        answer
    }

    fn judge_unmask(
        &self,
        principal: &Principal,
        target: &TargetRef,
        context: &RequestContext,
        column: &ResourceRef,
        classification: &str,
    ) -> bool {
        let Ok((request, entities)) = unmask_request(
            &self.vocab,
            principal,
            target,
            context,
            column,
            classification,
            &self.unmask_needs,
        ) else {
            return false;
        };
        let response = self
            .authorizer
            .is_authorized(&request, &self.unmask, &entities);
        // Cedar skips a policy that fails to evaluate: for a forbid that
        // could unmask what it was written to keep masked, so fail closed.
        let errored_forbid = self
            .ordered(response.diagnostics().errors().map(|e| {
                let AuthorizationError::PolicyEvaluationError(e) = e;
                e.policy_id()
            }))
            .into_iter()
            .any(|i| i.effect == PolicyEffect::Forbid);
        !errored_forbid && response.decision() == cedar_policy::Decision::Allow
    }

    /// The decision for one statement.
    pub fn decide(&self, req: &Request) -> Decision {
        self.decided(req).decision
    }

    /// The decision for one statement with the policies that made it.
    pub fn decided(&self, req: &Request) -> Decided {
        if let Some(d) = self.cache.get(req) {
            return d;
        }
        let mut permits = Vec::new();
        let decision = self.judge(req, None, Some(&mut permits));
        let policies: Arc<[String]> = match decision.policy() {
            Some(p) => Arc::from([p.to_owned()]),
            None => {
                permits.sort_unstable();
                permits.dedup();
                permits
                    .into_iter()
                    .map(|i| self.infos[i].id.clone())
                    .collect()
            }
        };
        let d = Decided { decision, policies };
        self.cache.insert(req, &d);
        d
    }

    /// A digest of the policies in force (their ids, effects and source
    /// text, in load order): what the audit trail records so that a
    /// decision can be tied to the exact bundle that made it.
    pub fn bundle_hash(&self) -> &str {
        &self.bundle_hash
    }

    /// The decision with the Cedar requests made, the policies that decided
    /// each, and the facts they saw; for `portcullis policy explain`.
    pub fn explain(&self, req: &Request) -> Explanation {
        let mut evaluations = Vec::new();
        let decision = self.judge(req, Some(&mut evaluations), None);
        Explanation::new(req, decision, evaluations)
    }

    /// `permits`, when given, collects the indexes (in `infos`) of the
    /// permits that allowed each request.
    fn judge(
        &self,
        req: &Request,
        mut trace: Option<&mut Vec<Evaluation>>,
        mut permits: Option<&mut Vec<usize>>,
    ) -> Decision {
        let translated = match Translated::new(&self.vocab, req, &self.needs) {
            Ok(t) => t,
            Err(_) => return invalid_request(req),
        };
        // Contexts differ only by has_effective_where: build each once.
        let mut contexts: [Option<Context>; 2] = [None, None];
        let mut worst: Option<(u8, Decision)> = None;
        for call in &translated.calls {
            let slot = &mut contexts[usize::from(call.has_effective_where)];
            if slot.is_none() {
                match translated.context(call.has_effective_where, req.context.approved) {
                    Ok(c) => *slot = Some(c),
                    Err(_) => return invalid_request(req),
                }
            }
            let context = slot.clone().expect("filled above");
            let response = match self.authorize(&translated, call, context) {
                Ok(r) => r,
                Err(_) => return invalid_request(req),
            };
            let decision = self.classify(&translated, call, &response, req.context.approved);
            if let (Decision::Allow, Some(permits)) = (&decision, permits.as_deref_mut()) {
                permits.extend(
                    response
                        .diagnostics()
                        .reason()
                        .filter_map(|id| self.by_id.get(id).copied()),
                );
            }
            if let Some(trace) = trace.as_deref_mut() {
                trace.push(Evaluation::new(
                    call,
                    &response,
                    &decision,
                    &self.ordered_ids(&response),
                ));
            }
            let rank = decision.severity();
            worst = Some(match worst {
                None => (rank, decision),
                Some((_, w)) => {
                    let d = w.together(decision);
                    (d.severity(), d)
                }
            });
            // An explicit denial cannot be outranked; unless we are
            // explaining, the remaining requests cannot change the answer.
            if rank == FORBIDDEN && trace.is_none() {
                break;
            }
        }
        worst.map_or(Decision::Allow, |(_, d)| d)
    }

    fn authorize(&self, t: &Translated, call: &Call, context: Context) -> Result<Response, String> {
        let request = cedar_policy::Request::new(
            t.principal.clone(),
            self.vocab.action(call.action).clone(),
            call.resource.clone(),
            context,
            // The request is built from the schema's own names; validating it
            // again on every statement would only cost time. Tests build
            // requests with the schema to prove they conform.
            None,
        )
        .map_err(|e| e.to_string())?;
        Ok(self.authorizer.is_authorized(
            &request,
            &self.by_action[call.action.index()],
            &t.entities,
        ))
    }

    /// One Cedar response as a Portcullis decision.
    fn classify(
        &self,
        t: &Translated,
        call: &Call,
        response: &Response,
        approved: bool,
    ) -> Decision {
        let deny = |info: &PolicyInfo, cause| {
            Decision::Deny(Denial {
                policy: info.id.clone(),
                message: match cause {
                    DenyCause::EvaluationError => {
                        "the policy could not be evaluated for this statement".into()
                    }
                    _ => info.message.clone().unwrap_or_default(),
                },
                hint: match cause {
                    DenyCause::EvaluationError => None,
                    _ => info.hint.clone(),
                },
                cause,
                action: call.action,
                object: call.object.clone(),
            })
        };

        // Cedar skips a policy whose evaluation fails. For a permit that
        // only withholds permission; for a forbid it could let the
        // statement through, so fail closed.
        let errored_forbid = self
            .ordered(response.diagnostics().errors().map(|e| {
                let AuthorizationError::PolicyEvaluationError(e) = e;
                e.policy_id()
            }))
            .into_iter()
            .find(|i| i.effect == PolicyEffect::Forbid);
        if let Some(info) = errored_forbid {
            return deny(info, DenyCause::EvaluationError);
        }
        if response.decision() == cedar_policy::Decision::Allow {
            return Decision::Allow;
        }
        let reasons = self.ordered(response.diagnostics().reason());
        let Some(first) = reasons.first() else {
            return Decision::Deny(Denial {
                policy: NO_PERMIT_ID.into(),
                message: format!("no policy allows {} statements here", call.action),
                hint: Some("ask the Portcullis administrator for a policy that permits it".into()),
                cause: DenyCause::NoPermit,
                action: call.action,
                object: call.object.clone(),
            });
        };
        if let Some(hard) = reasons.iter().find(|i| i.approvers.is_none()) {
            return deny(hard, DenyCause::Forbidden);
        }
        // Only approval rules applied: of one group, or the statement is
        // denied (see `Decision::together`).
        let groups: Vec<&str> = reasons
            .iter()
            .filter_map(|i| i.approvers.as_deref())
            .collect();
        if groups.iter().any(|g| *g != groups[0]) {
            return crate::decision::several_groups(
                &Approval {
                    policy: first.id.clone(),
                    approvers: groups[0].to_owned(),
                    message: first.message.clone().unwrap_or_default(),
                    hint: first.hint.clone(),
                    action: call.action,
                    object: call.object.clone(),
                },
                &groups,
            );
        }
        // Approval helps only if the statement would then pass, so ask
        // Cedar again as if it were approved.
        if approved {
            // Unreachable with the load-time check that approval rules end
            // in `unless { context.approved }`; deny rather than loop.
            return deny(first, DenyCause::Forbidden);
        }
        let retry = t
            .context(call.has_effective_where, true)
            .and_then(|c| self.authorize(t, call, c));
        match retry {
            Ok(r) if r.decision() == cedar_policy::Decision::Allow => {
                Decision::RequiresApproval(Approval {
                    policy: first.id.clone(),
                    approvers: first.approvers.clone().unwrap_or_default(),
                    message: first.message.clone().unwrap_or_default(),
                    hint: first.hint.clone(),
                    action: call.action,
                    object: call.object.clone(),
                })
            }
            Ok(r) => self.classify(t, call, &r, true),
            Err(_) => Decision::Deny(Denial {
                policy: INVALID_REQUEST_ID.into(),
                message: "the statement could not be judged".into(),
                hint: None,
                cause: DenyCause::InvalidRequest,
                action: call.action,
                object: call.object.clone(),
            }),
        }
    }

    /// Policy infos for Cedar's ids, in load order.
    fn ordered<'a>(&self, ids: impl Iterator<Item = &'a PolicyId>) -> Vec<&PolicyInfo> {
        let mut at: Vec<usize> = ids.filter_map(|id| self.by_id.get(id).copied()).collect();
        at.sort_unstable();
        at.into_iter().map(|i| &self.infos[i]).collect()
    }

    fn ordered_ids(&self, response: &Response) -> Vec<String> {
        self.ordered(response.diagnostics().reason())
            .into_iter()
            .map(|i| i.id.clone())
            .collect()
    }
}

const FORBIDDEN: u8 = 3;

/// How strongly a per-request decision decides the statement: any deny
/// beats approval (approving would not help), an explicit or failed forbid
/// beats a missing permit (its message says more).
fn invalid_request(req: &Request) -> Decision {
    let first = req.statement.operations.first();
    Decision::Deny(Denial {
        policy: INVALID_REQUEST_ID.into(),
        message: "the statement could not be judged".into(),
        hint: None,
        cause: DenyCause::InvalidRequest,
        action: first.map_or(Action::Utility, |o| o.action),
        object: None,
    })
}

/// Accumulates policies file by file, collecting every problem.
#[derive(Default)]
struct Loader {
    problems: Vec<Problem>,
    policies: PolicySet,
    infos: Vec<PolicyInfo>,
    by_id: HashMap<PolicyId, usize>,
    /// Index of the source each policy came from, parallel to `infos`.
    locations: Vec<usize>,
}

impl Loader {
    fn add_source(&mut self, source_index: usize, source: &PolicySource) {
        let parsed = match PolicySet::from_str(&source.text) {
            Ok(p) => p,
            Err(errors) => {
                for e in errors.iter() {
                    let offset = e.labels().and_then(|mut l| l.next()).map(|l| l.offset());
                    let (line, column) = offset
                        .map(|o| line_column(&source.text, o))
                        .map_or((None, None), |(l, c)| (Some(l), Some(c)));
                    self.problems.push(Problem {
                        file: source.name.clone(),
                        line,
                        column,
                        policy: None,
                        message: e.to_string(),
                        help: e.help().map(|h| h.to_string()),
                    });
                }
                return;
            }
        };
        let mut items: Vec<(usize, Option<&Policy>, String)> = parsed
            .policies()
            .map(|p| (position(p.id()), Some(p), p.to_cedar().unwrap_or_default()))
            .chain(
                parsed
                    .templates()
                    .map(|t| (position(t.id()), None, t.to_string())),
            )
            .collect();
        // Cedar numbers policies policy0, policy1, ... in text order; find
        // each one's text after the previous one's to get its line.
        items.sort_by_key(|(n, _, _)| *n);
        let mut cursor = 0;
        for (_, policy, text) in items {
            let offset = source.text[cursor..]
                .find(&text)
                .map_or(cursor, |i| cursor + i);
            cursor = offset + text.len().min(source.text.len() - offset);
            let (line, column) = line_column(&source.text, offset);
            let at = |policy: Option<&str>, (message, help): Complaint| Problem {
                file: source.name.clone(),
                line: Some(line),
                column: Some(column),
                policy: policy.map(str::to_owned),
                message,
                help: help.map(str::to_owned),
            };
            let Some(policy) = policy else {
                self.problems.push(at(
                    None,
                    (
                        "templates (policies with ?principal or ?resource) are not supported"
                            .into(),
                        Some("write the principal or resource out"),
                    ),
                ));
                continue;
            };
            let Some(id) = policy.annotation("id").map(str::to_owned) else {
                self.problems.push(at(
                    None,
                    (
                        "policy has no @id annotation".into(),
                        Some("add @id(\"a-unique-name\") above it; decisions name policies by it"),
                    ),
                ));
                continue;
            };
            let cedar_id = PolicyId::new(&id);
            let mut complaints = check_annotations(policy, &id);
            if let Some(&other) = self.by_id.get(&cedar_id) {
                let first = &self.infos[other];
                complaints.push((
                    format!(
                        "duplicate @id (first used at {}:{})",
                        first.file, first.line
                    ),
                    None,
                ));
            }
            if complaints.is_empty() {
                if let Err(e) = self.policies.add(policy.new_id(cedar_id.clone())) {
                    complaints.push((e.to_string(), None));
                }
            }
            if !complaints.is_empty() {
                self.problems
                    .extend(complaints.into_iter().map(|c| at(Some(&id), c)));
                continue;
            }
            self.by_id.insert(cedar_id, self.infos.len());
            self.locations.push(source_index);
            self.infos.push(PolicyInfo {
                id,
                effect: effect(policy),
                message: policy.annotation("message").map(str::to_owned),
                hint: policy.annotation("hint").map(str::to_owned),
                approvers: policy.annotation("approvers").map(str::to_owned),
                file: source.name.clone(),
                line,
            });
        }
    }
}

/// A problem's message and help, before it is located.
type Complaint = (String, Option<&'static str>);

fn effect(policy: &Policy) -> PolicyEffect {
    match policy.effect() {
        Effect::Permit => PolicyEffect::Permit,
        Effect::Forbid => PolicyEffect::Forbid,
    }
}

/// The annotation rules in the module comment.
fn check_annotations(policy: &Policy, id: &str) -> Vec<Complaint> {
    let mut complaints = Vec::new();
    if id.trim().is_empty() || id.chars().any(char::is_control) {
        complaints.push((
            "@id must be a non-empty name without control characters".into(),
            None,
        ));
    }
    if id == NO_PERMIT_ID || id == INVALID_REQUEST_ID {
        complaints.push((
            format!("@id {id:?} is reserved by Portcullis"),
            Some("choose another name"),
        ));
    }
    let forbid = effect(policy) == PolicyEffect::Forbid;
    let message = policy.annotation("message");
    if forbid && message.is_none_or(|m| m.trim().is_empty()) {
        complaints.push((
            "forbid policy has no @message".into(),
            Some("add @message(\"...\"): it is what the client is told"),
        ));
    }
    if let Some(group) = policy.annotation("approvers") {
        if !forbid {
            complaints.push((
                "@approvers is only meaningful on a forbid policy".into(),
                Some("approval rules are forbids that approval lifts"),
            ));
        } else if !has_unless_approved(policy) {
            complaints.push((
                "an approval rule (@approvers) must end in `unless { context.approved }`".into(),
                Some("without it an approved statement would still be refused"),
            ));
        }
        if group.trim().is_empty() {
            complaints.push(("@approvers must name a group".into(), None));
        }
    }
    complaints
}

/// The number in Cedar's generated id `policyN`.
fn position(id: &PolicyId) -> usize {
    id.to_string()
        .strip_prefix("policy")
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX)
}

/// Cedar validates a policy once per action it may apply to and words each
/// error with the action and the policy id. The problem already names the
/// policy, and one typo should be one problem, not nineteen.
fn tidy(message: &str) -> String {
    let mut m = message.to_owned();
    if m.starts_with("for policy `") {
        if let Some(end) = m.find("`, ") {
            m.replace_range(..end + 3, "");
        }
    }
    const ACTION: &str = " for Portcullis::Action::\"";
    while let Some(at) = m.find(ACTION) {
        let rest = at + ACTION.len();
        match m[rest..].find('"') {
            Some(end) => m.replace_range(at..rest + end + 1, ""),
            None => break,
        }
    }
    m
}

fn dedup(problems: impl Iterator<Item = Problem>) -> Vec<Problem> {
    let mut out: Vec<Problem> = Vec::new();
    for p in problems {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// Whether a policy takes part in unmask decisions. A permit must name the
/// Unmask action in its scope (`action == Portcullis::Action::"Unmask"`,
/// `action in [..., Portcullis::Action::"Unmask"]`): a permit with an
/// unconstrained action scope is written for statements, and the default
/// bundle's `permit(principal, action, resource)` must not reveal every
/// column to everyone. A forbid counts whenever its scope can match Unmask,
/// unconstrained ones included, so a blanket forbid (`forbid(principal is
/// Portcullis::Agent, action, resource)`) keeps masked data masked too.
/// Unmask is in no action group, so `action in Portcullis::Action::"Read"`
/// never matches it.
fn counts_for_unmask(policy: &Policy, vocab: &Vocabulary) -> bool {
    match policy.action_constraint() {
        ActionConstraint::Any => policy.effect() == Effect::Forbid,
        ActionConstraint::Eq(x) => x == vocab.unmask,
        ActionConstraint::In(xs) => xs.contains(&vocab.unmask),
    }
}

/// Whether a policy reads `resource.classification` (or asks `resource has
/// classification`), found in Cedar's JSON form as `needs.rs` finds reads.
fn reads_classification(policy: &Policy) -> bool {
    policy.to_json().is_ok_and(|json| {
        serde_json::to_string(&json["conditions"]).is_ok_and(|conditions| {
            conditions.contains(r#"{"left":{"Var":"resource"},"attr":"classification"}"#)
        })
    })
}

/// Whether a policy's action scope can match `action`.
fn admits(constraint: &ActionConstraint, vocab: &Vocabulary, action: Action) -> bool {
    let uid = vocab.action(action);
    let ancestors = &vocab.action_ancestors[action.index()];
    match constraint {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(x) => x == uid,
        ActionConstraint::In(xs) => xs.iter().any(|x| x == uid || ancestors.contains(x)),
    }
}

/// Whether the policy has a clause that is exactly
/// `unless { context.approved }`. Checked on Cedar's JSON form, which is
/// stable and independent of spacing and comments.
fn has_unless_approved(policy: &Policy) -> bool {
    let Ok(json) = policy.to_json() else {
        return false;
    };
    let wanted = serde_json::json!({ ".": { "left": { "Var": "context" }, "attr": "approved" } });
    json["conditions"].as_array().is_some_and(|conds| {
        conds
            .iter()
            .any(|c| c["kind"] == "unless" && c["body"] == wanted)
    })
}
