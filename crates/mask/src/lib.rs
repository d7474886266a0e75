//! Masking, free of I/O: which columns hold what ([`Class`]), what in a
//! value looks sensitive (`detect`), and how each output column of a result
//! set is rewritten so that it stays a valid value of its type (plans and
//! value rewriters). The proxy asks for a plan per result set and hands it
//! values; nothing about masking lives in its pumps beyond that call.

pub mod class;
pub mod column;
pub mod copy;
pub mod detect;
pub mod dictionary;
pub mod error;
pub mod fuzzing;
pub mod plan;
pub mod strategy;
pub mod value;

mod array;
/// Proleptic Gregorian calendar arithmetic (also used by the CLI's time
/// arguments).
pub mod datetime;
mod inet;
mod keyed;
mod kind;
mod numeric;
mod scalar;
mod textmask;
mod validate;

pub use class::Class;
pub use column::{ColumnType, Format};
pub use copy::{CopyFormat, CopyKind, CopyRows};
pub use detect::{Detectors, Hit, HitTally};
pub use error::{MaskError, Unmaskable};
pub use plan::{ColumnSpec, MaskSettings, Masker, Plan, Rewrite, Rule};
pub use strategy::Strategy;
pub use value::{mask_value, Masked};
