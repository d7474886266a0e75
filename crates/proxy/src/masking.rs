//! A target's masking, as the configuration sets it up: the mask crate's
//! plan builder, the content detectors, the strategies and the column
//! classifications the configuration adds or removes.

use portcullis_analysis::QualifiedName;
use portcullis_config::{Config, Inference, Masking, Target};
use portcullis_guard::{Classification, InferenceRule, MaskingRules};
use portcullis_mask::{Class, ColumnType, Detectors, MaskSettings, Masker, Strategy};

/// Masking for one target (absent when masking is off).
pub struct TargetMasking {
    pub masker: Masker,
    /// A key for the `keyed` strategy is configured (without one, keyed
    /// columns are redacted).
    keyed: bool,
    pub max_row_bytes: usize,
    /// Unclassified free-text columns are scanned.
    scan_unclassified: bool,
    /// Strict masking and inference, for the guard (judged before a
    /// statement runs).
    pub rules: MaskingRules,
    /// The configuration's classifications for this target: (schema,
    /// table, column) → class (`None`: not sensitive) and strategy.
    columns: Vec<ColumnOverride>,
}

struct ColumnOverride {
    schema: String,
    table: String,
    column: String,
    class: Option<Class>,
    strategy: Option<Strategy>,
}

impl TargetMasking {
    /// Masking for `target` as `config` sets it, or `None` when off.
    /// Column rules for `target` or, for a database a wildcard target
    /// serves, for that target (`wildcard`) apply.
    pub fn build(
        config: &Config,
        target: &Target,
        wildcard: Option<&str>,
        detectors: &Detectors,
        key: Option<&[u8]>,
    ) -> Option<TargetMasking> {
        let m: &Masking = &config.masking;
        if !m.enabled {
            return None;
        }
        let columns = m
            .columns
            .iter()
            .filter(|c| {
                c.target
                    .as_deref()
                    .is_none_or(|t| t == target.name || Some(t) == wildcard)
            })
            .filter_map(|c| {
                let (schema, table, column) = c.parts()?;
                Some(ColumnOverride {
                    schema: schema.to_owned(),
                    table: table.to_owned(),
                    column: column.to_owned(),
                    class: Class::from_name(&c.class),
                    strategy: c.strategy.as_deref().and_then(Strategy::from_name),
                })
            })
            .collect();
        let masker = Masker::new(
            MaskSettings {
                key: key.map(<[u8]>::to_vec),
                max_value_bytes: m.max_row_bytes,
                text_oids: Vec::new(),
            },
            detectors.clone(),
        );
        Some(TargetMasking {
            masker,
            keyed: key.is_some(),
            max_row_bytes: m.max_row_bytes,
            scan_unclassified: m.scan_unclassified,
            rules: MaskingRules {
                strict: m.strict,
                inference: match m.inference {
                    Inference::Flag => InferenceRule::Flag,
                    Inference::Refuse => InferenceRule::Refuse,
                },
            },
            columns,
        })
    }

    /// A catalog column's classification: the configuration's when it
    /// names the column, otherwise the built-in dictionary's from its
    /// name and comment. A column of a type that can hold free text which
    /// nothing classifies is scanned (unless `scan_unclassified` is off or
    /// its comment declares it not sensitive).
    pub fn classify(
        &self,
        relation: &QualifiedName,
        column: &str,
        comment: Option<&str>,
        type_oid: u32,
    ) -> Classification {
        if let Some(o) = self.configured(relation, column) {
            return match o.class {
                Some(k) => Classification::Sensitive(k, o.strategy),
                None => Classification::Clear,
            };
        }
        if let Some(k) = portcullis_mask::dictionary::classify_column(column, comment) {
            return Classification::Sensitive(k, None);
        }
        let declared = comment.is_some_and(portcullis_mask::dictionary::declared_not_sensitive);
        let free_text = ColumnType {
            oid: type_oid,
            typmod: -1,
        }
        .may_hold_free_text();
        if self.scan_unclassified && free_text && !declared {
            Classification::Scan
        } else {
            Classification::Clear
        }
    }

    /// The class the configuration gives a column, if it names it
    /// (`Some(None)`: not sensitive). The first rule naming it wins: the
    /// configuration's own, then the included files' in order.
    pub fn configured_class(
        &self,
        relation: &QualifiedName,
        column: &str,
    ) -> Option<Option<Class>> {
        self.configured(relation, column).map(|o| o.class)
    }

    fn configured(&self, relation: &QualifiedName, column: &str) -> Option<&ColumnOverride> {
        let schema = relation.schema.as_deref().unwrap_or("");
        self.columns
            .iter()
            .find(|o| o.schema == schema && o.table == relation.name && o.column == column)
    }

    /// How values of `class` are masked, `chosen` being the
    /// configuration's choice for the column, if any. `keyed` needs a key:
    /// without one the column is redacted.
    pub fn strategy(&self, class: Class, chosen: Option<Strategy>) -> Strategy {
        match chosen.unwrap_or_else(|| Strategy::default_for(class)) {
            Strategy::Keyed if !self.keyed => Strategy::Redact,
            s => s,
        }
    }
}
