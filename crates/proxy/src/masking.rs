//! A target's masking, as the configuration sets it up: the mask crate's
//! plan builder, the content detectors, the strategies and the column
//! classifications the configuration adds or removes.

use portcullis_analysis::QualifiedName;
use portcullis_config::{Config, Inference, Masking, Target};
use portcullis_guard::{InferenceRule, MaskingRules};
use portcullis_mask::{Class, Detectors, MaskSettings, Masker, Strategy};

/// Masking for one target (absent when masking is off).
pub struct TargetMasking {
    pub masker: Masker,
    /// A key for the `keyed` strategy is configured (without one, keyed
    /// columns are redacted).
    keyed: bool,
    pub max_row_bytes: usize,
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
    pub fn build(
        config: &Config,
        target: &Target,
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
            .filter(|c| c.target.as_deref().is_none_or(|t| t == target.name))
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
    /// name and comment.
    pub fn classify(
        &self,
        relation: &QualifiedName,
        column: &str,
        comment: Option<&str>,
    ) -> Option<(Class, Option<Strategy>)> {
        let schema = relation.schema.as_deref().unwrap_or("");
        if let Some(o) = self
            .columns
            .iter()
            .find(|o| o.schema == schema && o.table == relation.name && o.column == column)
        {
            return o.class.map(|k| (k, o.strategy));
        }
        portcullis_mask::dictionary::classify_column(column, comment).map(|k| (k, None))
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
