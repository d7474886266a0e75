//! What each column of a `COPY ... TO STDOUT` is, for one session, and how
//! its rows are laid out: the guard's half of masking COPY output.
//!
//! COPY sends no RowDescription, so the columns come from the statement:
//! `COPY table [(columns)]` copies the table's columns (all but generated
//! ones when none are listed), which the catalog knows by name, type and
//! classification; `COPY (query)` copies the query's output, whose columns
//! are judged by lineage as a computed result column is. A column whose
//! type is not known here is masked as a value of unknown type (NULL),
//! which every column type accepts.

use portcullis_analysis::{ActionKind, CopyOptions, OutputItem, Source, StatementFacts};
use portcullis_mask::{ColumnType, CopyFormat, CopyKind};

use crate::catalog::CatalogSnapshot;
use crate::encoding;
use crate::guard::{Guard, Who};
use crate::masking::{expand, plain, qualify, worse, Exposure, OutputColumn};
use crate::session::SessionState;

/// One column of a COPY's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyColumn {
    pub exposure: Exposure,
    /// Its type, OID 0 when not known.
    pub ty: ColumnType,
}

const UNKNOWN_TYPE: ColumnType = ColumnType { oid: 0, typmod: -1 };

/// How a COPY's rows are laid out, from its options as PostgreSQL's
/// `ProcessCopyOptions` applies them; `None` when that cannot be known
/// here (an option not followed, a multibyte delimiter the server would
/// refuse anyway, an encoding in which ASCII bytes can hide inside
/// multibyte characters).
pub fn copy_format(options: &CopyOptions) -> Option<CopyFormat> {
    if options.unknown {
        return None;
    }
    if let Some(e) = &options.encoding {
        if !encoding::is_ascii_safe(e) {
            return None;
        }
    }
    let mut format = match options.format.as_deref() {
        None | Some("text") => CopyFormat::text(),
        Some("csv") => CopyFormat::csv(),
        Some("binary") => return Some(CopyFormat::binary()),
        Some(_) => return None,
    };
    let one_byte = |v: &Option<String>, default: u8| match v.as_deref() {
        None => Some(default),
        Some(s) if s.len() == 1 => Some(s.as_bytes()[0]),
        Some(_) => None,
    };
    format.delimiter = one_byte(&options.delimiter, format.delimiter)?;
    if let Some(null) = &options.null {
        format.null = null.as_bytes().to_vec();
    }
    if format.kind == CopyKind::Csv {
        format.quote = one_byte(&options.quote, format.quote)?;
        // The escape defaults to the quote character.
        format.escape = one_byte(&options.escape, format.quote)?;
    }
    format.header = match options.header.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return None,
    };
    Some(format)
}

impl Guard {
    /// The columns of the `width` columns a COPY TO STDOUT sends, for
    /// `who`; `stmt` is the COPY statement when known.
    pub fn copy_out_columns(
        &self,
        stmt: Option<&StatementFacts>,
        width: usize,
        who: &Who,
        session: &SessionState,
        out: &mut Vec<CopyColumn>,
    ) {
        out.clear();
        let (_, catalog) = self.catalog();
        let Some(catalog) = catalog else {
            out.resize(
                width,
                CopyColumn {
                    exposure: Exposure::Unvouched,
                    ty: UNKNOWN_TYPE,
                },
            );
            return;
        };
        let table = stmt.and_then(|s| {
            s.actions.iter().find_map(|a| match &a.kind {
                ActionKind::Copy { table, .. } => table.as_ref(),
                _ => None,
            })
        });
        match (stmt, table) {
            (Some(stmt), Some(table)) => {
                for path in session.search_paths() {
                    let exposure = match qualify(&catalog, table, path, session) {
                        // A table the snapshot does not know (created
                        // since, or temporary), as a plain column of one.
                        None => Exposure::Unvouched,
                        // Not as the snapshot has it: changed since.
                        Some(_) => Exposure::Derived,
                    };
                    let columns = self.table_columns(&catalog, stmt, table, path, session, who);
                    let columns = match columns {
                        Some(c) if c.len() == width => c,
                        _ => vec![
                            CopyColumn {
                                exposure,
                                ty: UNKNOWN_TYPE,
                            };
                            width
                        ],
                    };
                    merge(out, &columns);
                }
            }
            _ => {
                let statements: Vec<&StatementFacts> = stmt.into_iter().collect();
                let exposures = self.computed_exposures(&catalog, width, &statements, who, session);
                let types = stmt.map_or_else(
                    || vec![UNKNOWN_TYPE; width],
                    |s| passed_types(&catalog, s, width, session),
                );
                out.extend(
                    exposures
                        .into_iter()
                        .zip(types)
                        .map(|(exposure, ty)| CopyColumn { exposure, ty }),
                );
            }
        }
    }

