//! `backup list` and `backup prune` on a real folder with complete bundles,
//! an incomplete one, partial leftovers and unrelated folders.

mod backup_support;

use std::path::Path;
use std::time::{Duration, SystemTime};

use backup_support::folder_names;
use chrono::{TimeDelta, Utc};
use kleidia::backup::manifest::{FileKind, Manifest};
use kleidia::backup::writer::{AddOptions, BundleWriter};
use kleidia::commands::backup::{
    BackupCommand, ListArgs, OutputFormat, PruneArgs, VerifyArgs, run_local_blocking,
};

async fn bundle_at(dir: &Path, hours_ago: i64) -> String {
    bundle_of(dir, "kleidia", Some("prod"), hours_ago).await
}

/// A complete bundle of namespace `ns` taken through kubeconfig context
/// `context`, `hours_ago` hours ago.
async fn bundle_of(dir: &Path, ns: &str, context: Option<&str>, hours_ago: i64) -> String {
    let at = Utc::now() - TimeDelta::hours(hours_ago);
    let mut w = BundleWriter::create(dir, ns, at).unwrap();
    w.add_bytes(
        "helm/kleidia-data.values.yaml",
        FileKind::HelmValues,
        b"a: 1\n",
        AddOptions::default(),
    )
    .await
    .unwrap();
    let mut m = Manifest::new(ns, at);
    m.context = context.map(str::to_owned);
    m.server = context.map(|c| format!("https://{c}.example:6443"));
    m.versions.insert("postgres".into(), "15.10".into());
    let path = w.finish(m).unwrap();
    path.file_name().unwrap().to_str().unwrap().to_owned()
}

fn json(cmd: BackupCommand) -> serde_json::Value {
    let mut out = Vec::new();
    let outcome = run_local_blocking(&cmd, OutputFormat::Json, &mut out).unwrap();
    assert!(outcome.ok);
    serde_json::from_slice(&out).unwrap()
}

fn names(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn list_and_prune_touch_only_complete_bundles() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let oldest = bundle_at(dir, 72).await;
    let middle = bundle_at(dir, 48).await;
    let newest = bundle_at(dir, 1).await;
    std::fs::create_dir(dir.join("notes")).unwrap();
    std::fs::write(dir.join("notes/readme.txt"), "mine").unwrap();
    std::fs::write(dir.join("kleidia-kleidia-20200101T000000Z.txt"), "a file").unwrap();
    let incomplete = "kleidia-kleidia-20200101T000000Z";
    std::fs::create_dir(dir.join(incomplete)).unwrap();
    let stale = ".kleidia-kleidia-20200102T000000Z.partial";
    std::fs::create_dir(dir.join(stale)).unwrap();
    let old_file = dir.join(stale).join("postgres.sql.zst");
    std::fs::write(&old_file, "x").unwrap();
    let two_hours_ago = SystemTime::now() - Duration::from_secs(2 * 3600);
    for p in [old_file.clone(), dir.join(stale)] {
        std::fs::File::open(&p)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
    }
    let fresh = format!(
        ".kleidia-kleidia-{}.partial",
        Utc::now().format("%Y%m%dT%H%M%SZ")
    );
    std::fs::create_dir(dir.join(&fresh)).unwrap();

    let list = json(BackupCommand::List(ListArgs {
        dir: dir.to_owned(),
    }));
    let listed = names(&list);
    assert_eq!(listed.len(), 6, "{listed:?}");
    assert!(!listed.iter().any(|n| n == "notes"));
    let by_name = |n: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(by_name(&newest)["state"], "complete");
    assert_eq!(by_name(&newest)["versions"]["postgres"], "15.10");
    assert_eq!(by_name(&newest)["encrypted"], false);
    assert!(by_name(&newest)["size"].as_u64().unwrap() > 0);
    assert_eq!(by_name(incomplete)["state"], "incomplete");
    assert_eq!(by_name(stale)["state"], "partial");
    assert_eq!(by_name(stale)["stale"], true);
    assert!(by_name(&fresh).get("stale").is_none());

    // Human output is a table.
    let mut out = Vec::new();
    run_local_blocking(
        &BackupCommand::List(ListArgs {
            dir: dir.to_owned(),
        }),
        OutputFormat::Table,
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("BUNDLE") && text.contains(&newest), "{text}");

    let prune = |keep: Option<u32>, max_age: Option<TimeDelta>, dry_run: bool| {
        json(BackupCommand::Prune(PruneArgs {
            dir: dir.to_owned(),
            keep,
            max_age,
            dry_run,
        }))
    };
    let before = folder_names(dir);
    let plan = prune(Some(2), None, true);
    assert_eq!(names(&plan["removed"]), vec![oldest.clone()]);
    assert_eq!(names(&plan["stalePartials"]), vec![stale.to_owned()]);
    assert_eq!(folder_names(dir), before, "a dry run removed something");

    let done = prune(Some(2), None, false);
    assert_eq!(names(&done["removed"]), vec![oldest.clone()]);
    assert!(!dir.join(&oldest).exists());
    for kept in [
        &middle,
        &newest,
        &incomplete.to_owned(),
        &stale.to_owned(),
        &fresh,
        &"notes".to_owned(),
    ] {
        assert!(dir.join(kept).exists(), "{kept} was removed");
    }

    let done = prune(None, Some(TimeDelta::days(1)), false);
    assert_eq!(names(&done["removed"]), vec![middle.clone()]);
    assert!(dir.join(&newest).exists());

    // max-age alone keeps the newest bundle even when it is older.
    let done = prune(None, Some(TimeDelta::minutes(1)), false);
    assert!(names(&done["removed"]).is_empty());
    assert!(dir.join(&newest).exists());
}

