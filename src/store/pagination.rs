//! The SQL side of keyset pages (the tokens are `domain::page`'s).

/// Rows after `(key, id)` in `(key_col, id_col)` order (before it when `descending`), written as
/// one row comparison, `(key_col, id_col) > (key, id)`: the database seeks to it on an index that
/// ends with the two columns, so a page deep in the list reads no more rows than the first.
pub fn keyset_after<K, I>(
    key_col: K,
    id_col: I,
    key: impl Into<sea_orm::Value>,
    id: uuid::Uuid,
    descending: bool,
) -> sea_orm::sea_query::Expr
where
    K: sea_orm::ColumnTrait,
    I: sea_orm::ColumnTrait,
{
    use sea_orm::sea_query::{Expr, ExprTrait};
    let columns = Expr::tuple([key_col.into_expr(), id_col.into_expr()]);
    let values = Expr::tuple([Expr::value(key), Expr::value(id)]);
    if descending {
        columns.lt(values)
    } else {
        columns.gt(values)
    }
}
