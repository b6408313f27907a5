//! Completion for `kubectl kleidia <TAB>`: kubectl runs the
//! `kubectl_complete-kleidia` executable with the words typed after
//! `kleidia` (the last one being completed, possibly empty) and reads
//! Cobra's protocol back: one candidate a line (`value<TAB>help`), then
//! `:<directive>`. Candidates come from the clap command tree (subcommands,
//! flags, enumerated values), the component names and the bundles in the
//! backup folder. Nothing here touches the cluster: completion must answer
//! at once, even with no cluster reachable.

use std::path::{Path, PathBuf};

use crate::cli::{Cli, Flavor};

/// Cobra's `ShellCompDirectiveNoFileComp`: offer only these candidates.
pub const NO_FILE_COMP: u32 = 4;
/// Cobra's `ShellCompDirectiveFilterDirs`: complete folder names.
pub const FILTER_DIRS: u32 = 16;
/// Cobra's `ShellCompDirectiveDefault`: the shell completes file names.
pub const FILES: u32 = 0;

/// What to offer for the word being completed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Completions {
    /// `(value, help)`; help may be empty.
    pub candidates: Vec<(String, String)>,
    pub directive: u32,
}

impl Completions {
    /// Cobra's wire format, as kubectl reads it.
    pub fn to_cobra(&self) -> String {
        let mut out = String::new();
        for (value, help) in &self.candidates {
            out.push_str(value);
            if !help.is_empty() {
                out.push('\t');
                out.push_str(help);
            }
            out.push('\n');
        }
        out.push_str(&format!(":{}\n", self.directive));
        out
    }

    /// Just the values (for tests and messages).
    pub fn values(&self) -> Vec<&str> {
        self.candidates.iter().map(|(v, _)| v.as_str()).collect()
    }
}

/// Where values of an argument come from, beyond clap's possible values.
enum Source {
    /// `platform`, `data`, `services`.
    Components,
    /// What a backup bundle holds: `data`, `platform`, `values`.
    BackupComponents,
    /// Bundle folders in the default backup folder (or the one typed).
    Bundles,
    Folders,
    Files,
    Nothing,
}

/// Which source an argument's values come from. Keyed by the argument's
/// id; `tests::every_named_argument_exists` keeps these names true.
fn source_of(arg: &clap::Arg) -> Source {
    match arg.get_id().as_str() {
        "component" | "only" => return Source::Components,
        "components" => return Source::BackupComponents,
        "bundle" => return Source::Bundles,
        _ => {}
    }
    match arg
        .get_value_names()
        .and_then(|v| v.first())
        .map(|s| s.as_str())
    {
        Some("DIR") => Source::Folders,
        Some("FILE" | "PATH") => Source::Files,
        _ if arg.get_value_hint() == clap::ValueHint::AnyPath => Source::Files,
        _ => Source::Nothing,
    }
}

/// Completes the last of `words` (the words after the plugin's name).
pub fn complete(flavor: Flavor, words: &[String]) -> Completions {
    let mut root = Cli::command_for(flavor);
    root.build();
    let (current, typed) = match words.split_last() {
        Some((last, before)) => (last.as_str(), before),
        None => ("", &[][..]),
    };

    let mut cmd = &root;
    let mut pending: Option<clap::Arg> = None;
    let mut positionals = 0usize;
    let mut only_positionals = false;
    for word in typed {
        if pending.take().is_some() {
            continue;
        }
        if !only_positionals && word == "--" {
            only_positionals = true;
        } else if !only_positionals && word.starts_with("--") {
            if !word.contains('=') {
                pending = find_long(cmd, &word[2..]).filter(takes_value).cloned();
            }
        } else if !only_positionals && word.starts_with('-') && word.len() > 1 {
            let mut chars = word[1..].chars();
            let first = chars.next();
            if chars.next().is_none() {
                pending = first
                    .and_then(|c| find_short(cmd, c))
                    .filter(takes_value)
                    .cloned();
            }
        } else if let Some(sub) = find_subcommand(cmd, word) {
            cmd = sub;
            positionals = 0;
        } else {
            positionals += 1;
        }
    }

    if let Some(arg) = pending {
        return values_of(&arg, current, "");
    }
    if !only_positionals && let Some(flag) = current.strip_prefix("--") {
        if let Some((name, value)) = flag.split_once('=') {
            return match find_long(cmd, name).filter(takes_value) {
                Some(arg) => values_of(arg, value, &format!("--{name}=")),
                None => Completions {
                    directive: NO_FILE_COMP,
                    ..Default::default()
                },
            };
        }
        return flags(cmd, current);
    }
    if !only_positionals && current.starts_with('-') {
        return flags(cmd, current);
    }

    let mut out = Completions {
        directive: NO_FILE_COMP,
        ..Default::default()
    };
    if !only_positionals {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            if sub.get_name().starts_with(current) {
                out.candidates
                    .push((sub.get_name().to_string(), about(sub)));
            }
        }
    }
    let positional = cmd
        .get_positionals()
        .filter(|a| !a.is_hide_set())
        .nth(positionals);
    if let Some(arg) = positional {
        let values = values_of(arg, current, "");
        out.candidates.extend(values.candidates);
        if out.candidates.is_empty() {
            out.directive = values.directive;
        }
    }
    out
}