#[test]
fn verify_of_a_folder_without_manifest_says_it_is_incomplete() {
    let tmp = tempfile::tempdir().unwrap();
    let b = tmp.path().join("kleidia-kleidia-20200101T000000Z");
    std::fs::create_dir(&b).unwrap();
    let err = run_local_blocking(
        &BackupCommand::Verify(VerifyArgs {
            bundle: b,
            restore_test: false,
            identity: None,
            passphrase_env: None,
        }),
        OutputFormat::Table,
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no manifest.json"), "{err}");
}

#[test]
fn list_of_a_missing_folder_says_where_bundles_come_from() {
    let err = run_local_blocking(
        &BackupCommand::List(ListArgs {
            dir: "/nonexistent/backups".into(),
        }),
        OutputFormat::Table,
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("backup create --dir"), "{err}");
}

fn prune_json(dir: &Path, keep: u32, dry_run: bool) -> serde_json::Value {
    json(BackupCommand::Prune(PruneArgs {
        dir: dir.to_owned(),
        keep: Some(keep),
        max_age: None,
        dry_run,
    }))
}

#[tokio::test]
async fn prune_keeps_n_per_namespace_and_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Namespace kleidia on prod: three; kleidia-staging on prod: two, all
    // older than kleidia's; kleidia on another cluster: one, the oldest.
    let prod = [
        bundle_of(dir, "kleidia", Some("prod"), 30).await,
        bundle_of(dir, "kleidia", Some("prod"), 20).await,
        bundle_of(dir, "kleidia", Some("prod"), 10).await,
    ];
    let staging = [
        bundle_of(dir, "kleidia-staging", Some("prod"), 90).await,
        bundle_of(dir, "kleidia-staging", Some("prod"), 80).await,
    ];
    let dr = bundle_of(dir, "kleidia", Some("dr"), 100).await;

    let plan = prune_json(dir, 2, true);
    assert_eq!(names(&plan["removed"]), vec![prod[0].clone()]);
    let groups = plan["groups"].as_array().unwrap();
    let group = |ns: &str, ctx: &str| {
        groups
            .iter()
            .find(|g| g["namespace"] == ns && g["context"] == ctx)
            .unwrap_or_else(|| panic!("no group {ns}/{ctx} in {groups:?}"))
    };
    assert_eq!(groups.len(), 3, "{groups:?}");
    assert_eq!(
        names(&group("kleidia", "prod")["removed"]),
        vec![prod[0].clone()]
    );
    assert_eq!(
        names(&group("kleidia", "prod")["kept"]),
        vec![prod[2].clone(), prod[1].clone()]
    );
    assert_eq!(names(&group("kleidia-staging", "prod")["kept"]).len(), 2);
    assert_eq!(names(&group("kleidia", "dr")["kept"]), vec![dr.clone()]);
    assert_eq!(group("kleidia", "dr")["server"], "https://dr.example:6443");

    // The human plan is per group.
    let mut out = Vec::new();
    run_local_blocking(
        &BackupCommand::Prune(PruneArgs {
            dir: dir.to_owned(),
            keep: Some(2),
            max_age: None,
            dry_run: true,
        }),
        OutputFormat::Table,
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains(
            "namespace kleidia, context prod (https://prod.example:6443): keeping 2, would remove 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("namespace kleidia-staging, context prod (https://prod.example:6443): keeping 2, would remove 0"),
        "{text}"
    );

    let done = prune_json(dir, 1, false);
    let mut removed = names(&done["removed"]);
    removed.sort();
    let mut want = vec![prod[0].clone(), prod[1].clone(), staging[0].clone()];
    want.sort();
    assert_eq!(removed, want);
    for kept in [&prod[2], &staging[1], &dr] {
        assert!(dir.join(kept).exists(), "{kept} was removed");
    }
}

#[tokio::test]
async fn prune_never_removes_a_folder_it_did_not_write() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let with_notes = bundle_of(dir, "kleidia", Some("prod"), 50).await;
    std::fs::write(dir.join(&with_notes).join("notes.txt"), "mine").unwrap();
    let with_link = bundle_of(dir, "kleidia", Some("prod"), 40).await;
    std::os::unix::fs::symlink("/etc", dir.join(&with_link).join("etc")).unwrap();
    let renamed = bundle_of(dir, "kleidia", Some("prod"), 30).await;
    let moved = "kleidia-other-20200101T000000Z";
    std::fs::rename(dir.join(&renamed), dir.join(moved)).unwrap();
    let other_tool = bundle_of(dir, "kleidia", Some("prod"), 20).await;
    let manifest = dir.join(&other_tool).join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap().replacen(
        "\"name\": \"kleidia\"",
        "\"name\": \"someone-else\"",
        1,
    );
    std::fs::write(&manifest, text).unwrap();
    let newest = bundle_of(dir, "kleidia", Some("prod"), 1).await;
    std::fs::create_dir(dir.join("kleidia-notes")).unwrap();

    let done = prune_json(dir, 1, false);
    assert!(names(&done["removed"]).is_empty(), "{done}");
    let left: Vec<(String, String)> = done["leftAlone"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap().to_owned(),
                l["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let reason = |name: &str| {
        left.iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| panic!("{name} not left alone: {left:?}"))
    };
    assert!(reason(&with_notes).contains("notes.txt"), "{left:?}");
    assert!(
        reason(&with_link).contains("etc (symbolic link)"),
        "{left:?}"
    );
    assert!(reason(moved).contains("namespace other"), "{left:?}");
    assert!(reason(&other_tool).contains("someone-else"), "{left:?}");
    for name in [
        &with_notes,
        &with_link,
        &moved.to_owned(),
        &other_tool,
        &newest,
    ] {
        assert!(dir.join(name).exists(), "{name} was removed");
    }
    assert!(dir.join("kleidia-notes").exists());
    assert!(std::path::Path::new("/etc/passwd").exists());
}
