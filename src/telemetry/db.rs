//! Database spans. SeaORM makes them (its `tracing-spans` feature: one client span per statement,
//! and for `BEGIN`, `COMMIT` and `ROLLBACK`) under the attribute names of older conventions
//! (`db.system`, `db.operation`, `db.statement`) and names such as `sea_orm.query_one`. The
//! processor here gives them the current database conventions before they are exported: the
//! span is named by its query summary (`SELECT users`), and carries `db.system.name`,
//! `db.operation.name`, `db.query.summary` and `db.query.text`. The text is the statement as
//! prepared, with `$1` or `?` in place of every value: values are bound apart and never reach a
//! span. A failed statement's error message is dropped (a driver may quote a value in it); its
//! span has the status Error and `error.type`.

use std::time::Duration;

use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    trace::{Span, SpanData, SpanProcessor},
};
use opentelemetry_semantic_conventions::attribute;

/// SeaORM's span names all start so.
const SEA_ORM: &str = "sea_orm.";

/// Whether a span is one of SeaORM's statement spans (by its `tracing` target).
pub(super) fn is_statement(metadata: &tracing::Metadata<'_>) -> bool {
    metadata.is_span() && metadata.target().starts_with("sea_orm")
}

/// Wraps the exporting processor: database spans are renamed to the conventions, the others pass
/// through unchanged.
#[derive(Debug)]
pub(super) struct Conventions<P>(pub(super) P);

impl<P: SpanProcessor> SpanProcessor for Conventions<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.0.on_start(span, cx);
    }

    fn on_end(&self, mut span: SpanData) {
        if span.name.starts_with(SEA_ORM) {
            conventional(&mut span);
        }
        self.0.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

/// SeaORM's names for what the conventions call `db.system.name`, `db.operation.name` and
/// `db.query.text`, and the error message it records.
#[allow(deprecated)]
mod old {
    use opentelemetry_semantic_conventions::attribute;
    pub(super) const SYSTEM: &str = attribute::DB_SYSTEM;
    pub(super) const OPERATION: &str = attribute::DB_OPERATION;
    pub(super) const STATEMENT: &str = attribute::DB_STATEMENT;
    pub(super) const EXCEPTION_MESSAGE: &str = attribute::EXCEPTION_MESSAGE;
}

fn conventional(span: &mut SpanData) {
    let text = |key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.as_str().into_owned())
    };
    let system = text(old::SYSTEM);
    let statement = text(old::STATEMENT);
    let operation = operation(
        span.name.strip_prefix(SEA_ORM).unwrap_or_default(),
        text(old::OPERATION).as_deref(),
        statement.as_deref(),
    );
    let summary = match statement.as_deref().and_then(|sql| target(&operation, sql)) {
        Some(target) => format!("{operation} {target}"),
        None => operation.clone(),
    };
    span.attributes.retain(|kv| {
        ![
            old::SYSTEM,
            old::OPERATION,
            old::STATEMENT,
            old::EXCEPTION_MESSAGE,
        ]
        .contains(&kv.key.as_str())
    });
    if let Some(system) = system {
        span.attributes
            .push(KeyValue::new(attribute::DB_SYSTEM_NAME, system));
    }
    span.attributes
        .push(KeyValue::new(attribute::DB_OPERATION_NAME, operation));
    span.attributes
        .push(KeyValue::new(attribute::DB_QUERY_SUMMARY, summary.clone()));
    if let Some(statement) = statement {
        span.attributes
            .push(KeyValue::new(attribute::DB_QUERY_TEXT, statement));
    }
    if matches!(span.status, opentelemetry::trace::Status::Error { .. }) {
        span.status = opentelemetry::trace::Status::error("");
        span.attributes
            .push(KeyValue::new(attribute::ERROR_TYPE, Value::from("_OTHER")));
    }
    span.name = summary.into();
}

/// The operation: the transaction verbs by the span's kind, otherwise SeaORM's reading of the
/// statement, or for what it calls `EXECUTE` the statement's first word.
fn operation(kind: &str, sea_orm: Option<&str>, statement: Option<&str>) -> String {
    match kind {
        "begin" => return "BEGIN".to_owned(),
        "commit" => return "COMMIT".to_owned(),
        "rollback" => return "ROLLBACK".to_owned(),
        _ => {}
    }
    match (sea_orm, statement) {
        (Some("EXECUTE") | None, Some(sql)) => sql
            .split_whitespace()
            .next()
            .map(str::to_ascii_uppercase)
            .unwrap_or_else(|| "EXECUTE".to_owned()),
        (Some(operation), _) => operation.to_owned(),
        (None, None) => "EXECUTE".to_owned(),
    }
}

/// The table a statement reads or writes first, outside any subquery: what follows `FROM`
/// (`SELECT`, `DELETE`), `INTO` (`INSERT`) or `UPDATE`.
fn target(operation: &str, sql: &str) -> Option<String> {
    let keyword = match operation {
        "SELECT" | "DELETE" => "FROM",
        "INSERT" => "INTO",
        "UPDATE" => "UPDATE",
        _ => return None,
    };
    let rest = &sql[after_top_level_keyword(sql, keyword)?..];
    let name: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '"' | '`'))
        .filter(|c| !matches!(c, '"' | '`'))
        .collect();
    (!name.is_empty()).then_some(name)
}

