//! Helpers for statements that read several tables at once: each table's columns are selected
//! under a prefix, so one joined row gives back one model per table.

use sea_orm::{
    ConnectionTrait, DbErr, EntityTrait, FromQueryResult, IdenStatic, Iterable, QueryResult,
    sea_query::{Alias, Expr, SelectStatement},
};

/// Adds every column of `entity` to `query`, each named `{prefix}{column}`.
pub(super) fn columns_of<E: EntityTrait>(query: &mut SelectStatement, entity: E, prefix: &str) {
    for column in E::Column::iter() {
        query.expr_as(
            Expr::col((entity, column)),
            Alias::new(format!("{prefix}{}", column.as_str())),
        );
    }
}

/// Runs `query` and returns its rows.
pub(super) async fn all(
    conn: &impl ConnectionTrait,
    query: &SelectStatement,
) -> Result<Vec<QueryResult>, DbErr> {
    conn.query_all_raw(conn.get_database_backend().build(query))
        .await
}

/// The model of `E` in `row`, under `prefix`.
pub(super) fn model<M: FromQueryResult>(row: &QueryResult, prefix: &str) -> Result<M, DbErr> {
    M::from_query_result(row, prefix)
}