fn takes_value(arg: &&clap::Arg) -> bool {
    arg.get_num_args().is_some_and(|n| n.takes_values())
}

fn find_long<'a>(cmd: &'a clap::Command, name: &str) -> Option<&'a clap::Arg> {
    cmd.get_arguments().find(|a| {
        a.get_long() == Some(name)
            || a.get_all_aliases()
                .is_some_and(|aliases| aliases.contains(&name))
    })
}

fn find_short(cmd: &clap::Command, c: char) -> Option<&clap::Arg> {
    cmd.get_arguments().find(|a| a.get_short() == Some(c))
}

fn find_subcommand<'a>(cmd: &'a clap::Command, word: &str) -> Option<&'a clap::Command> {
    cmd.get_subcommands()
        .find(|s| s.get_name() == word || s.get_all_aliases().any(|a| a == word))
}

fn about(cmd: &clap::Command) -> String {
    cmd.get_about().map(first_line).unwrap_or_default()
}

fn first_line(text: &clap::builder::StyledStr) -> String {
    let text = text.to_string();
    let line = text.lines().next().unwrap_or_default().trim();
    line.strip_suffix('.').unwrap_or(line).to_string()
}

/// The flags of `cmd` starting with `prefix`, long ones first.
fn flags(cmd: &clap::Command, prefix: &str) -> Completions {
    let mut out = Completions {
        directive: NO_FILE_COMP,
        ..Default::default()
    };
    let visible = || cmd.get_arguments().filter(|a| !a.is_hide_set());
    for arg in visible() {
        let help = arg.get_help().map(first_line).unwrap_or_default();
        if let Some(long) = arg.get_long() {
            let flag = format!("--{long}");
            if flag.starts_with(prefix) {
                out.candidates.push((flag, help.clone()));
            }
            for alias in arg.get_visible_aliases().unwrap_or_default() {
                let flag = format!("--{alias}");
                if flag.starts_with(prefix) {
                    out.candidates.push((flag, help.clone()));
                }
            }
        }
    }
    if !prefix.starts_with("--") {
        for arg in visible() {
            if let Some(short) = arg.get_short() {
                let flag = format!("-{short}");
                if flag.starts_with(prefix) {
                    let help = arg.get_help().map(first_line).unwrap_or_default();
                    out.candidates.push((flag, help));
                }
            }
        }
    }
    out
}

