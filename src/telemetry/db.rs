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
    let (operation, summary) = match statement.as_deref() {
        Some(sql) => summarise(sql),
        None => {
            let operation = match span.name.strip_prefix(SEA_ORM).unwrap_or_default() {
                "begin" => "BEGIN".to_owned(),
                "commit" => "COMMIT".to_owned(),
                "rollback" => "ROLLBACK".to_owned(),
                _ => text(old::OPERATION).unwrap_or_else(|| "EXECUTE".to_owned()),
            };
            (operation.clone(), operation)
        }
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

/// The longest summary kept (the conventions' limit).
const MAX_SUMMARY: usize = 255;

/// A statement's operation (the first one in it) and its query summary: each operation with the
/// table it reads or writes first, in order, the parts of a `WITH` first (`INSERT login_throttle
/// SELECT users`).
fn summarise(sql: &str) -> (String, String) {
    let parts: Vec<(String, Option<String>)> = statements(sql)
        .into_iter()
        .map(|part| {
            let operation = part
                .split_whitespace()
                .next()
                .unwrap_or("EXECUTE")
                .to_ascii_uppercase();
            let target = target(&operation, part);
            (operation, target)
        })
        .collect();
    let operation = parts
        .first()
        .map(|(operation, _)| operation.clone())
        .unwrap_or_else(|| "EXECUTE".to_owned());
    let mut summary = String::new();
    for (operation, target) in &parts {
        let part = match target {
            Some(target) => format!("{operation} {target}"),
            None => operation.clone(),
        };
        if summary.len() + 1 + part.len() > MAX_SUMMARY {
            break;
        }
        if !summary.is_empty() {
            summary.push(' ');
        }
        summary.push_str(&part);
    }
    (operation, summary)
}

/// The statements `sql` runs: the body of each common table expression of a `WITH`, then the
/// main statement; otherwise `sql` itself.
fn statements(sql: &str) -> Vec<&str> {
    let sql = sql.trim_start();
    if !sql
        .split_whitespace()
        .next()
        .is_some_and(|word| word.eq_ignore_ascii_case("WITH"))
    {
        return vec![sql];
    }
    let mut parts = Vec::new();
    let mut rest = &sql[4..];
    while let Some(after_as) = after_top_level_keyword(rest, "AS") {
        let Some(open) = rest[after_as..].find('(').map(|i| after_as + i) else {
            break;
        };
        let Some(close) = closing_paren(rest, open) else {
            break;
        };
        parts.push(rest[open + 1..close].trim());
        rest = rest[close + 1..].trim_start();
        match rest.strip_prefix(',') {
            Some(more) => rest = more,
            None => break,
        }
    }
    parts.push(rest.trim());
    parts
}

/// The bytes of `sql` from `from` on that stand outside quoted identifiers and string literals,
/// each with its offset and the parenthesis depth (relative to `from`) after it is read.
fn unquoted(sql: &str, from: usize) -> impl Iterator<Item = (usize, u8, usize)> + '_ {
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    sql.bytes()
        .enumerate()
        .skip(from)
        .filter_map(move |(i, b)| {
            match quote {
                Some(q) if b == q => quote = None,
                Some(_) => {}
                None => match b {
                    b'"' | b'\'' | b'`' => quote = Some(b),
                    b'(' => depth += 1,
                    b')' => depth = depth.saturating_sub(1),
                    _ => {}
                },
            }
            // An opening quote is not itself outside the quotes; a closing one ends them.
            (quote.is_none() && !matches!(b, b'"' | b'\'' | b'`')).then_some((i, b, depth))
        })
}

