//! Rules about the source tree that the compiler cannot check (issue 11, decision 0010).
//!
//! - Code never branches on an error code written as a string literal: it compares with the
//!   constants in `trough_types::error::codes` (or matches a typed error), so a renamed code cannot
//!   silently stop matching. Tests may assert on literal codes: that is the contract under test.
//! - No crate outside `crates/` and the binary: the folders are the architecture.

use std::path::{Path, PathBuf};

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

/// Whether `path` holds only tests (by the project's naming: `tests.rs`, `tests_*.rs`, `*_test.rs`,
/// or under a `tests/` or `differential/` folder).
fn is_test_file(path: &Path) -> bool {
    let name = path.file_name().unwrap().to_string_lossy();
    name == "tests.rs"
        || name.starts_with("tests_")
        || name.ends_with("_test.rs")
        || path
            .components()
            .any(|c| c.as_os_str() == "tests" || c.as_os_str() == "differential")
}

#[test]
fn no_branching_on_literal_error_codes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    rust_files(&root.join("src"), &mut files);
    assert!(files.len() > 50, "walked {} files", files.len());
    let patterns = ["code() == \"", "code == \"", "code() != \"", "code != \""];
    let mut offenders = Vec::new();
    for f in files.iter().filter(|f| !is_test_file(f)) {
        let text = std::fs::read_to_string(f).unwrap();
        // Code after `#[cfg(test)]` in a file is its unit tests.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (i, line) in code.lines().enumerate() {
            if patterns.iter().any(|p| line.contains(p)) {
                offenders.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "compare error codes with trough_types::error::codes constants:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn every_crate_lives_under_crates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("members = [\"crates/*\", \"bench\"]"),
        "workspace members changed"
    );
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && path.join("Cargo.toml").exists() {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            assert_eq!(name, "bench", "a crate outside crates/: {name}");
        }
    }
}

#[test]
fn every_documented_error_code_is_a_constant() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let api = std::fs::read_to_string(root.join("docs/api.md")).unwrap();
    let table = &api[api.find("| status | codes |").expect("codes table")..];
    let table = &table[..table.find("\n\n").unwrap_or(table.len())];
    let errors = std::fs::read_to_string(root.join("crates/types/src/error.rs")).unwrap();
    let mut documented = 0;
    let mut missing = Vec::new();
    for (i, part) in table.split('`').enumerate() {
        // Odd pieces are inside backticks.
        let is_code = i % 2 == 1 && part.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        if !is_code {
            continue;
        }
        documented += 1;
        // Codes built from an id kind (`invalid_segment_id`) are generated in id.rs.
        if part.starts_with("invalid_") && part.ends_with("_id") {
            continue;
        }
        if !errors.contains(&format!("= \"{part}\";")) {
            missing.push(part.to_owned());
        }
    }
    assert!(documented > 30, "read {documented} codes from docs/api.md");
    assert!(
        missing.is_empty(),
        "codes in docs/api.md without a constant in trough_types::error::codes: {missing:?}"
    );
}
