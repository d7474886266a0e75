//! Whether a WHERE clause (or a MERGE join / WHEN condition) really
//! restricts the rows an UPDATE, DELETE or MERGE touches.
//!
//! The clause is evaluated symbolically to always-true, always-false or
//! unknown. What counts as always true (a [`Filter::Tautology`]):
//!
//! - boolean constants and what PostgreSQL coerces to them: `true`,
//!   `'t'`, `'yes'`, `'on'`, `'1'`, `1::boolean`, `'true'::bool`;
//! - comparisons of two constants that hold: `1 = 1`, `'a' = 'a'`, `1 < 2`,
//!   `2 >= 1`, `1 <> 2`, `'1' = 1` (numbers compared as numbers, strings
//!   byte-wise for `=` / `<>` only), `1 IS NOT DISTINCT FROM 1`,
//!   `1 BETWEEN 0 AND 2`, `1 IN (1, 2)`;
//! - an expression compared with itself: `id = id`, `t.id >= t.id`,
//!   `id IS NOT DISTINCT FROM id` (true for every row where it is not null,
//!   which for the purpose of this guard is every row);
//! - `x LIKE '%'` / `x ILIKE '%%'`: a pattern of only `%`;
//! - `IS NULL` / `IS NOT NULL` of a constant, `true IS TRUE` and friends;
//! - `NOT` of an always-false clause (`NOT false`, `NOT 1 = 2`);
//! - `OR` with any always-true branch (`id = 5 OR true`), and `OR` of
//!   complementary tests of one expression: `x IS NULL OR x IS NOT NULL`,
//!   `x IS TRUE OR x IS NOT TRUE` (and the FALSE / UNKNOWN pairs);
//! - `AND` of always-true branches only.
//!
//! Always false ([`Filter::Contradiction`]: touches nothing, so it counts as
//! effective): `false`, `NULL`, `1 = 2`, `id <> id`, `AND` with an always-false
//! branch, `OR` of always-false branches.
//!
//! Everything else is unknown, and then the question is whether the clause
//! refers to the rows at all. It does if it contains a column reference
//! outside sub-queries, or inside a sub-query one that is unqualified or
//! qualified with a name of the statement's own FROM (target, USING, FROM,
//! MERGE source). `WHERE $1`, `WHERE now() < '2030-01-01'` and `WHERE EXISTS
//! (SELECT 1 FROM other o WHERE o.x = 1)` do not: they are
//! [`Filter::RowIndependent`], all rows or none. `WHERE CURRENT OF c` is
//! [`Filter::CurrentOf`].
//!
//! Not detected (they count as restrictive): tautologies that need types or
//! data (`id = id + 0`, `x >= 0` on an unsigned column, `id IN (SELECT id
//! FROM same_table)`, `coalesce(x, 1) = coalesce(x, 1)` is detected only
//! because the two sides are identical), and anything behind a function.

use pg_query::protobuf::node::Node as NodeEnum;
use pg_query::protobuf::{AExprKind, BoolExprType, BoolTestType, Node, NullTestType};
use pg_query::NodeRef;

use crate::facts::Filter;
use crate::literal::{self, ConstValue};
use crate::walk::children::for_each_child;

