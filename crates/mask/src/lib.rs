//! Masking, free of I/O: which columns hold what ([`Class`]), what in a
//! value looks sensitive (`detect`), and how each output column of a result
//! set is rewritten so that it stays a valid value of its type (plans and
//! value rewriters). The proxy asks for a plan per result set and hands it
//! values; nothing about masking lives in its pumps beyond that call.

pub mod class;
pub mod column;
pub mod detect;
pub mod dictionary;

pub use class::Class;
pub use column::{ColumnType, Format};