/// The offset of the parenthesis that closes the one at `open`.
fn closing_paren(sql: &str, open: usize) -> Option<usize> {
    unquoted(sql, open)
        .find(|&(_, b, depth)| b == b')' && depth == 0)
        .map(|(i, _, _)| i)
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
    unquoted(sql, 0)
        .find(|&(i, b, depth)| {
            // A keyword starts with a letter, never with a parenthesis, so the depth after the
            // byte is the depth at it.
            depth == 0
                && b.is_ascii_alphabetic()
                && (i == 0 || !is_word(bytes[i - 1]))
                && sql
                    .get(i..i + keyword.len())
                    .is_some_and(|word| word.eq_ignore_ascii_case(keyword))
                && bytes.get(i + keyword.len()).is_none_or(|b| !is_word(*b))
        })
        .map(|(i, _, _)| i + keyword.len())
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
                "SELECT",
                "SELECT users",
            ),
            (
                r#"SELECT (SELECT COUNT(*) FROM "memberships" WHERE "account_id" = $1) AS "n" FROM "accounts" WHERE "id" = $1"#,
                "SELECT",
                "SELECT accounts",
            ),
            (
                r#"INSERT INTO "sessions" ("id", "user_id") VALUES ($1, $2)"#,
                "INSERT",
                "INSERT sessions",
            ),
            (
                r#"UPDATE "outbox_emails" SET "status" = ? WHERE "id" = ?"#,
                "UPDATE",
                "UPDATE outbox_emails",
            ),
            (
                r#"DELETE FROM "idempotency_keys" WHERE "expires_at" < $1"#,
                "DELETE",
                "DELETE idempotency_keys",
            ),
            (r#"SELECT 'from x' AS "from" FROM t"#, "SELECT", "SELECT t"),
            ("SELECT pg_notify($1, $2)", "SELECT", "SELECT"),
            ("pragma journal_mode = WAL", "PRAGMA", "PRAGMA"),
            (
                r#"WITH "attempt" AS (INSERT INTO "login_throttle" ("user_id") SELECT "id" FROM "users" WHERE "email_key" = $1 ON CONFLICT DO NOTHING RETURNING 1) SELECT "users"."id", EXISTS(SELECT 1 FROM "attempt") AS "counted" FROM "users" WHERE "email_key" = $2"#,
                "INSERT",
                "INSERT login_throttle SELECT users",
            ),
            (
                r#"WITH "write_0" AS (INSERT INTO "sessions" ("id") VALUES ($1)), "write_1" AS (UPDATE "memberships" SET "last_login_at" = $2 WHERE ("a" = $3)), "write_2" AS (DELETE FROM "login_throttle" WHERE "user_id" = $4) SELECT $5"#,
                "INSERT",
                "INSERT sessions UPDATE memberships DELETE login_throttle SELECT",
            ),
        ];
        for (sql, operation, summary) in cases {
            assert_eq!(
                summarise(sql),
                (operation.to_owned(), summary.to_owned()),
                "{sql}"
            );
        }
    }

    #[test]
    fn summaries_stay_within_the_conventions_limit() {
        let parts: Vec<String> = (0..40)
            .map(|n| format!(r#""w{n}" AS (INSERT INTO "table_number_{n}" ("a") VALUES ($1))"#))
            .collect();
        let sql = format!("WITH {} SELECT 1", parts.join(", "));
        let (operation, summary) = summarise(&sql);
        assert_eq!(operation, "INSERT");
        assert!(summary.len() <= MAX_SUMMARY, "{}", summary.len());
        assert!(summary.starts_with("INSERT table_number_0 INSERT table_number_1"));
    }

    fn sea_orm_span(name: &str, attributes: Vec<KeyValue>) -> SpanData {
        SpanData {
            span_context: opentelemetry::trace::SpanContext::empty_context(),
            parent_span_id: opentelemetry::trace::SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: opentelemetry::trace::SpanKind::Client,
            name: name.to_owned().into(),
            start_time: std::time::SystemTime::now(),
            end_time: std::time::SystemTime::now(),
            attributes,
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status: opentelemetry::trace::Status::Ok,
            instrumentation_scope: Default::default(),
        }
    }

    fn get(span: &SpanData, key: &str) -> Option<String> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.as_str().into_owned())
    }

    #[test]
    fn spans_get_the_current_names_and_lose_the_error_message() {
        let mut span = sea_orm_span(
            "sea_orm.query_one",
            vec![
                KeyValue::new("db.system", "postgresql"),
                KeyValue::new("db.operation", "SELECT"),
                KeyValue::new(
                    "db.statement",
                    r#"SELECT "id" FROM "users" WHERE "id" = $1"#,
                ),
                KeyValue::new("exception.message", "value \"secret\" is wrong"),
                KeyValue::new("thread.id", 3),
            ],
        );
        span.status = opentelemetry::trace::Status::error("value \"secret\" is wrong");
        conventional(&mut span);
        assert_eq!(span.name, "SELECT users");
        assert_eq!(get(&span, "db.system.name").as_deref(), Some("postgresql"));
        assert_eq!(get(&span, "db.operation.name").as_deref(), Some("SELECT"));
        assert_eq!(
            get(&span, "db.query.summary").as_deref(),
            Some("SELECT users")
        );
        assert_eq!(
            get(&span, "db.query.text").as_deref(),
            Some(r#"SELECT "id" FROM "users" WHERE "id" = $1"#)
        );
        assert_eq!(get(&span, "error.type").as_deref(), Some("_OTHER"));
        assert_eq!(get(&span, "thread.id").as_deref(), Some("3"));
        for old in [
            "db.system",
            "db.operation",
            "db.statement",
            "exception.message",
        ] {
            assert_eq!(get(&span, old), None, "{old}");
        }
        assert!(!format!("{span:?}").contains("secret"));
    }

    #[test]
    fn transaction_spans_are_named_by_their_verb() {
        for (name, verb) in [
            ("sea_orm.begin", "BEGIN"),
            ("sea_orm.commit", "COMMIT"),
            ("sea_orm.rollback", "ROLLBACK"),
        ] {
            let mut span = sea_orm_span(
                name,
                vec![
                    KeyValue::new("db.system", "sqlite"),
                    KeyValue::new("db.operation", "EXECUTE"),
                ],
            );
            conventional(&mut span);
            assert_eq!(span.name, verb);
            assert_eq!(get(&span, "db.operation.name").as_deref(), Some(verb));
            assert_eq!(get(&span, "db.query.text"), None);
            assert_eq!(get(&span, "error.type"), None);
        }
    }
}
