//! The image's build, simulated: no container engine or image registry is reachable where these
//! tests run, so `docker build` cannot be run. Instead the test builds the binary from exactly
//! what the Dockerfile's build stage copies: it applies `.dockerignore` to the repository (the
//! build context), performs the stage's `COPY` instructions into a folder of its own, and runs
//! `cargo check --offline --locked` there. A file the crate reads at compile time (an askama
//! template, an `include_str!`, a migration) that the Dockerfile does not copy fails this test
//! as it would fail `docker build`. What it does not prove: the base images' contents, the
//! `RUN` lines' shell, and the release profile (a check finds missing inputs, not link errors).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// One `.dockerignore` rule: moby's patternmatcher semantics, for the patterns this file uses
/// (`*`, `?`, literal names; a leading `!` re-includes).
struct Rule {
    pattern: Vec<String>,
    include: bool,
}

fn dockerignore() -> Vec<Rule> {
    let text = std::fs::read_to_string(repo().join(".dockerignore")).expect(".dockerignore exists");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (include, pattern) = match l.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, l),
            };
            assert!(
                !pattern.contains(['[', '\\']) && !pattern.contains("**"),
                "tests/api/image.rs does not implement the .dockerignore pattern {pattern:?}: extend it"
            );
            let pattern = pattern.trim_start_matches('/').trim_end_matches('/');
            Rule { pattern: pattern.split('/').map(str::to_string).collect(), include }
        })
        .collect()
}

/// Go's `filepath.Match` for one path segment, restricted to `*` and `?`.
fn segment_matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|i| go(&p[1..], &n[i..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some(c) => n.first() == Some(c) && go(&p[1..], &n[1..]),
        }
    }
    go(&p, &n)
}

fn rule_matches(rule: &Rule, path: &[&str]) -> bool {
    rule.pattern.len() == path.len() && rule.pattern.iter().zip(path).all(|(p, n)| segment_matches(p, n))
}

/// Whether `path` (relative, `/`-separated) is left out of the build context: the last rule that
/// matches the path or one of its parent folders decides.
fn excluded(rules: &[Rule], path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    let mut out = false;
    for rule in rules {
        if (0..parts.len()).any(|i| rule_matches(rule, &parts[..=i])) {
            out = !rule.include;
        }
    }
    out
}

/// Every file of the build context (relative paths). A folder that is excluded and that no
/// re-including rule reaches into is not walked (target/ is large).
fn build_context(rules: &[Rule]) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    let mut stack = vec![String::new()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(repo().join(&dir)).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().expect("UTF-8 file names");
            let rel = if dir.is_empty() { name } else { format!("{dir}/{name}") };
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                let reachable = !excluded(rules, &rel)
                    || rules.iter().any(|r| r.include && r.pattern.len() > 1 && segment_matches(&r.pattern[0], &rel));
                if reachable {
                    stack.push(rel);
                }
            } else if !excluded(rules, &rel) {
                files.insert(rel);
            }
        }
    }
    files
}

/// An instruction of the Dockerfile, continuation lines joined.
fn instructions() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                let (op, args) = current.split_once(char::is_whitespace).unwrap_or((&current, ""));
                out.push((op.to_ascii_uppercase(), args.trim().to_string()));
                current.clear();
            }
        }
    }
    out
}

struct BuildStage {
    workdir: String,
    /// (sources, destination) of each `COPY` from the build context.
    copies: Vec<(Vec<String>, String)>,
    /// The `cargo build …` command of the last `RUN` that builds.
    cargo_build: String,
    /// The path the runtime stage copies the binary from.
    binary_from: String,
}

fn parse_dockerfile() -> BuildStage {
    let mut stage = BuildStage {
        workdir: String::new(),
        copies: Vec::new(),
        cargo_build: String::new(),
        binary_from: String::new(),
    };
    let mut in_build = false;
    for (op, args) in instructions() {
        match op.as_str() {
            "FROM" => in_build = args.to_ascii_lowercase().ends_with(" as build"),
            "WORKDIR" if in_build => stage.workdir = args,
            "COPY" => {
                assert!(!args.starts_with('['), "JSON-form COPY is not simulated: {args}");
                let words: Vec<&str> = args.split_whitespace().collect();
                if let Some(from) = words.iter().find(|w| w.starts_with("--from=")) {
                    assert_eq!(*from, "--from=build", "the runtime stage copies from the build stage");
                    stage.binary_from = words.iter().rev().nth(1).unwrap().to_string();
                    continue;
                }
                assert!(in_build, "COPY from the build context outside the build stage: {args}");
                let words: Vec<&str> = words.into_iter().filter(|w| !w.starts_with("--")).collect();
                let (dest, sources) = words.split_last().expect("COPY has a destination");
                assert!(sources.iter().all(|s| !s.contains(['*', '?'])), "wildcard COPY is not simulated: {args}");
                stage.copies.push((sources.iter().map(|s| s.to_string()).collect(), dest.to_string()));
            }
            "RUN" if in_build => {
                if let Some(at) = args.find("cargo build") {
                    stage.cargo_build = args[at..].split("&&").next().unwrap().trim().to_string();
                }
            }
            _ => {}
        }
    }
    stage
}

