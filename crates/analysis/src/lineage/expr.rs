//! The sources of one expression.
//!
//! Every node type is covered by the generated [`for_each_child`]: a node
//! without a rule of its own is computed from its children, so a new kind
//! of expression contributes every column it mentions. Rules exist only
//! where a node narrows (constants, `EXISTS`), widens (a user function:
//! unknown) or redirects (column references, sub-queries) the sources.

use pg_query::protobuf as pb;
use pg_query::NodeRef;

use super::query::Lineager;
use super::{columns, Lineage};
use crate::capabilities;
use crate::functions::builtin_volatility;
use crate::walk::children::for_each_child;
use crate::walk::{boxed_node, node_of, qualified, string_of, strings};

impl<'a> Lineager<'a> {
    /// The sources of the value of `node`.
    pub(super) fn expr(&mut self, node: NodeRef<'a>) -> Lineage {
        if !self.enter() {
            return Lineage::Unknown;
        }
        let lineage = match node {
            // A column (or a field of a whole row) is its value unchanged;
            // anything else computes one.
            NodeRef::ColumnRef(c) => self.column_ref(c),
            NodeRef::AIndirection(i) => self.indirection(i),
            NodeRef::FuncCall(f) => self.call(f).computed(),
            NodeRef::AExpr(e) if !is_between(e) && !builtin_operator(&e.name) => Lineage::Unknown,
            NodeRef::SubLink(s) => self.sub_link(s).computed(),
            // Reached only through nodes without a rule (JSON_ARRAY(SELECT
            // ...)): everything the query returns.
            NodeRef::SelectStmt(s) => columns::whole(&self.select(s)),
            NodeRef::InsertStmt(_)
            | NodeRef::UpdateStmt(_)
            | NodeRef::DeleteStmt(_)
            | NodeRef::MergeStmt(_) => Lineage::Unknown,
            other => self.children(other).computed(),
        };
        self.leave();
        lineage
    }

    /// The union of every child's sources.
    pub(super) fn children(&mut self, node: NodeRef<'a>) -> Lineage {
        let mut lineage = Lineage::NONE;
        for_each_child(node, &mut |_, child| {
            if !lineage.is_unknown() {
                let l = self.expr(child);
                lineage.union(&l);
            }
        });
        lineage
    }

    pub(super) fn exprs(&mut self, nodes: &'a [pb::Node]) -> Lineage {
        let mut lineage = Lineage::NONE;
        for n in nodes.iter().filter_map(node_of) {
            let l = self.expr(n);
            lineage.union(&l);
        }
        lineage
    }

    fn column_ref(&mut self, c: &'a pb::ColumnRef) -> Lineage {
        let (parts, star) = column_ref_parts(c);
        match (parts.as_slice(), star) {
            ([], true) => self.scopes.whole_level(),
            (qualifier, true) => self.scopes.whole_row(qualifier),
            ([], false) => Lineage::NONE,
            ([name], false) => self.scopes.unqualified(name),
            (parts, false) => self.scopes.qualified(parts),
        }
    }

    /// A call: a built-in computes its value from its arguments (and, for
    /// aggregates and window functions, what orders and filters their
    /// input); anything else may read any table.
    fn call(&mut self, f: &'a pb::FuncCall) -> Lineage {
        let parts: Vec<&str> = strings(&f.funcname).collect();
        if !is_builtin_function(&parts) {
            return Lineage::Unknown;
        }
        let mut lineage = self.exprs(&f.args);
        let order = self.exprs(&f.agg_order);
        lineage.union(&order);
        if let Some(filter) = boxed_node(&f.agg_filter) {
            let l = self.expr(filter);
            lineage.union(&l);
        }
        if let Some(over) = &f.over {
            // A window's partitions and order are computed over, and group
            // and order rows too.
            let l = self.children(NodeRef::WindowDef(over));
            self.choose(&l);
            lineage.union(&l);
            if !over.name.is_empty() || !over.refname.is_empty() {
                // `OVER w`, `OVER (w ...)`: a named window of this level's
                // WINDOW clause. All of them, rather than follow the chain.
                let windows = self.scopes.windows();
                let l = self.exprs(windows);
                lineage.union(&l);
            }
        }
        lineage
    }