/// The byte offset just after the first `keyword` (a whole word, any case) outside parentheses,
/// quoted identifiers and string literals.
fn after_top_level_keyword(sql: &str, keyword: &str) -> Option<usize> {
    let bytes = sql.as_bytes();
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None => match b {
                b'"' | b'\'' | b'`' => quote = Some(b),
                b'(' => depth += 1,
                b')' => depth = depth.saturating_sub(1),
                _ if depth == 0
                    && (i == 0 || !is_word(bytes[i - 1]))
                    && sql
                        .get(i..i + keyword.len())
                        .is_some_and(|word| word.eq_ignore_ascii_case(keyword))
                    && bytes.get(i + keyword.len()).is_none_or(|b| !is_word(*b)) =>
                {
                    return Some(i + keyword.len());
                }
                _ => {}
            },
        }
        i += 1;
    }
    None
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_summarised_by_operation_and_first_table() {
        let cases = [
            (
                r#"SELECT "users"."id", "users"."email" FROM "users" WHERE "users"."email_key" = $1"#,
                "SELECT users",
            ),
            (
                r#"SELECT (SELECT COUNT(*) FROM "memberships" WHERE "account_id" = $1) AS "n" FROM "accounts" WHERE "id" = $1"#,
                "SELECT accounts",
            ),
            (
                r#"INSERT INTO "sessions" ("id", "user_id") VALUES ($1, $2)"#,
                "INSERT sessions",
            ),
            (
                r#"UPDATE "outbox_emails" SET "status" = ? WHERE "id" = ?"#,
                "UPDATE outbox_emails",
            ),
            (
                r#"DELETE FROM "idempotency_keys" WHERE "expires_at" < $1"#,
                "DELETE idempotency_keys",
            ),
            (r#"SELECT 'from x' AS "from" FROM t"#, "SELECT t"),
            ("SELECT pg_notify($1, $2)", "SELECT"),
            ("SELECT 1", "SELECT"),
        ];
        for (sql, expected) in cases {
            let operation = operation("query_one", Some(&sql[..6]), Some(sql));
            let summary = match target(&operation, sql) {
                Some(target) => format!("{operation} {target}"),
                None => operation,
            };
            assert_eq!(summary, expected, "{sql}");
        }
    }

    #[test]
    fn transaction_verbs_come_from_the_span_and_other_statements_from_their_first_word() {
        assert_eq!(operation("begin", Some("EXECUTE"), None), "BEGIN");
        assert_eq!(operation("commit", Some("EXECUTE"), None), "COMMIT");
        assert_eq!(operation("rollback", Some("EXECUTE"), None), "ROLLBACK");
        assert_eq!(
            operation(
                "execute",
                Some("EXECUTE"),
                Some("pragma journal_mode = WAL")
            ),
            "PRAGMA"
        );
        assert_eq!(
            operation("execute_unprepared", Some("EXECUTE"), None),
            "EXECUTE"
        );
        assert_eq!(
            operation("execute", Some("UPDATE"), Some("UPDATE t")),
            "UPDATE"
        );
    }

    #[test]
    fn spans_get_the_current_names_and_lose_the_error_message() {
        let mut span = SpanData {
            span_context: opentelemetry::trace::SpanContext::empty_context(),
            parent_span_id: opentelemetry::trace::SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: opentelemetry::trace::SpanKind::Client,
            name: "sea_orm.query_one".into(),
            start_time: std::time::SystemTime::now(),
            end_time: std::time::SystemTime::now(),
            attributes: vec![
                KeyValue::new("db.system", "postgresql"),
                KeyValue::new("db.operation", "SELECT"),
                KeyValue::new(
                    "db.statement",
                    r#"SELECT "id" FROM "users" WHERE "id" = $1"#,
                ),
                KeyValue::new("exception.message", "value \"secret\" is wrong"),
                KeyValue::new("thread.id", 3),
            ],
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status: opentelemetry::trace::Status::error("value \"secret\" is wrong"),
            instrumentation_scope: Default::default(),
        };
        conventional(&mut span);
        assert_eq!(span.name, "SELECT users");
        let get = |key: &str| {
            span.attributes
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.as_str().into_owned())
        };
        assert_eq!(get("db.system.name").as_deref(), Some("postgresql"));
        assert_eq!(get("db.operation.name").as_deref(), Some("SELECT"));
        assert_eq!(get("db.query.summary").as_deref(), Some("SELECT users"));
        assert_eq!(
            get("db.query.text").as_deref(),
            Some(r#"SELECT "id" FROM "users" WHERE "id" = $1"#)
        );
        assert_eq!(get("error.type").as_deref(), Some("_OTHER"));
        assert_eq!(get("thread.id").as_deref(), Some("3"));
        for old in [
            "db.system",
            "db.operation",
            "db.statement",
            "exception.message",
        ] {
            assert_eq!(get(old), None, "{old}");
        }
        assert!(!format!("{span:?}").contains("secret"));
    }
}