    /// The columns `COPY table [(columns)]` sends with `path` in force;
    /// `None` when the snapshot does not have the table or a column.
    fn table_columns(
        &self,
        catalog: &CatalogSnapshot,
        stmt: &StatementFacts,
        table: &portcullis_analysis::QualifiedName,
        path: &[String],
        session: &SessionState,
        who: &Who,
    ) -> Option<Vec<CopyColumn>> {
        let relation = qualify(catalog, table, path, session)?;
        let oid = catalog.relation_oid(&relation)?;
        let column = |c: &crate::catalog::CatalogColumn| CopyColumn {
            exposure: plain(
                catalog,
                &OutputColumn {
                    table_oid: oid,
                    attnum: c.attnum,
                },
                who,
                self,
            ),
            ty: ColumnType {
                oid: c.type_oid,
                typmod: c.typmod,
            },
        };
        let items = stmt.output.as_ref()?.items()?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item {
                OutputItem::AllColumnsOf { .. } => out.extend(
                    catalog
                        .columns_of(&relation)
                        .filter(|c| !c.generated)
                        .map(column),
                ),
                OutputItem::Column(portcullis_analysis::Lineage::From { sources, .. }) => {
                    let [Source::Column { column: name, .. }] = sources.as_slice() else {
                        return None;
                    };
                    out.push(column(
                        catalog.columns_of(&relation).find(|c| c.name == *name)?,
                    ));
                }
                OutputItem::Column(_) => return None,
            }
        }
        Some(out)
    }
}

/// The type of each output column of a COPY's query that passes one
/// catalog column through unchanged (under every search_path that may be
/// in force); unknown for the others. COPY reports no types, and a masked
/// value must be one its column's type accepts.
fn passed_types(
    catalog: &CatalogSnapshot,
    stmt: &StatementFacts,
    width: usize,
    session: &SessionState,
) -> Vec<ColumnType> {
    let mut out: Option<Vec<ColumnType>> = None;
    for path in session.search_paths() {
        let lineage = stmt
            .output
            .as_ref()
            .and_then(|o| expand(catalog, o, path, session))
            .filter(|l| l.len() == width);
        let types: Vec<ColumnType> = match lineage {
            None => vec![UNKNOWN_TYPE; width],
            Some(lineage) => lineage
                .iter()
                .map(|l| match l.sources() {
                    Some([Source::Column { relation, column }]) if l.passes_through() => {
                        qualify(catalog, relation, path, session)
                            .and_then(|r| {
                                let mut named =
                                    catalog.columns_of(&r).filter(|c| c.name == *column);
                                match (named.next(), named.next()) {
                                    (Some(c), None) => Some(ColumnType {
                                        oid: c.type_oid,
                                        typmod: c.typmod,
                                    }),
                                    _ => None,
                                }
                            })
                            .unwrap_or(UNKNOWN_TYPE)
                    }
                    _ => UNKNOWN_TYPE,
                })
                .collect(),
        };
        match &mut out {
            None => out = Some(types),
            Some(o) => {
                for (a, b) in o.iter_mut().zip(types) {
                    if *a != b {
                        *a = UNKNOWN_TYPE;
                    }
                }
            }
        }
    }
    out.unwrap_or_else(|| vec![UNKNOWN_TYPE; width])
}

/// Folds one reading of the columns into `out`: the more exposed
/// exposure, and the type only where every reading agrees.
fn merge(out: &mut Vec<CopyColumn>, columns: &[CopyColumn]) {
    if out.is_empty() {
        out.extend_from_slice(columns);
        return;
    }
    for (o, c) in out.iter_mut().zip(columns) {
        o.exposure = worse(o.exposure, c.exposure);
        if o.ty != c.ty {
            o.ty = UNKNOWN_TYPE;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(f: impl FnOnce(&mut CopyOptions)) -> CopyOptions {
        let mut o = CopyOptions::default();
        f(&mut o);
        o
    }

    #[test]
    fn formats_follow_the_servers_defaults() {
        assert_eq!(copy_format(&opts(|_| {})), Some(CopyFormat::text()));
        let csv = copy_format(&opts(|o| o.format = Some("csv".into()))).unwrap();
        assert_eq!(csv, CopyFormat::csv());
        let csv = copy_format(&opts(|o| {
            o.format = Some("csv".into());
            o.quote = Some("'".into());
            o.delimiter = Some(";".into());
            o.null = Some("NULL".into());
            o.header = Some("true".into());
        }))
        .unwrap();
        assert_eq!(
            (
                csv.quote,
                csv.escape,
                csv.delimiter,
                csv.null.as_slice(),
                csv.header
            ),
            (b'\'', b'\'', b';', &b"NULL"[..], true)
        );
        assert_eq!(
            copy_format(&opts(|o| o.format = Some("binary".into()))),
            Some(CopyFormat::binary())
        );
    }

    #[test]
    fn layouts_not_followed_are_none() {
        assert_eq!(copy_format(&opts(|o| o.unknown = true)), None);
        assert_eq!(copy_format(&opts(|o| o.format = Some("CSV".into()))), None);
        assert_eq!(
            copy_format(&opts(|o| o.delimiter = Some("ab".into()))),
            None
        );
        assert_eq!(
            copy_format(&opts(|o| o.header = Some("match".into()))),
            None
        );
        assert_eq!(
            copy_format(&opts(|o| o.encoding = Some("SJIS".into()))),
            None
        );
        assert_eq!(
            copy_format(&opts(|o| o.encoding = Some("klingon".into()))),
            None
        );
        assert!(copy_format(&opts(|o| o.encoding = Some("latin1".into()))).is_some());
    }
}
