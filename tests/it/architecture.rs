//! The layers' walls, checked on the source: a module that reaches through a wall fails this
//! test, naming the file, the line and the wall.
//!
//!     grpc (transport) -> app (use cases, units of work) -> store (queries) -> domain
//!                                                        \-> domain (types and rules)
//!
//! - `domain`: types and rules only. No other layer of the service, no SeaORM, no tonic, no
//!   tokio, no async: a decision is a plain function over loaded state.
//! - `store`: SeaORM entities and queries. Never the transport, the use cases, email or
//!   credentials: it decides nothing and sends nothing.
//! - `app`: the use cases. Never the transport, and no SQL of its own.
//! - `grpc`: the transport. Never the store: it converts requests, calls one use case and maps
//!   the one error type.
//!
//! Every reference counts, not only `use` lines: `crate::store::Store` in a signature is an
//! import too, and so is `super::super::store`.

use std::path::{Path, PathBuf};

/// One wall: files under `layer` must not name any of `never` (a module of this crate, as
/// `crate::name`, or an outside crate, as `name::`).
struct Wall {
    layer: &'static str,
    never: &'static [&'static str],
    /// Also refuse `async` and `.await`.
    no_async: bool,
}

const WALLS: &[Wall] = &[
    Wall {
        layer: "domain",
        never: &[
            "crate::app",
            "crate::store",
            "crate::grpc",
            "crate::email",
            "crate::auth",
            "crate::server",
            "crate::config",
            "crate::clock",
            "crate::bootstrap",
            "crate::proto",
            "crate::telemetry",
            "crate::housekeeping",
            "sea_orm",
            "migration",
            "tonic",
            "prost",
            "tokio",
            "reqwest",
            "tracing",
            "samael",
            "openssl",
            "quick_xml",
        ],
        no_async: true,
    },
    Wall {
        layer: "store",
        never: &[
            "crate::app",
            "crate::grpc",
            "crate::email",
            "crate::auth",
            "crate::server",
            "crate::bootstrap",
            "crate::proto",
            "tonic",
        ],
        no_async: false,
    },
    Wall {
        layer: "app",
        never: &[
            "crate::grpc",
            "crate::server",
            "crate::proto",
            "sea_orm",
            "tonic",
        ],
        no_async: false,
    },
    Wall {
        layer: "grpc",
        never: &["crate::store", "sea_orm", "migration"],
        no_async: false,
    },
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file under `src/` (`src/store/users.rs` -> `["store", "users"]`;
/// `mod.rs` names its folder).
fn module_of(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .skip(1)
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The code of a line without its comment (`//` outside a string).
fn code_of(line: &str) -> &str {
    let mut in_string = false;
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
        i += 1;
    }
    line
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path this line names, made absolute: `crate::a::b`, `super::x` resolved against
/// `module`, the members of `crate::{a, b::c}` groups, and outside crates (`sea_orm::...`).
fn paths_named(code: &str, module: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if !is_ident(chars[i]) || (i > 0 && (is_ident(chars[i - 1]) || chars[i - 1] == ':')) {
            i += 1;
            continue;
        }
        // A path starts here: read `ident::ident::...`.
        let mut segments = Vec::new();
        let mut j = i;
        loop {
            let start = j;
            while j < chars.len() && is_ident(chars[j]) {
                j += 1;
            }
            segments.push(chars[start..j].iter().collect::<String>());
            if chars.get(j) == Some(&':') && chars.get(j + 1) == Some(&':') {
                j += 2;
                if chars.get(j) == Some(&'{') {
                    // A group: each top-level member continues the path.
                    let mut depth = 0;
                    let mut member = String::new();
                    let mut members = Vec::new();
                    let mut end = j + 1;
                    for &c in &chars[j + 1..] {
                        end += 1;
                        match c {
                            '{' => depth += 1,
                            '}' if depth == 0 => break,
                            '}' => depth -= 1,
                            ',' if depth == 0 => {
                                members.push(std::mem::take(&mut member));
                                continue;
                            }
                            _ => {}
                        }
                        if depth == 0 {
                            member.push(c);
                        }
                    }
                    members.push(member);
                    for m in members {
                        let first: String = m.trim().chars().take_while(|c| is_ident(*c)).collect();
                        if !first.is_empty() && first != "self" {
                            let mut path = segments.clone();
                            path.push(first);
                            found.push(path);
                        }
                    }
                    segments.clear();
                    j = end;
                    break;
                }
                if j < chars.len() && is_ident(chars[j]) {
                    continue;
                }
            }
            break;
        }
        if segments.len() > 1 {
            found.push(segments);
        }
        i = j.max(i + 1);
    }
    found
        .into_iter()
        .filter_map(|path| resolve(path, module))
        .collect()
}

/// `crate::...` stays; `super::...` and `self::...` become `crate::...`; an outside crate's path
/// becomes its crate's name. Other paths (locals, `Self::`, types) name nothing of interest.
fn resolve(path: Vec<String>, module: &[String]) -> Option<String> {
    match path[0].as_str() {
        "crate" => Some(path.join("::")),
        "super" | "self" => {
            let mut base: Vec<String> = module.to_vec();
            let mut rest = path.as_slice();
            while let Some(first) = rest.first() {
                match first.as_str() {
                    "super" => {
                        base.pop();
                    }
                    "self" => {}
                    _ => break,
                }
                rest = &rest[1..];
            }
            let mut full = vec!["crate".to_owned()];
            full.extend(base);
            full.extend(rest.iter().cloned());
            Some(full.join("::"))
        }
        first => Some(first.to_owned()),
    }
}

fn names(path: &str, forbidden: &str) -> bool {
    path == forbidden || path.starts_with(&format!("{forbidden}::"))
}

#[test]
fn the_layers_keep_their_walls() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    let mut details = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(root).unwrap();
        let module = module_of(relative);
        let Some(wall) = WALLS
            .iter()
            .find(|w| module.first().is_some_and(|m| m == w.layer))
        else {
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        let shown = relative.display().to_string();
        for (n, line) in text.lines().enumerate() {
            let code = code_of(line);
            for path in paths_named(code, &module) {
                for forbidden in wall.never {
                    if names(&path, forbidden) {
                        details.push(format!(
                            "{shown}:{}: `{}` names {forbidden}: {} must not reach it",
                            n + 1,
                            line.trim(),
                            wall.layer
                        ));
                    }
                }
            }
            if wall.no_async && (code.contains("async ") || code.contains(".await")) {
                details.push(format!(
                    "{shown}:{}: `{}`: {} holds no async code",
                    n + 1,
                    line.trim(),
                    wall.layer
                ));
            }
        }
    }
    assert!(details.is_empty(), "walls broken:\n{}", details.join("\n"));
}

#[test]
fn the_reader_sees_every_form_of_a_path() {
    let module = vec!["domain".to_owned(), "users".to_owned()];
    let seen = |line: &str| paths_named(code_of(line), &module);
    assert_eq!(seen("use crate::store::Store;"), ["crate::store::Store"]);
    assert_eq!(
        seen("use crate::{app::App, store::{Store, Tx}};"),
        ["crate::app", "crate::store"]
    );
    assert_eq!(seen("use super::super::store::Tx;"), ["crate::store::Tx"]);
    assert_eq!(
        seen("use super::roles::Role;"),
        ["crate::domain::roles::Role"]
    );
    assert_eq!(
        seen("fn f(s: &crate::store::Store) -> sea_orm::DbErr {"),
        ["crate::store::Store", "sea_orm"]
    );
    assert!(seen("// crate::store::Store in a comment").is_empty());
    assert!(seen(r#"let s = "// not a comment"; x::y"#).contains(&"x".to_owned()));
    assert!(names("crate::store::Store", "crate::store"));
    assert!(!names("crate::storehouse", "crate::store"));
}