/// Values of `arg` starting with `current`; `lead` is put back in front of
/// each (`--flag=`). Comma-separated lists complete their last item.
fn values_of(arg: &clap::Arg, current: &str, lead: &str) -> Completions {
    let (done, item) = match arg.get_value_delimiter() {
        Some(d) => match current.rfind(d) {
            Some(i) => current.split_at(i + d.len_utf8()),
            None => ("", current),
        },
        None => ("", current),
    };
    let named = |names: &mut dyn Iterator<Item = (&str, String)>| {
        let candidates = names
            .filter(|(v, _)| v.starts_with(item))
            .map(|(v, h)| (format!("{lead}{done}{v}"), h))
            .collect();
        Completions {
            candidates,
            directive: NO_FILE_COMP,
        }
    };
    let possible = arg.get_possible_values();
    if !possible.is_empty() {
        return named(&mut possible.iter().filter(|p| !p.is_hide_set()).map(|p| {
            (
                p.get_name(),
                p.get_help().map(first_line).unwrap_or_default(),
            )
        }));
    }
    match source_of(arg) {
        Source::Components => named(&mut crate::topology::Component::ALL.iter().map(|c| {
            let what = match c {
                crate::topology::Component::Platform => "OpenBao (kleidia-platform)",
                crate::topology::Component::Data => "PostgreSQL (kleidia-data)",
                crate::topology::Component::Services => "backend and frontend (kleidia-services)",
            };
            (c.as_str(), what.to_string())
        })),
        Source::BackupComponents => named(
            &mut crate::backup::manifest::Component::ALL
                .iter()
                .map(|c| (c.as_str(), String::new())),
        ),
        Source::Bundles => bundles(current),
        Source::Folders => Completions {
            candidates: vec![],
            directive: FILTER_DIRS,
        },
        Source::Files => Completions {
            candidates: vec![],
            directive: FILES,
        },
        Source::Nothing => Completions {
            candidates: vec![],
            directive: NO_FILE_COMP,
        },
    }
}

/// Bundle folders: in the folder typed so far (`some/dir/kle<TAB>`), else
/// in the default backup folder; complete ones first, newest first. Falls
/// back to file names when there are none.
fn bundles(current: &str) -> Completions {
    let (dir, shown) = match current.rfind('/') {
        Some(i) => (PathBuf::from(&current[..=i]), current[..=i].to_string()),
        None => {
            let dir = PathBuf::from(crate::backup::DEFAULT_DIR);
            let shown = format!(
                "{}/",
                crate::backup::DEFAULT_DIR
                    .strip_prefix("./")
                    .unwrap_or(crate::backup::DEFAULT_DIR)
            );
            (dir, shown)
        }
    };
    let mut found = bundles_in(&dir);
    found.retain(|(name, _)| format!("{shown}{name}").starts_with(current));
    if found.is_empty() {
        return Completions {
            candidates: vec![],
            directive: FILES,
        };
    }
    Completions {
        candidates: found
            .into_iter()
            .map(|(name, help)| (format!("{shown}{name}"), help))
            .collect(),
        directive: NO_FILE_COMP,
    }
}

fn bundles_in(dir: &Path) -> Vec<(String, String)> {
    use crate::backup::list::{BundleState, list_bundles};
    let Ok(mut list) = list_bundles(dir, chrono::Utc::now()) else {
        return vec![];
    };
    list.retain(|b| b.state != BundleState::Partial);
    list.sort_by(|a, b| {
        (a.state != BundleState::Complete, std::cmp::Reverse(a.time))
            .cmp(&(b.state != BundleState::Complete, std::cmp::Reverse(b.time)))
    });
    list.into_iter()
        .map(|b| {
            let state = match b.state {
                BundleState::Complete => "",
                _ => ", incomplete",
            };
            let help = format!(
                "{} {}{}{state}",
                b.namespace,
                b.time.format("%Y-%m-%d %H:%M UTC"),
                if b.encrypted { ", encrypted" } else { "" },
            );
            (b.name, help)
        })
        .collect()
}

