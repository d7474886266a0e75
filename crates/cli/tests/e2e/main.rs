//! End-to-end tests: real PostgreSQL (the testbed's shared cluster, one per
//! test binary), Portcullis in-process or as the real binary, and real
//! clients (tokio-postgres, psql, pgbench, raw protocol bytes).

mod harness;
mod raw;

mod approvals;
mod approvals_dry_run;
mod audit;
mod audit_cli;
mod audit_forward;
mod audit_shared;
mod auth;
mod basic;
mod catalog;
mod certificates;
mod control_store;
mod copy;
mod databases;
mod default_row_limit;
mod discover;
mod human_login;
mod keys;
mod lexing;
mod lifecycle;
mod limits;
mod masking;
mod masking_corpus;
mod masking_strict;
mod oidc;
mod policy;
mod profiles;
mod protocol;
mod row_limit;
mod rows_changed;
mod rows_returned;
mod session_identity;
mod shapes;
mod soundness;
mod startup;
mod streaming;
mod tls;
mod tools;
mod wildcard;
