//! The proxy's one call into masking: a plan per result set, applied to
//! each row on its way to the client.
//!
//! Every result set is described before its rows arrive: a Query's
//! statements send RowDescription themselves, and an Execute is preceded
//! by the client's Describe of its portal or one of the proxy's own (see
//! `client_pump`). The description names each column's table and
//! attribute (so no alias hides a column) and its format; the guard says
//! what each column is for this session (`portcullis_guard::masking`) and
//! the mask crate turns that into a plan. A result set whose plan masks
//! nothing takes the plain path: its rows are forwarded as they came, with
//! no lock, copy or allocation per row. A row that arrives with no
//! description before it is never forwarded.

use std::collections::HashMap;
use std::sync::Arc;

use portcullis_analysis::StatementFacts;
use portcullis_guard::{CopyColumn, Exposure, OutputColumn, PreparedText};
use portcullis_mask::{ColumnSpec, ColumnType, CopyKind, CopyRows, Format, Plan, Rewrite, Rule};
use portcullis_wire::{decode, sqlstate, Refusal};

use super::guarding::Guarded;
use super::pending::Rows;
use super::End;

/// How the rows of the current result set go out.
#[derive(Debug, Clone)]
enum Current {
    /// No result set is described: a row now is a protocol surprise.
    Undescribed,
    /// Nothing in them is masked.
    Pass,
    Mask(Arc<Plan>),
    /// A COPY TO STDOUT's rows, masked (each CopyData one row).
    Copy(Arc<Plan>, CopyRows),
}

/// What to do with one DataRow.
pub(crate) enum RowAction {
    Forward,
    /// The masked row was appended to the scratch buffer.
    Masked,
}

/// Plans remembered per session, by RowDescription bytes, while the
/// target's catalog stays the same. Only plans that depend on nothing but
/// the description are kept (no computed column).
const MAX_PLANS: usize = 256;

/// How many descriptions are compared byte for byte before the hash map.
const RECENT: usize = 8;