/// `kubectl_complete-kleidia`: completes `args` (kubectl passes the words
/// after `kleidia`; a leading `__complete`, as Cobra programs take it, is
/// accepted too) and prints Cobra's protocol.
pub fn main(flavor: Flavor) -> std::process::ExitCode {
    let mut words: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if words.first().is_some_and(|w| w == "__complete") {
        words.remove(0);
    }
    let text = complete(flavor, &words).to_cobra();
    match crate::report::write_stdout(text.as_bytes()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &[&str]) -> Vec<String> {
        s.iter().map(|w| w.to_string()).collect()
    }

    fn values(s: &[&str]) -> Vec<String> {
        complete(Flavor::Kubectl, &words(s))
            .values()
            .iter()
            .map(|v| v.to_string())
            .collect()
    }

    #[test]
    fn subcommands_at_the_top_and_below() {
        let top = values(&[""]);
        for sub in [
            "versions",
            "preflight",
            "backup",
            "upgrade",
            "rollback",
            "completion",
        ] {
            assert!(top.contains(&sub.to_string()), "{sub} missing from {top:?}");
        }
        assert!(!top.iter().any(|v| v == "man-pages"), "hidden: {top:?}");
        assert_eq!(values(&["ver"]), ["versions"]);
        assert_eq!(
            values(&["backup", ""])
                .into_iter()
                .filter(|v| !v.starts_with('-'))
                .collect::<Vec<_>>(),
            ["create", "list", "verify", "prune", "help"]
        );
        assert_eq!(values(&["-n", "prod", "vers"]), ["versions"]);
    }

    #[test]
    fn flags_of_the_command_and_global_ones() {
        let f = values(&["versions", "--"]);
        for flag in [
            "--history",
            "--namespace",
            "--context",
            "--kube-context",
            "--output",
        ] {
            assert!(f.contains(&flag.to_string()), "{flag} missing from {f:?}");
        }
        assert_eq!(
            values(&["rollback", "--allow-d"]),
            ["--allow-data-rollback"]
        );
        assert!(values(&["versions", "-"]).contains(&"-n".to_string()));
    }

    #[test]
    fn values_of_flags_and_positionals() {
        assert_eq!(values(&["versions", "-o", ""]), ["table", "json", "yaml"]);
        assert_eq!(values(&["versions", "--output=j"]), ["--output=json"]);
        assert_eq!(
            values(&["rollback", ""])
                .into_iter()
                .filter(|v| !v.starts_with('-'))
                .collect::<Vec<_>>(),
            ["platform", "data", "services"]
        );
        assert_eq!(
            values(&["upgrade", "--only", "platform,d"]),
            ["platform,data"]
        );
        assert_eq!(
            values(&["backup", "--components", "data,"]),
            ["data,data", "data,platform", "data,values"]
        );
        let dirs = complete(Flavor::Kubectl, &words(&["backup", "list", "--dir", ""]));
        assert_eq!(dirs.directive, FILTER_DIRS);
    }

    #[test]
    fn bundles_are_offered_from_the_folder_typed() {
        let dir = tempfile::tempdir().unwrap();
        let older = "kleidia-kleidia-20261101T090000Z";
        let newer = "kleidia-kleidia-20261102T090000Z";
        for b in [older, newer] {
            std::fs::create_dir(dir.path().join(b)).unwrap();
        }
        std::fs::create_dir(dir.path().join("unrelated")).unwrap();
        let prefix = format!("{}/", dir.path().display());
        let got = values(&["backup", "verify", &prefix]);
        assert_eq!(
            got,
            [format!("{prefix}{newer}"), format!("{prefix}{older}")]
        );
        let got = values(&["backup", "verify", &format!("{prefix}{}", &older[..30])]);
        assert_eq!(got, [format!("{prefix}{older}")]);
        // No bundles: the shell completes paths.
        let empty = tempfile::tempdir().unwrap();
        let c = complete(
            Flavor::Kubectl,
            &words(&["backup", "verify", &format!("{}/", empty.path().display())]),
        );
        assert!(c.candidates.is_empty());
        assert_eq!(c.directive, FILES);
    }

    #[test]
    fn every_named_argument_exists() {
        let mut root = Cli::command_for(Flavor::Kubectl);
        root.build();
        let find = |path: &[&str], id: &str| {
            let mut cmd = &root;
            for p in path {
                cmd = find_subcommand(cmd, p).unwrap_or_else(|| panic!("no subcommand {p}"));
            }
            assert!(
                cmd.get_arguments().any(|a| a.get_id() == id),
                "{path:?} has no argument {id}"
            );
        };
        find(&["rollback"], "component");
        find(&["upgrade"], "only");
        find(&["backup"], "components");
        find(&["backup", "verify"], "bundle");
    }

    #[test]
    fn cobra_protocol() {
        let c = Completions {
            candidates: vec![("versions".into(), "Show".into()), ("x".into(), "".into())],
            directive: NO_FILE_COMP,
        };
        assert_eq!(c.to_cobra(), "versions\tShow\nx\n:4\n");
    }
}
