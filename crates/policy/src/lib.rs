//! Portcullis policy decisions.
//!
//! Every statement a client sends is judged by Cedar policies: the proxy
//! describes the statement as a [`Request`] (who, which target, what the
//! statement analysis found, when and from where), and
//! [`PolicyEngine::decide`] answers [`Decision::Allow`], [`Decision::Deny`]
//! or [`Decision::RequiresApproval`]. Masking asks
//! [`PolicyEngine::may_unmask`] whether a principal may see a classified
//! column unmasked (by default nobody may). This crate does no network or
//! database I/O; it reads policy files and nothing else.
//!
//! - `schema`: the Cedar schema (entity types, actions, context), also in
//!   `policies/portcullis.cedarschema`;
//! - `action`: statement classes, one Cedar action each, and the unmask
//!   action;
//! - `request`: the proxy-facing input types;
//! - `translate`: Request → Cedar entities and requests;
//! - `bundle`: the built-in default bundle and reading policy files;
//! - `engine`: loading and checking policies, deciding;
//! - `needs`: which facts the loaded policies read;
//! - `cache`: the bounded decision cache;
//! - `decision`: what a decision carries and what a client may see;
//! - `explain`: why a decision was made, for operators;
//! - `test_file`: policy unit tests (`portcullis policy test`).
//!
//! The README in this crate is the user documentation of the schema, the
//! default bundle and the test file format.

mod action;
mod bundle;
mod cache;
mod decision;
mod engine;
mod error;
mod explain;
mod needs;
mod request;
mod schema;
mod test_file;
mod translate;

pub use action::{Action, UnknownAction, UNMASK_ACTION};
pub use bundle::{default_bundle, read_policy_files, PolicySource};
pub use decision::{
    Approval, Decided, Decision, Denial, DenyCause, Enforcement, INVALID_REQUEST_ID, NO_PERMIT_ID,
};
pub use engine::{PolicyEffect, PolicyEngine, PolicyInfo, DEFAULT_CACHE_CAPACITY};
pub use error::{LoadError, Problem};
pub use explain::{Evaluation, Explanation, Fact};
pub use request::{
    BadResourceName, Capability, Operation, Principal, PrincipalKind, Request, RequestContext,
    ResourceRef, StatementFacts, TargetRef, TimeOfDay, Weekday,
};
pub use schema::SCHEMA_TEXT;
pub use test_file::{
    run_policy_tests, run_policy_tests_with, CaseOutcome, CaseResult, Expectation,
    StatementAnalyzer, TestFileError, TestReport,
};