pub(crate) struct RowMasking {
    current: Current,
    /// The last few descriptions planned and their plans: a session
    /// cycling through a handful of statements compares bytes instead of
    /// hashing them.
    recent: Vec<(Box<[u8]>, Planned)>,
    /// Where the next description goes in `recent`.
    next_recent: usize,
    plans: HashMap<Box<[u8]>, Planned>,
    generation: u64,
    columns: Vec<OutputColumn>,
    exposures: Vec<Exposure>,
    specs: Vec<ColumnSpec>,
    copy_columns: Vec<CopyColumn>,
    /// The portal last described as returning no rows (NoData): a COPY
    /// its Execute starts sends the rows of that portal's statement.
    no_rows: Option<Rows>,
    /// What the current result set masks, for its outcome record: the
    /// classes of its protected columns (`derived` for values hidden
    /// whole) and the rows rewritten so far.
    masked_classes: Arc<[&'static str]>,
    masked_rows: u64,
}

/// What one result set masked.
#[derive(Debug, Default)]
pub(crate) struct Masked {
    /// Rows rewritten, per class of the columns masked in it.
    pub rows: std::collections::BTreeMap<String, u64>,
    /// Content-detector hits in scanned values, per entity class.
    pub hits: std::collections::BTreeMap<String, u64>,
}

/// A plan and the classes of the columns it masks.
type Planned = (Arc<Plan>, Arc<[&'static str]>);

impl RowMasking {
    pub fn new() -> RowMasking {
        RowMasking {
            current: Current::Undescribed,
            recent: Vec::new(),
            next_recent: 0,
            plans: HashMap::new(),
            generation: u64::MAX,
            columns: Vec::new(),
            exposures: Vec::new(),
            specs: Vec::new(),
            copy_columns: Vec::new(),
            no_rows: None,
            masked_classes: Arc::from([]),
            masked_rows: 0,
        }
    }

    /// What the result set just ended masked, for its outcome record;
    /// resets.
    pub fn take_masked(&mut self) -> Masked {
        let hits = match &self.current {
            Current::Mask(plan) | Current::Copy(plan, _) => plan
                .take_hits()
                .into_iter()
                .map(|(class, n)| (class.name().to_owned(), n))
                .collect(),
            Current::Pass | Current::Undescribed => Default::default(),
        };
        let rows = std::mem::take(&mut self.masked_rows);
        let classes = std::mem::replace(&mut self.masked_classes, Arc::from([]));
        if rows == 0 {
            return Masked {
                rows: Default::default(),
                hits,
            };
        }
        let mut out: std::collections::BTreeMap<String, u64> =
            classes.iter().map(|c| ((*c).to_owned(), rows)).collect();
        if out.is_empty() {
            // Only scanned columns: the detectors found something.
            out.insert("detected".to_owned(), rows);
        }
        Masked { rows: out, hits }
    }

    /// A RowDescription `msg` for `rows`: plans the rows that follow it.
    pub fn described(&mut self, guarded: &Guarded, msg: &[u8], rows: &Rows) -> Result<(), End> {
        self.no_rows = None;
        let Some(masking) = guarded.masking() else {
            self.current = Current::Pass;
            return Ok(());
        };
        let generation = guarded.target.guard.catalog_generation();
        if generation != self.generation {
            self.plans.clear();
            self.recent.clear();
            self.generation = generation;
        }
        if let Some((_, (plan, classes))) = self.recent.iter().find(|(b, _)| **b == *msg) {
            self.current = current(plan);
            self.masked_classes = classes.clone();
            return Ok(());
        }
        if let Some(planned) = self.plans.get(msg).cloned() {
            self.current = current(&planned.0);
            self.masked_classes = planned.1.clone();
            self.remember(msg, planned);
            return Ok(());
        }
        let fields = decode::row_description(decode::body(msg))
            .map_err(|e| End::UpstreamProtocol(e.to_string()))?;
        self.columns.clear();
        self.columns.extend(fields.iter().map(|f| OutputColumn {
            table_oid: f.table_oid,
            attnum: f.attnum,
        }));
        let computed = self.columns.iter().any(|c| c.table_oid == 0);
        let texts = if computed {
            texts(guarded, rows)
        } else {
            Vec::new()
        };
        let facts: Vec<&StatementFacts> =
            texts.iter().filter_map(PreparedText::statement).collect();
        guarded.exposures(&self.columns, &facts, &mut self.exposures);
        let mut classes: Vec<&'static str> = Vec::new();
        for e in &self.exposures {
            let name = match e {
                Exposure::Protected(class, _) => class.name(),
                Exposure::Derived => "derived",
                Exposure::Clear | Exposure::Unvouched => continue,
            };
            if !classes.contains(&name) {
                classes.push(name);
            }
        }
        let classes: Arc<[&'static str]> = classes.into();
        self.specs.clear();
        for (f, e) in fields.iter().zip(&self.exposures) {
            self.specs.push(ColumnSpec {
                ty: ColumnType {
                    oid: f.type_oid,
                    typmod: f.typmod,
                },
                format: format_of(f.format)?,
                rule: rule(masking, *e),
            });
        }
        let plan = Arc::new(
            masking
                .masker
                .plan(&self.specs)
                .map_err(|e| unmaskable(&e.to_string()))?,
        );
        // A plan stands for later result sets only when nothing in it
        // can change meanwhile: no computed column (its lineage depends on
        // the statement), no unmask decision that depends on the time.
        if !computed && !guarded.target.guard.engine().unmask_reads_time() {
            if self.plans.len() >= MAX_PLANS {
                self.plans.clear();
            }
            self.plans
                .insert(msg.into(), (plan.clone(), classes.clone()));
            self.remember(msg, (plan.clone(), classes.clone()));
        }
        self.current = current(&plan);
        self.masked_classes = classes;
        Ok(())
    }

    /// Keeps `msg`'s plan among the recent ones.
    fn remember(&mut self, msg: &[u8], planned: Planned) {
        if self.recent.len() < RECENT {
            self.recent.push((msg.into(), planned));
        } else {
            self.recent[self.next_recent] = (msg.into(), planned);
            self.next_recent = (self.next_recent + 1) % RECENT;
        }
    }

    /// NoData, or the end of a result set (its completion, an error, a
    /// ReadyForQuery): no rows may follow.
    pub fn ended(&mut self) {
        self.current = Current::Undescribed;
        self.no_rows = None;
    }

    /// NoData answering a Describe of `rows`: no result set, but its
    /// Execute may start a COPY.
    pub fn no_rows(&mut self, rows: Rows) {
        self.current = Current::Undescribed;
        self.no_rows = Some(rows);
    }

    /// A CopyOutResponse `msg`; `rows` names the Query statement that
    /// started it (for an Execute, the portal described just before).
    /// Plans the CopyData that follow.
    pub fn copy_out(
        &mut self,
        guarded: &Guarded,
        msg: &[u8],
        rows: Option<Rows>,
    ) -> Result<(), End> {
        let rows = rows.or_else(|| self.no_rows.take());
        self.no_rows = None;
        let Some(masking) = guarded.masking() else {
            self.current = Current::Pass;
            return Ok(());
        };
        let (overall, codes) = decode::copy_response(decode::body(msg))
            .map_err(|e| End::UpstreamProtocol(e.to_string()))?;
        let texts = rows.as_ref().map(|r| texts(guarded, r)).unwrap_or_default();
        // A portal bound to one text: otherwise which COPY runs is not known.
        let stmt = match texts.as_slice() {
            [one] => one.statement(),
            _ => None,
        };
        guarded.copy_out_columns(stmt, codes.len(), &mut self.copy_columns);
        let mut classes: Vec<&'static str> = Vec::new();
        for c in &self.copy_columns {
            let name = match c.exposure {
                Exposure::Protected(class, _) => class.name(),
                Exposure::Derived => "derived",
                Exposure::Clear | Exposure::Unvouched => continue,
            };
            if !classes.contains(&name) {
                classes.push(name);
            }
        }
        self.masked_classes = classes.into();
        self.specs.clear();
        for (&code, c) in codes.iter().zip(&self.copy_columns) {
            if i16::from(overall) != code {
                return Err(End::UpstreamProtocol(
                    "a COPY response with mixed formats".into(),
                ));
            }
            self.specs.push(ColumnSpec {
                ty: c.ty,
                format: format_of(code)?,
                rule: rule(masking, c.exposure),
            });
        }
        let plan = masking
            .masker
            .plan(&self.specs)
            .map_err(|e| unmaskable(&e.to_string()))?;
        if plan.masks_nothing() {
            self.current = Current::Pass;
            return Ok(());
        }
        let format = stmt
            .and_then(|s| s.copy_out.as_ref())
            .and_then(portcullis_guard::copy_format)
            .filter(|f| (f.kind == CopyKind::Binary) == (overall == 1))
            .ok_or_else(|| unmaskable("the layout of this COPY's output is not known"))?;
        self.current = Current::Copy(Arc::new(plan), CopyRows::new(format));
        Ok(())
    }

    /// Whether the current result set's rows must arrive whole (they are
    /// rewritten).
    pub fn needs_whole_rows(&self) -> bool {
        matches!(self.current, Current::Mask(_) | Current::Copy(..))
    }

    /// One CopyData `msg` from the server: forwarded, or masked into
    /// `scratch`.
    pub fn copy_data(&mut self, msg: &[u8], scratch: &mut Vec<u8>) -> Result<RowAction, End> {
        match &mut self.current {
            Current::Pass => Ok(RowAction::Forward),
            Current::Copy(plan, copy) => match copy.copy_data(plan, decode::body(msg), scratch) {
                Ok(Rewrite::Unchanged) => Ok(RowAction::Forward),
                Ok(Rewrite::Rewritten) => {
                    self.masked_rows += 1;
                    Ok(RowAction::Masked)
                }
                Err(e) => Err(unmaskable(&e.to_string())),
            },
            Current::Mask(_) | Current::Undescribed => Err(unmaskable(
                "copy data arrived that no COPY response announced",
            )),
        }
    }

    /// One DataRow `msg`: forwarded, or masked into `scratch`.
    pub fn row(&mut self, msg: &[u8], scratch: &mut Vec<u8>) -> Result<RowAction, End> {
        match &self.current {
            Current::Pass => Ok(RowAction::Forward),
            Current::Mask(plan) => match plan.data_row(decode::body(msg), scratch) {
                Ok(Rewrite::Unchanged) => Ok(RowAction::Forward),
                Ok(Rewrite::Rewritten) => {
                    self.masked_rows += 1;
                    Ok(RowAction::Masked)
                }
                Err(e) => Err(unmaskable(&e.to_string())),
            },
            Current::Undescribed | Current::Copy(..) => {
                Err(unmaskable("a row arrived that no description announced"))
            }
        }
    }
}

/// The session's end when a result cannot be masked. `why` says what
/// about the result (never a value).
pub(crate) fn unmaskable(why: &str) -> End {
    End::Unmaskable(
        Refusal::fatal(
            sqlstate::INTERNAL_ERROR,
            format!("Portcullis could not mask a result ({why}), so the session ends"),
        )
        .hint("Nothing of the result was sent. Select fewer or smaller columns, or ask an administrator about the masking settings."),
    )
}

/// A row over `max_row_bytes` in a masked result set.
pub(crate) fn too_large(max: usize) -> End {
    End::Unmaskable(
        Refusal::fatal(
            sqlstate::PROGRAM_LIMIT_EXCEEDED,
            format!("a row of a masked result is larger than the masking limit of {max} bytes, so the session ends"),
        )
        .hint("Select fewer or smaller columns (for example with substring or length), or raise [masking] max_row_bytes."),
    )
}

/// A column's format code as the mask crate takes it.
fn format_of(code: i16) -> Result<Format, End> {
    Format::from_code(code)
        .ok_or_else(|| End::UpstreamProtocol(format!("format code {code} in a result")))
}

/// What the mask crate does with a column of this exposure.
fn rule(masking: &crate::masking::TargetMasking, exposure: Exposure) -> Rule {
    match exposure {
        Exposure::Clear => Rule::Pass,
        Exposure::Protected(class, strategy) => Rule::Mask {
            class,
            strategy: masking.strategy(class, strategy),
        },
        Exposure::Derived => Rule::Derived,
        Exposure::Unvouched => Rule::Scan { context: None },
    }
}

fn current(plan: &Arc<Plan>) -> Current {
    if plan.masks_nothing() {
        Current::Pass
    } else {
        Current::Mask(plan.clone())
    }
}

/// The statements the rows may come from.
fn texts(guarded: &Guarded, rows: &Rows) -> Vec<PreparedText> {
    match rows {
        Rows::Statement(Some(a), i) => vec![PreparedText {
            analysis: a.clone(),
            index: *i,
            source: None,
        }],
        Rows::Statement(None, _) => Vec::new(),
        Rows::Portal(name) => guarded.portal_texts(name),
    }
}

/// Fields of an ErrorResponse or NoticeResponse that carry text a value
/// can appear in (message, detail, hint, context, the query, names of
/// objects and columns); severity, code, position and source location
/// cannot.
fn report_field_may_quote(ty: u8) -> bool {
    !matches!(ty, b'S' | b'V' | b'C' | b'P' | b'p' | b'F' | b'L' | b'R')
}

/// An ErrorResponse, NoticeResponse or NotificationResponse `msg`:
/// when content scanning finds something sensitive in its text, the
/// message with it masked is written to `own` and true returned.
pub(crate) fn scan_report(guarded: &Guarded, msg: &[u8], own: &mut Vec<u8>) -> bool {
    let Some(masking) = guarded.masking() else {
        return false;
    };
    let body = decode::body(msg);
    let mut pieces: Vec<(&[u8], bool)> = Vec::new();
    let mut prefix: &[u8] = &[];
    if msg.first() == Some(&portcullis_wire::tags::backend::NOTIFICATION_RESPONSE) {
        // Process ID, then channel and payload.
        let Some(rest) = body.get(4..) else {
            return false;
        };
        prefix = &body[..4];
        let mut at = 0;
        while let Some((s, next)) = portcullis_wire::framing::read_cstr(rest, at) {
            pieces.push((s, true));
            at = next;
        }
    } else {
        let mut at = 0;
        while let Some(&ty) = body.get(at) {
            if ty == 0 {
                break;
            }
            let Some((s, next)) = portcullis_wire::framing::read_cstr(body, at + 1) else {
                return false;
            };
            pieces.push((&body[at..at + 1], false));
            pieces.push((s, report_field_may_quote(ty)));
            at = next;
        }
    }
    let mut changed = false;
    let mut out_body: Vec<u8> = Vec::with_capacity(body.len());
    out_body.extend_from_slice(prefix);
    let is_report = prefix.is_empty();
    for (i, (text, scan)) in pieces.iter().enumerate() {
        // In a report, even pieces are field type bytes.
        if is_report && i % 2 == 0 {
            out_body.extend_from_slice(text);
            continue;
        }
        if !scan {
            out_body.extend_from_slice(text);
            out_body.push(0);
            continue;
        }
        match masking.masker.scan_text(text) {
            Some(masked) => {
                changed = true;
                out_body.extend_from_slice(&masked);
            }
            None => out_body.extend_from_slice(text),
        }
        out_body.push(0);
    }
    if !changed {
        return false;
    }
    if is_report {
        out_body.push(0);
    }
    write_message(own, msg[0], &out_body);
    true
}

/// A ParameterStatus: its value is text the server reports to the client
/// (application_name, say), scanned like any other.
pub(crate) fn scan_parameter_status(
    guarded: &Guarded,
    name: &str,
    value: &str,
    own: &mut Vec<u8>,
) -> bool {
    let Some(masking) = guarded.masking() else {
        return false;
    };
    let Some(masked) = masking.masker.scan_text(value.as_bytes()) else {
        return false;
    };
    let mut body = Vec::with_capacity(name.len() + masked.len() + 2);
    body.extend_from_slice(name.as_bytes());
    body.push(0);
    body.extend_from_slice(&masked);
    body.push(0);
    write_message(own, portcullis_wire::tags::backend::PARAMETER_STATUS, &body);
    true
}

fn write_message(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
}