    /// `(c).email`, `(c).address.city`: a field of a whole row is that
    /// column. Subscripts (`(a)[i]`) and anything else: every part.
    fn indirection(&mut self, i: &'a pb::AIndirection) -> Lineage {
        if let Some(NodeRef::ColumnRef(c)) = boxed_node(&i.arg) {
            let (mut parts, star) = column_ref_parts(c);
            let field = i.indirection.first().and_then(string_of);
            if let (false, Some(field)) = (star, field) {
                parts.push(field);
                return self.scopes.qualified(&parts);
            }
        }
        self.children(NodeRef::AIndirection(i)).computed()
    }

    fn sub_link(&mut self, s: &'a pb::SubLink) -> Lineage {
        let kind = pb::SubLinkType::try_from(s.sub_link_type);
        if matches!(kind, Ok(pb::SubLinkType::ExistsSublink)) {
            // One bit about the sub-query's rows: not a value of a column
            // (see the module documentation), but what its rows are chosen
            // by counts as choosing the outer rows.
            if let Some(NodeRef::SelectStmt(q)) = boxed_node(&s.subselect) {
                self.select(q);
            }
            return Lineage::NONE;
        }
        if !builtin_operator(&s.oper_name) {
            return Lineage::Unknown;
        }
        let mut lineage = match boxed_node(&s.subselect) {
            Some(NodeRef::SelectStmt(q)) => columns::whole(&self.select(q)),
            Some(_) | None => Lineage::Unknown,
        };
        if let Some(test) = boxed_node(&s.testexpr) {
            let l = self.expr(test);
            lineage.union(&l);
        }
        lineage
    }
}

/// Whether `node` stands for several columns where a list of values is
/// expanded (`x.*` or `(x).*` in a target list, VALUES or `ROW(...)`).
pub(super) fn expands_row(node: NodeRef<'_>) -> bool {
    match node {
        NodeRef::ColumnRef(c) => column_ref_parts(c).1,
        NodeRef::AIndirection(i) => matches!(
            i.indirection.last().and_then(|n| n.node.as_ref()),
            Some(pb::node::Node::AStar(_))
        ),
        _ => false,
    }
}

/// The name parts of a column reference, and whether it ends in `*`.
pub(super) fn column_ref_parts(c: &pb::ColumnRef) -> (Vec<&str>, bool) {
    let mut parts = Vec::with_capacity(c.fields.len());
    let mut star = false;
    for f in &c.fields {
        match &f.node {
            Some(pb::node::Node::String(s)) => parts.push(s.sval.as_str()),
            Some(pb::node::Node::AStar(_)) => star = true,
            _ => {}
        }
    }
    (parts, star)
}

/// Whether a call by this name reaches a pg_catalog function that computes
/// its result from its arguments only: known to the built-in table,
/// unqualified or qualified with pg_catalog, and not one that runs SQL
/// given as text (`query_to_xml`), which may read anything.
pub(super) fn is_builtin_function(parts: &[&str]) -> bool {
    let name = qualified(parts);
    name.schema.as_deref().is_none_or(|s| s == "pg_catalog")
        && builtin_volatility(&name.name).is_some()
        && !capabilities::runs_sql_text(&name.name)
}

/// Whether an operator name (possibly empty: no operator) is a built-in
/// one; any other may call any function.
fn builtin_operator(name: &[pb::Node]) -> bool {
    let parts: Vec<&str> = strings(name).collect();
    match parts.split_last() {
        None => true,
        Some((op, schema)) => capabilities::is_builtin_operator(schema.last().copied(), op),
    }
}

/// BETWEEN is named by its keyword, and runs the built-in `>=` and `<=`
/// (looked up by name: the walk reports them as operators).
fn is_between(e: &pb::AExpr) -> bool {
    matches!(
        pb::AExprKind::try_from(e.kind),
        Ok(pb::AExprKind::AexprBetween
            | pb::AExprKind::AexprNotBetween
            | pb::AExprKind::AexprBetweenSym
            | pb::AExprKind::AexprNotBetweenSym)
    )
}