/// Judges a WHERE clause. `range_names` are the names the statement's own
/// rows can be referred to by (target alias or name, USING / FROM items).
pub(crate) fn assess(where_clause: Option<&Node>, range_names: &[&str]) -> Filter {
    let Some(expr) = where_clause.and_then(|n| n.node.as_ref()) else {
        return Filter::Absent;
    };
    if matches!(expr, NodeEnum::CurrentOfExpr(_)) {
        return Filter::CurrentOf;
    }
    match truth(expr) {
        Truth::True => Filter::Tautology,
        Truth::False => Filter::Contradiction,
        Truth::Unknown if refers_to_rows(expr.to_ref(), range_names, false) => Filter::Restrictive,
        Truth::Unknown => Filter::RowIndependent,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Truth {
    True,
    False,
    Unknown,
}

impl Truth {
    fn not(self) -> Truth {
        match self {
            Truth::True => Truth::False,
            Truth::False => Truth::True,
            Truth::Unknown => Truth::Unknown,
        }
    }

    fn from_bool(b: bool) -> Truth {
        if b {
            Truth::True
        } else {
            Truth::False
        }
    }
}

/// A constant's value, as far as comparisons need it.
#[derive(Debug, Clone, PartialEq)]
enum Value<'a> {
    Number(f64),
    Text(&'a str),
    Bool(bool),
    Null,
}

fn inner(node: &Node) -> Option<&NodeEnum> {
    node.node.as_ref()
}

fn boxed(node: &Option<Box<Node>>) -> Option<&NodeEnum> {
    node.as_deref().and_then(inner)
}

fn truth(expr: &NodeEnum) -> Truth {
    match expr {
        NodeEnum::AConst(_) | NodeEnum::TypeCast(_) => match constant(expr) {
            Some(Value::Bool(b)) => Truth::from_bool(b),
            Some(Value::Null) => Truth::False,
            Some(Value::Text(t)) => parse_bool(t).map_or(Truth::Unknown, Truth::from_bool),
            _ => Truth::Unknown,
        },
        NodeEnum::BoolExpr(b) => {
            let args = b.args.iter().filter_map(inner).map(truth);
            match BoolExprType::try_from(b.boolop) {
                Ok(BoolExprType::NotExpr) => b
                    .args
                    .first()
                    .and_then(inner)
                    .map_or(Truth::Unknown, |a| truth(a).not()),
                Ok(BoolExprType::AndExpr) => {
                    let mut all_true = true;
                    for t in args {
                        match t {
                            Truth::False => return Truth::False,
                            Truth::Unknown => all_true = false,
                            Truth::True => {}
                        }
                    }
                    if all_true {
                        Truth::True
                    } else {
                        Truth::Unknown
                    }
                }
                Ok(BoolExprType::OrExpr) => {
                    let mut all_false = true;
                    for t in args {
                        match t {
                            Truth::True => return Truth::True,
                            Truth::Unknown => all_false = false,
                            Truth::False => {}
                        }
                    }
                    if all_false {
                        Truth::False
                    } else if has_complementary_tests(&b.args) {
                        Truth::True
                    } else {
                        Truth::Unknown
                    }
                }
                _ => Truth::Unknown,
            }
        }
        NodeEnum::AExpr(e) => a_expr_truth(e),
        NodeEnum::NullTest(t) => {
            let Some(arg) = boxed(&t.arg) else {
                return Truth::Unknown;
            };
            let is_null = match constant(arg) {
                Some(Value::Null) => true,
                Some(_) => false,
                None => return Truth::Unknown,
            };
            match NullTestType::try_from(t.nulltesttype) {
                Ok(NullTestType::IsNull) => Truth::from_bool(is_null),
                Ok(NullTestType::IsNotNull) => Truth::from_bool(!is_null),
                _ => Truth::Unknown,
            }
        }
        NodeEnum::BooleanTest(t) => {
            let value = match boxed(&t.arg).map(truth_or_null) {
                Some(Some(v)) => v,
                _ => return Truth::Unknown,
            };
            let result = match BoolTestType::try_from(t.booltesttype) {
                Ok(BoolTestType::IsTrue) => value == Some(true),
                Ok(BoolTestType::IsNotTrue) => value != Some(true),
                Ok(BoolTestType::IsFalse) => value == Some(false),
                Ok(BoolTestType::IsNotFalse) => value != Some(false),
                Ok(BoolTestType::IsUnknown) => value.is_none(),
                Ok(BoolTestType::IsNotUnknown) => value.is_some(),
                _ => return Truth::Unknown,
            };
            Truth::from_bool(result)
        }
        _ => Truth::Unknown,
    }
}

/// For BooleanTest: a constant's boolean value, with NULL as `Some(None)`.
fn truth_or_null(expr: &NodeEnum) -> Option<Option<bool>> {
    if let Some(Value::Null) = constant(expr) {
        return Some(None);
    }
    match truth(expr) {
        Truth::True => Some(Some(true)),
        Truth::False => Some(Some(false)),
        Truth::Unknown => None,
    }
}

fn operator_name(name: &[Node]) -> Option<&str> {
    match name.last().and_then(inner) {
        Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
        _ => None,
    }
}

fn a_expr_truth(e: &pg_query::protobuf::AExpr) -> Truth {
    let (Some(left), Some(right)) = (boxed(&e.lexpr), boxed(&e.rexpr)) else {
        return Truth::Unknown;
    };
    let op = operator_name(&e.name).unwrap_or("");
    match AExprKind::try_from(e.kind) {
        Ok(AExprKind::AexprOp) => compare(op, left, right),
        Ok(AExprKind::AexprNotDistinct) => {
            if same_expr(left, right) {
                return Truth::True;
            }
            if !(is_constant(left) && is_constant(right)) {
                return Truth::Unknown;
            }
            match (constant(left), constant(right)) {
                (Some(a), Some(b)) => Truth::from_bool(values_equal(&a, &b).unwrap_or(a == b)),
                _ => Truth::Unknown,
            }
        }
        Ok(AExprKind::AexprDistinct) => {
            if same_expr(left, right) {
                return Truth::False;
            }
            Truth::Unknown
        }
        Ok(AExprKind::AexprLike | AExprKind::AexprIlike) => {
            let matches_all = matches!(constant(right), Some(Value::Text(p)) if !p.is_empty() && p.bytes().all(|b| b == b'%'));
            match op {
                "~~" | "~~*" if matches_all => Truth::True,
                "!~~" | "!~~*" if matches_all => Truth::False,
                _ => Truth::Unknown,
            }
        }
        Ok(AExprKind::AexprIn) => {
            if !is_constant(left) {
                return Truth::Unknown;
            }
            let (Some(needle), NodeEnum::List(list)) = (constant(left), right) else {
                return Truth::Unknown;
            };
            let mut found = false;
            for item in list.items.iter().filter_map(inner) {
                match constant(item).and_then(|v| values_equal(&needle, &v)) {
                    Some(true) => found = true,
                    Some(false) => {}
                    None => return Truth::Unknown,
                }
            }
            // `=` is IN, `<>` is NOT IN.
            match op {
                "=" => Truth::from_bool(found),
                "<>" => Truth::from_bool(!found),
                _ => Truth::Unknown,
            }
        }
        Ok(AExprKind::AexprBetween | AExprKind::AexprNotBetween) => {
            let NodeEnum::List(bounds) = right else {
                return Truth::Unknown;
            };
            let (Some(low), Some(high)) = (
                bounds.items.first().and_then(inner),
                bounds.items.get(1).and_then(inner),
            ) else {
                return Truth::Unknown;
            };
            let inside = match (compare(">=", left, low), compare("<=", left, high)) {
                (Truth::True, Truth::True) => Truth::True,
                (Truth::False, _) | (_, Truth::False) => Truth::False,
                _ => Truth::Unknown,
            };
            if e.kind == AExprKind::AexprNotBetween as i32 {
                inside.not()
            } else {
                inside
            }
        }
        _ => Truth::Unknown,
    }
}

/// `left op right` for the six comparison operators.
fn compare(op: &str, left: &NodeEnum, right: &NodeEnum) -> Truth {
    if same_expr(left, right) {
        return match op {
            "=" | "<=" | ">=" => Truth::True,
            "<>" | "<" | ">" => Truth::False,
            _ => Truth::Unknown,
        };
    }
    // Values are read only when both sides are constants: `id = 5` does
    // not depend on the 5 (see crate::literal).
    if !(is_constant(left) && is_constant(right)) {
        return Truth::Unknown;
    }
    let (Some(a), Some(b)) = (constant(left), constant(right)) else {
        return Truth::Unknown;
    };
    if a == Value::Null || b == Value::Null {
        // Comparisons with NULL are NULL: no row passes.
        return Truth::False;
    }
    let ordering = match (&a, &b) {
        (Value::Text(x), Value::Text(y)) if matches!(op, "=" | "<>") => Some(x.cmp(y)),
        // Text ordering depends on the collation: leave it unknown.
        (Value::Text(_), Value::Text(_)) => None,
        _ => match (number(&a), number(&b)) {
            (Some(x), Some(y)) => x.partial_cmp(&y),
            _ => None,
        },
    };
    let Some(ordering) = ordering else {
        return Truth::Unknown;
    };
    use std::cmp::Ordering::{Equal, Greater, Less};
    let holds = match op {
        "=" => ordering == Equal,
        "<>" => ordering != Equal,
        "<" => ordering == Less,
        "<=" => ordering != Greater,
        ">" => ordering == Greater,
        ">=" => ordering != Less,
        _ => return Truth::Unknown,
    };
    Truth::from_bool(holds)
}

fn values_equal(a: &Value<'_>, b: &Value<'_>) -> Option<bool> {
    match (a, b) {
        (Value::Text(x), Value::Text(y)) => Some(x == y),
        (Value::Bool(x), Value::Bool(y)) => Some(x == y),
        _ => match (number(a), number(b)) {
            (Some(x), Some(y)) => Some(x == y),
            _ => None,
        },
    }
}

/// A constant as a number: numbers, and text that PostgreSQL would coerce
/// (`'1' = 1` compares as integers).
fn number(v: &Value<'_>) -> Option<f64> {
    match v {
        Value::Number(n) => Some(*n),
        Value::Text(t) => t.trim().parse().ok(),
        _ => None,
    }
}

/// Whether `expr` is a literal, possibly cast, without reading its value.
fn is_constant(expr: &NodeEnum) -> bool {
    match expr {
        NodeEnum::AConst(_) => true,
        NodeEnum::TypeCast(cast) => boxed(&cast.arg).is_some_and(is_constant),
        _ => false,
    }
}

/// A literal, possibly cast (`'t'::boolean`, `1::int`, `'x'::text`).
fn constant(expr: &NodeEnum) -> Option<Value<'_>> {
    match expr {
        NodeEnum::AConst(c) => {
            if c.isnull {
                return Some(Value::Null);
            }
            match literal::value(c)? {
                ConstValue::Ival(i) => Some(Value::Number(f64::from(i.ival))),
                ConstValue::Fval(f) => f.fval.parse().ok().map(Value::Number),
                ConstValue::Boolval(b) => Some(Value::Bool(b.boolval)),
                ConstValue::Sval(s) => Some(Value::Text(&s.sval)),
                ConstValue::Bsval(_) => None,
            }
        }
        NodeEnum::TypeCast(cast) => {
            let value = constant(boxed(&cast.arg)?)?;
            let is_bool = cast.type_name.as_ref().is_some_and(|t| {
                matches!(t.names.last().and_then(inner), Some(NodeEnum::String(s)) if s.sval == "bool" || s.sval == "boolean")
            });
            if !is_bool {
                return Some(value);
            }
            match value {
                Value::Text(t) => parse_bool(t).map(Value::Bool),
                Value::Number(n) => Some(Value::Bool(n != 0.0)),
                other => Some(other),
            }
        }
        _ => None,
    }
}

/// PostgreSQL's boolean input (`boolin`): case-insensitive prefixes of
/// true/false/yes/no, `on`, `of` / `off`, `1` / `0`, surrounding spaces
/// ignored (`'o'` alone is ambiguous and invalid).
fn parse_bool(text: &str) -> Option<bool> {
    let t = text.trim().to_ascii_lowercase();
    if t.is_empty() {
        return None;
    }
    let prefix_of = |word: &str| word.starts_with(t.as_str());
    if prefix_of("true") || prefix_of("yes") || t == "on" || t == "1" {
        Some(true)
    } else if prefix_of("false")
        || prefix_of("no")
        || (t.len() >= 2 && prefix_of("off"))
        || t == "0"
    {
        Some(false)
    } else {
        None
    }
}

/// Structural equality ignoring source positions, for the node types that
/// can reasonably appear on both sides of a tautology. Anything else is
/// "not the same", which errs towards restrictive.
fn same_expr(a: &NodeEnum, b: &NodeEnum) -> bool {
    match (a, b) {
        (NodeEnum::ColumnRef(x), NodeEnum::ColumnRef(y)) => {
            x.fields.len() == y.fields.len()
                && x.fields
                    .iter()
                    .zip(&y.fields)
                    .all(|(p, q)| match (inner(p), inner(q)) {
                        (Some(NodeEnum::String(s)), Some(NodeEnum::String(t))) => s.sval == t.sval,
                        (Some(NodeEnum::AStar(_)), Some(NodeEnum::AStar(_))) => true,
                        _ => false,
                    })
        }
        (NodeEnum::AConst(x), NodeEnum::AConst(y)) => {
            x.isnull == y.isnull && (x.isnull || literal::value(x) == literal::value(y))
        }
        (NodeEnum::ParamRef(x), NodeEnum::ParamRef(y)) => x.number == y.number,
        (NodeEnum::TypeCast(x), NodeEnum::TypeCast(y)) => {
            let names =
                |t: &Option<pg_query::protobuf::TypeName>| t.as_ref().map(|t| t.names.clone());
            names(&x.type_name) == names(&y.type_name)
                && match (boxed(&x.arg), boxed(&y.arg)) {
                    (Some(p), Some(q)) => same_expr(p, q),
                    _ => false,
                }
        }
        (NodeEnum::FuncCall(x), NodeEnum::FuncCall(y)) => {
            x.funcname == y.funcname
                && x.args.len() == y.args.len()
                && x.args
                    .iter()
                    .zip(&y.args)
                    .all(|(p, q)| match (inner(p), inner(q)) {
                        (Some(p), Some(q)) => same_expr(p, q),
                        _ => false,
                    })
                && x.agg_star == y.agg_star
                && x.over.is_none()
                && y.over.is_none()
        }
        (NodeEnum::CoalesceExpr(x), NodeEnum::CoalesceExpr(y)) => {
            x.args.len() == y.args.len()
                && x.args
                    .iter()
                    .zip(&y.args)
                    .all(|(p, q)| match (inner(p), inner(q)) {
                        (Some(p), Some(q)) => same_expr(p, q),
                        _ => false,
                    })
        }
        _ => false,
    }
}

/// `x IS NULL OR x IS NOT NULL` and the BooleanTest pairs.
fn has_complementary_tests(args: &[Node]) -> bool {
    let tests: Vec<&NodeEnum> = args.iter().filter_map(inner).collect();
    for (i, a) in tests.iter().enumerate() {
        for b in tests.iter().skip(i + 1) {
            if complementary(a, b) {
                return true;
            }
        }
    }
    false
}

fn complementary(a: &NodeEnum, b: &NodeEnum) -> bool {
    match (a, b) {
        (NodeEnum::NullTest(x), NodeEnum::NullTest(y)) => {
            x.nulltesttype != y.nulltesttype
                && match (boxed(&x.arg), boxed(&y.arg)) {
                    (Some(p), Some(q)) => same_expr(p, q),
                    _ => false,
                }
        }
        (NodeEnum::BooleanTest(x), NodeEnum::BooleanTest(y)) => {
            use BoolTestType as T;
            let pair = |p: i32, q: i32| {
                let (Ok(p), Ok(q)) = (T::try_from(p), T::try_from(q)) else {
                    return false;
                };
                matches!(
                    (p, q),
                    (T::IsTrue, T::IsNotTrue)
                        | (T::IsNotTrue, T::IsTrue)
                        | (T::IsFalse, T::IsNotFalse)
                        | (T::IsNotFalse, T::IsFalse)
                        | (T::IsUnknown, T::IsNotUnknown)
                        | (T::IsNotUnknown, T::IsUnknown)
                )
            };
            pair(x.booltesttype, y.booltesttype)
                && match (boxed(&x.arg), boxed(&y.arg)) {
                    (Some(p), Some(q)) => same_expr(p, q),
                    _ => false,
                }
        }
        _ => false,
    }
}

/// Whether the expression mentions the statement's rows (see the module
/// documentation).
fn refers_to_rows(node: NodeRef<'_>, range_names: &[&str], in_sublink: bool) -> bool {
    match node {
        NodeRef::ColumnRef(c) => {
            if !in_sublink {
                return true;
            }
            let names: Vec<&str> = c
                .fields
                .iter()
                .filter_map(|f| match inner(f) {
                    Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
                    _ => None,
                })
                .collect();
            let qualified = names.len() >= 2 || (names.len() == 1 && c.fields.len() == 2);
            if !qualified {
                // Unqualified inside a sub-query: may be correlated.
                return true;
            }
            let qualifier = if names.len() >= 2 {
                names.get(names.len() - 2).copied()
            } else {
                names.first().copied()
            };
            qualifier.is_some_and(|q| range_names.contains(&q))
        }
        _ => {
            let in_sublink = in_sublink || matches!(node, NodeRef::SubLink(_));
            let mut found = false;
            for_each_child(node, &mut |_, child| {
                if !found && refers_to_rows(child, range_names, in_sublink) {
                    found = true;
                }
            });
            found
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter_of(sql: &str) -> Filter {
        let parsed = pg_query::parse(sql, 0).expect("parses");
        let stmt = parsed.protobuf.stmts[0]
            .stmt
            .as_ref()
            .and_then(|s| s.node.as_ref())
            .expect("statement");
        match stmt {
            NodeEnum::DeleteStmt(d) => assess(d.where_clause.as_deref(), &["t"]),
            NodeEnum::UpdateStmt(u) => assess(u.where_clause.as_deref(), &["t"]),
            other => panic!("not a DELETE or UPDATE: {other:?}"),
        }
    }

    #[test]
    fn tautologies() {
        for w in [
            "true",
            "TRUE",
            "'t'",
            "'yes'",
            "'on'",
            "'1'::boolean",
            "1::bool",
            "1=1",
            "1 = 1.0",
            "'a'='a'",
            "'1' = 1",
            "1 < 2",
            "2 >= 1",
            "1 <> 2",
            "1 != 2",
            "id = id",
            "t.id >= t.id",
            "lower(name) = lower(name)",
            "id IS NOT DISTINCT FROM id",
            "NOT false",
            "NOT NOT true",
            "NOT 1 = 2",
            "id = 5 OR true",
            "true OR id = 5",
            "x IS NULL OR x IS NOT NULL",
            "x IS NOT NULL OR id = 3 OR x IS NULL",
            "flag IS TRUE OR flag IS NOT TRUE",
            "true AND 1 = 1",
            "name LIKE '%'",
            "name ILIKE '%%'",
            "1 BETWEEN 0 AND 2",
            "1 IN (1, 2)",
            "3 NOT IN (1, 2)",
            "'x' IS NOT NULL",
            "NULL IS NULL",
            "true IS TRUE",
            "(1 = 1)",
            "((id = id))",
        ] {
            assert_eq!(
                filter_of(&format!("DELETE FROM t WHERE {w}")),
                Filter::Tautology,
                "{w}"
            );
        }
    }

    #[test]
    fn contradictions_touch_nothing() {
        for w in [
            "false",
            "NULL",
            "1 = 2",
            "id <> id",
            "id = 5 AND false",
            "false OR 1 = 0",
            "NOT true",
        ] {
            let f = filter_of(&format!("DELETE FROM t WHERE {w}"));
            assert_eq!(f, Filter::Contradiction, "{w}");
            assert!(f.is_effective());
        }
    }

    #[test]
    fn real_filters() {
        for w in [
            "id = 5",
            "id = $1",
            "t.id = 5 AND true",
            "name LIKE 'a%'",
            "id = id + 0",
            "x IS NULL",
            "id IN (SELECT id FROM other)",
            "EXISTS (SELECT 1 FROM other o WHERE o.t_id = t.id)",
            "EXISTS (SELECT 1 FROM other o WHERE o.t_id = id)",
        ] {
            assert_eq!(
                filter_of(&format!("DELETE FROM t WHERE {w}")),
                Filter::Restrictive,
                "{w}"
            );
        }
    }

    #[test]
    fn row_independent_conditions() {
        for w in [
            "$1",
            "now() < '2030-01-01'",
            "EXISTS (SELECT 1 FROM other o WHERE o.x = 1)",
            "'a' < 'b'",
        ] {
            let f = filter_of(&format!("DELETE FROM t WHERE {w}"));
            assert_eq!(f, Filter::RowIndependent, "{w}");
            assert!(!f.is_effective());
        }
    }

    #[test]
    fn absent_and_current_of() {
        assert_eq!(filter_of("DELETE FROM t"), Filter::Absent);
        assert_eq!(filter_of("UPDATE t SET a = 1"), Filter::Absent);
        assert_eq!(
            filter_of("DELETE FROM t WHERE CURRENT OF c"),
            Filter::CurrentOf
        );
        assert_eq!(
            filter_of("UPDATE t SET a = 1 WHERE CURRENT OF c"),
            Filter::CurrentOf
        );
    }
}
