//! The layering ARCHITECTURE.md promises, checked on the source: no
//! command imports a sibling command, and nothing below `commands` imports
//! `commands`, `app` or `cli`.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The first segment after `crate::` of every path a file names, with the
/// second for `crate::commands::<name>`. `crate::{a, b::c}` yields `a` and
/// `b`.
fn crate_paths(text: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let code: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = matching_brace(group);
            for item in split_top_level(&group[..end]) {
                out.push(first_two(item.trim()));
            }
        } else {
            out.push(first_two(rest));
        }
    }
    out
}

fn matching_brace(s: &str) -> usize {
    let mut depth = 1;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    s.len()
}

fn split_top_level(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut parts) = (0, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

fn first_two(path: &str) -> (String, Option<String>) {
    let first = ident(path);
    let second = path[first.len()..]
        .strip_prefix("::")
        .map(ident)
        .filter(|s| !s.is_empty());
    (first, second)
}

/// `src/commands/<name>/...` -> `<name>`.
fn command_of(rel: &Path) -> Option<String> {
    let mut parts = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().to_string());
    (parts.next()? == "commands")
        .then(|| parts.next())
        .flatten()
        .map(|n| n.trim_end_matches(".rs").to_string())
        .filter(|n| n != "mod")
}

#[test]
fn layers_only_import_downwards() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    assert!(files.len() > 20, "found only {} source files", files.len());
    let mut violations = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&root).unwrap();
        let text = std::fs::read_to_string(file).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        // The edge: what the binaries call (completion answers from the
        // command tree, as cli.rs does).
        let above_commands = matches!(
            top.as_ref(),
            "app.rs" | "cli.rs" | "completion.rs" | "bin" | "lib.rs"
        );
        let own = command_of(rel);
        for (first, second) in crate_paths(&text) {
            let shown = format!(
                "crate::{first}{}",
                second
                    .as_ref()
                    .map(|s| format!("::{s}"))
                    .unwrap_or_default()
            );
            match (&own, first.as_str()) {
                // A command may use the layers below, never a sibling.
                (Some(me), "commands") if second.as_ref().is_some_and(|s| s != me) => {
                    violations.push(format!("{}: command imports {shown}", rel.display()));
                }
                (Some(_), "app" | "cli") => {
                    violations.push(format!("{}: command imports {shown}", rel.display()));
                }
                (None, "commands" | "app" | "cli")
                    if !above_commands && !rel.starts_with("commands") =>
                {
                    violations.push(format!(
                        "{}: below the commands, imports {shown}",
                        rel.display()
                    ));
                }
                _ => {}
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against ARCHITECTURE.md's layering:\n  {}",
        violations.join("\n  ")
    );
}

#[test]
fn the_checker_sees_grouped_and_nested_imports() {
    let paths = crate_paths(
        "use crate::{commands::versions::Args, report::{Mark, Painter}};\nuse crate::cli::Flavor; // crate::app in a comment\n",
    );
    assert!(paths.contains(&("commands".into(), Some("versions".into()))));
    assert!(
        paths.contains(&("report".into(), Some("Mark".into())))
            || paths.iter().any(|p| p.0 == "report")
    );
    assert!(paths.contains(&("cli".into(), Some("Flavor".into()))));
    assert!(!paths.iter().any(|p| p.0 == "app"));
    assert_eq!(
        command_of(Path::new("commands/backup/sources.rs")),
        Some("backup".into())
    );
    assert_eq!(command_of(Path::new("commands/mod.rs")), None);
    assert_eq!(command_of(Path::new("survey/mod.rs")), None);
}