/// The files the COPY instructions put into the build stage's WORKDIR, Docker's way: a folder's
/// contents go into the destination, a file into it when it ends with `/` or several sources
/// are given. (destination relative to WORKDIR, source in the repository)
fn copied_files(stage: &BuildStage, context: &BTreeSet<String>) -> BTreeSet<(PathBuf, String)> {
    let mut out = BTreeSet::new();
    for (sources, dest) in &stage.copies {
        let dest_dir = PathBuf::from(dest.trim_start_matches("./"));
        for source in sources {
            let source = source.trim_start_matches("./").trim_end_matches('/');
            let inside: Vec<&String> = context.iter().filter(|f| f.starts_with(&format!("{source}/"))).collect();
            if context.contains(source) {
                let target =
                    if dest.ends_with('/') || sources.len() > 1 { dest_dir.join(source) } else { dest_dir.clone() };
                out.insert((target, source.to_string()));
            } else if !inside.is_empty() {
                out.extend(inside.into_iter().map(|file| (dest_dir.join(&file[source.len() + 1..]), file.clone())));
            } else {
                panic!("COPY {source}: not in the build context (missing, or excluded by .dockerignore)");
            }
        }
    }
    out
}

/// Makes `root` hold exactly `files`. Unchanged files keep their modification time, so cargo's
/// check of an unchanged tree is incremental from one test run to the next.
fn sync_into(root: &Path, files: &BTreeSet<(PathBuf, String)>) {
    let wanted: BTreeSet<PathBuf> = files.iter().map(|(target, _)| root.join(target)).collect();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if !wanted.contains(&path) {
                std::fs::remove_file(&path).unwrap();
            }
        }
    }
    for (target, source) in files {
        let target = root.join(target);
        let bytes = std::fs::read(repo().join(source)).unwrap();
        if std::fs::read(&target).ok().as_deref() != Some(bytes.as_slice()) {
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::write(&target, bytes).unwrap();
        }
    }
}

#[test]
fn the_build_context_holds_what_the_build_copies_and_not_target_or_git() {
    let rules = dockerignore();
    let context = build_context(&rules);
    for gone in ["target/", ".git/", ".local/", "node_modules/", "tests/", "scripts/", "deploy/"] {
        assert!(!context.iter().any(|f| f.starts_with(gone)), "{gone} is sent as build context");
    }
    let bytes: u64 = context.iter().map(|f| std::fs::metadata(repo().join(f)).unwrap().len()).sum();
    assert!(bytes < 5_000_000, "build context of {bytes} bytes: .dockerignore lets too much through");
    assert!(context.contains("Cargo.lock") && context.contains("src/main.rs"), "{context:?}");
    assert!(excluded(&rules, "target/debug/tau-portal") && !excluded(&rules, "templates/base.html"));
}

#[test]
fn the_runtime_stage_takes_the_binary_the_build_stage_builds() {
    let stage = parse_dockerfile();
    let bin =
        stage.cargo_build.split("--bin").nth(1).expect("cargo build --bin <name>").split_whitespace().next().unwrap();
    assert!(stage.cargo_build.contains("--release") && stage.cargo_build.contains("--locked"), "{}", stage.cargo_build);
    assert_eq!(stage.binary_from, format!("{}/target/release/{bin}", stage.workdir));
    assert_eq!(bin, "tau-portal", "the image's ENTRYPOINT runs tau-portal");
    // The image's toolchain must be one the crate accepts.
    let rust_version = |text: &str, prefix: &str| -> (u32, u32) {
        let at = text.find(prefix).unwrap_or_else(|| panic!("no {prefix:?}")) + prefix.len();
        let v: Vec<u32> = text[at..].split(|c: char| !c.is_ascii_digit()).take(2).map(|n| n.parse().unwrap()).collect();
        (v[0], v[1])
    };
    let image = rust_version(&std::fs::read_to_string(repo().join("Dockerfile")).unwrap(), "FROM rust:");
    let needed = rust_version(&std::fs::read_to_string(repo().join("Cargo.toml")).unwrap(), "rust-version = \"");
    assert!(image >= needed, "the Dockerfile's rust:{image:?} is older than Cargo.toml's rust-version {needed:?}");
}

/// The check: `cargo check` of what the build stage copies, offline, in a folder of its own.
#[tokio::test]
async fn the_binary_builds_from_exactly_what_the_dockerfile_copies() {
    let stage = parse_dockerfile();
    let context = build_context(&dockerignore());
    // Under the target directory and always the same folder: cargo sees an unchanged package at
    // an unchanged path and the check is incremental; the registry crates are the ones the
    // suite's own build compiled.
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo().join("target"), PathBuf::from);
    let root = target.join("image-build-context");
    sync_into(&root, &copied_files(&stage, &context));

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let bin = stage.cargo_build.split("--bin").nth(1).unwrap().split_whitespace().next().unwrap();
    let run = tokio::process::Command::new(cargo)
        .args(["check", "--offline", "--locked", "--message-format", "short", "--bin", bin])
        .current_dir(&root)
        // Only what cargo needs: variables of the test run (DATABASE_URL changes every run, and
        // sqlx's macros track it) would make every check a rebuild.
        .env_clear()
        .envs(
            ["PATH", "HOME", "CARGO_HOME", "RUSTUP_HOME", "RUSTUP_TOOLCHAIN"]
                .iter()
                .filter_map(|k| Some((k, std::env::var_os(k)?))),
        )
        .env("CARGO_TARGET_DIR", &target)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(900), run)
        .await
        .expect("cargo check finished within 15 minutes")
        .expect("cargo runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the binary does not build from what the Dockerfile copies ({:?}):\n{stderr}",
        stage.copies
    );
}
